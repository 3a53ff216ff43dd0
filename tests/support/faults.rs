//! Shared set-up of the fault-injection tests (tests/faults_*): a fake root with signed sysext
//! DDIs, a trust directory, and a shell script run as root in a private mount namespace.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_verity");

pub fn keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("keys")
}

pub fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

/// A fake root with a host /usr file and a trust directory holding the test leaf certificate.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub trust: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        write(&root.join("etc/os-release"), "ID=debian\n");
        write(&root.join("usr/share/host"), "h\n");
        let trust = dir.path().join("trust");
        std::fs::create_dir_all(&trust).unwrap();
        std::fs::copy(keys().join("leaf.crt"), trust.join("leaf.crt")).unwrap();
        Self { dir, root, trust }
    }

    pub fn path(&self, n: &str) -> PathBuf {
        self.dir.path().join(n)
    }

    /// Builds a signed sysext DDI `<name>.raw` in var/lib/extensions holding usr/share/<name>
    /// (`content`) and `pad` bytes in usr/share/<name>.pad (to make the image large).
    pub fn ddi(&self, name: &str, content: &str, pad: usize) -> PathBuf {
        let src = self.path(&format!("src-{name}"));
        write(
            &src.join(format!(
                "usr/lib/extension-release.d/extension-release.{name}"
            )),
            "ID=_any\n",
        );
        write(&src.join(format!("usr/share/{name}")), content);
        if pad > 0 {
            let noise: Vec<u8> = (0..pad as u64)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect();
            std::fs::write(src.join(format!("usr/share/{name}.pad")), noise).unwrap();
        }
        let dir = self.root.join("var/lib/extensions");
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join(format!("{name}.raw"));
        let st = Command::new(BIN)
            .args(["image", "build", "--class", "sysext"])
            .arg("--key")
            .arg(keys().join("leaf.key"))
            .arg("--cert")
            .arg(keys().join("leaf.crt"))
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .status()
            .unwrap();
        assert!(st.success());
        out
    }

    /// The merge options for `tpm` (a `--tpm` spec) and event log `log`.
    pub fn merge_args(&self, tpm: &str, log: &Path) -> String {
        format!(
            "--root {} --trust {} --tpm {tpm} --dangerous-tpm-simulator --event-log {}",
            self.root.display(),
            self.trust.display(),
            log.display()
        )
    }

    /// Runs `script` with `sh -uc` in a private mount namespace; env: V (the binary), R (root),
    /// T (the temp dir) and `env`.
    pub fn in_ns(&self, script: &str, env: &[(&str, String)]) -> Output {
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-uc", script])
            .env("V", BIN)
            .env("R", &self.root)
            .env("T", self.dir.path());
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c
            .output()
            .expect("unshare (util-linux) must be installed and the test run as root");
        eprintln!(
            "--- stdout\n{}--- stderr\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }
}

/// The value of `KEY=` on its own line of `s`.
pub fn field<'a>(s: &'a str, key: &str) -> &'a str {
    s.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|l| l.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {s}"))
}

//! A per-test software TPM (spec/test-environment.md 3): each [`Swtpm`] is a swtpm child process
//! on its own TCP port pair (server P, control P+1, as the swtpm TCTI requires) with its own state
//! directory, started without `-d` and killed and waited for on drop, so no zombie is left for a
//! PID 1 that does not reap. A taken port makes swtpm exit at once; the harness then tries another.
//! Also small wrappers around tpm2-tools as the independent oracle.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A running swtpm.
pub struct Swtpm {
    child: Option<Child>,
    pub port: u16,
    pub state: tempfile::TempDir,
}

static NEXT: AtomicU16 = AtomicU16::new(0);

fn candidate_port() -> u16 {
    let seed = std::process::id() as u64
        ^ SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    let n = NEXT.fetch_add(1, Ordering::Relaxed) as u64;
    // Even ports in 20000..59998, spread by process, time and call count.
    (20000 + ((seed.wrapping_mul(2654435761) + n * 7919) % 19999) * 2) as u16
}

fn port_pair_free(p: u16) -> bool {
    TcpListener::bind(("127.0.0.1", p)).is_ok() && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
}

fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: this test needs it (apt-get install swtpm swtpm-tools tpm2-tools; \
         see .ci/apt-packages)"
    );
}

impl Swtpm {
    /// A fresh TPM: swtpm's default state has sha1, sha256, sha384 and sha512 active.
    pub fn start() -> Self {
        Self::start_with_state(tempfile::tempdir().expect("temp dir"))
    }

    /// A TPM over an existing state directory (e.g. one made by [`sha1_only_state`]).
    pub fn start_with_state(state: tempfile::TempDir) -> Self {
        require_tool("swtpm");
        for _ in 0..30 {
            let port = candidate_port();
            if !port_pair_free(port) {
                continue;
            }
            let log = state.path().join("swtpm.log");
            let mut child = Command::new("swtpm")
                .arg("socket")
                .arg("--tpm2")
                .arg("--tpmstate")
                .arg(format!("dir={}", state.path().display()))
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .arg("--flags")
                .arg("not-need-init,startup-clear")
                .arg("--log")
                .arg(format!("file={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn swtpm");
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut up = false;
            while Instant::now() < deadline {
                if child.try_wait().expect("try_wait").is_some() {
                    break; // port taken after all: try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    std::thread::sleep(Duration::from_millis(5));
                    up = child.try_wait().expect("try_wait").is_none();
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if up {
                return Self {
                    child: Some(child),
                    port,
                    state,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start swtpm on any port pair");
    }

    /// `--tpm` for verity.
    pub fn spec(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// `TPM2TOOLS_TCTI` for tpm2-tools.
    pub fn tcti(&self) -> String {
        self.spec()
    }

    /// Kills the TPM and waits for it (it is gone afterwards).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops and starts again over the same state (a TPM reset: PCRs return to their reset
    /// values, a pending PCR allocation takes effect).
    pub fn restart(mut self) -> Self {
        self.kill();
        let state = std::mem::replace(&mut self.state, tempfile::tempdir().unwrap());
        Self::start_with_state(state)
    }

    /// Runs a tpm2-tools command against this TPM and returns its output (any exit status).
    pub fn tool(&self, name: &str, args: &[&str]) -> Output {
        require_tool(name);
        Command::new(name)
            .args(args)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .output()
            .unwrap_or_else(|e| panic!("run {name}: {e}"))
    }

    /// One PCR value as tpm2_pcrread shows it.
    pub fn pcrread(&self, bank: &str, pcr: u32) -> Vec<u8> {
        let out = self.tool("tpm2_pcrread", &[&format!("{bank}:{pcr}")]);
        assert!(out.status.success(), "tpm2_pcrread: {out:?}");
        let vals = parse_pcrread(&String::from_utf8_lossy(&out.stdout));
        vals.get(&(bank.to_string(), pcr))
            .unwrap_or_else(|| panic!("tpm2_pcrread printed no {bank}:{pcr}: {out:?}"))
            .clone()
    }

    /// The banks with PCRs allocated, per `tpm2_getcap pcrs`.
    pub fn active_banks(&self) -> Vec<String> {
        let out = self.tool("tpm2_getcap", &["pcrs"]);
        assert!(out.status.success(), "tpm2_getcap: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let l = l.trim().strip_prefix("- ")?;
                let (bank, rest) = l.split_once(':')?;
                (rest.trim() != "[ ]").then(|| bank.trim().to_string())
            })
            .collect()
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Parses tpm2_pcrread's YAML-ish output: `  sha256:` then `    13: 0xABCD...`.
pub fn parse_pcrread(text: &str) -> HashMap<(String, u32), Vec<u8>> {
    let mut bank = String::new();
    let mut out = HashMap::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(b) = t.strip_suffix(':') {
            bank = b.to_string();
        } else if let Some((n, v)) = t.split_once(':') {
            let n: u32 = n.trim().parse().expect("PCR number");
            let v = v.trim().trim_start_matches("0x");
            out.insert((bank.clone(), n), hex_decode(v));
        }
    }
    out
}

/// Strict hex decoding written here, so tests do not check the crate with itself.
pub fn hex_decode(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s:?}");
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Lower-case hex, written here for the same reason.
pub fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A state directory whose TPM has only the sha1 bank active (swtpm_setup --pcr-banks sha1),
/// with swtpm_setup's configuration kept inside it rather than in /etc or /var/lib.
pub fn sha1_only_state() -> tempfile::TempDir {
    require_tool("swtpm_setup");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("swtpm_setup.conf");
    std::fs::write(&conf, "active_pcr_banks = sha1\n").unwrap();
    let out = Command::new("swtpm_setup")
        .arg("--tpm2")
        .arg("--tpmstate")
        .arg(dir.path())
        .arg("--pcr-banks")
        .arg("sha1")
        .arg("--config")
        .arg(&conf)
        .arg("--overwrite")
        .output()
        .expect("run swtpm_setup");
    assert!(out.status.success(), "swtpm_setup: {out:?}");
    dir
}

/// `openssl dgst -<alg> -binary` over `data`: the independent hash oracle.
pub fn openssl_digest(alg: &str, data: &[u8], scratch: &Path) -> Vec<u8> {
    require_tool("openssl");
    let f: PathBuf = scratch.join(format!(
        "dgst-input-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&f, data).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", &format!("-{alg}"), "-binary"])
        .arg(&f)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl dgst: {out:?}");
    out.stdout
}

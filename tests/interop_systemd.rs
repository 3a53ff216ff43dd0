//! Interop with systemd 257 on real images (host side, no kernel dm-verity needed), with the
//! tools unpacked by tests/oracle/systemd-257:
//! - `systemd-dissect --json=short` reads DDIs made by `verity image build` and finds the same
//!   partitions, the root hash (as the data/verity partition UUIDs), the file system, the class
//!   and extension-release, and the same signed/unsigned verdict; `--validate` under a
//!   signed-only policy accepts exactly the signed ones;
//! - `verity sysext|confext merge` merges DDIs made by `systemd-repart --offline` with systemd's
//!   own sysext/confext definitions, signed with our TEST-ONLY key, under the default
//!   (signed-only) policy, and refuses them when the certificate is not trusted.
//!
//! Root (loop devices, mounts in a private namespace) and the oracle's first fetch need network.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/systemd257.rs"]
mod systemd257;

const BIN: &str = env!("CARGO_BIN_EXE_verity");

fn keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("keys")
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

fn sh(script: &str, envs: &[(&str, &Path)]) -> (bool, String, String) {
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "bash", "-euc", script]);
    for (k, v) in envs {
        c.env(k, v);
    }
    let o = c
        .output()
        .expect("unshare (util-linux) must be installed and the test run as root");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    eprintln!("--- stdout\n{out}--- stderr\n{err}");
    (o.status.success(), out, err)
}

/// An extension source tree; returns its directory.
fn source(dir: &Path, class: &str, name: &str) -> PathBuf {
    let src = dir.join(format!("src-{class}-{name}"));
    let rel = if class == "sysext" {
        "usr/lib/extension-release.d"
    } else {
        "etc/extension-release.d"
    };
    write(
        &src.join(format!("{rel}/extension-release.{name}")),
        "ID=debian\nVERSION_ID=12\n",
    );
    let payload = if class == "sysext" {
        "usr/share/interop/f"
    } else {
        "etc/interop/f"
    };
    write(&src.join(payload), &format!("{name}\n"));
    src
}

fn uuid_of(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[test]
fn root_oracle_systemd_dissect_257_reads_our_ddis() {
    let dissect = systemd257::tool("systemd-dissect");
    let t = tempfile::tempdir().unwrap();
    // (class, name, file system, signed)
    let cases = [
        ("sysext", "tools", "erofs", true),
        ("confext", "conf", "squashfs", true),
        ("sysext", "plain", "erofs", false),
    ];
    for (class, name, fs, signed) in cases {
        let src = source(t.path(), class, name);
        let img = t.path().join(format!("{name}.raw"));
        let mut b = Command::new(BIN);
        b.args(["image", "build", "--class", class, "--fs", fs, "-o"])
            .arg(&img)
            .arg(&src);
        if signed {
            b.arg("--key")
                .arg(keys().join("leaf.key"))
                .arg("--cert")
                .arg(keys().join("leaf.crt"));
        }
        assert!(b.status().unwrap().success(), "verity image build");
        let ours: Value = serde_json::from_slice(
            &Command::new(BIN)
                .args(["image", "inspect", "--json"])
                .arg(&img)
                .output()
                .unwrap()
                .stdout,
        )
        .expect("verity image inspect --json");
        // systemd reads certificates from /run/verity.d: a private tmpfs there holds ours.
        let (ok, out, _) = sh(
            r#"mount -t tmpfs tmpfs /run; mkdir /run/verity.d; cp "$K/leaf.crt" /run/verity.d/test.crt
            "$D" --json=short "$I"
            "$D" --json=short --root-hash="$H" "$I"
            if "$D" --image-policy=root=signed+absent --validate "$I" >&2; then echo SIGNED_POLICY_OK; fi"#,
            &[
                ("D", &dissect),
                ("I", &img),
                ("K", &keys()),
                ("H", Path::new(ours["root_hash"].as_str().unwrap())),
            ],
        );
        assert!(ok, "systemd-dissect failed on {name}");
        let theirs: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        let root_hash = ours["root_hash"].as_str().unwrap();
        let mounts = theirs["mounts"].as_array().unwrap();
        let part = |d: &str| {
            mounts
                .iter()
                .find(|m| m["designator"] == d)
                .unwrap_or_else(|| panic!("{name}: systemd sees no {d} partition: {theirs}"))
        };
        // Same partitions, in the same places.
        let mut want: Vec<String> = ours["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["uuid"].as_str().unwrap().to_string())
            .collect();
        let mut got: Vec<String> = mounts
            .iter()
            .map(|m| m["partition_uuid"].as_str().unwrap().to_string())
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{name}: partitions");
        // The root hash, as systemd finds it: first and last 128 bits as the partition UUIDs.
        assert_eq!(part("root")["partition_uuid"], uuid_of(&root_hash[..32]));
        assert_eq!(
            part("root-verity")["partition_uuid"],
            uuid_of(&root_hash[32..])
        );
        assert_eq!(part("root")["fstype"], fs);
        assert_eq!(part("root")["architecture"], ours["architecture"]);
        // The same signed/unsigned verdict, and systemd's policy check agrees. Unsigned, systemd
        // has no root hash to set up verity with ("no") until it is given ours ("yes", which
        // also makes it pick the partitions by that hash).
        let verdict = if signed { "signed" } else { "no" };
        assert_eq!(part("root")["verity"], verdict, "{name}");
        let with_hash: Value = serde_json::from_str(out.lines().nth(1).unwrap()).unwrap();
        let root_with_hash = with_hash["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["designator"] == "root")
            .unwrap()["verity"]
            .clone();
        assert_eq!(
            root_with_hash,
            if signed { "signed" } else { "yes" },
            "{name}"
        );
        assert_eq!(
            mounts.iter().any(|m| m["designator"] == "root-verity-sig"),
            signed
        );
        assert_eq!(out.contains("SIGNED_POLICY_OK"), signed, "{name}");
        // The class and the extension-release it carries.
        let (use_key, rel_key) = if class == "sysext" {
            ("useSystemExtension", "sysextRelease")
        } else {
            ("useConfigurationExtension", "confextRelease")
        };
        assert_eq!(theirs[use_key], true, "{name}: {theirs}");
        assert_eq!(
            theirs[rel_key],
            serde_json::json!(["ID=debian", "VERSION_ID=12"]),
            "{name}"
        );
    }
}

#[test]
fn root_oracle_verity_merges_ddis_built_by_systemd_repart_257() {
    let repart = systemd257::tool("systemd-repart");
    let cache = PathBuf::from(
        String::from_utf8(
            Command::new(systemd257::script())
                .arg("fetch")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim(),
    );
    let defs = cache.join("x/usr/lib/systemd/repart/definitions");
    let t = tempfile::tempdir().unwrap();
    // repart insists on a private key file nobody else can read.
    let key = t.path().join("leaf.key");
    std::fs::copy(keys().join("leaf.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let r = t.path().join("root");
    write(&r.join("etc/os-release"), "ID=debian\nVERSION_ID=12\n");
    write(&r.join("usr/share/host"), "host\n");
    for (class, name, dir) in [
        ("sysext", "tools", "var/lib/extensions"),
        ("confext", "conf", "var/lib/confexts"),
    ] {
        let src = source(t.path(), class, name);
        let out = r.join(dir).join(format!("{name}.raw"));
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let o = Command::new(&repart)
            .arg(format!(
                "--definitions={}",
                defs.join(format!("{class}.repart.d")).display()
            ))
            .arg(format!("--copy-source={}", src.display()))
            .arg(format!("--private-key={}", key.display()))
            .arg(format!(
                "--certificate={}",
                keys().join("leaf.crt").display()
            ))
            .args([
                "--offline=yes",
                "--empty=create",
                "--size=auto",
                "--json=short",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "systemd-repart: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let trust = t.path().join("trust");
    let wrong = t.path().join("wrong");
    for (d, c) in [(&trust, "leaf.crt"), (&wrong, "other.crt")] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::copy(keys().join(c), d.join(c)).unwrap();
    }
    let (ok, out, err) = sh(
        r#"mount -t tmpfs tmpfs /run
        O="--root $R --dangerous-no-tpm --event-log /run/log"
        fp=$(openssl x509 -in "$K/leaf.crt" -outform DER | sha256sum | cut -d' ' -f1)
        # An untrusted signer: nothing merged, exit 1.
        if $V sysext merge $O --trust "$W" >&2; then echo UNTRUSTED_MERGED; fi
        test ! -e "$R/usr/share/interop/f" && echo UNTRUSTED_REFUSED
        # The default policy is signed-only; the signer is our test certificate.
        $V sysext merge $O --trust "$TR" --json=short > /run/s.json
        $V confext merge $O --trust "$TR" --json=short > /run/c.json
        cat "$R/usr/share/interop/f" "$R/etc/interop/f" "$R/usr/share/host"
        grep -q '"protection":"signed"' /run/s.json && grep -q "\"signer\":\"$fp\"" /run/s.json && echo SYSEXT_SIGNED_BY_LEAF
        grep -q '"protection":"signed"' /run/c.json && grep -q "\"signer\":\"$fp\"" /run/c.json && echo CONFEXT_SIGNED_BY_LEAF
        $V sysext unmerge --root $R; $V confext unmerge --root $R"#,
        &[
            ("V", Path::new(BIN)),
            ("R", &r),
            ("K", &keys()),
            ("TR", &trust),
            ("W", &wrong),
        ],
    );
    assert!(ok, "{err}");
    assert!(!out.contains("UNTRUSTED_MERGED"), "{out}");
    assert!(out.contains("UNTRUSTED_REFUSED"), "{out}");
    assert!(out.contains("tools\nconf\nhost\n"), "{out}");
    assert!(out.contains("SYSEXT_SIGNED_BY_LEAF"), "{out}");
    assert!(out.contains("CONFEXT_SIGNED_BY_LEAF"), "{out}");
}

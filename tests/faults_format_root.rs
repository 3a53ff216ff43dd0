//! Fault injection for `verity format` (issue 17): a full disk under the hash file (a small tmpfs in
//! a private mount namespace, so root is needed) exits 2 naming the hash device and leaves no
//! partial file, an existing hash file untouched; `SIGKILL` at spread-out points leaves the old hash
//! and FEC files or the complete new ones, never a mix. Needs root and util-linux (`unshare`, `mount`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_verity");

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[test]
fn root_disk_full_during_format_exits_2_names_the_device_and_leaves_no_partial_file() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    // 8 MiB of data needs 64 KiB of tree: more than the 40 KiB tmpfs holds.
    std::fs::write(&data, pattern(8 << 20, 0)).unwrap();
    let full = t.path().join("full");
    std::fs::create_dir(&full).unwrap();
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-uc"])
        .arg(
            r#"
            mount -t tmpfs -o size=40k full $F || exit 99
            $V format $D $F/new.hash; echo "NEW_RC=$?"
            echo "NEW_LS=$(ls -A $F | tr '\n' ,)"
            printf old > $F/old.hash
            $V format $D $F/old.hash --fec-device=$F/old.fec; echo "OLD_RC=$?"
            echo "OLD_LS=$(ls -A $F | tr '\n' ,)"
            echo "OLD=$(cat $F/old.hash)"
            "#,
        )
        .env("V", BIN)
        .env("D", &data)
        .env("F", &full)
        .output()
        .expect("unshare (util-linux) must be installed and the test run as root");
    let s = String::from_utf8_lossy(&o.stdout);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{s}{e}");
    assert!(s.contains("NEW_RC=2\n"), "{s}{e}");
    assert!(s.contains("NEW_LS=\n"), "a partial hash file was left: {s}");
    // The old file is kept whole; nothing else (temporary copy, FEC file) is left.
    assert!(s.contains("OLD_RC=2\n"), "{s}{e}");
    assert!(s.contains("OLD_LS=old.hash,\n"), "{s}");
    assert!(s.contains("OLD=old\n"), "{s}");
    // The message names the device that is full, not the data it was hashing.
    let dev = full.join("new.hash");
    assert!(
        e.contains(&format!("{}: writing hash block", dev.display())),
        "{e}"
    );
    assert!(e.contains("No space left on device"), "{e}");
}

const FORMAT: [&str; 4] = [
    "format",
    "--salt=00",
    "--uuid=12345678-1234-1234-1234-123456789abc",
    "--fec-roots=8",
];

/// Formats `data` into `out`.hash and `out`.fec uninterrupted; returns both files' bytes.
fn format_bytes(data: &Path, out: &Path) -> (Vec<u8>, Vec<u8>) {
    let (h, f) = (out.with_extension("hash"), out.with_extension("fec"));
    let _ = std::fs::remove_file(&h);
    let _ = std::fs::remove_file(&f);
    let st = Command::new(BIN)
        .args(FORMAT)
        .arg(format!("--fec-device={}", f.display()))
        .arg(data)
        .arg(&h)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    (std::fs::read(h).unwrap(), std::fs::read(f).unwrap())
}

#[test]
fn sigkill_during_format_leaves_old_or_complete_new_hash_and_fec_files() {
    let t = tempfile::tempdir().unwrap();
    let p = |n: &str| t.path().join(n);
    std::fs::write(p("old-data"), pattern(4 << 20, 1)).unwrap();
    std::fs::write(p("data"), pattern(64 << 20, 2)).unwrap();
    let old = format_bytes(&p("old-data"), &p("ref-old"));
    let new = format_bytes(&p("data"), &p("ref-new"));
    assert!(old.0 != new.0 && old.1 != new.1);
    let (mut saw_old, mut saw_new) = (0, 0);
    for i in 0..24u64 {
        std::fs::write(p("out.hash"), &old.0).unwrap();
        std::fs::write(p("out.fec"), &old.1).unwrap();
        let mut child = Command::new(BIN)
            .args(FORMAT)
            .arg(format!("--fec-device={}", p("out.fec").display()))
            .arg(p("data"))
            .arg(p("out.hash"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over the run (hash and parity of 64 MiB take a few hundred ms).
        std::thread::sleep(Duration::from_micros((i * 39_119) % 900_000));
        let _ = child.kill();
        child.wait().unwrap();
        for (name, o, n) in [("out.hash", &old.0, &new.0), ("out.fec", &old.1, &new.1)] {
            let got = std::fs::read(p(name)).unwrap();
            if &got == o {
                saw_old += 1;
            } else if &got == n {
                saw_new += 1;
            } else {
                panic!("kill {i}: {name} is neither the old nor the complete new one");
            }
        }
        for e in std::fs::read_dir(t.path()).unwrap() {
            let n = e.unwrap().file_name().into_string().unwrap();
            if n.starts_with(".out.") {
                std::fs::remove_file(p(&n)).unwrap();
            }
        }
    }
    eprintln!("old {saw_old}, new {saw_new}");
    assert!(
        saw_old > 0,
        "no kill landed before a rename: the test proves nothing"
    );
}

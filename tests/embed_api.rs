//! The library used without the CLI, as an installer or update agent would: `format` through
//! `verity::io::format` must write the same hash tree, superblock and FEC parity bytes as the
//! `verity format` command, `repair` through `verity::io::repair` must restore a damaged data
//! block exactly, and PCR prediction through `verity::measure::predict` must give the values
//! `verity pcr predict` prints. Issue 16, point 2.

use std::fs;
use std::path::Path;
use std::process::Command;
use verity::digest::HashAlg;
use verity::io::format::{format, plan, FecSpec};
use verity::verity::format::FormatOptions;

const SALT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const UUID: [u8; 16] = [
    0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc,
];
const UUID_TEXT: &str = "12345678-1234-1234-1234-123456789abc";
const BLOCKS: usize = 300;

fn verity() -> Command {
    Command::new(env!("CARGO_BIN_EXE_verity"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run verity");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn options() -> FormatOptions {
    FormatOptions {
        alg: HashAlg::Sha256,
        data_block_size: 4096,
        hash_block_size: 4096,
        salt: verity::hex::decode(SALT).unwrap(),
        hash_type: 1,
        hash_offset: 0,
        superblock: true,
        data_blocks: None,
        uuid: UUID,
    }
}

/// Formats `data` into `hash` (and `fec`) through the library; returns the root hash as hex.
fn lib_format(data: &Path, hash: &Path, fec: &Path) -> (String, verity::verity::Geometry) {
    let (src, p) = plan(data, hash, options(), &()).expect("plan");
    let spec = FecSpec {
        device: fec.to_path_buf(),
        roots: 2,
        offset: 0,
    };
    let done = format(data, &src, hash, &p, Some(&spec), &()).expect("format");
    assert!(done.fec.is_some());
    (verity::hex::encode(&done.root), p.geom)
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bytes: Vec<u8> = (0..BLOCKS * 4096).map(|i| (i * 7 % 253) as u8).collect();
    fs::write(&data, bytes).unwrap();
    (dir, data)
}

#[test]
fn library_format_writes_the_bytes_the_cli_writes() {
    let (dir, data) = setup();
    let d = dir.path();
    let (root, _) = lib_format(&data, &d.join("hash.lib"), &d.join("fec.lib"));
    let out = run_ok(
        verity()
            .args(["format"])
            .arg(&data)
            .arg(d.join("hash.cli"))
            .args(["--salt", SALT, "--uuid", UUID_TEXT, "--fec-device"])
            .arg(d.join("fec.cli")),
    );
    let cli_root = out
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .expect("Root hash line")
        .trim();
    assert_eq!(root, cli_root);
    let hash_lib = fs::read(d.join("hash.lib")).unwrap();
    assert!(hash_lib.len() > 4096, "a superblock and a tree");
    assert_eq!(
        hash_lib,
        fs::read(d.join("hash.cli")).unwrap(),
        "hash device"
    );
    let fec_lib = fs::read(d.join("fec.lib")).unwrap();
    assert!(!fec_lib.is_empty());
    assert_eq!(fec_lib, fs::read(d.join("fec.cli")).unwrap(), "FEC parity");
    // And the CLI accepts the library's tree.
    run_ok(
        verity()
            .args(["verify"])
            .arg(&data)
            .arg(d.join("hash.lib"))
            .arg(&root),
    );
}

#[test]
fn library_repair_restores_a_damaged_block_and_only_a_confirmed_one() {
    let (dir, data) = setup();
    let d = dir.path();
    let (hash, fec) = (d.join("hash"), d.join("fec"));
    let (root_hex, geom) = lib_format(&data, &hash, &fec);
    let root = verity::hex::decode(&root_hex).unwrap();
    let good = fs::read(&data).unwrap();
    let mut bad = good.clone();
    for b in &mut bad[5 * 4096 + 100..5 * 4096 + 110] {
        *b ^= 0x5a;
    }
    fs::write(&data, &bad).unwrap();
    let spec = FecSpec {
        device: fec.clone(),
        roots: 2,
        offset: 0,
    };
    let src = verity::io::repair::open_rw(&data, "data device").unwrap();
    let hsrc = verity::io::repair::open_rw(&hash, "hash device").unwrap();
    let r = verity::io::repair::repair(&spec, false, &data, &hash, &geom, &src, &hsrc, &root, &())
        .expect("repair");
    assert!(r.written && r.outcome.is_ok());
    assert_eq!(r.outcome.corrections.len(), 1);
    assert_eq!(r.outcome.corrections[0].offset, 5 * 4096);
    assert!(fs::read(&data).unwrap() == good, "data restored");

    // A wrong root hash confirms nothing: nothing is written.
    fs::write(&data, &bad).unwrap();
    let mut wrong = root.clone();
    wrong[0] ^= 1;
    let src = verity::io::repair::open_rw(&data, "data device").unwrap();
    let r = verity::io::repair::repair(&spec, false, &data, &hash, &geom, &src, &hsrc, &wrong, &())
        .expect("repair runs");
    assert!(!r.written && !r.outcome.is_ok());
    assert!(fs::read(&data).unwrap() == bad, "nothing written");
}

#[test]
fn library_prediction_gives_the_values_pcr_predict_prints() {
    use verity::digest::HashAlg::{Sha1, Sha256};
    use verity::gate::Bypass;
    use verity::measure::predict::{admission_strings, dir_admission};
    let dir = tempfile::tempdir().unwrap();
    let ext = dir.path().join("dirext");
    let rel = ext.join("usr/lib/extension-release.d");
    fs::create_dir_all(&rel).unwrap();
    fs::write(rel.join("extension-release.dirext"), "ID=_any\n").unwrap();
    fs::write(ext.join("usr/payload"), "payload\n").unwrap();
    let bypass = Bypass::from_name("no-tpm").unwrap();

    let (ev, bypasses) =
        dir_admission(&ext, verity::image::Class::Sysext, &[bypass]).expect("admission");
    let mut events = vec!["literal".to_string()];
    events.extend(admission_strings(&ev, &bypasses));
    assert!(
        events.len() >= 3,
        "the literal, a bypass record and the event: {events:?}"
    );
    let values = verity::measure::pcr::predict(13, &[Sha1, Sha256], &[], &events).unwrap();

    let out = run_ok(
        verity()
            .args([
                "pcr", "predict", "--pcr", "13", "--bank", "sha1", "--bank", "sha256",
            ])
            .args([
                "--json",
                "--event",
                "literal",
                "--with-bypass",
                "no-tpm",
                "--dir",
            ])
            .arg(&ext),
    );
    let cli: serde_json::Value = serde_json::from_str(&out).unwrap();
    let cli_events: Vec<&str> = cli["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(cli_events, events);
    for (bank, value) in values {
        assert_eq!(
            cli["banks"][bank.name()].as_str(),
            Some(verity::hex::encode(&value).as_str()),
            "{bank:?}"
        );
    }
}

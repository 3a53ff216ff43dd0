//! Tampering with a signed DDI: each change is rejected with its own named check. GPT edits go
//! through sfdisk where it can make them, else through a small CRC-fixing rewriter below, so the
//! only defect is the intended one. Needs mkfs.erofs, openssl, sfdisk.

mod image_util;
use image_util::*;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    img: PathBuf,
    trust: PathBuf,
    host: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let (key, cert, trust) = keygen(&d, "tamper");
    let src = make_src(&d, "sysext", "ext", "ID=debian\nVERSION_ID=12\n");
    let img = d.join("ext.raw");
    build(&src, &img, "sysext", &[&"--key", &key, &"--cert", &cert]);
    let host = host_release(&d);
    Fixture {
        _dir: dir,
        dir: d,
        img,
        trust,
        host,
    }
}

impl Fixture {
    fn verify(&self) -> (i32, serde_json::Value) {
        verify_json(
            &self.img,
            &[
                "--trust",
                self.trust.to_str().unwrap(),
                "--os-release",
                self.host.to_str().unwrap(),
            ],
        )
    }

    /// Asserts `check` is the first (the causing) failure and its detail mentions `needle`; later
    /// failures may only be the consequences (no valid signature, so the policy fails).
    fn rejected(&self, check: &str, needle: &str) {
        let (code, v) = self.verify();
        assert_eq!(code, 1, "{v}");
        let failed = failed_checks(&v);
        assert_eq!(failed[0], check, "{v}");
        assert!(
            failed[1..]
                .iter()
                .all(|c| c == "signature" || c == "image-policy"),
            "unexpected extra failures {failed:?}"
        );
        let detail = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == check)
            .unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            detail.contains(needle),
            "{check}: '{detail}' lacks '{needle}'"
        );
    }

    /// (start, size) in bytes of partition `n` (1-based), as sfdisk reads it.
    fn part(&self, n: usize) -> (u64, u64) {
        let out = tool(Command::new("sfdisk").arg("-J").arg(&self.img));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let p = &v["partitiontable"]["partitions"][n - 1];
        (
            p["start"].as_u64().unwrap() * 512,
            p["size"].as_u64().unwrap() * 512,
        )
    }

    fn flip(&self, offset: u64) {
        let mut b = std::fs::read(&self.img).unwrap();
        b[offset as usize] ^= 0x01;
        std::fs::write(&self.img, b).unwrap();
    }

    fn write_at(&self, offset: u64, bytes: &[u8]) {
        let mut b = std::fs::read(&self.img).unwrap();
        b[offset as usize..offset as usize + bytes.len()].copy_from_slice(bytes);
        std::fs::write(&self.img, b).unwrap();
    }
}

fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64le(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Edits the partition entry array and fixes every CRC in both headers.
fn rewrite_entries(img: &Path, edit: impl Fn(&mut [u8])) {
    let mut b = std::fs::read(img).unwrap();
    let last = b.len() / 512 - 1;
    for hdr in [512usize, last * 512] {
        let elba = u64le(&b, hdr + 72) as usize;
        let n = u32le(&b, hdr + 80) as usize * u32le(&b, hdr + 84) as usize;
        let arr = &mut b[elba * 512..elba * 512 + n];
        edit(arr);
        let crc = crc32fast::hash(arr);
        b[hdr + 88..hdr + 92].copy_from_slice(&crc.to_le_bytes());
        b[hdr + 16..hdr + 20].fill(0);
        let hcrc = crc32fast::hash(&b[hdr..hdr + 92]);
        b[hdr + 16..hdr + 20].copy_from_slice(&hcrc.to_le_bytes());
    }
    std::fs::write(img, b).unwrap();
}

#[test]
fn openssl_untampered_image_passes() {
    let f = fixture();
    let (code, v) = f.verify();
    assert_eq!(code, 0, "{v}");
}

#[test]
fn openssl_flipped_data_byte() {
    let f = fixture();
    let (start, size) = f.part(1);
    f.flip(start + size / 2 + 7);
    f.rejected("verity-tree", "data block");
}

#[test]
fn openssl_flipped_tree_byte() {
    let f = fixture();
    let (start, _) = f.part(2);
    // The first hash block after the 4 KiB superblock block.
    f.flip(start + 4096 + 5);
    f.rejected("verity-tree", "hash block");
}

#[test]
fn openssl_json_root_hash_differs_from_tree() {
    let f = fixture();
    let (start, size) = f.part(3);
    let b = std::fs::read(&f.img).unwrap();
    let part = &b[start as usize..(start + size) as usize];
    let pos = part
        .windows(12)
        .position(|w| w == b"\"rootHash\":\"")
        .unwrap()
        + 12;
    let c = part[pos];
    f.write_at(start + pos as u64, &[if c == b'0' { b'1' } else { b'0' }]);
    f.rejected("signature-json", "differs from the verity tree");
}

#[test]
fn openssl_untrusted_signer() {
    let f = fixture();
    let (_, _, other) = keygen(&f.dir, "stranger");
    let (code, v) = verify_json(
        &f.img,
        &[
            "--trust",
            other.to_str().unwrap(),
            "--os-release",
            f.host.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    // Without a valid signature the default policy (signed) fails too.
    assert_eq!(failed_checks(&v), vec!["signature", "image-policy"], "{v}");
}

#[test]
fn openssl_sfdisk_partition_uuid_not_matching_root_hash() {
    let f = fixture();
    tool(
        Command::new("sfdisk")
            .arg("--part-uuid")
            .arg(&f.img)
            .args(["1", "11111111-2222-3333-4444-555555555555"]),
    );
    f.rejected("partition-uuids", "do not match the root hash");
}

#[test]
fn openssl_sfdisk_two_root_partitions() {
    let f = fixture();
    let mut c = Command::new("sfdisk");
    c.arg("--append")
        .arg(&f.img)
        .stdin(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"size=64, type=4f68bce3-e8cd-4db1-96e7-fbcaf984b709\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    f.rejected("partitions", "2 root partitions");
}

#[test]
fn openssl_sfdisk_foreign_architecture() {
    let f = fixture();
    for (n, t) in [
        ("1", "b921b045-1df0-41c3-af44-4c6f280d3fae"),
        ("2", "df3300ce-d69f-4c92-978c-9bfb0f38d820"),
        ("3", "6db69de6-29f4-4758-a7a5-962190f00ce3"),
    ] {
        tool(
            Command::new("sfdisk")
                .arg("--part-type")
                .arg(&f.img)
                .args([n, t]),
        );
    }
    f.rejected("partitions", "architecture arm64");
}

#[test]
fn openssl_non_nul_after_json() {
    let f = fixture();
    let (start, size) = f.part(3);
    f.write_at(start + size - 1, b"x");
    f.rejected("signature-json", "non-NUL byte");
}

#[test]
fn openssl_sfdisk_oversized_signature_partition() {
    let f = fixture();
    let len = std::fs::metadata(&f.img).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f.img)
        .unwrap()
        .set_len(len + (6 << 20))
        .unwrap();
    tool(
        Command::new("sfdisk")
            .args(["--relocate", "gpt-bak-std"])
            .arg(&f.img),
    );
    let mut child = Command::new("sfdisk")
        .args(["-N", "3"])
        .arg(&f.img)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b",+\n").unwrap();
    assert!(child.wait().unwrap().success());
    assert!(f.part(3).1 > 4 << 20);
    f.rejected("signature-json", "4 MiB");
}

#[test]
fn openssl_truncated_gpt() {
    let f = fixture();
    let len = std::fs::metadata(&f.img).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f.img)
        .unwrap()
        .set_len(len - 512)
        .unwrap();
    f.rejected("gpt", "truncated");
}

#[test]
fn openssl_bad_header_crc() {
    let f = fixture();
    f.flip(512 + 60);
    f.rejected("gpt", "header CRC mismatch");
}

#[test]
fn openssl_overlapping_partitions() {
    let f = fixture();
    rewrite_entries(&f.img, |arr| {
        // Partition 2 starts one sector before partition 1 ends.
        let p1_last = u64le(arr, 40);
        arr[128 + 32..128 + 40].copy_from_slice(&p1_last.to_le_bytes());
    });
    f.rejected("gpt", "overlap");
}

/// A signed sidecar image: (dir guard, image, trust dir, host os-release).
fn sidecar_fixture() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let (key, cert, trust) = keygen(&d, "side");
    let src = make_src(&d, "sysext", "side", "ID=debian\nVERSION_ID=12\n");
    let img = d.join("side.raw");
    build(
        &src,
        &img,
        "sysext",
        &[
            &"--sidecar",
            &"--fs",
            &"squashfs",
            &"--key",
            &key,
            &"--cert",
            &cert,
        ],
    );
    let host = host_release(&d);
    (dir, img, trust, host)
}

fn sidecar_verify(img: &Path, trust: &Path, host: &Path) -> (i32, serde_json::Value) {
    verify_json(
        img,
        &[
            "--trust",
            trust.to_str().unwrap(),
            "--os-release",
            host.to_str().unwrap(),
        ],
    )
}

#[test]
fn openssl_sidecar_flipped_data_byte_and_wrong_roothash() {
    let (_g, img, trust, host) = sidecar_fixture();
    let (code, v) = sidecar_verify(&img, &trust, &host);
    assert_eq!(code, 0, "{v}");
    // A different root hash in .roothash: the signature no longer covers it and the tree disagrees.
    let rh = img.with_extension("roothash");
    let good = std::fs::read_to_string(&rh).unwrap();
    let bad = format!(
        "{}{}",
        if good.starts_with('0') { "1" } else { "0" },
        &good[1..]
    );
    std::fs::write(&rh, bad).unwrap();
    let (code, v) = sidecar_verify(&img, &trust, &host);
    assert_eq!(code, 1);
    let failed = failed_checks(&v);
    assert!(
        failed.contains(&"signature".to_string()) && failed.contains(&"verity-tree".to_string()),
        "{v}"
    );
    std::fs::write(&rh, good).unwrap();
    // A flipped byte in the file system.
    let mut b = std::fs::read(&img).unwrap();
    let n = b.len() / 2;
    b[n] ^= 0x40;
    std::fs::write(&img, b).unwrap();
    let (code, v) = sidecar_verify(&img, &trust, &host);
    assert_eq!(code, 1);
    assert_eq!(failed_checks(&v)[0], "verity-tree", "{v}");
}

#[test]
fn openssl_sidecar_missing_tree_is_refused() {
    let (_g, img, trust, host) = sidecar_fixture();
    std::fs::remove_file(img.with_extension("verity")).unwrap();
    let (code, v) = sidecar_verify(&img, &trust, &host);
    assert_eq!(code, 1);
    assert_eq!(failed_checks(&v), vec!["sidecar"], "{v}");
}

//! Point 5 of issue 12: bounded parsers. A signed image whose extension-release is 64 KiB of
//! `a a a ...` verifies (the unquoting used to recurse per word and die with SIGSEGV), and sizes
//! taken from the image that would overflow 64-bit arithmetic (a GPT PartitionEntryLBA near 2^64,
//! a verity superblock data block count whose byte size wraps) are refused with exit 1 and a message
//! naming the field, in debug and release builds alike. Signed with the TEST-ONLY keys in keys/.
//! Needs mkfs.erofs and openssl (through `verity image build`).

mod image_util;
use image_util::*;
use std::path::{Path, PathBuf};

fn keys() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("keys")
}

/// A signed DDI of a sysext named `ext` with `release` as its extension-release; returns the image
/// and a trust directory holding the signer.
fn signed_image(dir: &Path, release: &str) -> (PathBuf, PathBuf) {
    let src = make_src(dir, "sysext", "ext", release);
    let img = dir.join("ext.raw");
    let k = keys();
    build(
        &src,
        &img,
        "sysext",
        &[
            &"--key",
            &k.join("rsa2048.key"),
            &"--cert",
            &k.join("rsa2048.crt"),
        ],
    );
    let trust = dir.join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(k.join("rsa2048.crt"), trust.join("rsa2048.crt")).unwrap();
    (img, trust)
}

fn verify(img: &Path, trust: &Path, host: &Path) -> (i32, serde_json::Value) {
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

fn detail(v: &serde_json::Value, check: &str) -> String {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == check)
        .map(|c| c["detail"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn u64le(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Sets a u64 field of the primary GPT header (at byte 512) and fixes the header CRC.
fn poke_primary_header(img: &Path, field: usize, value: u64) {
    let mut b = std::fs::read(img).unwrap();
    let h = 512;
    b[h + field..h + field + 8].copy_from_slice(&value.to_le_bytes());
    b[h + 16..h + 20].fill(0);
    let crc = crc32fast::hash(&b[h..h + 92]);
    b[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(img, b).unwrap();
}

/// Byte offset of the verity partition (the second entry of the primary array).
fn verity_partition_offset(img: &Path) -> usize {
    let b = std::fs::read(img).unwrap();
    let entries = u64le(&b, 512 + 72) as usize * 512;
    let e = entries + 128;
    u64le(&b, e + 32) as usize * 512
}

#[test]
fn point5_signed_release_of_64k_words_verifies_without_crashing() {
    let dir = tempfile::tempdir().unwrap();
    let mut release = String::from("ID=debian\nVERSION_ID=12\nX=");
    while release.len() < 64000 {
        release.push_str("a ");
    }
    release.push_str("end\n");
    assert!(release.len() < 64 << 10);
    let (img, trust) = signed_image(dir.path(), &release);
    let host = host_release(dir.path());
    let (code, v) = verify(&img, &trust, &host);
    assert_eq!(code, 0, "{v}");
    let x = v["extension_release"]["X"].as_str().unwrap();
    assert!(
        x.starts_with("a a a") && x.ends_with("a end"),
        "{}",
        x.len()
    );
    assert_eq!(
        x.len(),
        release.len() - "ID=debian\nVERSION_ID=12\nX=".len() - 1
    );
}

#[test]
fn point5_gpt_entry_lba_overflow_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (img, trust) = signed_image(dir.path(), HOST_RELEASE);
    let host = host_release(dir.path());
    poke_primary_header(&img, 72, u64::MAX - 3);
    let (code, v) = verify(&img, &trust, &host);
    assert_eq!(code, 1, "{v}");
    assert_eq!(failed_checks(&v), ["gpt"], "{v}");
    assert!(detail(&v, "gpt").contains("PartitionEntryLBA"), "{v}");
}

#[test]
fn point5_superblock_data_size_overflow_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (img, trust) = signed_image(dir.path(), HOST_RELEASE);
    let host = host_release(dir.path());
    // data_blocks x 4096 no longer fits 64 bits; the superblock is not covered by the signature,
    // so only its own check can refuse it.
    let sb = verity_partition_offset(&img);
    let mut b = std::fs::read(&img).unwrap();
    assert_eq!(&b[sb..sb + 6], b"verity");
    b[sb + 72..sb + 80].copy_from_slice(&(1u64 << 53).to_le_bytes());
    std::fs::write(&img, &b).unwrap();
    let (code, v) = verify(&img, &trust, &host);
    assert_eq!(code, 1, "{v}");
    assert_eq!(failed_checks(&v)[0], "verity-superblock", "{v}");
    assert!(
        detail(&v, "verity-superblock").contains("data blocks"),
        "{v}"
    );

    // The same superblock on a plain hash device, through `verity verify` and `verity dump`.
    let hash = dir.path().join("h.img");
    std::fs::write(&hash, &b[sb..sb + 8192]).unwrap();
    let data = dir.path().join("d.img");
    std::fs::write(&data, vec![0u8; 8192]).unwrap();
    let root = "00".repeat(32);
    let o = verity(&[&"verify", &data, &hash, &root]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("data blocks"),
        "{o:?}"
    );
}

//! Independent cross-checks against other tools: a DDI assembled by hand (sfdisk, mkfs.erofs,
//! veritysetup, openssl) verifies; our DDI reads correctly in sfdisk, veritysetup and openssl; an
//! unsigned verity DDI from systemd-repart verifies under a policy allowing verity.

mod image_util;
use image_util::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn sfdisk_script(img: &Path, script: &str) {
    let mut child = Command::new("sfdisk")
        .arg(img)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sfdisk (fdisk package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn dd_in(img: &Path, part: &Path, sector: u64) {
    tool(
        Command::new("dd")
            .arg(format!("if={}", part.display()))
            .arg(format!("of={}", img.display()))
            .args(["bs=512", "conv=notrunc,sparse", "status=none"])
            .arg(format!("seek={sector}")),
    );
}

fn dd_out(img: &Path, out: &Path, start: u64, sectors: u64) {
    tool(
        Command::new("dd")
            .arg(format!("if={}", img.display()))
            .arg(format!("of={}", out.display()))
            .args(["bs=512", "status=none"])
            .arg(format!("skip={start}"))
            .arg(format!("count={sectors}")),
    );
}

fn uuid_text(hex: &str) -> String {
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
fn openssl_veritysetup_sfdisk_hand_assembled_ddi_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, cert, trust) = keygen(d, "hand");
    let src = make_src(d, "sysext", "hand", "ID=debian\nVERSION_ID=12\n");
    let fs = d.join("fs.img");
    tool(Command::new("mkfs.erofs").arg(&fs).arg(&src));
    let len = std::fs::metadata(&fs).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fs)
        .unwrap()
        .set_len(len.div_ceil(4096) * 4096)
        .unwrap();
    let hash = d.join("hash.img");
    let out = tool(
        Command::new("veritysetup")
            .arg("format")
            .arg(&fs)
            .arg(&hash),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let root = text
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap()
        .trim()
        .to_string();
    // Detached, binary, no attributes, no certificates: what systemd-repart writes.
    let content = d.join("roothash.txt");
    std::fs::write(&content, &root).unwrap();
    let sig = d.join("sig.der");
    tool(
        Command::new("openssl")
            .args([
                "smime", "-sign", "-nocerts", "-noattr", "-binary", "-outform", "der", "-in",
            ])
            .arg(&content)
            .arg("-signer")
            .arg(&cert)
            .arg("-inkey")
            .arg(&key)
            .arg("-out")
            .arg(&sig),
    );
    let b64 = tool(
        Command::new("openssl")
            .args(["base64", "-A", "-in"])
            .arg(&sig),
    )
    .stdout;
    let der = tool(
        Command::new("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(&cert),
    )
    .stdout;
    let fp_out = tool(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-r"])
            .stdin({
                let p = d.join("cert.der");
                std::fs::write(&p, &der).unwrap();
                std::fs::File::open(p).unwrap()
            }),
    )
    .stdout;
    let fp = String::from_utf8_lossy(&fp_out)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let json = format!(
        "{{\"rootHash\":\"{root}\",\"certificateFingerprint\":\"{fp}\",\"signature\":\"{}\"}}",
        String::from_utf8_lossy(&b64).trim()
    );
    let mut sigpart = json.into_bytes();
    sigpart.resize(16384, 0);
    let sigfile = d.join("sigpart.img");
    std::fs::write(&sigfile, &sigpart).unwrap();

    let fs_sectors = std::fs::metadata(&fs).unwrap().len() / 512;
    let hash_sectors = std::fs::metadata(&hash).unwrap().len().div_ceil(512);
    let img = d.join("hand.raw");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let (s1, s2, s3) = (
        2048u64,
        2048 + fs_sectors.div_ceil(8) * 8 + 8,
        2048 + fs_sectors.div_ceil(8) * 8 + 8 + hash_sectors.div_ceil(8) * 8 + 8,
    );
    sfdisk_script(&img, &format!(
        "label: gpt\n\
         start={s1}, size={fs_sectors}, type=4f68bce3-e8cd-4db1-96e7-fbcaf984b709, uuid={}, name=root-x86-64\n\
         start={s2}, size={hash_sectors}, type=2c7357ed-ebd2-46d9-aec1-23d437ec2bf5, uuid={}, name=root-x86-64-verity\n\
         start={s3}, size=32, type=41092b05-9fc8-4523-994f-2def0408b176, name=root-x86-64-verity-sig\n",
        uuid_text(&root[..32]),
        uuid_text(&root[32..])
    ));
    dd_in(&img, &fs, s1);
    dd_in(&img, &hash, s2);
    dd_in(&img, &sigfile, s3);
    let host = host_release(d);
    let (code, v) = verify_json(
        &img,
        &[
            "--trust",
            trust.to_str().unwrap(),
            "--os-release",
            host.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["root_hash"], root.as_str());
    assert_eq!(v["claimed_fingerprint"], fp.as_str());
    assert_eq!(v["signer"]["fingerprint"], fp.as_str());
}

#[test]
fn openssl_veritysetup_sfdisk_read_our_ddi() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, cert, _) = keygen(d, "ours");
    let src = make_src(d, "confext", "ours", "ID=debian\nVERSION_ID=12\n");
    let img = d.join("ours.raw");
    let out = Command::new(bin())
        .args([
            "image", "build", "--json", "--class", "confext", "--arch", "x86-64", "--key",
        ])
        .arg(&key)
        .arg("--cert")
        .arg(&cert)
        .arg("-o")
        .arg(&img)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = built["root_hash"].as_str().unwrap().to_string();

    let j: serde_json::Value =
        serde_json::from_slice(&tool(Command::new("sfdisk").arg("-J").arg(&img)).stdout).unwrap();
    let parts = j["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(j["partitiontable"]["label"], "gpt");
    assert_eq!(parts.len(), 3);
    let types: Vec<String> = parts
        .iter()
        .map(|p| p["type"].as_str().unwrap().to_lowercase())
        .collect();
    assert_eq!(
        types,
        [
            "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
            "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5",
            "41092b05-9fc8-4523-994f-2def0408b176"
        ]
    );
    assert_eq!(
        parts[0]["uuid"].as_str().unwrap().to_lowercase(),
        uuid_text(&root[..32])
    );
    assert_eq!(
        parts[1]["uuid"].as_str().unwrap().to_lowercase(),
        uuid_text(&root[32..])
    );
    assert_eq!(parts[1]["name"], "root-x86-64-verity");
    // sfdisk --verify checks both headers, CRCs and the backup.
    let v = tool(Command::new("sfdisk").arg("--verify").arg(&img));
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("No errors detected"),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );

    let ext = |n: usize, name: &str| {
        let p = d.join(name);
        dd_out(
            &img,
            &p,
            parts[n]["start"].as_u64().unwrap(),
            parts[n]["size"].as_u64().unwrap(),
        );
        p
    };
    let data = ext(0, "data.img");
    let hash = ext(1, "hash.img");
    let sig = ext(2, "sig.img");
    tool(
        Command::new("veritysetup")
            .arg("verify")
            .arg(&data)
            .arg(&hash)
            .arg(&root),
    );

    let raw = std::fs::read(&sig).unwrap();
    let end = raw.iter().position(|&b| b == 0).unwrap();
    assert!(raw[end..].iter().all(|&b| b == 0));
    let json: serde_json::Value = serde_json::from_slice(&raw[..end]).unwrap();
    assert_eq!(json["rootHash"], root.as_str());
    let b64 = d.join("sig.b64");
    std::fs::write(&b64, json["signature"].as_str().unwrap()).unwrap();
    let der = d.join("sig.der");
    tool(
        Command::new("openssl")
            .args(["base64", "-d", "-A", "-in"])
            .arg(&b64)
            .arg("-out")
            .arg(&der),
    );
    let content = d.join("content");
    std::fs::write(&content, &root).unwrap();
    tool(
        Command::new("openssl")
            .args([
                "smime",
                "-verify",
                "-binary",
                "-inform",
                "der",
                "-nointern",
                "-noverify",
                "-in",
            ])
            .arg(&der)
            .arg("-content")
            .arg(&content)
            .arg("-certfile")
            .arg(&cert)
            .args(["-out", "/dev/null"]),
    );
    let cder = tool(
        Command::new("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(&cert),
    )
    .stdout;
    let cp = d.join("c.der");
    std::fs::write(&cp, cder).unwrap();
    let fp = tool(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-r"])
            .arg(&cp),
    )
    .stdout;
    assert_eq!(
        json["certificateFingerprint"],
        String::from_utf8_lossy(&fp)
            .split_whitespace()
            .next()
            .unwrap()
    );
}

#[test]
fn systemd_repart_unsigned_verity_ddi_passes_verity_policy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = make_src(d, "sysext", "rep", "ID=debian\nVERSION_ID=12\n");
    let defs = d.join("repart.d");
    std::fs::create_dir_all(&defs).unwrap();
    std::fs::write(defs.join("10-root.conf"), format!(
        "[Partition]\nType=root\nFormat=squashfs\nCopyFiles={}:/\nVerity=data\nVerityMatchKey=root\n",
        src.display()
    )).unwrap();
    std::fs::write(
        defs.join("20-verity.conf"),
        "[Partition]\nType=root-verity\nVerity=hash\nVerityMatchKey=root\n",
    )
    .unwrap();
    let img = d.join("rep.raw");
    tool(
        Command::new("systemd-repart")
            .arg(format!("--definitions={}", defs.display()))
            .args([
                "--empty=create",
                "--size=auto",
                "--dry-run=no",
                "--no-pager",
                "--seed=0fc63daf84834772bd2d2e35a6d2e3a9",
            ])
            .arg(&img),
    );
    let host = host_release(d);
    let (code, v) = verify_json(
        &img,
        &[
            "--os-release",
            host.to_str().unwrap(),
            "--image-policy",
            "root=verity+absent:usr=absent",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["filesystem"], "squashfs");
    assert_eq!(check_result(&v, "partition-uuids"), "pass");
    assert_eq!(check_result(&v, "verity-tree"), "pass");
    assert_eq!(check_result(&v, "signature"), "skip");
    // The default policy wants a signature; repart made none.
    let (code, v) = verify_json(&img, &["--os-release", host.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(failed_checks(&v), vec!["signature", "image-policy"]);
    let sig = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "signature")
        .unwrap();
    assert!(
        sig["detail"]
            .as_str()
            .unwrap()
            .contains("signature not found: the GPT has no root-verity-sig partition"),
        "{sig}"
    );
}

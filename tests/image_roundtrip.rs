//! Build then verify, for both classes, both file systems, DDI and sidecar, signed and unsigned;
//! `--seed` determinism; refusals of bad source trees. Needs mkfs.erofs, mksquashfs and
//! openssl (named `openssl_...`).

mod image_util;
use image_util::*;

#[test]
fn openssl_mkfs_round_trip_every_combination() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, cert, trust) = keygen(d, "roundtrip");
    let host = host_release(d);
    let host_s = host.to_str().unwrap();
    let trust_s = trust.to_str().unwrap();
    for class in ["sysext", "confext"] {
        for fs in ["erofs", "squashfs"] {
            for sidecar in [false, true] {
                for signed in [true, false] {
                    let tag = format!(
                        "{class}-{fs}-{}-{}",
                        if sidecar { "sidecar" } else { "ddi" },
                        if signed { "signed" } else { "unsigned" }
                    );
                    let name = format!("ext{}", tag.replace('-', ""));
                    let src = make_src(d, class, &name, "ID=debian\nVERSION_ID=12\n");
                    let outdir = d.join(&tag);
                    std::fs::create_dir_all(&outdir).unwrap();
                    let img = outdir.join(format!("{name}.raw"));
                    let mut extra: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--fs", &fs];
                    if sidecar {
                        extra.push(&"--sidecar");
                    }
                    if signed {
                        extra.extend([
                            &"--key" as &dyn AsRef<std::ffi::OsStr>,
                            &key,
                            &"--cert",
                            &cert,
                        ]);
                    }
                    build(&src, &img, class, &extra);
                    if sidecar {
                        assert!(outdir.join(format!("{name}.verity")).is_file(), "{tag}");
                        assert!(outdir.join(format!("{name}.roothash")).is_file(), "{tag}");
                        assert_eq!(
                            outdir.join(format!("{name}.roothash.p7s")).is_file(),
                            signed,
                            "{tag}"
                        );
                    }
                    let (code, v) = verify_json(
                        &img,
                        &["--trust", trust_s, "--os-release", host_s, "--class", class],
                    );
                    assert_eq!(v["filesystem"], fs, "{tag}");
                    assert_eq!(v["class"], class, "{tag}");
                    assert_eq!(v["layout"], if sidecar { "bare" } else { "ddi" }, "{tag}");
                    assert_eq!(check_result(&v, "verity-tree"), "pass", "{tag}");
                    assert_eq!(check_result(&v, "extension-release"), "pass", "{tag}: {v}");
                    if signed {
                        assert_eq!(code, 0, "{tag}: {v}");
                        assert_eq!(check_result(&v, "signature"), "pass", "{tag}");
                        assert_eq!(v["signer"]["subject"], "CN=roundtrip", "{tag}");
                    } else {
                        // The default policy demands a signature: not found is a failure
                        // of the signature check itself, and the policy check says why.
                        assert_eq!(code, 1, "{tag}: {v}");
                        assert_eq!(
                            failed_checks(&v),
                            vec!["signature", "image-policy"],
                            "{tag}"
                        );
                        let (code, v) = verify_json(
                            &img,
                            &[
                                "--trust",
                                trust_s,
                                "--os-release",
                                host_s,
                                "--image-policy",
                                "root=verity+absent:usr=verity+absent",
                            ],
                        );
                        assert_eq!(code, 0, "{tag}: {v}");
                        assert_eq!(check_result(&v, "signature"), "skip", "{tag}");
                    }
                }
            }
        }
    }
}

#[test]
fn openssl_seed_makes_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, cert, _) = keygen(d, "seed");
    let src = make_src(d, "sysext", "det", "ID=debian\nVERSION_ID=12\n");
    for fs in ["erofs", "squashfs"] {
        let mut images = Vec::new();
        for (i, seed) in ["c0ffee", "c0ffee", "beef"].iter().enumerate() {
            let out = d.join(format!("{fs}{i}"));
            std::fs::create_dir_all(&out).unwrap();
            let img = out.join("det.raw");
            // Touch the tree between builds: timestamps must not leak into the image.
            std::fs::write(src.join("usr/bin/stamp"), b"x").unwrap();
            build(
                &src,
                &img,
                "sysext",
                &[
                    &"--fs", &fs, &"--seed", seed, &"--key", &key, &"--cert", &cert,
                ],
            );
            images.push(std::fs::read(&img).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        assert!(
            images[0] == images[1],
            "{fs}: same input and seed must give the same bytes"
        );
        assert!(
            images[0] != images[2],
            "{fs}: another seed must give other bytes"
        );
    }
}

#[test]
fn build_refuses_bad_source_trees() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = make_src(d, "sysext", "good", "ID=debian\n");
    // Wrong name: the tree carries extension-release.good, the image is other.raw.
    let out = verity(&[
        &"image",
        &"build",
        &src,
        &"-o",
        &d.join("other.raw"),
        &"--class",
        &"sysext",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("extension-release.other"));
    // Class mismatch: a sysext tree built as confext.
    let out = verity(&[
        &"image",
        &"build",
        &src,
        &"-o",
        &d.join("good.raw"),
        &"--class",
        &"confext",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("etc/extension-release.d/extension-release.good"));
    // usr/lib/os-release is forbidden.
    std::fs::write(src.join("usr/lib/os-release"), "ID=evil\n").unwrap();
    let out = verity(&[
        &"image",
        &"build",
        &src,
        &"-o",
        &d.join("good.raw"),
        &"--class",
        &"sysext",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usr/lib/os-release"));
    assert!(!d.join("good.raw").exists());
}

#[test]
fn openssl_inspect_shows_partitions_signer_and_release() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, cert, trust) = keygen(d, "inspect");
    let src = make_src(d, "confext", "conf", "ID=_any\nCONFEXT_LEVEL=1\n");
    let img = d.join("conf.confext.raw");
    build(
        &src,
        &img,
        "confext",
        &[&"--key", &key, &"--cert", &cert, &"--arch", &"arm64"],
    );
    let out = verity(&[
        &"image", &"inspect", &"--json", &"--arch", &"arm64", &"--trust", &trust, &img,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["architecture"], "arm64");
    assert_eq!(v["class"], "confext");
    assert_eq!(v["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["partitions"][0]["type_uuid"],
        "b921b045-1df0-41c3-af44-4c6f280d3fae"
    );
    assert_eq!(v["partitions"][1]["label"], "root-arm64-verity");
    assert_eq!(v["signer"]["subject"], "CN=inspect");
    assert_eq!(v["extension_release"]["CONFEXT_LEVEL"], "1");
    assert_eq!(v["verity"]["hash"], "sha256");
}

fn check_detail(v: &serde_json::Value, name: &str) -> String {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .map(|c| c["detail"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn openssl_point2_missing_or_misnamed_p7s_is_refused_saying_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, cert, trust) = keygen(d, "p2");
    let src = make_src(d, "sysext", "tool", HOST_RELEASE);
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let img = out.join("tool.raw");
    build(
        &src,
        &img,
        "sysext",
        &[&"--key", &key, &"--cert", &cert, &"--sidecar"],
    );
    let host = host_release(d);
    let args = [
        "--trust",
        trust.to_str().unwrap(),
        "--os-release",
        host.to_str().unwrap(),
    ];
    let (code, v) = verify_json(&img, &args);
    assert_eq!(code, 0, "the signed sidecar image verifies: {v}");

    // Misnamed (the suffix appended to the whole file name): refused, not taken as unsigned.
    let good = out.join("tool.roothash.p7s");
    let bad = out.join("tool.raw.roothash.p7s");
    std::fs::rename(&good, &bad).unwrap();
    let (code, v) = verify_json(&img, &args);
    assert_eq!(code, 1, "{v}");
    assert_eq!(failed_checks(&v), vec!["signature", "image-policy"]);
    let detail = check_detail(&v, "signature");
    assert!(
        detail.contains(&format!(
            "signature not found: looked for {}",
            good.display()
        )),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("found {}", bad.display())),
        "{detail}"
    );
    // The error on stderr (what a user reads without --json) says the same.
    let o = verity(&[
        &"image", &"verify", &img, &args[0], &args[1], &args[2], &args[3],
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("signature not found") && err.contains(good.to_str().unwrap()),
        "{err}"
    );

    // Missing altogether: refused the same way, with nothing misnamed to point at.
    std::fs::remove_file(&bad).unwrap();
    let (code, v) = verify_json(&img, &args);
    assert_eq!(code, 1, "{v}");
    let detail = check_detail(&v, "signature");
    assert!(
        detail.contains("signature not found: looked for"),
        "{detail}"
    );
    assert!(!detail.contains("found /"), "{detail}");

    // Only a policy the user writes admits it, and the report still says it is unsigned.
    let weaker = [
        args[0],
        args[1],
        args[2],
        args[3],
        "--image-policy",
        "root=verity+signed+absent:usr=absent",
    ];
    let (code, v) = verify_json(&img, &weaker);
    assert_eq!(code, 0, "{v}");
    assert_eq!(check_result(&v, "signature"), "skip");
    assert!(check_detail(&v, "signature").contains("unsigned, which the image policy allows"));
}

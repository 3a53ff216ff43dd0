//! `verity image build --version V --epoch N`: IMAGE_VERSION= and VERITY_EPOCH= land in the
//! image's extension-release (os-release for a root), read back with the file systems' own tools
//! (fsck.erofs --extract, unsquashfs), the source tree untouched and the output reproducible.
//! Needs mkfs.erofs, mksquashfs, fsck.erofs and unsquashfs (named `mkfs_...`).

mod image_util;
use image_util::*;
use std::path::Path;
use std::process::Command;

/// Extracts a bare file-system image with its own tool into `dest`.
fn extract(fs: &str, img: &Path, dest: &Path) {
    let mut c = match fs {
        "erofs" => {
            let mut c = Command::new("fsck.erofs");
            c.arg(format!("--extract={}", dest.display())).arg(img);
            c
        }
        _ => {
            let mut c = Command::new("unsquashfs");
            c.arg("-no-progress").arg("-d").arg(dest).arg(img);
            c
        }
    };
    tool(&mut c);
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn mkfs_version_and_epoch_land_in_the_extension_release() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (class, rel_dir) in [
        ("sysext", "usr/lib/extension-release.d"),
        ("confext", "etc/extension-release.d"),
    ] {
        for fs in ["erofs", "squashfs"] {
            let tag = format!("{class}-{fs}");
            let name = format!("ver{}", tag.replace('-', ""));
            let release = "ID=debian\nVERSION_ID=12\nIMAGE_VERSION=\n";
            let src = make_src(d, class, &name, release);
            let out = d.join(&tag);
            std::fs::create_dir_all(&out).unwrap();
            let img = out.join(format!("{name}_9.9.raw"));
            let extra: &[&dyn AsRef<std::ffi::OsStr>] = &[
                &"--fs",
                &fs,
                &"--sidecar",
                &"--version",
                &"1.2.3~rc1",
                &"--epoch",
                &"4",
            ];
            build(&src, &img, class, extra);
            let x = out.join("x");
            extract(fs, &img, &x);
            let got = lines(&x.join(rel_dir).join(format!("extension-release.{name}")));
            assert_eq!(
                got,
                [
                    "ID=debian",
                    "VERSION_ID=12",
                    "IMAGE_VERSION=1.2.3~rc1",
                    "VERITY_EPOCH=4"
                ],
                "{tag}"
            );
            // The payload came along; the source and the output directory are as they were.
            assert!(x
                .join(if class == "sysext" {
                    "usr/bin/hello"
                } else {
                    "etc/hello.conf"
                })
                .is_file());
            assert_eq!(
                std::fs::read_to_string(
                    src.join(rel_dir).join(format!("extension-release.{name}"))
                )
                .unwrap(),
                release
            );
            let left: Vec<_> = std::fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with('.'))
                .collect();
            assert!(left.is_empty(), "{tag}: staging left behind: {left:?}");
        }
    }
}

#[test]
fn mkfs_stamped_builds_are_reproducible_and_contradictions_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = make_src(d, "sysext", "rep", "ID=_any\n");
    let a = d.join("a/rep.raw");
    let b = d.join("b/rep.raw");
    for p in [&a, &b] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        build(&src, p, "sysext", &[&"--seed", &"0011", &"--version", &"2"]);
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let plain = d.join("c/rep.raw");
    std::fs::create_dir_all(plain.parent().unwrap()).unwrap();
    build(&src, &plain, "sysext", &[&"--seed", &"0011"]);
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&plain).unwrap());

    let held = make_src(d, "sysext", "held", "ID=_any\nIMAGE_VERSION=1.0\n");
    let cases: &[(&Path, &[&str], &str)] = &[
        (
            &held,
            &["--version", "2.0"],
            "already says IMAGE_VERSION=1.0",
        ),
        (
            &src,
            &["--version", "2:0"],
            "--version \"2:0\" contains ':'",
        ),
        (&src, &["--epoch=-1"], "--epoch"),
    ];
    for (s, args, want) in cases {
        let out = d.join("refused/held.raw");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let o = Command::new(bin())
            .args(["image", "build"])
            .arg(s)
            .arg("-o")
            .arg(&out)
            .args(["--class", "sysext"])
            .args(*args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(want), "{args:?}: {e}");
        assert!(!out.exists());
        assert_eq!(std::fs::read_dir(out.parent().unwrap()).unwrap().count(), 0);
    }
    // The same value as the source's is no contradiction.
    let ok = d.join("same/held.raw");
    std::fs::create_dir_all(ok.parent().unwrap()).unwrap();
    build(&held, &ok, "sysext", &[&"--version", &"1.0"]);
}

#[test]
fn mkfs_root_version_goes_into_os_release_not_through_its_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("tree");
    for d in ["bin", "sbin", "etc", "usr/lib", "dev", "proc", "sys", "run"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    let exe = |p: &Path, body: &[u8]| {
        std::fs::write(p, body).unwrap();
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    exe(&t.join("bin/sh"), b"\x7fELF\x02\x01\x01stub");
    exe(&t.join("sbin/init"), b"#!/bin/sh\nexec true\n");
    std::fs::write(t.join("usr/lib/os-release"), "ID=rootos\nIMAGE_ID=rootos\n").unwrap();
    std::os::unix::fs::symlink("../usr/lib/os-release", t.join("etc/os-release")).unwrap();
    let img = dir.path().join("os.raw");
    build(&t, &img, "root", &[&"--sidecar", &"--version", &"7"]);
    let x = dir.path().join("x");
    extract("erofs", &img, &x);
    assert_eq!(
        lines(&x.join("usr/lib/os-release")),
        ["ID=rootos", "IMAGE_ID=rootos", "IMAGE_VERSION=7"]
    );
    assert_eq!(
        std::fs::read_link(x.join("etc/os-release")).unwrap(),
        Path::new("../usr/lib/os-release")
    );
}

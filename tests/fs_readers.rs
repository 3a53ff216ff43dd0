//! Point 4 of issue 12: the Rust erofs and squashfs readers against images made by the real
//! mkfs.erofs and mksquashfs with several option sets (compressors, block sizes, inode forms,
//! fragments, tail packing, chunks): every file and directory listing read back equals what was
//! put in, symlinks are reported and not followed, and what a reader does not implement is refused
//! by name. Needs erofs-utils and squashfs-tools (CI installs both).

use std::path::{Path, PathBuf};
use std::process::Command;
use verity::image::fs::{Entry, FsError, Kind, Reader};
use verity::image::fsread::FsType;

/// The source tree: release files of several sizes, a directory spanning several blocks, nested
/// directories, a symlink and an empty file.
fn source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    let rel = src.join("usr/lib/extension-release.d");
    std::fs::create_dir_all(&rel).unwrap();
    std::fs::create_dir_all(src.join("etc/extension-release.d")).unwrap();
    std::fs::create_dir_all(src.join("usr/share/many")).unwrap();
    std::fs::create_dir_all(src.join("a/b/c/d/e")).unwrap();
    std::fs::write(
        rel.join("extension-release.ext"),
        "ID=debian\nVERSION_ID=12\n",
    )
    .unwrap();
    std::fs::write(
        src.join("etc/extension-release.d/extension-release.conf"),
        "ID=_any\n",
    )
    .unwrap();
    std::fs::write(src.join("usr/lib/empty"), "").unwrap();
    for n in [4095usize, 4096, 4097, 9000] {
        // Incompressible, so compressing mkfs options still store it plainly (compressed erofs
        // data is refused by name, see below).
        let body: Vec<u8> = (0..n.div_ceil(32) as u32)
            .flat_map(|i| verity::digest::HashAlg::Sha256.digest(&i.to_le_bytes()))
            .take(n)
            .collect();
        std::fs::write(src.join(format!("usr/lib/rand{n}")), body).unwrap();
    }
    for i in 0..300 {
        std::fs::write(
            src.join(format!("usr/share/many/file-with-a-longish-name-{i:04}")),
            format!("{i}\n"),
        )
        .unwrap();
    }
    std::fs::write(src.join("a/b/c/d/e/deep"), "deep\n").unwrap();
    std::os::unix::fs::symlink("../lib/os-release", src.join("usr/lib/link")).unwrap();
    src
}

/// Files (path, contents) every reader must return exactly.
fn expected(src: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = vec![
        "usr/lib/extension-release.d/extension-release.ext".to_string(),
        "etc/extension-release.d/extension-release.conf".into(),
        "usr/lib/empty".into(),
        "a/b/c/d/e/deep".into(),
        "usr/share/many/file-with-a-longish-name-0299".into(),
    ];
    v.extend([4095, 4096, 4097, 9000].map(|n| format!("usr/lib/rand{n}")));
    v.into_iter()
        .map(|p| {
            let b = std::fs::read(src.join(&p)).unwrap();
            (p, b)
        })
        .collect()
}

fn run(c: &mut Command) {
    let o = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?} (is it installed?): {e}"));
    assert!(
        o.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn check_image(img: &[u8], fs: FsType, src: &Path, what: &str) {
    let img = verity::verity::source::Slice::new(img, 0, img.len() as u64);
    let r = Reader::open(&img, fs).unwrap_or_else(|e| panic!("{what}: {e}"));
    for (p, want) in expected(src) {
        let got = r
            .read_file(&p, 1 << 20)
            .unwrap_or_else(|e| panic!("{what}: {p}: {e}"));
        assert_eq!(got.as_deref(), Some(&want[..]), "{what}: {p}");
    }
    assert_eq!(r.read_file("usr/lib/nothing", 100).unwrap(), None, "{what}");
    assert_eq!(r.kind("usr/lib/os-release").unwrap(), None, "{what}");
    assert_eq!(
        r.kind("usr/lib/link").unwrap(),
        Some(Kind::Symlink),
        "{what}"
    );
    assert!(matches!(
        r.read_file("usr/lib/link", 100),
        Err(FsError::Path { .. })
    ));
    assert_eq!(r.kind("usr/share/many").unwrap(), Some(Kind::Dir), "{what}");
    let mut names: Vec<Vec<u8>> = r
        .list_dir("usr/share/many")
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|e: Entry| {
            assert_eq!(e.kind, Kind::File);
            e.name
        })
        .collect();
    names.sort();
    let mut want: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("file-with-a-longish-name-{i:04}").into_bytes())
        .collect();
    want.sort();
    assert_eq!(names, want, "{what}");
    let rel = r.list_dir("usr/lib/extension-release.d").unwrap().unwrap();
    assert_eq!(rel.len(), 1, "{what}");
    // Bounds: a file over the caller's limit, a path through a file.
    let e = r.read_file("usr/lib/rand9000", 8192).unwrap_err();
    assert!(matches!(e, FsError::Limit { .. }), "{what}: {e}");
    assert!(r.kind("usr/lib/empty/x").is_err(), "{what}");
    assert!(r.kind("usr/../etc").is_err(), "{what}");
}

#[test]
fn point4_mkfs_erofs_images_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    for opts in [
        "",
        "-zlz4",
        "-zlz4hc",
        "-zlz4hc -Eztailpacking",
        "-Eforce-inode-compact",
        "-Eforce-inode-extended",
        "--chunksize=8192",
        "-T0 --all-root",
    ] {
        let img = dir.path().join("e.img");
        let _ = std::fs::remove_file(&img);
        let mut c = Command::new("mkfs.erofs");
        c.arg("--quiet")
            .args(opts.split_whitespace())
            .arg(&img)
            .arg(&src);
        run(&mut c);
        let bytes = std::fs::read(&img).unwrap();
        check_image(&bytes, FsType::Erofs, &src, &format!("mkfs.erofs {opts}"));
    }
}

#[test]
fn point4_mkfs_erofs_compressed_large_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big"), "X=a\n".repeat(16000)).unwrap();
    let img = dir.path().join("e.img");
    run(Command::new("mkfs.erofs")
        .args(["--quiet", "-zlz4hc"])
        .arg(&img)
        .arg(&src));
    let bytes = std::fs::read(&img).unwrap();
    let r = Reader::open(&bytes, FsType::Erofs).unwrap();
    let e = r.read_file("big", 1 << 20).unwrap_err();
    assert!(
        matches!(&e, FsError::Unsupported { feature, .. } if feature.contains("compressed")),
        "{e}"
    );
}

#[test]
fn point4_mksquashfs_images_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    for opts in [
        "-comp gzip",
        "-comp xz",
        "-comp lz4",
        "-comp lz4 -Xhc",
        "-comp zstd",
        "-comp lzma",
        "-comp gzip -b 4096",
        "-comp xz -b 1M",
        "-noI -noD -noF -noX",
        "-comp gzip -no-fragments",
        "-comp gzip -always-use-fragments",
        "-comp zstd -Xcompression-level 19 -b 8K",
    ] {
        let img = dir.path().join("s.img");
        let _ = std::fs::remove_file(&img);
        let mut c = Command::new("mksquashfs");
        c.arg(&src)
            .arg(&img)
            .args(["-quiet", "-no-progress", "-noappend"])
            .args(opts.split_whitespace());
        run(&mut c);
        let bytes = std::fs::read(&img).unwrap();
        check_image(
            &bytes,
            FsType::Squashfs,
            &src,
            &format!("mksquashfs {opts}"),
        );
    }
}

#[test]
fn point4_mksquashfs_lzo_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let img = dir.path().join("s.img");
    run(Command::new("mksquashfs").arg(&src).arg(&img).args([
        "-quiet",
        "-no-progress",
        "-comp",
        "lzo",
    ]));
    let bytes = std::fs::read(&img).unwrap();
    let e = Reader::open(&bytes, FsType::Squashfs).err().unwrap();
    assert!(e.to_string().contains("lzo"), "{e}");
}

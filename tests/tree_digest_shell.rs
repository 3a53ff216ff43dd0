//! The directory-extension digest (`image::treedigest`, verity-tree-v1) against an independent
//! implementation of its documented manifest in find/stat/sha256sum/sort: same digest for a tree
//! with directories, files, an empty file, a symlink and several modes; and a one-byte change in
//! a file changes it.

#[path = "support/treedigest_sh.rs"]
mod treedigest_sh;

use treedigest_sh::shell_digest;

#[test]
fn tree_digest_matches_an_independent_shell_manifest() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("ext");
    std::fs::create_dir_all(r.join("usr/lib/extension-release.d")).unwrap();
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::create_dir_all(r.join("usr/share/empty-dir")).unwrap();
    std::fs::write(
        r.join("usr/lib/extension-release.d/extension-release.ext"),
        "ID=_any\n",
    )
    .unwrap();
    std::fs::write(r.join("usr/bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(
        r.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::write(r.join("usr/share/empty"), "").unwrap();
    std::fs::write(r.join("usr/share/data"), vec![7u8; 100_000]).unwrap();
    std::fs::set_permissions(
        r.join("usr/share/empty-dir"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::os::unix::fs::symlink("../bin/tool", r.join("usr/share/tool-link")).unwrap();
    let ours = verity::image::treedigest::tree_digest(&r).unwrap();
    assert_eq!(ours, shell_digest(&r));
    let mut data = std::fs::read(r.join("usr/share/data")).unwrap();
    data[50_000] ^= 1;
    std::fs::write(r.join("usr/share/data"), data).unwrap();
    let changed = verity::image::treedigest::tree_digest(&r).unwrap();
    assert_ne!(changed, ours);
    assert_eq!(changed, shell_digest(&r));
}

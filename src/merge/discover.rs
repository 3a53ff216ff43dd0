//! Finding extension images under `--root`: systemd's search paths per class, first directory
//! holding a name wins, names from [`image_name`]. No validation here (that is the pipeline's).

use super::pipeline::ImageKind;
use super::plan::{image_name, Class};
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One discovered image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Candidate {
    /// Image name.
    pub name: String,
    /// Directory, raw file or block device.
    #[serde(rename = "type")]
    pub kind: ImageKind,
    /// Path under the root.
    pub path: PathBuf,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// Whether `root` is an initrd (systemd checks `/etc/initrd-release`).
pub fn in_initrd(root: &Path) -> bool {
    root.join("etc/initrd-release").exists()
}

/// All images of `class` under `root`, sorted by name; a name found in an earlier search path
/// shadows the same name further down (even when the earlier one is unusable).
pub fn discover(root: &Path, class: Class, in_initrd: bool) -> Vec<Candidate> {
    let mut found: BTreeMap<String, Candidate> = BTreeMap::new();
    for dir in class.search_paths(in_initrd) {
        let d = root.join(dir.trim_start_matches('/'));
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let fname = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            // Symlinks are followed (search paths are meant for links to images elsewhere).
            let Ok(md) = std::fs::metadata(&path) else {
                continue;
            };
            let ft = md.file_type();
            let (kind, is_dir) = if ft.is_dir() {
                (ImageKind::Directory, true)
            } else if ft.is_file() {
                (ImageKind::Raw, false)
            } else if ft.is_block_device() {
                (ImageKind::Block, false)
            } else {
                continue;
            };
            let name = if kind == ImageKind::Block {
                image_name(&fname, false, class)
                    .or_else(|| image_name(&format!("{fname}.raw"), false, class))
            } else {
                image_name(&fname, is_dir, class)
            };
            let Some(name) = name else { continue };
            found.entry(name.clone()).or_insert(Candidate {
                name,
                kind,
                path,
                mtime: md.mtime(),
            });
        }
    }
    found.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_search_path_wins_and_other_files_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in [
            "etc/extensions/foo",
            "var/lib/extensions/foo",
            "var/lib/extensions/bar",
            "run/extensions",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("run/extensions/baz.sysext.raw"), b"x").unwrap();
        std::fs::write(r.join("run/extensions/notes.txt"), b"x").unwrap();
        std::fs::create_dir_all(r.join("usr/lib/extensions/hidden")).unwrap();
        let c = discover(r, Class::Sysext, false);
        let names: Vec<_> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["bar", "baz", "foo"]);
        assert_eq!(c[2].path, r.join("etc/extensions/foo"));
        assert_eq!(c[1].kind, ImageKind::Raw);
        assert!(discover(r, Class::Confext, false).is_empty());
    }
}

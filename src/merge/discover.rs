//! Finding extension images under `--root`: systemd's search paths per class, first directory
//! holding a name wins, names from [`image_name`]. A versioned directory (`NAME.raw.v/`,
//! `NAME.v/`) stands for the one entry [`super::vpick`] picks in it: the newest that fits the
//! host. No validation here (that is the pipeline's): if the pick's verified version is below its
//! rollback floor it is refused, and no older entry is offered in its place.

use super::plan::{image_name, Class};
use crate::image::ImageKind;
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

/// Whether `root` is an initrd (systemd checks `/etc/initrd-release`); decided by the host
/// context.
pub use crate::host::in_initrd;

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
            if ft.is_dir() && fname.ends_with(".v") {
                if let Some(c) = versioned(&path, &fname, class) {
                    found.entry(c.name.clone()).or_insert(c);
                }
                continue;
            }
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

/// The host's architecture (systemd id), from the running kernel.
pub fn host_arch() -> &'static str {
    use crate::image::arch;
    rustix::system::uname()
        .machine()
        .to_str()
        .ok()
        .and_then(arch::from_uname)
        .unwrap_or_else(arch::native)
}

/// The image a `.v/` directory stands for: its pick, named as the directory (`foo.raw.v` is
/// `foo`). None when nothing in it fits or the newest entry is of the wrong type (systemd then
/// treats the directory as unusable, and so do we: no fallback to an older entry).
fn versioned(dir: &Path, fname: &str, class: Class) -> Option<Candidate> {
    use super::vpick::{self, EntryKind, Filter};
    let (base, suffix, kinds) = vpick::filter_for_dir(fname, class)?;
    let entries = vpick::list_dir(dir).ok()?;
    let f = Filter {
        basename: &base,
        suffix,
        kinds,
        architecture: None,
        version: None,
    };
    let p = vpick::pick(&entries, &f, &vpick::host_architectures(host_arch())).ok()??;
    let path = dir.join(&p.file_name);
    let md = std::fs::metadata(&path).ok()?;
    let kind = match entries.iter().find(|e| e.name == p.file_name)?.kind {
        EntryKind::Directory => ImageKind::Directory,
        EntryKind::Block => ImageKind::Block,
        EntryKind::File => ImageKind::Raw,
        EntryKind::Other => return None,
    };
    Some(Candidate {
        name: base,
        kind,
        path,
        mtime: md.mtime(),
    })
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

    #[test]
    fn a_versioned_directory_stands_for_its_newest_fitting_entry() {
        let t = tempfile::tempdir().unwrap();
        let v = t.path().join("var/lib/extensions/foo.raw.v");
        std::fs::create_dir_all(&v).unwrap();
        for f in [
            "foo_1.9.raw",
            "foo_1.10.raw",
            "foo_9_sparc.raw",
            "bar_99.raw",
        ] {
            std::fs::write(v.join(f), b"x").unwrap();
        }
        let c = discover(t.path(), Class::Sysext, false);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].name, "foo");
        assert_eq!(c[0].kind, ImageKind::Raw);
        assert_eq!(c[0].path, v.join("foo_1.10.raw"));
        // The newest entry of the wrong type makes the directory unusable: no older fallback.
        std::fs::create_dir(v.join("foo_2.raw")).unwrap();
        assert!(discover(t.path(), Class::Sysext, false).is_empty());
    }
}

//! Which hierarchies are merged by us, and with what: systemd's "ours" test (mount point, marker
//! `dev` file present and equal to the hierarchy's st_dev) and the marker's extension list. Also
//! the mountinfo parsing used to find submounts that must survive a merge or unmerge.
//!
//! The mountinfo parser stays hand-written (issue 16 asked for a maintained one): `procfs-core`
//! 0.18, the obvious candidate, returns mount points with the kernel's octal escapes (`\040`,
//! `\134`, ...) still in them (its issue #262 is open), which is exactly the bug class fuzzing found
//! here; a dozen lines of unescaping with a fuzz target and regression tests is smaller than that
//! dependency plus a post-processing step.

use super::plan::{parse_dev, parse_list, Class};
use crate::sys::mount;
use std::path::{Path, PathBuf};

/// The state of one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HierarchyStatus {
    /// Absolute hierarchy as the user sees it (under `--root`).
    pub hierarchy: String,
    /// Whether our overlay is mounted there.
    pub merged: bool,
    /// Merged extensions, from the marker (empty if not merged).
    pub extensions: Vec<String>,
    /// Merge time: mtime of the hierarchy root, seconds since the epoch (merged only).
    pub since: Option<i64>,
    /// Merged writable (`--mutable`): its content is not only what was verified and measured.
    pub mutable: bool,
}

/// `<root>/<hierarchy>`.
pub fn host_path(root: &Path, hierarchy: &str) -> PathBuf {
    root.join(hierarchy.trim_start_matches('/'))
}

/// systemd's test: a mount root whose marker `dev` equals its own st_dev.
pub fn is_ours(path: &Path, class: Class) -> bool {
    if !mount::is_mount_root(path).unwrap_or(false) {
        return false;
    }
    let dev_file = path.join(class.marker_dir()).join("dev");
    let Ok(text) = std::fs::read_to_string(dev_file) else {
        return false;
    };
    let Some(want) = parse_dev(&text) else {
        return false;
    };
    mount::dev_of(path).map(|d| d == want).unwrap_or(false)
}

/// Status of every hierarchy of `class` under `root`.
pub fn status(root: &Path, class: Class) -> Vec<HierarchyStatus> {
    class
        .hierarchies()
        .iter()
        .map(|h| {
            let p = host_path(root, h);
            let merged = is_ours(&p, class);
            let extensions = if merged {
                std::fs::read_to_string(p.join(class.marker_dir()).join(class.marker_list()))
                    .map(|t| parse_list(&t))
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let since = if merged {
                std::fs::metadata(&p)
                    .ok()
                    .map(|m| std::os::unix::fs::MetadataExt::mtime(&m))
            } else {
                None
            };
            // A writable overlay is a mutable merge; ours are read-only otherwise.
            let mutable = merged
                && rustix::fs::statvfs(&p)
                    .is_ok_and(|s| !s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
            HierarchyStatus {
                hierarchy: p.to_string_lossy().into_owned(),
                merged,
                extensions,
                since,
                mutable,
            }
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for space and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // A byte is at most \377: a first digit above 3 is not an escape (and would overflow).
        if b[i] == b'\\'
            && i + 3 < b.len()
            && (b'0'..=b'3').contains(&b[i + 1])
            && b[i + 2..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points from `/proc/self/mountinfo` text, in mount order.
pub fn mount_points(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape))
        .collect()
}

/// The top-level submounts strictly below `dir`: mount points under it that are not themselves
/// under another such mount point. Order preserved, duplicates (stacked mounts) once.
pub fn submounts_below(points: &[String], dir: &str) -> Vec<String> {
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    let mut under: Vec<&String> = points.iter().filter(|p| p.starts_with(&prefix)).collect();
    under.dedup();
    let mut out: Vec<String> = Vec::new();
    for p in &under {
        let nested = under
            .iter()
            .any(|q| q.as_str() != p.as_str() && p.starts_with(&format!("{q}/")));
        if !nested && !out.contains(p) {
            out.push((*p).clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_regression_escape_above_377_is_kept_literally() {
        // Found by fuzz/merge_marker: `\\562` overflowed u8 arithmetic and panicked.
        let pts = mount_points("37 36 0:5 / /a\\562b rw - ext4 x rw\n1 2 3 4 /c\\040d\n");
        assert_eq!(pts, ["/a\\562b", "/c d"]);
    }

    #[test]
    fn mountinfo_and_submounts() {
        let mi = "22 1 0:21 / / rw - ext4 /dev/sda rw\n\
                  30 22 0:30 / /r/usr ro - overlay sysext ro\n\
                  31 30 0:31 / /r/usr/local rw - tmpfs tmpfs rw\n\
                  32 31 0:32 / /r/usr/local/x rw - tmpfs tmpfs rw\n\
                  33 30 0:33 / /r/usr/a\\040b rw - tmpfs tmpfs rw\n\
                  34 22 0:34 / /r/usrx rw - tmpfs tmpfs rw\n";
        let pts = mount_points(mi);
        assert_eq!(pts[5], "/r/usrx");
        assert_eq!(pts[4], "/r/usr/a b");
        assert_eq!(
            submounts_below(&pts, "/r/usr"),
            vec!["/r/usr/local", "/r/usr/a b"]
        );
        assert!(submounts_below(&pts, "/r/opt").is_empty());
    }
}

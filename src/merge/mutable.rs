//! systemd 257's mutable modes (`--mutable=`, `SYSTEMD_SYSEXT_MUTABLE_MODE`,
//! `SYSTEMD_CONFEXT_MUTABLE_MODE`; spec/systemd.md 1.9, UAPI.4 "Optional Mutability").
//!
//! Per hierarchy, the mode decides three things: a writable upper dir (persistent under
//! `/var/lib/extensions.mutable/<hierarchy>`, or ephemeral on the merge's private tmpfs), mutable
//! data imported as a read-only lower layer just below the marker layer, and whether the host
//! hierarchy stays the bottom layer (not when it is itself the upper dir, through a symlink).
//! [`decide`] is the pure decision from facts; [`resolve`] gathers the facts (symlinks resolved
//! inside `--root` as systemd's `chase()` does) and creates the dirs `yes`/`ephemeral` need.
//!
//! Nothing here is verified or measured: a mutable hierarchy's writable and imported layers are
//! plain host directories, and the merge report says so per hierarchy.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// `--mutable=` values, as systemd 257 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MutableMode {
    /// Read-only overlay (the default).
    #[default]
    No,
    /// Writable; the persistent mutable dir is created if missing.
    Yes,
    /// Writable only if the persistent mutable dir exists.
    Auto,
    /// Read-only, with the persistent mutable dir as an extra lower layer.
    Import,
    /// Writable into a throw-away dir on the merge's tmpfs.
    Ephemeral,
    /// `ephemeral`, with the persistent mutable dir imported as a lower layer.
    EphemeralImport,
}

impl MutableMode {
    /// Parses a mode name or a boolean (`true`/`1`/`on` = `yes`, as systemd accepts).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "no" | "false" | "0" | "off" | "n" => Self::No,
            "yes" | "true" | "1" | "on" | "y" => Self::Yes,
            "auto" => Self::Auto,
            "import" => Self::Import,
            "ephemeral" => Self::Ephemeral,
            "ephemeral-import" => Self::EphemeralImport,
            _ => return None,
        })
    }

    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::No => "no",
            Self::Yes => "yes",
            Self::Auto => "auto",
            Self::Import => "import",
            Self::Ephemeral => "ephemeral",
            Self::EphemeralImport => "ephemeral-import",
        }
    }

    fn ephemeral(self) -> bool {
        matches!(self, Self::Ephemeral | Self::EphemeralImport)
    }
}

/// Where persistent mutable data lives (for confext too), relative to `--root`.
pub const BASE: &str = "/var/lib/extensions.mutable";

/// systemd's `hierarchy_as_single_path_component`: `/usr` -> `usr`, `/foo/bar/` -> `foo.bar`.
pub fn dir_name(hierarchy: &str) -> String {
    hierarchy.trim_matches('/').replace('/', ".")
}

/// Why a mode cannot be applied to a hierarchy (the merge then fails, as systemd's does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MutableError {
    /// `yes`/`auto`: the mutable dir exists with another mode than the hierarchy's.
    #[error("mutable directory {path} has mode {have:04o}, ought to have mode {want:04o} (that of the hierarchy)")]
    ModeMismatch {
        /// The mutable dir.
        path: PathBuf,
        /// Its mode.
        have: u32,
        /// The hierarchy's.
        want: u32,
    },
    /// `import`/`ephemeral-import`: the mutable dir is the hierarchy itself (ELOOP in systemd).
    #[error("not importing mutable directory {path} for {hierarchy} as a lower layer: it is the hierarchy itself")]
    ImportsHierarchy {
        /// The hierarchy.
        hierarchy: String,
        /// The mutable dir.
        path: PathBuf,
    },
    /// The upper dir is on a read-only file system (EROFS in systemd).
    #[error("cannot use {0} as the writable upper layer: it is on a read-only file system")]
    ReadOnly(PathBuf),
    /// The work dir next to the upper dir would be on another file system (EXDEV).
    #[error(
        "no work directory for upper layer {0}: its parent directory is on another file system"
    )]
    WorkDirElsewhere(PathBuf),
    /// A file-system operation failed.
    #[error("{path}: {reason}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MutableError + '_ {
    move |e| MutableError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The writable layer of a mutable overlay.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Upper {
    /// The upper dir.
    pub dir: PathBuf,
    /// Its overlayfs work dir: `.systemd-<hierarchy>-workdir` beside it.
    pub work: PathBuf,
    /// On the merge's tmpfs, gone at unmerge.
    pub ephemeral: bool,
}

/// What a mode makes of one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Layout {
    /// The mode.
    pub mode: MutableMode,
    /// Mutable data imported read-only, just below the marker layer.
    pub import: Option<PathBuf>,
    /// The writable layer, if any.
    pub upper: Option<Upper>,
    /// Whether the host hierarchy is the bottom lower layer (it is not when it is missing,
    /// empty, or itself the upper dir).
    pub host_lower: bool,
    /// Mode for the overlay's top layer (upper dir, else the marker layer): the hierarchy's, so
    /// merging does not change the hierarchy's permissions.
    pub top_mode: u32,
}

/// The facts [`decide`] needs about one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// The mode.
    pub mode: MutableMode,
    /// Mode bits (0o777) of the host hierarchy, 0o755 when it is missing.
    pub hierarchy_mode: u32,
    /// The host hierarchy exists and is not empty.
    pub host_nonempty: bool,
    /// The mode's mutable dir, resolved (persistent, or on the tmpfs for ephemeral modes); `None`
    /// when it does not exist.
    pub dir: Option<PathBuf>,
    /// That dir is the host hierarchy itself (same inode).
    pub dir_is_hierarchy: bool,
    /// That dir is on a read-only file system.
    pub dir_read_only: bool,
    /// That dir's parent is on the same file system (room for the work dir).
    pub dir_parent_same_fs: bool,
    /// `ephemeral-import`: the persistent mutable dir, resolved, if it exists.
    pub persistent: Option<PathBuf>,
    /// That persistent dir is the host hierarchy itself.
    pub persistent_is_hierarchy: bool,
}

/// systemd 257's decision (sysext.c `determine_lower_dirs`, `determine_upper_dir`,
/// `determine_work_dir`) from the facts of one hierarchy.
pub fn decide(hierarchy: &str, f: &Facts) -> Result<Layout, MutableError> {
    use MutableMode::*;
    let mut import = None;
    if f.mode == Import {
        if let Some(d) = &f.dir {
            if f.dir_is_hierarchy {
                return Err(MutableError::ImportsHierarchy {
                    hierarchy: hierarchy.into(),
                    path: d.clone(),
                });
            }
            import = Some(d.clone());
        }
    }
    if f.mode == EphemeralImport {
        if let Some(p) = &f.persistent {
            if f.persistent_is_hierarchy {
                return Err(MutableError::ImportsHierarchy {
                    hierarchy: hierarchy.into(),
                    path: p.clone(),
                });
            }
            import = Some(p.clone());
        }
    }
    let host_lower = f.host_nonempty
        && (matches!(f.mode, Import | EphemeralImport) || f.dir.is_none() || !f.dir_is_hierarchy);
    let upper = match (&f.dir, f.mode) {
        (_, No | Import) | (None, _) => None,
        (Some(d), _) => {
            if f.dir_read_only {
                return Err(MutableError::ReadOnly(d.clone()));
            }
            if !f.dir_parent_same_fs {
                return Err(MutableError::WorkDirElsewhere(d.clone()));
            }
            let parent = d.parent().unwrap_or(Path::new("/"));
            Some(Upper {
                dir: d.clone(),
                work: parent.join(format!(".systemd-{}-workdir", dir_name(hierarchy))),
                ephemeral: f.mode.ephemeral(),
            })
        }
    };
    Ok(Layout {
        mode: f.mode,
        import,
        upper,
        host_lower,
        top_mode: f.hierarchy_mode,
    })
}

/// Resolves `path` (absolute, as seen inside `root`) the way systemd's
/// `chase(CHASE_PREFIX_ROOT)` does: symlinks are followed, absolute targets taken relative to
/// `root`, and `..` never climbs above `root`. `Ok(None)` when a component does not exist.
pub fn chase(root: &Path, path: &Path) -> std::io::Result<Option<PathBuf>> {
    fn parts(p: &Path) -> Vec<OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect()
    }
    let mut todo: VecDeque<OsString> = parts(path).into();
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&c);
        let full = root.join(&next);
        match std::fs::symlink_metadata(&full) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&full)?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                for p in parts(&target).into_iter().rev() {
                    todo.push_front(p);
                }
            }
            Ok(_) => cur = next,
        }
    }
    Ok(Some(root.join(cur)))
}

fn same_inode(a: &Path, b: Option<&Path>) -> bool {
    let (Some(b), Ok(ma)) = (b, std::fs::metadata(a)) else {
        return false;
    };
    std::fs::metadata(b).is_ok_and(|mb| ma.dev() == mb.dev() && ma.ino() == mb.ino())
}

fn read_only_fs(p: &Path) -> Result<bool, MutableError> {
    let st = rustix::fs::statvfs(p).map_err(|e| io(p)(e.into()))?;
    Ok(st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Gathers the facts for `hierarchy` under `root` and decides. `workspace` is the merge's private
/// tmpfs (ephemeral upper dirs go there). `yes` creates the persistent dir (mode 0700, then the
/// hierarchy's mode once it is the upper dir), as systemd does; nothing else is written.
pub fn resolve(
    mode: MutableMode,
    root: &Path,
    hierarchy: &str,
    workspace: &Path,
) -> Result<Layout, MutableError> {
    use MutableMode::*;
    let host = chase(root, Path::new(hierarchy)).map_err(io(&root.join(hierarchy)))?;
    let hierarchy_mode = match &host {
        Some(h) => std::fs::metadata(h).map_err(io(h))?.permissions().mode() & 0o777,
        None => 0o755,
    };
    let host_nonempty = host.as_ref().is_some_and(|h| {
        std::fs::read_dir(h)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    });
    let mut f = Facts {
        mode,
        hierarchy_mode,
        host_nonempty,
        ..Facts::default()
    };
    if mode == No {
        return decide(hierarchy, &f);
    }
    let name = dir_name(hierarchy);
    let (base_root, rel) = if mode.ephemeral() {
        (workspace.to_path_buf(), PathBuf::from("/").join(&name))
    } else {
        (root.to_path_buf(), Path::new(BASE).join(&name))
    };
    let in_root = base_root.join(rel.strip_prefix("/").unwrap_or(&rel));
    if matches!(mode, Yes | Auto) {
        match std::fs::metadata(&in_root) {
            Ok(m) if m.permissions().mode() & 0o777 != hierarchy_mode => {
                return Err(MutableError::ModeMismatch {
                    path: in_root,
                    have: m.permissions().mode() & 0o777,
                    want: hierarchy_mode,
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&in_root)(e)),
        }
    }
    if matches!(mode, Yes | Ephemeral | EphemeralImport) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&in_root)
            .map_err(io(&in_root))?;
    }
    f.dir = chase(&base_root, &rel).map_err(io(&in_root))?;
    if let Some(d) = &f.dir {
        f.dir_is_hierarchy = same_inode(d, host.as_deref());
        f.dir_read_only = read_only_fs(d)?;
        let parent = d.parent().unwrap_or(Path::new("/"));
        let (md, mp) = (
            std::fs::metadata(d).map_err(io(d))?,
            std::fs::metadata(parent).map_err(io(parent))?,
        );
        f.dir_parent_same_fs = md.dev() == mp.dev();
    }
    if mode == EphemeralImport {
        let p = Path::new(BASE).join(&name);
        f.persistent = chase(root, &p).map_err(io(&root.join(&p)))?;
        f.persistent_is_hierarchy = f
            .persistent
            .as_deref()
            .is_some_and(|p| same_inode(p, host.as_deref()));
    }
    decide(hierarchy, &f)
}

use std::os::unix::fs::DirBuilderExt;

/// C-escapes a path the way systemd's `cescape` writes the marker's `work_dir` line.
pub fn cescape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'\\' => o.push_str("\\\\"),
            b'"' => o.push_str("\\\""),
            b'\'' => o.push_str("\\'"),
            b'\n' => o.push_str("\\n"),
            b'\t' => o.push_str("\\t"),
            b'\r' => o.push_str("\\r"),
            0x20..=0x7e => o.push(b as char),
            _ => o.push_str(&format!("\\{b:03o}")),
        }
    }
    o
}

/// Undoes [`cescape`] (octal, `\xNN` and the usual one-letter escapes); `None` if malformed.
pub fn cunescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut o = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            o.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b.get(i + 1)?;
        i += 2;
        o.push(match c {
            b'\\' | b'"' | b'\'' => c,
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'a' => 7,
            b'b' => 8,
            b'f' => 12,
            b'v' => 11,
            b'x' => {
                let h = std::str::from_utf8(b.get(i..i + 2)?).ok()?;
                i += 2;
                u8::from_str_radix(h, 16).ok()?
            }
            b'0'..=b'3' => {
                let d = std::str::from_utf8(b.get(i - 1..i + 2)?).ok()?;
                i += 2;
                u8::from_str_radix(d, 8).ok()?
            }
            _ => return None,
        });
    }
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use MutableMode::*;

    fn facts(mode: MutableMode, dir: Option<&str>) -> Facts {
        Facts {
            mode,
            hierarchy_mode: 0o755,
            host_nonempty: true,
            dir: dir.map(PathBuf::from),
            dir_parent_same_fs: true,
            ..Facts::default()
        }
    }

    #[test]
    fn modes_parse_like_systemd() {
        for (s, m) in [
            ("no", No),
            ("false", No),
            ("yes", Yes),
            ("1", Yes),
            ("auto", Auto),
            ("import", Import),
            ("ephemeral", Ephemeral),
            ("ephemeral-import", EphemeralImport),
        ] {
            assert_eq!(MutableMode::parse(s), Some(m), "{s}");
        }
        assert_eq!(MutableMode::parse("maybe"), None);
        assert_eq!(dir_name("/usr"), "usr");
        assert_eq!(dir_name("/foo/bar/"), "foo.bar");
    }

    #[test]
    fn decisions_per_mode() {
        let d = "/r/var/lib/extensions.mutable/opt";
        // auto with a dir: writable upper, host stays the bottom layer.
        let l = decide("/opt", &facts(Auto, Some(d))).unwrap();
        let u = l.upper.unwrap();
        assert_eq!(u.dir, PathBuf::from(d));
        assert_eq!(
            u.work,
            PathBuf::from("/r/var/lib/extensions.mutable/.systemd-opt-workdir")
        );
        assert!(l.host_lower && l.import.is_none() && !u.ephemeral);
        // auto without one: read-only.
        let l = decide("/opt", &facts(Auto, None)).unwrap();
        assert!(l.upper.is_none() && l.host_lower);
        // import: lower layer, no upper.
        let l = decide("/opt", &facts(Import, Some(d))).unwrap();
        assert_eq!(l.import.as_deref(), Some(Path::new(d)));
        assert!(l.upper.is_none());
        // the dir is the hierarchy: it becomes the upper, not a lower; import refuses it.
        let mut f = facts(Auto, Some("/r/opt"));
        f.dir_is_hierarchy = true;
        let l = decide("/opt", &f).unwrap();
        assert!(!l.host_lower && l.upper.is_some());
        f.mode = Import;
        assert!(matches!(
            decide("/opt", &f),
            Err(MutableError::ImportsHierarchy { .. })
        ));
        // ephemeral-import imports the persistent dir under a tmpfs upper, refuses the hierarchy.
        let mut f = facts(EphemeralImport, Some("/ws/opt"));
        f.persistent = Some(d.into());
        let l = decide("/opt", &f).unwrap();
        assert!(l.upper.unwrap().ephemeral && l.import.is_some() && l.host_lower);
        f.persistent_is_hierarchy = true;
        assert!(decide("/opt", &f).is_err());
        // read-only upper and a work dir on another fs are refused.
        let mut f = facts(Yes, Some(d));
        f.dir_read_only = true;
        assert!(matches!(decide("/opt", &f), Err(MutableError::ReadOnly(_))));
        let mut f = facts(Yes, Some(d));
        f.dir_parent_same_fs = false;
        assert!(matches!(
            decide("/opt", &f),
            Err(MutableError::WorkDirElsewhere(_))
        ));
        // an empty host hierarchy is never a layer.
        let mut f = facts(No, None);
        f.host_nonempty = false;
        assert!(!decide("/opt", &f).unwrap().host_lower);
    }

    #[test]
    fn chase_stays_inside_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("opt")).unwrap();
        std::fs::create_dir_all(r.join("var/lib/extensions.mutable")).unwrap();
        std::os::unix::fs::symlink("/opt", r.join("var/lib/extensions.mutable/abs")).unwrap();
        std::os::unix::fs::symlink("../../../opt", r.join("var/lib/extensions.mutable/rel"))
            .unwrap();
        std::os::unix::fs::symlink(
            "../../../../../../../should/not/exist",
            r.join("var/lib/extensions.mutable/dangling"),
        )
        .unwrap();
        let m = Path::new("/var/lib/extensions.mutable");
        assert_eq!(chase(r, &m.join("abs")).unwrap(), Some(r.join("opt")));
        assert_eq!(chase(r, &m.join("rel")).unwrap(), Some(r.join("opt")));
        assert_eq!(chase(r, &m.join("dangling")).unwrap(), None);
        assert_eq!(chase(r, &m.join("none")).unwrap(), None);
    }

    #[test]
    fn work_dir_escaping_round_trips() {
        for s in ["var/lib/x", "a b\\c\n\"d", "é"] {
            assert_eq!(cunescape(&cescape(s)).unwrap(), s.as_bytes());
        }
        assert_eq!(cescape("a\nb"), "a\\nb");
        assert_eq!(cunescape("\\x41\\101"), Some(b"AA".to_vec()));
        assert_eq!(cunescape("\\q"), None);
    }
}

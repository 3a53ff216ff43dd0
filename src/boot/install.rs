//! `verity boot install`: puts the units and example configs where systemd and the hook find them,
//! under `--root` (default `/`). Existing configs are never overwritten; units are, so an upgrade
//! ships fixed ordering.

use std::io;
use std::path::{Path, PathBuf};

/// The files shipped in `units/`, with where they go and whether an existing copy is kept.
pub const FILES: &[(&str, &str, bool)] = &[
    (
        "usr/lib/systemd/system/verity-boot.service",
        include_str!("../../units/verity-boot.service"),
        false,
    ),
    (
        "usr/lib/systemd/system/verity-boot-initrd.service",
        include_str!("../../units/verity-boot-initrd.service"),
        false,
    ),
    (
        "etc/verity/boot.toml",
        include_str!("../../units/boot.toml"),
        true,
    ),
    (
        "etc/verity/boot-initrd.toml.example",
        include_str!("../../units/boot-initrd.toml"),
        true,
    ),
];

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Full path written (or kept).
    pub path: PathBuf,
    /// An existing config was left alone.
    pub kept: bool,
}

/// Installs the units and configs under `root`, plus the `sysinit.target.wants` link that
/// `systemctl enable` would make (so it works on an offline tree too).
pub fn install(root: &Path) -> io::Result<Vec<Installed>> {
    let mut out = Vec::new();
    for (rel, text, keep) in FILES {
        let p = root.join(rel);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        }
        if *keep && p.exists() {
            out.push(Installed {
                path: p,
                kept: true,
            });
            continue;
        }
        crate::io::output::write_atomic(&p, text.as_bytes())
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
        out.push(Installed {
            path: p,
            kept: false,
        });
    }
    let wants = root.join("etc/systemd/system/sysinit.target.wants");
    std::fs::create_dir_all(&wants)?;
    let link = wants.join("verity-boot.service");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("/usr/lib/systemd/system/verity-boot.service", &link)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", link.display())))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_parse_and_units_conflict_with_sysext() {
        for (rel, text, _) in FILES {
            if rel.contains(".toml") {
                super::super::config::parse(text).unwrap_or_else(|e| panic!("{rel}: {e}"));
            }
        }
        let host = FILES[0].1;
        assert!(host.contains("Conflicts=systemd-sysext.service systemd-confext.service"));
        assert!(host.contains("Before=sysinit.target systemd-tmpfiles-setup.service"));
        assert!(host.contains("After=local-fs.target"));
        assert!(host.contains("DefaultDependencies=no"));
    }

    #[test]
    fn install_writes_units_keeps_configs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/verity")).unwrap();
        std::fs::write(
            d.path().join("etc/verity/boot.toml"),
            "required = [\"x\"]\n",
        )
        .unwrap();
        let r = install(d.path()).unwrap();
        assert_eq!(r.len(), FILES.len());
        assert!(r
            .iter()
            .any(|i| i.kept && i.path.ends_with("etc/verity/boot.toml")));
        assert_eq!(
            std::fs::read_to_string(d.path().join("etc/verity/boot.toml")).unwrap(),
            "required = [\"x\"]\n"
        );
        let unit = d.path().join("usr/lib/systemd/system/verity-boot.service");
        assert_eq!(std::fs::read_to_string(unit).unwrap(), FILES[0].1);
        let link = d
            .path()
            .join("etc/systemd/system/sysinit.target.wants/verity-boot.service");
        assert_eq!(
            std::fs::read_link(link).unwrap(),
            PathBuf::from("/usr/lib/systemd/system/verity-boot.service")
        );
        // Idempotent.
        install(d.path()).unwrap();
    }
}

//! The rollback step of admission (I/O edge around [`super::decide()`]): the floors and the TPM
//! epoch are read once, before any image is looked at ([`Guard::load`], which fails closed on a
//! corrupt state file or an unreadable epoch), then each image's verified release file is judged
//! against them ([`Guard::check`]), and after a successful admission `--ratchet` raises the floors
//! to what was admitted ([`ratchet`]).
//!
//! The version and epoch are read from the release file of the verified, mounted tree
//! (extension-release, or os-release for a root), never from a file name.

use super::decide::{decide, Evidence, Refusal};
use super::{epoch, Change, Class, FloorStore, Floors};
use crate::image::release::OsRelease;
use std::path::Path;

/// What admission checks versions against: the floors of one system and its TPM epoch.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    floors: Floors,
    tpm_epoch: Option<u64>,
}

impl Guard {
    /// No floors and no epoch: admits every version. For callers that are not admitting for a
    /// system (tests of the pipeline, image inspection).
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads `<root>/var/lib/verity/rollback.json` (missing = no floors); `tpm_epoch` is what
    /// [`read_tpm_epoch`] returned. A corrupt or unreadable file is an error naming it.
    pub fn load(root: &Path, tpm_epoch: Option<u64>) -> Result<Self, String> {
        let store = FloorStore::under_root(root);
        let floors = store.load().map_err(|e| e.to_string())?;
        Ok(Guard { floors, tpm_epoch })
    }

    /// The TPM epoch in force, if any.
    pub fn tpm_epoch(&self) -> Option<u64> {
        self.tpm_epoch
    }

    /// Judges one verified image of `class` named `name` by its release file (None when it has
    /// none: no version, no epoch). Returns the version it carries.
    pub fn check(
        &self,
        class: Class,
        name: &str,
        release: Option<&OsRelease>,
    ) -> Result<Option<String>, Refusal> {
        let found = Evidence {
            version: release.and_then(|r| r.get("IMAGE_VERSION")),
            epoch: release.and_then(|r| r.get("VERITY_EPOCH")),
        };
        self.check_evidence(class, name, &found)
    }

    /// As [`Guard::check`], from the two fields themselves.
    pub fn check_evidence(
        &self,
        class: Class,
        name: &str,
        found: &Evidence<'_>,
    ) -> Result<Option<String>, Refusal> {
        decide(found, self.floors.get(class, name), self.tpm_epoch)?;
        Ok(found.version.map(str::to_string))
    }
}

/// The epoch of the TPM an admission measures into, read before that TPM is opened for measuring
/// (swtpm serves one connection at a time): None without a TPM (`--dangerous-no-tpm` and no
/// `--tpm`); a simulator must be allowed by name.
pub fn epoch_for(
    tpm: Option<&str>,
    no_tpm: bool,
    simulator_ok: bool,
) -> Result<Option<u64>, String> {
    let spec = match tpm {
        None if no_tpm => return Ok(None),
        None => crate::measure::DEFAULT_TPM,
        Some(s) => s,
    };
    if spec.starts_with("swtpm") && !simulator_ok {
        return Err(format!(
            "TPM {spec} is a simulator; reading the rollback epoch from it needs \
             --dangerous-tpm-simulator"
        ));
    }
    read_tpm_epoch(spec)
}

/// Reads the epoch from the TPM at `spec` (default NV index): None when the index does not exist.
/// An unreachable TPM or a malformed index is an error: fail closed.
pub fn read_tpm_epoch(spec: &str) -> Result<Option<u64>, String> {
    let mut nv = epoch::open_nv(spec).map_err(|e| format!("TPM {spec}: rollback epoch: {e}"))?;
    epoch::read(nv.as_mut(), epoch::DEFAULT_EPOCH_INDEX)
        .map(|e| e.map(|e| e.epoch))
        .map_err(|e| format!("TPM {spec}: rollback epoch: {e}"))
}

/// `--ratchet`: after a successful admission, raises the floor of each admitted (class, name)
/// to its version (images without a version are left alone), under the store's lock, written once.
/// Each change is logged on stderr.
pub fn ratchet(root: &Path, admitted: &[(Class, String, String)]) -> Result<(), String> {
    if admitted.is_empty() {
        return Ok(());
    }
    let store = FloorStore::under_root(root);
    let mut locked = store.lock().map_err(|e| e.to_string())?;
    let mut changes = Vec::new();
    for (class, name, version) in admitted {
        let c = locked
            .floors_mut()
            .ratchet(*class, name, version)
            .map_err(|e| format!("--ratchet {class} {name}: {e}"))?;
        if c.changed() {
            changes.push(describe(*class, name, &c));
        }
    }
    if !changes.is_empty() {
        locked.commit().map_err(|e| e.to_string())?;
    }
    for c in changes {
        eprintln!("verity: rollback: {c} ({})", store.path().display());
    }
    Ok(())
}

fn describe(class: Class, name: &str, c: &Change) -> String {
    match c {
        Change::Set { to } => format!("--ratchet: floor of {class} {name} set to {to}"),
        Change::Raised { from, to } => {
            format!("--ratchet: floor of {class} {name} raised from {from} to {to}")
        }
        Change::Lowered { from, to } => format!("floor of {class} {name} lowered {from} -> {to}"),
        Change::Unchanged { floor } => format!("floor of {class} {name} stays {floor}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(text: &str) -> OsRelease {
        OsRelease::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn ratchet_then_check() {
        let dir = tempfile::tempdir().unwrap();
        let g = Guard::load(dir.path(), None).unwrap();
        let v1 = rel("ID=_any\nIMAGE_VERSION=1\n");
        assert_eq!(
            g.check(Class::Sysext, "foo", Some(&v1)).unwrap().as_deref(),
            Some("1")
        );
        ratchet(dir.path(), &[(Class::Sysext, "foo".into(), "2".into())]).unwrap();
        let g = Guard::load(dir.path(), None).unwrap();
        let r = g.check(Class::Sysext, "foo", Some(&v1)).unwrap_err();
        assert!(
            r.to_string()
                .contains("IMAGE_VERSION=1 is below the floor 2"),
            "{r}"
        );
        // Another class or name has no floor; no release at all is refused once a floor exists.
        assert!(g.check(Class::Confext, "foo", Some(&v1)).is_ok());
        assert!(matches!(
            g.check(Class::Sysext, "foo", None),
            Err(Refusal::NoVersion { .. })
        ));
        // A lower ratchet never lowers.
        ratchet(dir.path(), &[(Class::Sysext, "foo".into(), "1".into())]).unwrap();
        assert!(Guard::load(dir.path(), None)
            .unwrap()
            .check(Class::Sysext, "foo", Some(&v1))
            .is_err());
    }

    #[test]
    fn epoch_and_corrupt_state() {
        let g = Guard {
            tpm_epoch: Some(2),
            ..Guard::none()
        };
        let old = rel("ID=_any\nIMAGE_VERSION=9\nVERITY_EPOCH=1\n");
        assert!(matches!(
            g.check(Class::Root, "os", Some(&old)),
            Err(Refusal::BelowEpoch { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(super::super::STATE_FILE);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"{\"schema\": 1, \"floors\": [").unwrap();
        let e = Guard::load(dir.path(), None).unwrap_err();
        assert!(e.contains("rollback.json"), "{e}");
    }
}

//! Rollback protection: an older, validly signed image is never admitted again.
//!
//! A signature proves who made an image, not that it is current: whoever can write
//! `/var/lib/extensions` (or a stale mirror) can put back last year's signed sysext with a known
//! hole. Two defences, of different strength:
//!
//! - **Version floors** ([`floors`], kept by [`store`] in `/var/lib/verity/rollback.json`): per
//!   (class, image name), the lowest `IMAGE_VERSION=` that may still be admitted. The version comes
//!   from the verified file system's extension-release (os-release for a root), never from a file
//!   name, and is compared with systemd's `strverscmp_improved`. This stops an attacker who can
//!   write image files but not the state file; whoever can write `/var/lib/verity` (or deletes the
//!   file) resets it.
//! - **A TPM epoch** ([`epoch`]): an NV counter index, which the TPM only lets grow. Images carry
//!   `VERITY_EPOCH=N`; when the index exists, an image whose epoch is below it is refused even if
//!   the state file was deleted or rolled back. It holds against anyone who cannot use the TPM's
//!   owner authorisation (an offline disk attacker, a process without TPM access).
//!
//! The decision itself ([`decide()`]) is pure: found version and epoch, floor, TPM epoch → admit or
//! a [`decide::Refusal`] that names "rollback", what was found and the floor.
//!
//! Pure core: [`floors`], [`mod@decide`], the name rules here (the version rules are
//! [`crate::image::version`]). I/O edge: [`store`] (the state file, its lock and atomic
//! replacement), [`epoch`] over the [`epoch::EpochNv`] trait (real: tss-esapi NV commands; fake: a
//! software model of a TPM's NV counters), [`ops`] (raising and lowering, the latter measured into
//! the event log), [`admit`] (the admission step: floors and epoch read once, each verified
//! release file judged, `--ratchet`).
//!
//! Layer L10 (`tests/layering.rs`): above `image` and `measure`, below the admission pipeline.

pub mod admit;
pub mod decide;
pub mod epoch;
pub mod floors;
#[cfg(feature = "tpm")]
pub mod nv_esapi;
pub mod ops;
pub mod store;

pub use decide::{decide, Refusal};
pub use floors::{Change, Floors, FloorsError};
pub use store::{FloorStore, StoreError, STATE_FILE};

/// The classes floors are kept for: the two extension classes and the soft-reboot root (whose
/// version is in its os-release). A set of its own, not [`crate::image::Class`]: a root is not an
/// extension class (nothing merges it, it has no extension-release directory or hierarchies), but
/// its floors live in the same state file and `rollback show` lists them with the others. Every
/// image class maps into it (`From<image::Class>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// System extensions.
    Sysext,
    /// Configuration extensions.
    Confext,
    /// A root for `soft-reboot prepare`.
    Root,
}

impl Class {
    /// Every class, in the order `rollback show` lists them.
    pub const ALL: [Class; 3] = [Class::Sysext, Class::Confext, Class::Root];

    /// Parses `sysext`, `confext` or `root`.
    pub fn from_name(s: &str) -> Option<Class> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The lower-case name, as in the state file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Class::Sysext => "sysext",
            Class::Confext => "confext",
            Class::Root => "root",
        }
    }

    /// The PCR this class's images are measured into by default, where a change to its floors
    /// is measured too.
    pub fn default_pcr(self) -> u32 {
        match self {
            Class::Sysext => crate::measure::PCR_SYSEXT,
            Class::Confext => crate::measure::PCR_CONFEXT,
            Class::Root => crate::measure::PCR_NEXTROOT,
        }
    }
}

impl From<crate::image::Class> for Class {
    fn from(c: crate::image::Class) -> Self {
        match c {
            crate::image::Class::Sysext => Class::Sysext,
            crate::image::Class::Confext => Class::Confext,
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with `name` as the name a floor is kept for, or None when it is fine.
///
/// Extension floors are kept per extension name, which is the image name cut at the first `_`
/// or `+` (`foo_1.2.raw` carries `extension-release.foo`); a floor for `foo_1` would never apply
/// to anything, so it is refused. A root's name (its os-release `IMAGE_ID=`) may contain `_`.
pub fn name_problem(class: Class, name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.len() > 255 {
        return Some("is longer than 255 bytes");
    }
    if name.starts_with('.') {
        return Some("starts with '.'");
    }
    if name.contains(['/', ':']) || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some("contains '/', ':', a space or a control character");
    }
    if class != Class::Root && name.contains(['_', '+']) {
        return Some(
            "contains '_' or '+': an extension's name stops at the first of them (foo_1.2.raw \
             is 'foo'), so give the name without the version",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_classes() {
        assert_eq!(name_problem(Class::Sysext, "foo"), None);
        assert_eq!(name_problem(Class::Root, "my_os"), None);
        assert!(name_problem(Class::Sysext, "foo_1")
            .unwrap()
            .contains("'_'"));
        assert!(name_problem(Class::Confext, "a+3").is_some());
        for bad in ["", ".x", "a/b", "a:b", "a b", "a\nb"] {
            assert!(name_problem(Class::Root, bad).is_some(), "{bad:?}");
        }
        assert_eq!(Class::from_name("root"), Some(Class::Root));
        assert_eq!(Class::from_name("nextroot"), None);
        assert_eq!(Class::Confext.default_pcr(), 12);
        assert_eq!(Class::from(crate::image::Class::Sysext), Class::Sysext);
    }
}

//! The shared vocabulary of admission (DESIGN.md section 2): what an admitted image is measured
//! as ([`ImageEvent`], [`Subject`], [`CLASSES`]), what a measurement recorded
//! ([`MeasurementRecord`]), and the bypasses that weaken the chain ([`Bypass`]).
//!
//! Layer L5 (`tests/layering.rs`): every layer from `image` up speaks these words, so they sit
//! below all of them and import nothing from the crate above `hex`. The proof tokens themselves live
//! with the code that mints them, so their keys can stay private there: [`Verified<T>`] in
//! `image::token` (minted only by `image::verify`) and `Measured<T>` in `measure::step`. `merge`
//! and `soft_reboot` take `Measured<Verified<_>>` and nothing else, so an unverified or unmeasured
//! merge does not compile.
//!
//! [`Verified<T>`]: crate::image::Verified

use serde::Serialize;
use thiserror::Error;

/// What was measured, kept with the token for reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MeasurementRecord {
    /// The PCR that was extended (or would have been, under `--dangerous-no-tpm`).
    pub pcr: u32,
    /// The event string that was hashed into every bank.
    pub event: String,
    /// Per-bank digests of the event string: (bank name, lower-case hex). Empty when nothing was
    /// extended (`--dangerous-no-tpm`).
    pub digests: Vec<(String, String)>,
    /// Bypasses recorded (and, with a TPM, extended) before the event, in order.
    pub bypasses: Vec<Bypass>,
}

/// The event log's eventType of a bypass record.
pub const BYPASS_EVENT_TYPE: &str = "dangerous";

/// A weakening of the chain that was asked for by name. Each one becomes an event-log record
/// `dangerous:<name>:<subject>` (eventType [`BYPASS_EVENT_TYPE`]), extended into the same PCR as the
/// admission it belongs to when there is a TPM (see [`Bypass::extends_pcr`]), so a remote verifier
/// replaying the log sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bypass {
    /// `--dangerous-no-tpm`: no PCR was extended; the records are in the log only.
    NoTpm,
    /// `--dangerous-tpm-simulator`: the PCRs are a simulator's (swtpm), not a TPM's.
    TpmSimulator,
    /// `--dangerous-skip-release-check`: extension-release was not matched against the host.
    SkipReleaseCheck,
    /// `soft-reboot prepare --dangerous-premounted`: a tree staged without verification.
    Premounted,
    /// An image without dm-verity (a directory tree, or a raw image without a hash tree),
    /// admitted because the image policy was written to allow `unprotected`.
    Unprotected,
}

impl Bypass {
    /// Every bypass, for parsing and help texts.
    pub const ALL: [Bypass; 5] = [
        Bypass::NoTpm,
        Bypass::TpmSimulator,
        Bypass::SkipReleaseCheck,
        Bypass::Premounted,
        Bypass::Unprotected,
    ];

    /// The name in event strings and reports.
    pub fn name(self) -> &'static str {
        match self {
            Bypass::NoTpm => "no-tpm",
            Bypass::TpmSimulator => "tpm-simulator",
            Bypass::SkipReleaseCheck => "skip-release-check",
            Bypass::Premounted => "premounted",
            Bypass::Unprotected => "unprotected",
        }
    }

    /// Parses [`Bypass::name`].
    pub fn from_name(s: &str) -> Option<Bypass> {
        Self::ALL.into_iter().find(|b| b.name() == s)
    }

    /// How it was asked for.
    pub fn asked_by(self) -> &'static str {
        match self {
            Bypass::NoTpm => "--dangerous-no-tpm",
            Bypass::TpmSimulator => "--dangerous-tpm-simulator",
            Bypass::SkipReleaseCheck => "--dangerous-skip-release-check",
            Bypass::Premounted => "--dangerous-premounted",
            Bypass::Unprotected => "an image policy that allows unprotected images",
        }
    }

    /// Whether its record is extended into the admission's PCR. Not `no-tpm` (there is no TPM)
    /// and not `tpm-simulator`: a simulator's PCRs are evidence to nobody, so recording that one
    /// was used belongs in the log, and PCR values stay those of the real measurement sequence
    /// (which is what tests and demos against swtpm check). Those two are written without a `pcr`
    /// field, which replay skips.
    pub fn extends_pcr(self) -> bool {
        !matches!(self, Bypass::NoTpm | Bypass::TpmSimulator)
    }

    /// The string measured for this bypass of the admission whose event string is `subject`.
    pub fn event_string(self, subject: &str) -> String {
        format!("{BYPASS_EVENT_TYPE}:{}:{subject}", self.name())
    }
}

impl std::fmt::Display for Bypass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The strings an admission extends into its PCR, in order: one per bypass that
/// [extends the PCR](Bypass::extends_pcr) (the subject's own first, then the measuring context's),
/// then the subject's event string. The measuring step extends exactly these and `verity pcr
/// predict --with-bypass` computes from exactly these. Each string comes with its eventType
/// (`event_type` for the subject's own event). Pure.
pub fn admission_events<'a>(
    event: &str,
    event_type: &'a str,
    bypasses: &[Bypass],
) -> Vec<(String, &'a str)> {
    bypasses
        .iter()
        .filter(|b| b.extends_pcr())
        .map(|b| (b.event_string(event), BYPASS_EVENT_TYPE))
        .chain(std::iter::once((event.to_string(), event_type)))
        .collect()
}

/// The classes an event can have; each is also the record's eventType.
pub const CLASSES: &[&str] = &["sysext", "confext", "nextroot"];

/// The root-hash field of an image admitted without dm-verity (only through a `--dangerous-...`
/// bypass): the weakened chain is measured and logged under this name rather than hidden.
pub const UNPROTECTED: &str = "unprotected";

/// The root-hash field of a directory extension: [`UNPROTECTED_TREE`] followed by the lower-case
/// hex `verity-tree-v1` content digest of the tree as merged ([`crate::image::treedigest`]).
pub const UNPROTECTED_TREE: &str = "unprotected-tree-";

/// Why an event description was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventError {
    #[error("unknown class {0:?} (sysext, confext or nextroot)")]
    UnknownClass(String),
    #[error("image name {name:?} {why}")]
    BadName { name: String, why: &'static str },
    #[error("root hash {hash:?} {why}")]
    BadRootHash { hash: String, why: &'static str },
    #[error(
        "signer {0:?} is not the lower-case hex SHA-256 of a certificate (64 hex digits); leave \
         it out for unsigned images"
    )]
    BadSigner(String),
}

/// What is measured for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEvent {
    /// sysext, confext or nextroot.
    pub class: String,
    /// The image name (as in extension-release.NAME).
    pub name: String,
    /// The dm-verity root hash, lower-case hex, [`UNPROTECTED`], or [`UNPROTECTED_TREE`] and a
    /// directory extension's tree digest.
    pub root_hash_hex: String,
    /// The lower-case hex SHA-256 of the signer certificate's DER; None for unsigned images.
    pub signer: Option<String>,
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ImageEvent {
    /// `<class>:<name>:<root-hash-hex>:<signer>`.
    pub fn event_string(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.class,
            self.name,
            self.root_hash_hex,
            self.signer.as_deref().unwrap_or("unsigned")
        )
    }

    /// Checks every field, so that the event string parses back into exactly these fields: no
    /// `:` in the name, canonical lower-case hex elsewhere.
    pub fn validate(&self) -> Result<(), EventError> {
        if !CLASSES.contains(&self.class.as_str()) {
            return Err(EventError::UnknownClass(self.class.clone()));
        }
        let bad_name = |why| EventError::BadName {
            name: self.name.clone(),
            why,
        };
        if self.name.is_empty() {
            return Err(bad_name("is empty"));
        }
        if self.name.len() > 255 {
            return Err(bad_name("is longer than 255 bytes"));
        }
        if self.name.contains(':') {
            return Err(bad_name(
                "contains ':', which separates the event string's fields",
            ));
        }
        if self.name.contains('/') || self.name.chars().any(char::is_control) {
            return Err(bad_name("contains '/' or a control character"));
        }
        let h = &self.root_hash_hex;
        if h == UNPROTECTED {
            return self.validate_signer();
        }
        if let Some(d) = h.strip_prefix(UNPROTECTED_TREE) {
            if d.len() != 64 || !is_lower_hex(d) {
                return Err(EventError::BadRootHash {
                    hash: h.clone(),
                    why: "is not unprotected-tree- and a lower-case hex SHA-256 tree digest",
                });
            }
            return self.validate_signer();
        }
        let bad_hash = |why| EventError::BadRootHash {
            hash: h.clone(),
            why,
        };
        if h.is_empty() || !h.len().is_multiple_of(2) || h.len() > 128 {
            return Err(bad_hash("is not 1-64 bytes of hex"));
        }
        if !is_lower_hex(h) {
            return Err(bad_hash("is not lower-case hex"));
        }
        self.validate_signer()
    }

    fn validate_signer(&self) -> Result<(), EventError> {
        if let Some(s) = &self.signer {
            if s.len() != 64 || !is_lower_hex(s) {
                return Err(EventError::BadSigner(s.clone()));
            }
        }
        Ok(())
    }
}

/// Something a verified token can be measured as.
pub trait Subject {
    /// The event its admission measures.
    fn event(&self) -> ImageEvent;
    /// Bypasses that weakened its admission, recorded before the event.
    fn bypasses(&self) -> Vec<Bypass>;
    /// The version its verified content carries (`IMAGE_VERSION=`), recorded beside its event
    /// (an extra `imageVersion` field of the record's content; the measured string is unchanged).
    fn version(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_names_round_trip_and_events_come_first() {
        for b in Bypass::ALL {
            assert_eq!(Bypass::from_name(b.name()), Some(b));
            assert!(b.asked_by().contains(b.name()) || b == Bypass::Unprotected);
        }
        let ev = admission_events(
            "sysext:foo:ab:unsigned",
            "sysext",
            &[
                Bypass::SkipReleaseCheck,
                Bypass::TpmSimulator,
                Bypass::Unprotected,
            ],
        );
        let strings: Vec<&str> = ev.iter().map(|(s, _)| s.as_str()).collect();
        // The simulator's record is log-only; the others are extended before the event.
        assert_eq!(
            strings,
            [
                "dangerous:skip-release-check:sysext:foo:ab:unsigned",
                "dangerous:unprotected:sysext:foo:ab:unsigned",
                "sysext:foo:ab:unsigned"
            ]
        );
        assert_eq!(ev[0].1, "dangerous");
        assert_eq!(ev[2].1, "sysext");
        assert!(!Bypass::NoTpm.extends_pcr() && Bypass::Premounted.extends_pcr());
    }
}

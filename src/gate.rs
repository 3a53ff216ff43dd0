//! Proof tokens for the pipeline's order (DESIGN.md section 2), and the bypasses that weaken it.
//!
//! [`Verified<T>`] is minted only by the code that verifies: [`mod@crate::image::verify`] (a checked
//! image, the token of its activation derived from that, and a directory tree admitted because the
//! image policy explicitly allows unprotected images). [`Measured<T>`] is minted only by the
//! measuring step, [`crate::measure::step`], after every PCR extend and event-log append
//! succeeded. Both constructors take a zero-sized key whose only field is private to the module
//! that owns it, so no other code (in this crate or outside it) can build one, and the fields of
//! the tokens are private too. `merge` and `soft_reboot` take `Measured<Verified<_>>` and nothing
//! else, so an unverified or unmeasured merge does not compile.
//!
//! Outside the verifying module a key cannot be made, so this does not compile (E0423: the key's
//! field is private), while the same path names compile when no key is built:
//!
//! ```compile_fail,E0423
//! use verity::gate::Verified;
//! use verity::image::verify::VerifyKey;
//! let forged: Verified<u32> = Verified::mint(7, VerifyKey(()));
//! ```
//!
//! ```compile_fail,E0423
//! use verity::gate::{Measured, MeasurementRecord};
//! use verity::measure::step::MeasureKey;
//! fn forge(r: MeasurementRecord) -> Measured<u32> {
//!     Measured::mint(7, r, MeasureKey(()))
//! }
//! ```
//!
//! ```compile_fail,E0451
//! use verity::gate::Verified;
//! let forged: Verified<u32> = Verified { inner: 7 };
//! ```
//!
//! ```
//! use verity::gate::{Measured, MeasurementRecord, Verified};
//! use verity::image::verify::VerifyKey;
//! use verity::measure::step::MeasureKey;
//! // The same names resolve; only building a key (or a token) is refused.
//! fn takes(_: Option<(VerifyKey, MeasureKey, Verified<u32>, Measured<u32>, MeasurementRecord)>) {}
//! takes(None);
//! ```

use serde::Serialize;

/// An image (or anything else) whose integrity chain was checked.
#[derive(Debug)]
pub struct Verified<T> {
    inner: T,
}

impl<T> Verified<T> {
    /// Mints a token. Only [`mod@crate::image::verify`] can build the key, after its checks passed.
    pub fn mint(inner: T, _key: crate::image::verify::VerifyKey) -> Self {
        Self { inner }
    }

    /// Read access; there is no way to get a mutable reference or to rebuild the token.
    pub fn get(&self) -> &T {
        &self.inner
    }
}

/// A verified thing whose measurement reached the TPM and the event log.
#[derive(Debug)]
pub struct Measured<T> {
    inner: T,
    record: MeasurementRecord,
}

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

impl<T> Measured<T> {
    /// Mints a token. Only [`crate::measure::step`] can build the key, after the extends and the
    /// log appends succeeded.
    pub fn mint(
        inner: T,
        record: MeasurementRecord,
        _key: crate::measure::step::MeasureKey,
    ) -> Self {
        Self { inner, record }
    }

    /// Read access to what was measured.
    pub fn get(&self) -> &T {
        &self.inner
    }

    /// The measurement that admitted it.
    pub fn record(&self) -> &MeasurementRecord {
        &self.record
    }
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

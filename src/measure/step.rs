//! The measuring step: the only code that mints [`Measured`] tokens (it alone can build a
//! [`MeasureKey`]). What is measured comes from the token itself ([`Subject::event`]), never from
//! separate arguments, and so do the bypasses that weakened its admission ([`Subject::bypasses`]);
//! the caller can only add the bypasses of the measuring context (`--dangerous-tpm-simulator`,
//! `--dangerous-no-tpm`). Under one hold of the log lock, the bypasses that extend no PCR
//! (`no-tpm`, `tpm-simulator`) are written as log-only records, then the sequence of
//! [`admission_events`] (one `dangerous` record per other bypass, then the event) is extended into
//! the PCR and appended.
//!
//! Outside this module the key cannot be made, so this does not compile (E0423: the key's field is
//! private), nor does building the token directly (E0451), while the same names resolve:
//!
//! ```compile_fail,E0423
//! use verity::gate::MeasurementRecord;
//! use verity::measure::step::{MeasureKey, Measured};
//! fn forge(r: MeasurementRecord) -> Measured<u32> {
//!     Measured::mint(7, r, MeasureKey(()))
//! }
//! ```
//!
//! ```compile_fail,E0451
//! use verity::gate::MeasurementRecord;
//! use verity::measure::step::Measured;
//! fn forge(record: MeasurementRecord) -> Measured<u32> {
//!     Measured { inner: 7, record }
//! }
//! ```
//!
//! ```
//! use verity::gate::MeasurementRecord;
//! use verity::measure::step::{MeasureKey, Measured};
//! fn takes(_: Option<(MeasureKey, Measured<u32>, MeasurementRecord)>) {}
//! takes(None);
//! ```

use super::{
    append_unmeasured, extend_and_append, hex_digests, measuring_banks, EventError, EventLog,
    MeasureError, Tpm,
};
use crate::gate::{admission_events, Bypass, MeasurementRecord, Subject, BYPASS_EVENT_TYPE};
use crate::image::Verified;

/// The key [`Measured::mint`] takes. Its field is private to this module, so only the functions
/// below can mint, and only after what they measure is in the TPM and the log.
pub struct MeasureKey(());

/// A verified thing whose measurement reached the TPM and the event log. Defined here, beside the
/// only code that can build its [`MeasureKey`], so the key's private field seals it.
#[derive(Debug)]
pub struct Measured<T> {
    inner: T,
    record: MeasurementRecord,
}

impl<T> Measured<T> {
    /// Mints a token. Only this module can build the key, after the extends and the log appends
    /// succeeded.
    pub fn mint(inner: T, record: MeasurementRecord, _key: MeasureKey) -> Self {
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

/// The token's bypasses, then the context's, without repeats: the order they are measured in.
pub fn all_bypasses(own: Vec<Bypass>, context: &[Bypass]) -> Vec<Bypass> {
    let mut all = own;
    for b in context {
        if !all.contains(b) {
            all.push(*b);
        }
    }
    all
}

/// Measures `v` into `pcr`: takes the log lock, then extends and appends one record per bypass
/// and finally the token's event. The token is minted only when all of them succeeded.
pub fn measure<T: Subject>(
    v: Verified<T>,
    tpm: &mut dyn Tpm,
    log: &EventLog,
    pcr: u32,
    context: &[Bypass],
) -> Result<Measured<Verified<T>>, MeasureError> {
    let ev = v.get().event();
    ev.validate()?;
    let bypasses = all_bypasses(v.get().bypasses(), context);
    let event = ev.event_string();
    let mut w = log.lock_for_append()?;
    let banks = measuring_banks(tpm, pcr)?;
    for b in bypasses.iter().filter(|b| !b.extends_pcr()) {
        append_unmeasured(&mut w, &b.event_string(&event), BYPASS_EVENT_TYPE)?;
    }
    let mut digests = Vec::new();
    let events = admission_events(&event, &ev.class, &bypasses);
    let last = events.len() - 1;
    let version = v.get().version();
    for (i, (string, event_type)) in events.iter().enumerate() {
        // Only the image's own record (the last) carries its version.
        let version = version.as_deref().filter(|_| i == last);
        digests = extend_and_append(tpm, &mut w, pcr, &banks, (string, version), event_type)?;
    }
    let record = MeasurementRecord {
        pcr,
        event,
        digests: hex_digests(&digests),
        bypasses,
    };
    Ok(Measured::mint(v, record, MeasureKey(())))
}

/// The `--dangerous-no-tpm` step: nothing is extended. Each bypass record (`no-tpm` among them)
/// goes to the event log through the locked writer, without a `pcr` field; the event itself is
/// not written on its own (no PCR holds it), it is the subject of every record. The token's
/// record has no digests.
pub fn record_unmeasured<T: Subject>(
    v: Verified<T>,
    log: &EventLog,
    pcr: u32,
    context: &[Bypass],
) -> Result<Measured<Verified<T>>, MeasureError> {
    let ev = v.get().event();
    ev.validate()?;
    super::pcr::check_pcr(pcr)?;
    let mut bypasses = all_bypasses(v.get().bypasses(), context);
    if !bypasses.contains(&Bypass::NoTpm) {
        bypasses.push(Bypass::NoTpm);
    }
    let event = ev.event_string();
    let mut w = log.lock_for_append()?;
    for b in &bypasses {
        append_unmeasured(&mut w, &b.event_string(&event), BYPASS_EVENT_TYPE)?;
    }
    let record = MeasurementRecord {
        pcr,
        event,
        digests: Vec::new(),
        bypasses,
    };
    Ok(Measured::mint(v, record, MeasureKey(())))
}

/// Records a bypass that admits no verified token (`--dangerous-premounted`): with a TPM it is
/// extended into `pcr` and logged (with the context's bypass records, as for any admission),
/// without one it is logged only. `subject` names what was let through (for premounted: the
/// nextroot path).
pub fn record_bypass(
    tpm: Option<&mut dyn Tpm>,
    log: &EventLog,
    pcr: u32,
    bypass: Bypass,
    subject: &str,
    context: &[Bypass],
) -> Result<MeasurementRecord, MeasureError> {
    if subject.is_empty() || subject.len() > 4096 || subject.chars().any(char::is_control) {
        return Err(MeasureError::Event(EventError::BadName {
            name: subject.to_string(),
            why: "is empty, longer than 4096 bytes or contains a control character",
        }));
    }
    super::pcr::check_pcr(pcr)?;
    let string = bypass.event_string(subject);
    let context: Vec<Bypass> = context.iter().copied().filter(|b| *b != bypass).collect();
    let events = admission_events(&string, BYPASS_EVENT_TYPE, &context);
    let mut w = log.lock_for_append()?;
    let mut digests = Vec::new();
    match tpm {
        Some(tpm) => {
            let banks = measuring_banks(tpm, pcr)?;
            for b in context.iter().filter(|b| !b.extends_pcr()) {
                append_unmeasured(&mut w, &b.event_string(&string), BYPASS_EVENT_TYPE)?;
            }
            for (s, event_type) in &events {
                digests = extend_and_append(tpm, &mut w, pcr, &banks, (s, None), event_type)?;
            }
        }
        None => {
            for b in context.iter().filter(|b| !b.extends_pcr()) {
                append_unmeasured(&mut w, &b.event_string(&string), BYPASS_EVENT_TYPE)?;
            }
            for (s, event_type) in &events {
                append_unmeasured(&mut w, s, event_type)?;
            }
        }
    }
    let mut bypasses = context;
    bypasses.push(bypass);
    Ok(MeasurementRecord {
        pcr,
        event: string,
        digests: hex_digests(&digests),
        bypasses,
    })
}

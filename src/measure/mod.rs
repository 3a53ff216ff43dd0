//! Measurement: PCR bank math ([`pcr`]), systemd's event log ([`eventlog`], [`logfile`]), the
//! [`Tpm`] trait with its software model and tss-esapi implementation, PCR prediction
//! ([`predict`]), and the measuring step
//! ([`step`]) that mints [`step::Measured`] tokens. The event vocabulary ([`ImageEvent`],
//! [`Subject`]) is defined in [`crate::gate`], below `image`, and re-exported here.
//!
//! The contract (DESIGN.md 5): an admitted image is measured into PCR 13 (sysext), 12 (confext)
//! or 15 (a soft-reboot root), configurable, as the event string
//! `<class>:<name>:<root-hash-hex>:<signer>` (signer: lower-case hex SHA-256 of the signer
//! certificate's DER, or `unsigned`); every active bank is extended with H(string as UTF-8, no
//! NUL), and the same digests go into one event-log record whose eventType is the class.
//!
//! Order, and why: the log is locked first and marked in progress (sticky bit), then the PCR is
//! extended, then the record is appended and the mark cleared. A crash in between leaves a log
//! that says it is torn instead of one that silently disagrees with the TPM. The token is minted
//! only after both the extend and the append succeeded.
//!
//! Bypasses ([`crate::gate::Bypass`]) are records too: `dangerous:<bypass>:<event string>` with
//! eventType `dangerous`, extended into the same PCR just before the admission they weaken.
//! Without a TPM (`--dangerous-no-tpm`) they are written without a `pcr` field, which replay
//! skips, but still through the locked writer.
//!
//! Layer L9 (`tests/layering.rs`): above `image` (it measures `Verified` tokens), below `rollback`.

pub mod eventlog;
pub mod logfile;
pub mod pcr;
pub mod predict;
pub mod step;
pub mod tpm;

#[cfg(feature = "tpm")]
pub mod esapi;

pub use crate::gate::{
    EventError, ImageEvent, MeasurementRecord, Subject, CLASSES, UNPROTECTED, UNPROTECTED_TREE,
};
pub use eventlog::{LogRecord, NewRecord};
pub use logfile::{EventLog, LogFileError, LogWriter, DEFAULT_EVENT_LOG};
pub use pcr::PcrError;
pub use tpm::{open_tpm, SoftTpm, Tpm, TpmError, TpmSpec, DEFAULT_TPM};

use crate::digest::HashAlg;
use crate::hex;
use thiserror::Error;

/// Default PCR for system extensions.
pub const PCR_SYSEXT: u32 = 13;
/// Default PCR for configuration extensions.
pub const PCR_CONFEXT: u32 = 12;
/// Default PCR for a soft-reboot root (nextroot).
pub const PCR_NEXTROOT: u32 = 15;

/// The default PCR for a class.
pub fn default_pcr(class: &str) -> Option<u32> {
    match class {
        "sysext" => Some(PCR_SYSEXT),
        "confext" => Some(PCR_CONFEXT),
        "nextroot" => Some(PCR_NEXTROOT),
        _ => None,
    }
}

/// Why a measurement failed. In every case no token was minted.
#[derive(Debug, Error)]
pub enum MeasureError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Pcr(#[from] PcrError),
    #[error(transparent)]
    Tpm(#[from] TpmError),
    #[error(
        "the TPM has no active sha256 PCR bank (active: {}); the event log and every policy \
         need sha256: allocate it (tpm2_pcrallocate) and reset the TPM",
        names(.active)
    )]
    NoSha256Bank { active: Vec<HashAlg> },
    #[error(transparent)]
    Log(#[from] LogFileError),
    #[error(
        "PCR {pcr} was extended but the event-log record could not be written, so the log is \
         now marked torn: {source}"
    )]
    LogAfterExtend { pcr: u32, source: LogFileError },
}

fn names(banks: &[HashAlg]) -> String {
    if banks.is_empty() {
        return "none".into();
    }
    banks
        .iter()
        .map(|b| b.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The banks a measurement into `pcr` extends: every active one, and sha256 must be among them.
pub(crate) fn measuring_banks(tpm: &mut dyn Tpm, pcr: u32) -> Result<Vec<HashAlg>, MeasureError> {
    pcr::check_pcr(pcr)?;
    let banks = tpm.active_banks()?;
    if !banks.contains(&HashAlg::Sha256) {
        return Err(MeasureError::NoSha256Bank { active: banks });
    }
    Ok(banks)
}

/// Extends `pcr` in `banks` with H(`string`) and appends the record, inside the sticky-bit
/// protocol (see the module docs). Returns the digests extended.
pub(crate) fn extend_and_append(
    tpm: &mut dyn Tpm,
    log: &mut LogWriter,
    pcr: u32,
    banks: &[HashAlg],
    (string, image_version): (&str, Option<&str>),
    event_type: &str,
) -> Result<Vec<(HashAlg, Vec<u8>)>, MeasureError> {
    let digests = pcr::event_digests(banks, string);
    log.mark_in_progress()?;
    if let Err(e) = tpm.pcr_extend(pcr, &digests) {
        if e.tpm_unchanged() {
            // Nothing happened: the log is still complete. If even clearing fails, the log
            // stays marked torn, which errs on the safe side.
            let _ = log.clear_in_progress();
        }
        return Err(e.into());
    }
    let record = NewRecord {
        pcr: Some(pcr),
        digests: digests.clone(),
        string: string.to_string(),
        boot_id: logfile::boot_id(),
        timestamp_us: logfile::boottime_us(),
        event_type: event_type.to_string(),
        image_version: image_version.map(str::to_string),
    };
    log.append(&record)
        .map_err(|source| MeasureError::LogAfterExtend { pcr, source })?;
    Ok(digests)
}

/// Appends a record of something that extended no PCR (`--dangerous-no-tpm`): no `pcr` field, a
/// sha256 digest of the string so the record stays checkable, through the same locked writer.
pub(crate) fn append_unmeasured(
    log: &mut LogWriter,
    string: &str,
    event_type: &str,
) -> Result<(), MeasureError> {
    let record = NewRecord {
        pcr: None,
        digests: pcr::event_digests(&[HashAlg::Sha256], string),
        string: string.to_string(),
        boot_id: logfile::boot_id(),
        timestamp_us: logfile::boottime_us(),
        event_type: event_type.to_string(),
        image_version: None,
    };
    log.append(&record)?;
    Ok(())
}

/// Per-bank digests as (bank name, hex), as reports show them.
pub(crate) fn hex_digests(digests: &[(HashAlg, Vec<u8>)]) -> Vec<(String, String)> {
    digests
        .iter()
        .map(|(b, d)| (b.name().to_string(), hex::encode(d)))
        .collect()
}

/// Measures one event with the log already locked (take [`EventLog::lock_for_append`] before
/// opening a TPM that serves one client at a time, such as swtpm, so concurrent measurers queue
/// on the lock rather than deadlock on the TPM connection).
pub fn measure_event_locked(
    tpm: &mut dyn Tpm,
    log: &mut LogWriter,
    pcr: u32,
    ev: &ImageEvent,
) -> Result<MeasurementRecord, MeasureError> {
    ev.validate()?;
    measure_text_locked(tpm, log, pcr, &ev.event_string(), &ev.class)
}

/// Measures any event string with the log already locked: every active bank of `pcr` is extended
/// with H(text), and one record with `event_type` is appended. Image events go through
/// [`measure_event_locked`]; other records of this program (a rollback floor lowered) come here.
pub fn measure_text_locked(
    tpm: &mut dyn Tpm,
    log: &mut LogWriter,
    pcr: u32,
    text: &str,
    event_type: &str,
) -> Result<MeasurementRecord, MeasureError> {
    let banks = measuring_banks(tpm, pcr)?;
    let digests = extend_and_append(tpm, log, pcr, &banks, (text, None), event_type)?;
    Ok(MeasurementRecord {
        pcr,
        event: text.to_string(),
        digests: hex_digests(&digests),
        bypasses: Vec::new(),
    })
}

/// Measures one event: locks the log, extends every active bank of `pcr`, appends the record.
/// The low-level step behind `verity measure`; it mints nothing (see [`step`] for that).
pub fn measure_event(
    tpm: &mut dyn Tpm,
    log: &EventLog,
    pcr: u32,
    ev: &ImageEvent,
) -> Result<MeasurementRecord, MeasureError> {
    let mut w = log.lock_for_append()?;
    measure_event_locked(tpm, &mut w, pcr, ev)
}

#[cfg(test)]
mod tests;

//! Changing the floors (I/O edge): raising, and lowering, which is measured.
//!
//! Raising makes the system stricter and needs no witness beyond its log line. Lowering undoes
//! protection, so it is a bypass: `--dangerous-lower-floor` on the command line, and before the
//! file changes, the lowering is measured like an image (every active bank of the class's PCR is
//! extended with H(event string) and a record goes into the event log), with its own eventType
//! [`LOWER_EVENT_TYPE`] and the event string
//! `rollback-lower:<class>:<name>:<old floor>:<new floor>`. A remote verifier replaying the log
//! sees it; `verity pcr replay` replays it like any other record.
//!
//! Order: the floor store's lock, then the event log's lock, then the TPM connection (the same
//! log-before-TPM order as measurement, so swtpm's one connection cannot deadlock). The record
//! is written before the floor changes: a crash in between leaves a log that claims a lowering
//! that did not happen (the safe direction), never a lowering without a record.

use super::floors::{Change, FloorsError};
use super::store::{FloorStore, StoreError};
use super::Class;
use crate::gate::MeasurementRecord;
use crate::measure::{measure_text_locked, EventLog, MeasureError, Tpm, TpmError};
use thiserror::Error;

/// The eventType of a lowering record.
pub const LOWER_EVENT_TYPE: &str = "rollback-lower";

/// The event string measured for a lowering (versions and names never contain `:`).
pub fn lower_event(class: Class, name: &str, from: &str, to: &str) -> String {
    format!("{LOWER_EVENT_TYPE}:{class}:{name}:{from}:{to}")
}

/// Why a change of the floors failed. Nothing was changed, except where said.
#[derive(Debug, Error)]
pub enum OpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Floors(#[from] FloorsError),
    #[error("cannot record the lowering in the event log, so the floor was not lowered: {0}")]
    Log(#[from] crate::measure::LogFileError),
    #[error("cannot reach the TPM to measure the lowering, so the floor was not lowered: {0}")]
    Tpm(#[from] TpmError),
    #[error("measuring the lowering failed, so the floor was not lowered: {0}")]
    Measure(Box<MeasureError>),
    #[error(
        "the lowering was measured ({event}) but the state file was not changed: {source}; the \
         event log now records a lowering that did not happen"
    )]
    AfterMeasure {
        event: String,
        source: Box<StoreError>,
    },
}

/// `verity rollback raise`: the floor of (class, name) becomes `version`; lowering is refused.
pub fn raise(
    store: &FloorStore,
    class: Class,
    name: &str,
    version: &str,
) -> Result<Change, OpError> {
    let mut l = store.lock()?;
    let change = l.floors_mut().raise(class, name, version)?;
    if change.changed() {
        l.commit()?;
    }
    Ok(change)
}

/// What a lowering did.
#[derive(Debug)]
pub struct Lowered {
    /// The floor's move.
    pub change: Change,
    /// The measurement of it.
    pub record: MeasurementRecord,
}

/// `verity rollback lower --dangerous-lower-floor`: measures the lowering into `pcr` and the
/// event log, then lowers the floor. `open_tpm` is called once the log is locked.
pub fn lower(
    store: &FloorStore,
    class: Class,
    name: &str,
    version: &str,
    log: &EventLog,
    pcr: u32,
    open_tpm: impl FnOnce() -> Result<Box<dyn Tpm>, TpmError>,
) -> Result<Lowered, OpError> {
    let mut l = store.lock()?;
    let from = l.floors().plan_lower(class, name, version)?;
    let event = lower_event(class, name, &from, version);
    let record = {
        let mut w = log.lock_for_append()?;
        let mut tpm = open_tpm()?;
        measure_text_locked(tpm.as_mut(), &mut w, pcr, &event, LOWER_EVENT_TYPE)
            .map_err(|e| OpError::Measure(Box::new(e)))?
    };
    let change = l.floors_mut().lower(class, name, version)?;
    l.commit().map_err(|source| OpError::AfterMeasure {
        event,
        source: Box::new(source),
    })?;
    Ok(Lowered { change, record })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::HashAlg;
    use crate::measure::pcr::{extend, initial_value, TEXT_EVENT_TYPES};
    use crate::measure::SoftTpm;

    fn setup() -> (tempfile::TempDir, FloorStore, EventLog) {
        let t = tempfile::tempdir().unwrap();
        let store = FloorStore::under_root(t.path());
        let log = EventLog::new(t.path().join("run/tpm2-measure.log"));
        (t, store, log)
    }

    #[test]
    fn lowering_is_measured_before_the_floor_moves() {
        let (_t, store, log) = setup();
        raise(&store, Class::Sysext, "foo", "2.0").unwrap();
        let soft = std::rc::Rc::new(std::cell::RefCell::new(SoftTpm::new([HashAlg::Sha256])));
        struct Shared(std::rc::Rc<std::cell::RefCell<SoftTpm>>);
        impl Tpm for Shared {
            fn active_banks(&mut self) -> Result<Vec<HashAlg>, TpmError> {
                self.0.borrow_mut().active_banks()
            }
            fn pcr_read(&mut self, p: u32, b: HashAlg) -> Result<Vec<u8>, TpmError> {
                self.0.borrow_mut().pcr_read(p, b)
            }
            fn pcr_extend(&mut self, p: u32, d: &[(HashAlg, Vec<u8>)]) -> Result<(), TpmError> {
                self.0.borrow_mut().pcr_extend(p, d)
            }
        }
        let s = soft.clone();
        let done = lower(&store, Class::Sysext, "foo", "1.5", &log, 13, move || {
            Ok(Box::new(Shared(s)))
        })
        .unwrap();
        assert_eq!(
            done.change,
            Change::Lowered {
                from: "2.0".into(),
                to: "1.5".into()
            }
        );
        assert_eq!(store.load().unwrap().get(Class::Sysext, "foo"), Some("1.5"));
        let recs = log.read().unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].event_type(), Some(LOWER_EVENT_TYPE));
        assert_eq!(recs[0].string(), Some("rollback-lower:sysext:foo:2.0:1.5"));
        assert_eq!(recs[0].pcr, Some(13));
        let d = HashAlg::Sha256.digest(b"rollback-lower:sysext:foo:2.0:1.5");
        assert_eq!(
            soft.borrow_mut().pcr_read(13, HashAlg::Sha256).unwrap(),
            extend(HashAlg::Sha256, &initial_value(13, HashAlg::Sha256), &d)
        );
        // Replay checks such records for consistency like image records.
        assert!(TEXT_EVENT_TYPES.contains(&LOWER_EVENT_TYPE));
    }

    #[test]
    fn no_tpm_no_lowering_and_no_record_for_refused_requests() {
        let (_t, store, log) = setup();
        raise(&store, Class::Confext, "c", "3").unwrap();
        let e = lower(&store, Class::Confext, "c", "2", &log, 12, || {
            Err(TpmError::Unreachable {
                spec: "device:/dev/tpmrm0".into(),
                reason: "absent".into(),
            })
        })
        .unwrap_err();
        assert!(matches!(e, OpError::Tpm(_)), "{e}");
        assert!(e.to_string().contains("not lowered"), "{e}");
        assert_eq!(store.load().unwrap().get(Class::Confext, "c"), Some("3"));
        // Raising through `lower`, or lowering what has no floor, is refused before the TPM.
        for (name, v) in [("c", "4"), ("none", "1")] {
            let e = lower(&store, Class::Confext, name, v, &log, 12, || {
                panic!("the TPM is not opened for a refused request")
            })
            .unwrap_err();
            assert!(matches!(e, OpError::Floors(_)), "{e}");
        }
        assert!(log.read().map(|r| r.is_empty()).unwrap_or(true));
        assert!(matches!(
            raise(&store, Class::Confext, "c", "2"),
            Err(OpError::Floors(FloorsError::WouldLower { .. }))
        ));
    }
}

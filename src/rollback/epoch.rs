//! The TPM-backed epoch: a number that only grows, kept in the TPM where deleting or restoring a
//! file cannot reach it. Images carry `VERITY_EPOCH=N`; while the epoch index exists, an image
//! whose epoch is below the TPM's is refused ([`super::decide()`]).
//!
//! Two NV indexes in the TPM owner range (0x01800000-0x01BFFFFF, the TCG registry's range for
//! the platform owner; outside the sub-range the registry delegates to systemd,
//! 0x01800400-0x018005FF):
//!
//! - [`DEFAULT_EPOCH_INDEX`] `0x01900000`, an **NV counter** (`TPM_NT_COUNTER`): 8 bytes that only
//!   `TPM2_NV_Increment` changes, by one. Even undefining and defining it again cannot make it
//!   smaller: a new counter starts above the highest value any counter of this TPM ever had.
//! - the next index, `0x01900001`, an ordinary 8-byte index holding the counter's value at
//!   `epoch init` (the **base**). Because of the rule just given, a counter's first value is not
//!   0 on a TPM that had counters before, so the epoch is `counter - base`: 0 after `init`, one
//!   more after each `advance`, the same on every machine of a fleet.
//!
//! Both are written with owner authorisation (`TPMA_NV_OWNERWRITE`, nothing weaker) and read with
//! their own empty authorisation (`TPMA_NV_AUTHREAD`), so reading needs no secret and
//! `tpm2_nvread 0x01900000` shows the counter. Undefining either needs owner authorisation too:
//! the epoch holds against anyone who does not have it.
//!
//! Reading fails closed: an index of the wrong type or size, a base that something weaker than
//! the owner may write, a half-done `init`, or a counter below its base is an error, never "no
//! epoch". Only a missing counter index means "no epoch".

use crate::measure::TpmError;
use thiserror::Error;

/// The epoch counter's NV index (its base is the next index).
pub const DEFAULT_EPOCH_INDEX: u32 = 0x0190_0000;

/// The TPM owner's NV index range (TCG "Registry of Reserved TPM 2.0 Handles and Localities").
pub const OWNER_RANGE: std::ops::RangeInclusive<u32> = 0x0180_0000..=0x01BF_FFFF;

/// The NV index type, as far as the epoch cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NvKind {
    /// `TPM_NT_COUNTER`.
    Counter,
    /// `TPM_NT_ORDINARY`.
    Ordinary,
    /// Bits, extend or PIN indexes.
    Other,
}

/// What the TPM says about an NV index (its public area).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvInfo {
    /// Its type.
    pub kind: NvKind,
    /// Its data size in bytes.
    pub size: usize,
    /// `TPMA_NV_WRITTEN`: it has a value.
    pub written: bool,
    /// `TPMA_NV_AUTHWRITE` or `TPMA_NV_POLICYWRITE`: writable without owner authorisation.
    pub weak_write: bool,
}

/// The NV operations the epoch needs. Real: tss-esapi ([`super::nv_esapi`]); fake: [`SoftNv`].
pub trait EpochNv {
    /// The public area of `index`, or None when it is not defined.
    fn nv_info(&mut self, index: u32) -> Result<Option<NvInfo>, TpmError>;
    /// Defines an 8-byte counter (owner write, auth/owner read, no dictionary-attack lockout).
    fn define_counter(&mut self, index: u32) -> Result<(), TpmError>;
    /// Defines an 8-byte ordinary index with the same authorisations.
    fn define_value(&mut self, index: u32) -> Result<(), TpmError>;
    /// `TPM2_NV_Increment` with owner authorisation.
    fn increment(&mut self, index: u32) -> Result<(), TpmError>;
    /// Reads the 8 bytes (big-endian, as the TPM keeps counters) with the index's own auth.
    fn read_u64(&mut self, index: u32) -> Result<u64, TpmError>;
    /// Writes 8 bytes big-endian with owner authorisation.
    fn write_u64(&mut self, index: u32, value: u64) -> Result<(), TpmError>;
}

/// The epoch as read from the TPM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Epoch {
    /// `counter - base`.
    pub epoch: u64,
    /// The counter's value.
    pub counter: u64,
    /// The counter's value at `init`.
    pub base: u64,
    /// The counter's index.
    pub index: u32,
}

/// Why the epoch could not be read or changed. Every one of these refuses admission.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EpochError {
    #[error("epoch NV index {index:#010x}: {op}: {source}")]
    Tpm {
        index: u32,
        op: &'static str,
        source: TpmError,
    },
    #[error(
        "NV index {0:#010x} is not in the TPM owner range 0x01800000-0x01bffffe (the counter \
         and its base take two consecutive indexes)"
    )]
    NotOwnerRange(u32),
    #[error("epoch NV index {index:#010x} ({role}) is a {found:?} index, not a{want}")]
    WrongKind {
        index: u32,
        role: &'static str,
        found: NvKind,
        want: &'static str,
    },
    #[error("epoch NV index {index:#010x} ({role}) holds {size} bytes, not 8")]
    WrongSize {
        index: u32,
        role: &'static str,
        size: usize,
    },
    #[error(
        "epoch base NV index {0:#010x} may be written without owner authorisation (AUTHWRITE or \
         POLICYWRITE), so it cannot be trusted to hold the epoch's start"
    )]
    WeakBase(u32),
    #[error(
        "the epoch at NV index {index:#010x} is incomplete ({what}); run `verity rollback epoch \
         init` to finish it"
    )]
    Incomplete { index: u32, what: &'static str },
    #[error("there is no epoch at NV index {0:#010x}; run `verity rollback epoch init` first")]
    NotInitialized(u32),
    #[error(
        "the epoch counter at NV index {index:#010x} ({counter}) is below its base ({base}): \
         the indexes were tampered with"
    )]
    CounterBelowBase { index: u32, counter: u64, base: u64 },
}

fn tpm(index: u32, op: &'static str) -> impl FnOnce(TpmError) -> EpochError {
    move |source| EpochError::Tpm { index, op, source }
}

fn base_index(index: u32) -> Result<u32, EpochError> {
    if OWNER_RANGE.contains(&index) && index < *OWNER_RANGE.end() {
        Ok(index + 1)
    } else {
        Err(EpochError::NotOwnerRange(index))
    }
}

fn check(info: NvInfo, index: u32, role: &'static str, want: NvKind) -> Result<NvInfo, EpochError> {
    if info.kind != want {
        return Err(EpochError::WrongKind {
            index,
            role,
            found: info.kind,
            want: if want == NvKind::Counter {
                " counter"
            } else {
                "n ordinary one"
            },
        });
    }
    if info.size != 8 {
        return Err(EpochError::WrongSize {
            index,
            role,
            size: info.size,
        });
    }
    if role == "base" && info.weak_write {
        return Err(EpochError::WeakBase(index));
    }
    Ok(info)
}

/// Reads the epoch: None when the counter index does not exist.
pub fn read(nv: &mut dyn EpochNv, index: u32) -> Result<Option<Epoch>, EpochError> {
    let bidx = base_index(index)?;
    let counter = nv.nv_info(index).map_err(tpm(index, "read public"))?;
    let base = nv.nv_info(bidx).map_err(tpm(bidx, "read public"))?;
    let Some(counter) = counter else {
        return match base {
            None => Ok(None),
            Some(_) => Err(EpochError::Incomplete {
                index,
                what: "the base exists but the counter does not",
            }),
        };
    };
    let counter = check(counter, index, "counter", NvKind::Counter)?;
    let base = base.ok_or(EpochError::Incomplete {
        index,
        what: "the base index is not defined",
    })?;
    let base = check(base, bidx, "base", NvKind::Ordinary)?;
    if !counter.written {
        return Err(EpochError::Incomplete {
            index,
            what: "the counter was never incremented",
        });
    }
    if !base.written {
        return Err(EpochError::Incomplete {
            index,
            what: "the base was never written",
        });
    }
    let c = nv.read_u64(index).map_err(tpm(index, "read the counter"))?;
    let b = nv.read_u64(bidx).map_err(tpm(bidx, "read the base"))?;
    if c < b {
        return Err(EpochError::CounterBelowBase {
            index,
            counter: c,
            base: b,
        });
    }
    Ok(Some(Epoch {
        epoch: c - b,
        counter: c,
        base: b,
        index,
    }))
}

/// `epoch init`: defines whatever is missing, so a half-done init is finished, and an existing
/// epoch is left as it is. Returns the epoch and whether anything was changed.
pub fn init(nv: &mut dyn EpochNv, index: u32) -> Result<(Epoch, bool), EpochError> {
    let bidx = base_index(index)?;
    let mut changed = false;
    let counter = match nv.nv_info(index).map_err(tpm(index, "read public"))? {
        Some(i) => check(i, index, "counter", NvKind::Counter)?,
        None => {
            nv.define_counter(index)
                .map_err(tpm(index, "define the counter"))?;
            changed = true;
            nv.nv_info(index)
                .map_err(tpm(index, "read public"))?
                .ok_or(EpochError::Incomplete {
                    index,
                    what: "the counter vanished right after it was defined",
                })?
        }
    };
    if !counter.written {
        // A counter has no value until its first increment.
        nv.increment(index)
            .map_err(tpm(index, "increment the counter"))?;
        changed = true;
    }
    let base = match nv.nv_info(bidx).map_err(tpm(bidx, "read public"))? {
        Some(i) => check(i, bidx, "base", NvKind::Ordinary)?,
        None => {
            nv.define_value(bidx)
                .map_err(tpm(bidx, "define the base"))?;
            changed = true;
            nv.nv_info(bidx)
                .map_err(tpm(bidx, "read public"))?
                .ok_or(EpochError::Incomplete {
                    index,
                    what: "the base vanished right after it was defined",
                })?
        }
    };
    if !base.written {
        let c = nv.read_u64(index).map_err(tpm(index, "read the counter"))?;
        nv.write_u64(bidx, c).map_err(tpm(bidx, "write the base"))?;
        changed = true;
    }
    let epoch = read(nv, index)?.ok_or(EpochError::NotInitialized(index))?;
    Ok((epoch, changed))
}

/// `epoch advance`: one increment of the counter; every image below the new epoch is refused
/// from now on, for good.
pub fn advance(nv: &mut dyn EpochNv, index: u32) -> Result<Epoch, EpochError> {
    read(nv, index)?.ok_or(EpochError::NotInitialized(index))?;
    nv.increment(index)
        .map_err(tpm(index, "increment the counter"))?;
    read(nv, index)?.ok_or(EpochError::NotInitialized(index))
}

/// Opens the TPM named by `spec` (`device:...` or `swtpm:...`) for the epoch's NV commands.
pub fn open_nv(spec: &str) -> Result<Box<dyn EpochNv>, TpmError> {
    let parsed = crate::measure::TpmSpec::parse(spec)?;
    #[cfg(feature = "tpm")]
    {
        Ok(Box::new(crate::measure::esapi::EsapiTpm::open(&parsed)?))
    }
    #[cfg(not(feature = "tpm"))]
    {
        Err(TpmError::NotBuilt {
            spec: parsed.to_string(),
        })
    }
}

/// A software model of a TPM's NV counters, for tests of the logic above: counters start above
/// the highest value any counter ever had, as TPM2_NV_Increment specifies.
#[derive(Debug, Default, Clone)]
pub struct SoftNv {
    indexes: std::collections::BTreeMap<u32, (NvInfo, u64)>,
    max_counter: u64,
    /// Fail every operation as an unreachable TPM.
    pub unreachable: bool,
}

impl SoftNv {
    /// A TPM with no NV indexes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Defines an index directly (to model someone else's index at ours).
    pub fn put(&mut self, index: u32, info: NvInfo, value: u64) {
        self.indexes.insert(index, (info, value));
    }

    /// Undefines an index (the owner may); a counter's value is remembered as the maximum.
    pub fn undefine(&mut self, index: u32) {
        if let Some((i, v)) = self.indexes.remove(&index) {
            if i.kind == NvKind::Counter {
                self.max_counter = self.max_counter.max(v);
            }
        }
    }

    fn up(&self) -> Result<(), TpmError> {
        if self.unreachable {
            return Err(TpmError::Unreachable {
                spec: "soft".into(),
                reason: "switched off".into(),
            });
        }
        Ok(())
    }

    fn refused(op: &'static str, reason: &str) -> TpmError {
        TpmError::Refused {
            op,
            reason: reason.into(),
        }
    }

    fn define(&mut self, index: u32, kind: NvKind) -> Result<(), TpmError> {
        self.up()?;
        if self.indexes.contains_key(&index) {
            return Err(Self::refused("TPM2_NV_DefineSpace", "NV_DEFINED"));
        }
        let info = NvInfo {
            kind,
            size: 8,
            written: false,
            weak_write: false,
        };
        self.indexes.insert(index, (info, 0));
        Ok(())
    }
}

impl EpochNv for SoftNv {
    fn nv_info(&mut self, index: u32) -> Result<Option<NvInfo>, TpmError> {
        self.up()?;
        Ok(self.indexes.get(&index).map(|(i, _)| *i))
    }

    fn define_counter(&mut self, index: u32) -> Result<(), TpmError> {
        self.define(index, NvKind::Counter)
    }

    fn define_value(&mut self, index: u32) -> Result<(), TpmError> {
        self.define(index, NvKind::Ordinary)
    }

    fn increment(&mut self, index: u32) -> Result<(), TpmError> {
        self.up()?;
        let max = self.max_counter;
        let (info, v) = self
            .indexes
            .get_mut(&index)
            .ok_or_else(|| Self::refused("TPM2_NV_Increment", "HANDLE"))?;
        if info.kind != NvKind::Counter {
            return Err(Self::refused("TPM2_NV_Increment", "ATTRIBUTES"));
        }
        if !info.written {
            *v = max;
            info.written = true;
        }
        *v += 1;
        Ok(())
    }

    fn read_u64(&mut self, index: u32) -> Result<u64, TpmError> {
        self.up()?;
        match self.indexes.get(&index) {
            None => Err(Self::refused("TPM2_NV_Read", "HANDLE")),
            Some((i, _)) if !i.written => Err(Self::refused("TPM2_NV_Read", "NV_UNINITIALIZED")),
            Some((_, v)) => Ok(*v),
        }
    }

    fn write_u64(&mut self, index: u32, value: u64) -> Result<(), TpmError> {
        self.up()?;
        let (info, v) = self
            .indexes
            .get_mut(&index)
            .ok_or_else(|| Self::refused("TPM2_NV_Write", "HANDLE"))?;
        if info.kind != NvKind::Ordinary {
            return Err(Self::refused("TPM2_NV_Write", "ATTRIBUTES"));
        }
        *v = value;
        info.written = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: u32 = DEFAULT_EPOCH_INDEX;

    #[test]
    fn init_advance_read() {
        let mut nv = SoftNv::new();
        assert_eq!(read(&mut nv, I), Ok(None));
        assert_eq!(advance(&mut nv, I), Err(EpochError::NotInitialized(I)));
        let (e, changed) = init(&mut nv, I).unwrap();
        assert!(changed);
        assert_eq!((e.epoch, e.counter, e.base), (0, 1, 1));
        // init again changes nothing.
        assert_eq!(init(&mut nv, I).unwrap(), (e, false));
        assert_eq!(advance(&mut nv, I).unwrap().epoch, 1);
        let e = advance(&mut nv, I).unwrap();
        assert_eq!((e.epoch, e.counter, e.base), (2, 3, 1));
        assert_eq!(read(&mut nv, I), Ok(Some(e)));
    }

    #[test]
    fn a_tpm_that_had_counters_still_starts_at_epoch_zero() {
        let mut nv = SoftNv::new();
        nv.define_counter(0x0180_0100).unwrap();
        for _ in 0..41 {
            nv.increment(0x0180_0100).unwrap();
        }
        nv.undefine(0x0180_0100);
        let (e, _) = init(&mut nv, I).unwrap();
        assert_eq!((e.epoch, e.counter), (0, 42));
        // The owner deletes the counter and defines it again: it comes back higher, never lower.
        advance(&mut nv, I).unwrap();
        nv.undefine(I);
        assert!(matches!(
            read(&mut nv, I),
            Err(EpochError::Incomplete { .. })
        ));
        let (e, changed) = init(&mut nv, I).unwrap();
        assert!(changed);
        assert!(e.epoch >= 1, "{e:?}");
    }

    #[test]
    fn half_done_and_foreign_indexes_fail_closed() {
        // A crash after defining the counter: read refuses, init finishes.
        let mut nv = SoftNv::new();
        nv.define_counter(I).unwrap();
        assert!(matches!(
            read(&mut nv, I),
            Err(EpochError::Incomplete { .. })
        ));
        nv.increment(I).unwrap();
        let e = read(&mut nv, I).unwrap_err();
        assert!(e.to_string().contains("base index is not defined"), "{e}");
        nv.define_value(I + 1).unwrap();
        assert!(read(&mut nv, I)
            .unwrap_err()
            .to_string()
            .contains("never written"));
        assert_eq!(init(&mut nv, I).unwrap().0.epoch, 0);

        // Someone else's ordinary index where the counter goes.
        let ordinary = NvInfo {
            kind: NvKind::Ordinary,
            size: 8,
            written: true,
            weak_write: false,
        };
        let mut nv = SoftNv::new();
        nv.put(I, ordinary, 0);
        assert!(matches!(
            read(&mut nv, I),
            Err(EpochError::WrongKind { .. })
        ));
        assert!(matches!(
            init(&mut nv, I),
            Err(EpochError::WrongKind { .. })
        ));

        // A base anyone may write is no base.
        let mut nv = SoftNv::new();
        init(&mut nv, I).unwrap();
        nv.put(
            I + 1,
            NvInfo {
                weak_write: true,
                ..ordinary
            },
            1,
        );
        assert_eq!(read(&mut nv, I), Err(EpochError::WeakBase(I + 1)));
        // A base above the counter is tampering.
        nv.put(I + 1, ordinary, 99);
        assert!(matches!(
            read(&mut nv, I),
            Err(EpochError::CounterBelowBase { .. })
        ));
        nv.put(
            I + 1,
            NvInfo {
                size: 4,
                ..ordinary
            },
            0,
        );
        assert!(matches!(
            read(&mut nv, I),
            Err(EpochError::WrongSize { .. })
        ));

        // Out of range, and the TPM failing.
        assert_eq!(
            read(&mut nv, 0x0100_0000),
            Err(EpochError::NotOwnerRange(0x0100_0000))
        );
        assert_eq!(
            read(&mut nv, 0x01BF_FFFF),
            Err(EpochError::NotOwnerRange(0x01BF_FFFF))
        );
        nv.unreachable = true;
        assert!(matches!(read(&mut nv, I), Err(EpochError::Tpm { .. })));
    }
}

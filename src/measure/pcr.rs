//! PCR bank math (pure core): the extend operation `PCR = H(PCR || digest)`, the per-bank digests
//! of an event string, prediction of the values a TPM will hold after a list of events, and replay
//! of an event log against the values a TPM actually holds, naming the first record that does not
//! fit.

use super::eventlog::LogRecord;
use crate::digest::HashAlg;
use crate::hex;
use std::collections::HashMap;
use thiserror::Error;

/// PCRs 0-23 exist on every PC-client TPM.
pub const PCR_COUNT: u32 = 24;

/// Event types whose digest is, by definition, the plain hash of the record's string. Replay checks
/// that such records are internally consistent (a record whose digest is not the hash of the text
/// it shows is a lie, whatever the PCR says). systemd's `volume-key` (an HMAC) is not in here.
pub const TEXT_EVENT_TYPES: &[&str] = &[
    "sysext",
    "confext",
    "nextroot",
    "rollback-lower",
    "phase",
    "machine-id",
    "filesystem",
];

/// Why a PCR computation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PcrError {
    #[error("PCR {0} does not exist (PCRs are 0-{max})", max = PCR_COUNT - 1)]
    NoSuchPcr(u32),
    #[error("a {len}-byte value fits no PCR bank (sha1 20, sha256 32, sha384 48, sha512 64)")]
    NoBankForLength { len: usize },
    #[error("{bank} value is {got} bytes, a {bank} PCR holds {want}")]
    Length {
        bank: HashAlg,
        got: usize,
        want: usize,
    },
    #[error("base value given twice for the {0} bank")]
    DuplicateBase(HashAlg),
    #[error("base value given for the {0} bank, which is not among the banks to predict")]
    BaseForUnusedBank(HashAlg),
}

/// Checks that `pcr` exists.
pub fn check_pcr(pcr: u32) -> Result<(), PcrError> {
    if pcr < PCR_COUNT {
        Ok(())
    } else {
        Err(PcrError::NoSuchPcr(pcr))
    }
}

/// The value a PCR holds after a TPM reset: zero, except the locality-4 PCRs 17-22 which start
/// as all ones on PC-client TPMs (swtpm does the same).
pub fn initial_value(pcr: u32, bank: HashAlg) -> Vec<u8> {
    let fill = if (17..=22).contains(&pcr) { 0xff } else { 0 };
    vec![fill; bank.digest_size()]
}

/// `H(old || digest)` in `bank`: what TPM2_PCR_Extend does.
pub fn extend(bank: HashAlg, old: &[u8], digest: &[u8]) -> Vec<u8> {
    let mut h = bank.hasher();
    h.update(old);
    h.update(digest);
    h.finish_vec()
}

/// The digest of an event string for each bank: the UTF-8 bytes, no trailing NUL (DESIGN.md 5).
pub fn event_digests(banks: &[HashAlg], event: &str) -> Vec<(HashAlg, Vec<u8>)> {
    banks
        .iter()
        .map(|&b| (b, b.digest(event.as_bytes())))
        .collect()
}

/// The bank whose PCRs are `len` bytes long (the lengths are all different).
pub fn bank_for_length(len: usize) -> Result<HashAlg, PcrError> {
    [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ]
    .into_iter()
    .find(|b| b.digest_size() == len)
    .ok_or(PcrError::NoBankForLength { len })
}

/// The values `pcr` will hold in each of `banks` after extending the digests of `events` in order,
/// starting from `bases` (per bank; banks without a base start from the reset value).
pub fn predict(
    pcr: u32,
    banks: &[HashAlg],
    bases: &[(HashAlg, Vec<u8>)],
    events: &[String],
) -> Result<Vec<(HashAlg, Vec<u8>)>, PcrError> {
    check_pcr(pcr)?;
    for (i, (bank, value)) in bases.iter().enumerate() {
        if bases[..i].iter().any(|(b, _)| b == bank) {
            return Err(PcrError::DuplicateBase(*bank));
        }
        if !banks.contains(bank) {
            return Err(PcrError::BaseForUnusedBank(*bank));
        }
        if value.len() != bank.digest_size() {
            return Err(PcrError::Length {
                bank: *bank,
                got: value.len(),
                want: bank.digest_size(),
            });
        }
    }
    Ok(banks
        .iter()
        .map(|&bank| {
            let mut v = bases
                .iter()
                .find(|(b, _)| *b == bank)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| initial_value(pcr, bank));
            for e in events {
                v = extend(bank, &v, &bank.digest(e.as_bytes()));
            }
            (bank, v)
        })
        .collect())
}

/// A record of the log that does not fit, by its position (0-based, as CEL's `recnum`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misfit {
    /// Index of the record in the log.
    pub record: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// The replay of one PCR in one bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankReplay {
    pub pcr: u32,
    pub bank: HashAlg,
    /// What the log says the PCR should hold (None when a record lacks this bank's digest).
    pub expected: Option<Vec<u8>>,
    /// What the TPM holds (None when it was not read).
    pub actual: Option<Vec<u8>>,
    /// How many records of the log extend this PCR.
    pub records: usize,
    /// Why it does not match, if it does not.
    pub misfit: Option<Misfit>,
}

impl BankReplay {
    /// Whether the log reproduces the TPM's value.
    pub fn ok(&self) -> bool {
        self.misfit.is_none()
    }
}

/// The result of replaying a whole log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplayReport {
    /// One entry per (PCR touched by the log, active bank), sorted by PCR then bank.
    pub banks: Vec<BankReplay>,
    /// Records whose digest is not the hash of their own string.
    pub inconsistent: Vec<Misfit>,
    /// Records without a `pcr` field (NvPCR records), which no PCR replay covers.
    pub skipped: usize,
}

impl ReplayReport {
    /// True when every PCR matches and every record is consistent.
    pub fn ok(&self) -> bool {
        self.inconsistent.is_empty() && self.banks.iter().all(BankReplay::ok)
    }

    /// The earliest record that does not fit, over all PCRs and checks.
    pub fn first_misfit(&self) -> Option<&Misfit> {
        self.banks
            .iter()
            .filter_map(|b| b.misfit.as_ref())
            .chain(self.inconsistent.iter())
            .min_by_key(|m| m.record)
    }
}

/// The PCRs the log extends, sorted.
pub fn touched_pcrs(records: &[LogRecord]) -> Vec<u32> {
    let mut v: Vec<u32> = records.iter().filter_map(|r| r.pcr).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Recomputes every PCR the log touches, in every active bank, from the reset value, and compares
/// with `actual` (values read from the TPM, keyed by PCR and bank).
pub fn replay(
    records: &[LogRecord],
    active: &[HashAlg],
    actual: &HashMap<(u32, HashAlg), Vec<u8>>,
) -> ReplayReport {
    let mut report = ReplayReport {
        skipped: records.iter().filter(|r| r.pcr.is_none()).count(),
        ..Default::default()
    };
    for (i, r) in records.iter().enumerate() {
        if let Some(m) = inconsistency(i, r) {
            report.inconsistent.push(m);
        }
    }
    let mut banks = active.to_vec();
    banks.sort_by_key(|b| b.digest_size());
    banks.dedup();
    for pcr in touched_pcrs(records) {
        let idxs: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].pcr == Some(pcr))
            .collect();
        for &bank in &banks {
            report.banks.push(replay_one(
                records,
                &idxs,
                pcr,
                bank,
                actual.get(&(pcr, bank)),
            ));
        }
    }
    report
}

fn replay_one(
    records: &[LogRecord],
    idxs: &[usize],
    pcr: u32,
    bank: HashAlg,
    actual: Option<&Vec<u8>>,
) -> BankReplay {
    let mut states = vec![initial_value(pcr, bank)];
    let mut misfit = None;
    for &i in idxs {
        match records[i].digest(bank) {
            Some(d) => {
                let next = extend(bank, states.last().expect("non-empty"), d);
                states.push(next);
            }
            None => {
                misfit = Some(Misfit {
                    record: i,
                    reason: format!(
                        "has no {bank} digest, but the TPM has the {bank} bank active, so PCR {pcr} \
                         cannot be replayed in it"
                    ),
                });
                break;
            }
        }
    }
    let expected = if misfit.is_none() {
        states.last().cloned()
    } else {
        None
    };
    if misfit.is_none() {
        misfit = match actual {
            None => Some(Misfit {
                record: idxs[0],
                reason: format!("PCR {pcr} could not be read in the {bank} bank"),
            }),
            Some(a) if Some(a) == expected.as_ref() => None,
            Some(a) => Some(locate(idxs, &states, pcr, bank, a)),
        };
    }
    BankReplay {
        pcr,
        bank,
        expected,
        actual: actual.cloned(),
        records: idxs.len(),
        misfit,
    }
}

/// Finds the first record that does not fit when the final value is wrong: if the TPM holds the
/// value after k records, the (k+1)-th is the first the TPM never saw; if it holds none of them,
/// the TPM was extended outside the log and the first record is already off.
fn locate(idxs: &[usize], states: &[Vec<u8>], pcr: u32, bank: HashAlg, actual: &[u8]) -> Misfit {
    let n = idxs.len();
    match states[..n].iter().position(|s| s == actual) {
        Some(k) => Misfit {
            record: idxs[k],
            reason: format!(
                "PCR {pcr} {bank}: the TPM holds the value after the log's first {k} record(s) for \
                 this PCR; this record and the {} after it never reached the TPM",
                n - k - 1
            ),
        },
        None => Misfit {
            record: idxs[0],
            reason: format!(
                "PCR {pcr} {bank}: the TPM holds {} but the log's {n} record(s) give {}, and no \
                 prefix of them matches: the TPM was extended with events that are not in this log",
                hex::encode(actual),
                hex::encode(&states[n])
            ),
        },
    }
}

fn inconsistency(i: usize, r: &LogRecord) -> Option<Misfit> {
    let ty = r.event_type()?;
    if !TEXT_EVENT_TYPES.contains(&ty) {
        return None;
    }
    let s = r.string()?;
    r.digests.iter().find_map(|d| {
        let bank = d.bank?;
        (bank.digest(s.as_bytes()) != d.digest).then(|| Misfit {
            record: i,
            reason: format!("its {bank} digest is not the {bank} hash of its string {s:?}"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::eventlog::LogDigest;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn extend_known_answers() {
        // spec/signing.md 2.3 and the issue: PCR 11 at zero extended with sha256("foobar").
        let d = HashAlg::Sha256.digest(b"foobar");
        assert_eq!(
            hex::encode(&extend(HashAlg::Sha256, &[0; 32], &d)),
            "b6d90fdfddb4df16198e2b8ede9bdd47413b4c5dbb100ea0287b45bde42e4e41"
        );
        // spec/test-environment.md 3: PCR 13 at zero extended with sha256("hello"), then again
        // with the digest 77eb3ed2... (section 4's test program).
        let d = HashAlg::Sha256.digest(b"hello");
        let v = extend(HashAlg::Sha256, &[0; 32], &d);
        assert_eq!(
            hex::encode(&v),
            "9851312028952521510e8eaab5be94e7dc24b5fc292b2e9781173cf11ffa9878"
        );
        let d2 = h("77eb3ed2146f0081517b2542b501f97cce7118ee6a6b736ec0ce26c0b6a2b932");
        assert_eq!(
            hex::encode(&extend(HashAlg::Sha256, &v, &d2)),
            "d0ab1b459ed94c61e06096062a4f95068f18b77892a2f861cacff7583f16d213"
        );
    }

    #[test]
    fn initial_values_and_lengths() {
        assert_eq!(initial_value(13, HashAlg::Sha1), vec![0; 20]);
        assert_eq!(initial_value(17, HashAlg::Sha256), vec![0xff; 32]);
        assert_eq!(initial_value(23, HashAlg::Sha512), vec![0; 64]);
        for (len, bank) in [
            (20, HashAlg::Sha1),
            (32, HashAlg::Sha256),
            (48, HashAlg::Sha384),
            (64, HashAlg::Sha512),
        ] {
            assert_eq!(bank_for_length(len), Ok(bank));
        }
        assert_eq!(
            bank_for_length(33),
            Err(PcrError::NoBankForLength { len: 33 })
        );
        assert_eq!(check_pcr(24), Err(PcrError::NoSuchPcr(24)));
    }

    #[test]
    fn predict_chains_events_and_bases() {
        let banks = [HashAlg::Sha1, HashAlg::Sha256];
        let got = predict(11, &banks, &[], &["foobar".into()]).unwrap();
        assert_eq!(
            hex::encode(&got[1].1),
            "b6d90fdfddb4df16198e2b8ede9bdd47413b4c5dbb100ea0287b45bde42e4e41"
        );
        // Predicting two events equals predicting the second from the first's result.
        let two = predict(13, &banks, &[], &["a".into(), "b".into()]).unwrap();
        let one = predict(13, &banks, &[], &["a".into()]).unwrap();
        let chained = predict(13, &banks, &one, &["b".into()]).unwrap();
        assert_eq!(two, chained);
        assert_eq!(
            predict(13, &banks, &[(HashAlg::Sha512, vec![0; 64])], &[]),
            Err(PcrError::BaseForUnusedBank(HashAlg::Sha512))
        );
        assert_eq!(
            predict(13, &banks, &[(HashAlg::Sha1, vec![0; 19])], &[]),
            Err(PcrError::Length {
                bank: HashAlg::Sha1,
                got: 19,
                want: 20
            })
        );
        assert_eq!(
            predict(
                13,
                &banks,
                &[(HashAlg::Sha1, vec![0; 20]), (HashAlg::Sha1, vec![1; 20])],
                &[]
            ),
            Err(PcrError::DuplicateBase(HashAlg::Sha1))
        );
        assert_eq!(predict(24, &banks, &[], &[]), Err(PcrError::NoSuchPcr(24)));
    }

    fn rec(pcr: u32, s: &str, banks: &[HashAlg]) -> LogRecord {
        LogRecord {
            pcr: Some(pcr),
            digests: banks
                .iter()
                .map(|&b| LogDigest {
                    hash_alg: b.name().into(),
                    bank: Some(b),
                    digest: b.digest(s.as_bytes()),
                })
                .collect(),
            content_type: Some("systemd".into()),
            content: serde_json::json!({"string": s, "eventType": "sysext"}),
        }
    }

    fn tpm_after(records: &[LogRecord], banks: &[HashAlg]) -> HashMap<(u32, HashAlg), Vec<u8>> {
        let mut m = HashMap::new();
        for r in records {
            for &b in banks {
                let p = r.pcr.unwrap();
                let old = m
                    .get(&(p, b))
                    .cloned()
                    .unwrap_or_else(|| initial_value(p, b));
                m.insert((p, b), extend(b, &old, r.digest(b).unwrap()));
            }
        }
        m
    }

    #[test]
    fn replay_matches_and_locates_misfits() {
        let banks = [HashAlg::Sha1, HashAlg::Sha256];
        let log = vec![
            rec(13, "sysext:a:00:unsigned", &banks),
            rec(12, "confext:b:01:unsigned", &banks),
            rec(13, "sysext:c:02:unsigned", &banks),
        ];
        let tpm = tpm_after(&log, &banks);
        let r = replay(&log, &banks, &tpm);
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.banks.len(), 4);
        assert_eq!(touched_pcrs(&log), vec![12, 13]);

        // The TPM never saw the last record: it is named.
        let tpm_short = tpm_after(&log[..2], &banks);
        let r = replay(&log, &banks, &tpm_short);
        assert!(!r.ok());
        assert_eq!(r.first_misfit().unwrap().record, 2);

        // The TPM saw something the log does not have: the first record of that PCR is named.
        let mut extra = vec![rec(13, "sysext:evil:03:unsigned", &banks)];
        extra.extend(log.iter().cloned());
        let r = replay(&log, &banks, &tpm_after(&extra, &banks));
        assert_eq!(r.first_misfit().unwrap().record, 0);

        // A record lacking an active bank cannot be replayed in it.
        let mut thin = log.clone();
        thin[1].digests.truncate(1);
        let r = replay(&thin, &banks, &tpm);
        let m = r.first_misfit().unwrap();
        assert_eq!(m.record, 1);
        assert!(m.reason.contains("no sha256 digest"), "{}", m.reason);

        // A record whose digest is not the hash of its string is flagged even if PCRs match.
        let mut lie = log.clone();
        lie[2].content =
            serde_json::json!({"string": "sysext:innocent:02:unsigned", "eventType": "sysext"});
        let r = replay(&lie, &banks, &tpm);
        assert!(r.banks.iter().all(BankReplay::ok));
        assert_eq!(r.inconsistent.len(), 1);
        assert_eq!(r.first_misfit().unwrap().record, 2);
    }
}

//! The offline quote check (pure core), the same checks a remote verifier makes, each named:
//! `signature` (the attestation key signed exactly these TPMS_ATTEST bytes, with the expected
//! hash, and they are a TPM-generated quote), `nonce` (extraData is the verifier's nonce, so the
//! quote is fresh), `pcr-digest` (the PCR values sent beside the quote are the ones it signed),
//! `pcr-policy` (every PCR of the policy holds an allowed value) and `event-log-replay` (the
//! event log, if one came along, replays to the quoted values).
//!
//! Every check is evaluated and reported; the verdict names the first failure in that order.
//! A check whose input is not authenticated by the one before it is skipped, not passed.

use super::pcrblob::PcrValues;
use super::policy::PcrPolicy;
use super::public::TpmPublic;
use super::quote::{verify_signature, QuoteInfo, QuoteSignature};
use crate::digest::HashAlg;
use crate::hex;
use crate::measure::pcr;
use crate::measure::LogRecord;
use std::collections::HashMap;

/// The checks, in the order their failures are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Signature,
    Nonce,
    PcrDigest,
    PcrPolicy,
    EventLogReplay,
}

impl Check {
    /// The name used in messages, `--json` and the README.
    pub fn name(self) -> &'static str {
        match self {
            Self::Signature => "signature",
            Self::Nonce => "nonce",
            Self::PcrDigest => "pcr-digest",
            Self::PcrPolicy => "pcr-policy",
            Self::EventLogReplay => "event-log-replay",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
    Skipped(String),
}

impl Outcome {
    /// `pass`, `fail` or `skipped`.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Pass(_) => "pass",
            Self::Fail(_) => "fail",
            Self::Skipped(_) => "skipped",
        }
    }

    /// The explanation.
    pub fn detail(&self) -> &str {
        match self {
            Self::Pass(s) | Self::Fail(s) | Self::Skipped(s) => s,
        }
    }
}

/// What came from the machine being attested (all untrusted).
pub struct Evidence<'a> {
    pub attest: &'a [u8],
    pub signature: &'a [u8],
    pub pcrs: &'a [u8],
    /// The event log records, if a log was sent (Err: it came but does not parse).
    pub log: Option<Result<&'a [LogRecord], String>>,
}

/// What the verifier expects.
pub struct Expect<'a> {
    /// The registered attestation key.
    pub ak: &'a TpmPublic,
    /// The nonce the verifier sent.
    pub nonce: &'a [u8],
    /// The hash the quote must be signed with.
    pub hash: HashAlg,
    /// The PCR bank the policy's values are in.
    pub bank: HashAlg,
    /// Allowed values.
    pub policy: &'a PcrPolicy,
}

/// Every check's outcome, plus what was parsed.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub results: Vec<(Check, Outcome)>,
    pub quote: Option<QuoteInfo>,
    pub values: Option<PcrValues>,
}

impl CheckReport {
    /// True when no check failed (skipped checks are not failures: a missing event log).
    pub fn ok(&self) -> bool {
        self.first_failure().is_none()
    }

    /// The first failed check and why.
    pub fn first_failure(&self) -> Option<(Check, &str)> {
        self.results.iter().find_map(|(c, o)| match o {
            Outcome::Fail(s) => Some((*c, s.as_str())),
            _ => None,
        })
    }
}

fn signature(ev: &Evidence, ex: &Expect) -> (Outcome, Option<QuoteInfo>) {
    let sig = match QuoteSignature::parse(ev.signature) {
        Ok(s) => s,
        Err(e) => {
            return (
                Outcome::Fail(e.to_string()),
                QuoteInfo::parse(ev.attest).ok(),
            )
        }
    };
    let parsed = QuoteInfo::parse(ev.attest);
    if let Err(e) = verify_signature(ex.ak, ev.attest, &sig) {
        return (Outcome::Fail(e), parsed.ok());
    }
    if sig.hash() != ex.hash {
        return (
            Outcome::Fail(format!(
                "the quote is signed with {} but {} is expected",
                sig.hash(),
                ex.hash
            )),
            parsed.ok(),
        );
    }
    match parsed {
        Ok(q) => (
            Outcome::Pass(format!(
                "{} signature by the {} attestation key (TPM resets {}, clock {} ms)",
                sig.scheme_name(),
                ex.ak.describe(),
                q.reset_count,
                q.clock
            )),
            Some(q),
        ),
        Err(e) => (
            Outcome::Fail(format!("the signed message is not a TPM quote: {e}")),
            None,
        ),
    }
}

fn digest(ev: &Evidence, q: &QuoteInfo, hash: HashAlg) -> (Outcome, Option<PcrValues>) {
    let v = match PcrValues::parse(ev.pcrs) {
        Ok(v) => v,
        Err(e) => return (Outcome::Fail(e.to_string()), None),
    };
    let show = |s: &[super::quote::BankSelection]| {
        s.iter()
            .map(|b| format!("{}:{:?}", b.bank, b.pcrs))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if v.selection != q.selection {
        return (
            Outcome::Fail(format!(
                "the PCR values are for {} but the quote covers {}",
                show(&v.selection),
                show(&q.selection)
            )),
            None,
        );
    }
    let d = v.digest(hash);
    if d != q.pcr_digest {
        return (
            Outcome::Fail(format!(
                "the {hash} of the PCR values is {} but the quote signed {}: the values are not \
                 the quoted ones",
                hex::encode(&d),
                hex::encode(&q.pcr_digest)
            )),
            None,
        );
    }
    let n = v.values.len();
    (
        Outcome::Pass(format!("{n} PCR value(s) match the signed digest")),
        Some(v),
    )
}

fn policy(v: &PcrValues, ex: &Expect) -> Outcome {
    let mut bad = Vec::new();
    for (pcr, allowed) in &ex.policy.pcrs {
        match v.get(ex.bank, *pcr) {
            None => bad.push(format!(
                "PCR {pcr} ({}) is in the policy but not in the quote",
                ex.bank
            )),
            Some(val) if allowed.iter().any(|a| a == val) => {}
            Some(val) => bad.push(format!(
                "PCR {pcr} ({}) holds {}, which is not among the {} allowed value(s)",
                ex.bank,
                hex::encode(val),
                allowed.len()
            )),
        }
    }
    if bad.is_empty() {
        Outcome::Pass(format!(
            "PCR(s) {} hold allowed values",
            ex.policy
                .pcrs
                .keys()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        Outcome::Fail(bad.join("; "))
    }
}

fn replay(v: &PcrValues, log: &[LogRecord], bank: HashAlg) -> Outcome {
    let quoted = |p: u32| v.get(bank, p).is_some();
    let records: Vec<LogRecord> = log
        .iter()
        .filter(|r| r.pcr.is_some_and(quoted))
        .cloned()
        .collect();
    if records.is_empty() {
        return Outcome::Pass("the event log has no record for a quoted PCR".into());
    }
    let actual: HashMap<(u32, HashAlg), Vec<u8>> = v
        .values
        .iter()
        .filter(|(b, _, _)| *b == bank)
        .map(|(b, p, val)| ((*p, *b), val.clone()))
        .collect();
    let report = pcr::replay(&records, &[bank], &actual);
    match report.first_misfit() {
        None => Outcome::Pass(format!(
            "{} record(s) replay to the quoted PCR {}",
            records.len(),
            pcr::touched_pcrs(&records)
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Some(m) => Outcome::Fail(format!(
            "record {:?}: {}",
            records[m.record].string().unwrap_or(""),
            m.reason
        )),
    }
}

/// Runs every check.
pub fn check(ev: &Evidence, ex: &Expect) -> CheckReport {
    let mut results = Vec::new();
    let (sig, quote) = signature(ev, ex);
    let authentic = matches!(sig, Outcome::Pass(_));
    results.push((Check::Signature, sig));
    let Some(q) = quote else {
        for c in [
            Check::Nonce,
            Check::PcrDigest,
            Check::PcrPolicy,
            Check::EventLogReplay,
        ] {
            results.push((c, Outcome::Skipped("the quote is not a TPM quote".into())));
        }
        return CheckReport {
            results,
            quote: None,
            values: None,
        };
    };
    let nonce = if q.extra_data == ex.nonce {
        Outcome::Pass("the quote carries the expected nonce".into())
    } else {
        Outcome::Fail(format!(
            "the quote carries nonce {:?} (hex {}), not the expected one: a replayed or foreign \
             quote",
            String::from_utf8_lossy(&q.extra_data),
            hex::encode(&q.extra_data)
        ))
    };
    results.push((Check::Nonce, nonce));
    let hash = QuoteSignature::parse(ev.signature)
        .map(|s| s.hash())
        .unwrap_or(ex.hash);
    let (dig, values) = digest(ev, &q, hash);
    results.push((Check::PcrDigest, dig));
    let skipped = |why: &str| Outcome::Skipped(why.to_string());
    match &values {
        Some(v) => {
            results.push((Check::PcrPolicy, policy(v, ex)));
            results.push((
                Check::EventLogReplay,
                match &ev.log {
                    Some(Ok(log)) => replay(v, log, ex.bank),
                    Some(Err(e)) => Outcome::Fail(format!("the event log does not parse: {e}")),
                    None => skipped("no event log came with the quote"),
                },
            ));
        }
        None => {
            let why = "the PCR values are not the quoted ones";
            results.push((Check::PcrPolicy, skipped(why)));
            results.push((Check::EventLogReplay, skipped(why)));
        }
    }
    if !authentic {
        // Everything after a failed signature is attacker-controlled: keep it visible but do not
        // let it read as a pass.
        for (c, o) in results.iter_mut().skip(1) {
            if let Outcome::Pass(s) = o {
                *o = Outcome::Skipped(format!("unauthenticated: {s}"));
            }
            let _ = c;
        }
    }
    CheckReport {
        results,
        quote: Some(q),
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::public::{attr, rsa_tpm2b};
    use crate::attest::quote::{build_quote_info, build_rsa_signature, BankSelection};
    use crate::attest::wire;

    fn key() -> TpmPublic {
        TpmPublic::parse(&rsa_tpm2b(
            attr::SIGN | attr::RESTRICTED,
            wire::ALG_RSASSA,
            &[0xc5; 256],
        ))
        .unwrap()
    }

    /// A quote whose every part agrees except that no one signed it: nothing after the failed
    /// signature may read as a pass.
    #[test]
    fn an_unsigned_quote_fails_signature_and_nothing_passes() {
        let values = vec![(HashAlg::Sha256, 13, vec![0x13; 32])];
        let blob = PcrValues::build(&values);
        let q = QuoteInfo {
            qualified_signer: vec![],
            extra_data: b"n".to_vec(),
            clock: 1,
            reset_count: 0,
            restart_count: 0,
            firmware_version: 0,
            selection: vec![BankSelection {
                bank: HashAlg::Sha256,
                pcrs: vec![13],
            }],
            pcr_digest: HashAlg::Sha256.digest(&[0x13; 32]),
        };
        let attest = build_quote_info(&q);
        let sig = build_rsa_signature(wire::ALG_RSASSA, HashAlg::Sha256, &[7; 256]);
        let mut policy = PcrPolicy::default();
        policy.allow(13, [vec![0x13; 32]]);
        let k = key();
        let ex = Expect {
            ak: &k,
            nonce: b"n",
            hash: HashAlg::Sha256,
            bank: HashAlg::Sha256,
            policy: &policy,
        };
        let ev = Evidence {
            attest: &attest,
            signature: &sig,
            pcrs: &blob,
            log: None,
        };
        let r = check(&ev, &ex);
        assert_eq!(r.first_failure().unwrap().0, Check::Signature);
        assert!(!r.ok());
        let words: Vec<&str> = r.results.iter().map(|(_, o)| o.word()).collect();
        assert_eq!(words, ["fail", "skipped", "skipped", "skipped", "skipped"]);
        assert!(r.results[1].1.detail().starts_with("unauthenticated"));

        // Bytes that are not a quote at all: every later check is skipped, none passes.
        let ev = Evidence {
            attest: b"junk",
            ..ev
        };
        let r = check(&ev, &ex);
        assert_eq!(r.first_failure().unwrap().0, Check::Signature);
        assert!(r.results[1..]
            .iter()
            .all(|(_, o)| matches!(o, Outcome::Skipped(_))));
    }
}

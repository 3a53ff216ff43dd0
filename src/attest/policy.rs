//! Policies of allowed PCR values (pure core): Keylime's static `tpm_policy`
//! (`{"13": ["<hex>", ...], ...}`), parsed strictly and written canonically, and the prediction of
//! every value a PCR may hold for a set of allowed image versions.
//!
//! Keylime 7.14.3 reports a quote with a bad signature as valid when its policy is empty, and
//! treats a bare string as a substring test: so an empty policy, an empty list and a bare string
//! are refused here, and what this module writes always holds lists of full values.

use super::pcrlock::Variant;
use crate::digest::HashAlg;
use crate::hex;
use crate::measure::pcr::{self, PcrError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use thiserror::Error;

/// The largest policy file read (a policy is a few hundred bytes per allowed value).
pub const MAX_POLICY_BYTES: usize = 1 << 20;
/// The most combinations one prediction may expand to.
pub const MAX_COMBINATIONS: usize = 4096;

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("the policy is {0} bytes; at most 1 MiB is read")]
    TooLarge(usize),
    #[error("the policy is not JSON: {0}")]
    Json(String),
    #[error("the policy is not a JSON object of PCR numbers")]
    NotObject,
    #[error(
        "the policy lists no PCR: an empty policy checks nothing (Keylime 7.14.3 then even \
         accepts quotes with bad signatures), so it is refused"
    )]
    Empty,
    #[error("policy key {0:?} is not a PCR number 0-23")]
    BadKey(String),
    #[error(
        "policy PCR {0}: Keylime refuses policies on PCR 10 (IMA) and 16 (debug); leave it out"
    )]
    ReservedPcr(u32),
    #[error("policy PCR {pcr}: {what}")]
    BadValue { pcr: u32, what: String },
}

/// Allowed values per PCR (lower-case hex is the canonical form; values are kept as bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrPolicy {
    pub pcrs: BTreeMap<u32, Vec<Vec<u8>>>,
}

impl PcrPolicy {
    /// Parses a Keylime `tpm_policy`. A `"mask"` member (written by older Keylime tenants) is
    /// accepted and ignored: the PCRs are the keys.
    pub fn parse(bytes: &[u8]) -> Result<Self, PolicyError> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge(bytes.len()));
        }
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| PolicyError::Json(e.to_string()))?;
        let Value::Object(m) = v else {
            return Err(PolicyError::NotObject);
        };
        let mut out = PcrPolicy::default();
        for (k, v) in m {
            if k == "mask" && v.is_string() {
                continue;
            }
            let pcr: u32 = k
                .parse()
                .ok()
                .filter(|p: &u32| *p < pcr::PCR_COUNT && k == p.to_string())
                .ok_or_else(|| PolicyError::BadKey(k.clone()))?;
            if pcr == 10 || pcr == 16 {
                return Err(PolicyError::ReservedPcr(pcr));
            }
            let bad = |what: String| PolicyError::BadValue { pcr, what };
            let Value::Array(items) = v else {
                return Err(bad(
                    "the allowed values must be a list of hex strings (a bare string would be a \
                     substring test in Keylime)"
                        .into(),
                ));
            };
            if items.is_empty() {
                return Err(bad("the list of allowed values is empty".into()));
            }
            let mut vals = Vec::new();
            for it in items {
                let s = it
                    .as_str()
                    .ok_or_else(|| bad(format!("{it} is not a hex string")))?;
                let b = hex::decode(s.trim_start_matches("0x"))
                    .map_err(|e| bad(format!("{s:?}: {e}")))?;
                pcr::bank_for_length(b.len()).map_err(|e| bad(format!("{s:?}: {e}")))?;
                if !vals.contains(&b) {
                    vals.push(b);
                }
            }
            out.pcrs.insert(pcr, vals);
        }
        if out.pcrs.is_empty() {
            return Err(PolicyError::Empty);
        }
        Ok(out)
    }

    /// The canonical JSON: PCR keys as decimal strings, values as lists of lower-case hex.
    pub fn to_json(&self) -> String {
        let m: Map<String, Value> = self
            .pcrs
            .iter()
            .map(|(p, vals)| {
                (
                    p.to_string(),
                    Value::Array(vals.iter().map(|v| Value::String(hex::encode(v))).collect()),
                )
            })
            .collect();
        Value::Object(m).to_string()
    }

    /// Adds allowed values for `pcr` (duplicates dropped, order kept).
    pub fn allow(&mut self, pcr: u32, values: impl IntoIterator<Item = Vec<u8>>) {
        let e = self.pcrs.entry(pcr).or_default();
        for v in values {
            if !e.contains(&v) {
                e.push(v);
            }
        }
    }
}

/// What one PCR is predicted from: a starting value, fixed events measured first, then one slot
/// per image name in the order the merge measures them, each slot listing that image's allowed
/// versions (their event strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrPlan {
    pub pcr: u32,
    pub prefix: Vec<String>,
    pub slots: Vec<Vec<String>>,
}

/// Why a prediction was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PredictError {
    #[error(transparent)]
    Pcr(#[from] PcrError),
    #[error(
        "PCR {pcr}: the allowed versions combine into {n} possible values, more than {max}; \
         allow fewer versions per image"
    , max = MAX_COMBINATIONS)]
    TooMany { pcr: u32, n: u128 },
    #[error("PCR {0}: nothing to predict (no event and no image)")]
    Nothing(u32),
}

impl PcrPlan {
    /// Every combination of one version per slot, as the event strings measured in order.
    pub fn variants(&self) -> Result<Vec<Vec<String>>, PredictError> {
        let n: u128 = self.slots.iter().map(|s| s.len() as u128).product();
        if n > MAX_COMBINATIONS as u128 {
            return Err(PredictError::TooMany { pcr: self.pcr, n });
        }
        if self.prefix.is_empty() && self.slots.is_empty() {
            return Err(PredictError::Nothing(self.pcr));
        }
        let mut out = vec![self.prefix.clone()];
        for slot in &self.slots {
            let mut next = Vec::with_capacity(out.len() * slot.len());
            for seq in &out {
                for ev in slot {
                    let mut s = seq.clone();
                    s.push(ev.clone());
                    next.push(s);
                }
            }
            out = next;
        }
        Ok(out)
    }

    /// Every value the PCR may hold in `bank`, starting from `base` (default: the reset value),
    /// in the order of [`Self::variants`] with duplicates dropped.
    pub fn values(&self, bank: HashAlg, base: Option<&[u8]>) -> Result<Vec<Vec<u8>>, PredictError> {
        let bases: Vec<(HashAlg, Vec<u8>)> =
            base.map(|b| vec![(bank, b.to_vec())]).unwrap_or_default();
        let mut vals: Vec<Vec<u8>> = Vec::new();
        for seq in self.variants()? {
            let v = pcr::predict(self.pcr, &[bank], &bases, &seq)?;
            let v = v.into_iter().next().expect("one bank in, one out").1;
            if !vals.contains(&v) {
                vals.push(v);
            }
        }
        Ok(vals)
    }

    /// The records of each slot, one [`Variant`] per allowed version, for systemd-pcrlock.
    pub fn pcrlock_variants(&self, banks: &[HashAlg]) -> Vec<Vec<Variant>> {
        let mut out = Vec::new();
        if !self.prefix.is_empty() {
            out.push(vec![Variant::of_events(self.pcr, banks, &self.prefix)]);
        }
        for slot in &self.slots {
            out.push(
                slot.iter()
                    .map(|e| Variant::of_events(self.pcr, banks, std::slice::from_ref(e)))
                    .collect(),
            );
        }
        out
    }
}

/// Groups image events into slots: events with the same image name are alternatives of each
/// other; names are measured in byte order of the name (the order the merge discovers and
/// measures them). Returns the slots, and within each the distinct event strings in input order.
pub fn slots_by_name(events: &[(String, String)]) -> Vec<Vec<String>> {
    let mut by: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, ev) in events {
        let e = by.entry(name.as_str()).or_default();
        if !e.contains(ev) {
            e.push(ev.clone());
        }
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_canonicalises_and_refuses_traps() {
        let p = PcrPolicy::parse(
            br#"{"13":["AB00000000000000000000000000000000000000000000000000000000000000","ab00000000000000000000000000000000000000000000000000000000000000"],"mask":"0x2000"}"#,
        )
        .unwrap();
        assert_eq!(p.pcrs[&13].len(), 1, "duplicates after case folding merge");
        assert_eq!(
            p.to_json(),
            r#"{"13":["ab00000000000000000000000000000000000000000000000000000000000000"]}"#
        );
        for (bad, why) in [
            (&br#"{}"#[..], "empty policy"),
            (br#"{"mask":"0x0"}"#, "empty policy"),
            (br#"[]"#, "not a JSON object"),
            (br#"{"13":"ab"}"#, "substring"),
            (br#"{"13":[]}"#, "empty"),
            (br#"{"24":["00"]}"#, "not a PCR number"),
            (br#"{"013":["00"]}"#, "not a PCR number"),
            (br#"{"10":["00"]}"#, "PCR 10"),
            (br#"{"13":["abc"]}"#, "odd length"),
            (br#"{"13":["abcd"]}"#, "fits no PCR bank"),
            (br#"{"13":[1]}"#, "not a hex string"),
        ] {
            let e = PcrPolicy::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn plan_expands_versions_in_merge_order() {
        let slots = slots_by_name(&[
            ("zeta".into(), "sysext:zeta:01:x".into()),
            ("alpha".into(), "sysext:alpha:02:x".into()),
            ("alpha".into(), "sysext:alpha:03:x".into()),
            ("alpha".into(), "sysext:alpha:02:x".into()),
        ]);
        assert_eq!(
            slots,
            vec![
                vec!["sysext:alpha:02:x".to_string(), "sysext:alpha:03:x".into()],
                vec!["sysext:zeta:01:x".to_string()]
            ]
        );
        let plan = PcrPlan {
            pcr: 13,
            prefix: vec![],
            slots,
        };
        let vars = plan.variants().unwrap();
        assert_eq!(vars.len(), 2);
        assert_eq!(vars[1], vec!["sysext:alpha:03:x", "sysext:zeta:01:x"]);
        let vals = plan.values(HashAlg::Sha256, None).unwrap();
        // Each value is the chain of extends of its own variant (independent recomputation).
        let chain = |evs: &[String]| {
            let mut v = vec![0u8; 32];
            for e in evs {
                let d = HashAlg::Sha256.digest(e.as_bytes());
                v = HashAlg::Sha256.digest(&[v.as_slice(), d.as_slice()].concat());
            }
            v
        };
        assert_eq!(vals, vec![chain(&vars[0]), chain(&vars[1])]);
        let big = PcrPlan {
            pcr: 13,
            prefix: vec![],
            slots: vec![(0..100).map(|i| i.to_string()).collect(); 3],
        };
        assert!(matches!(
            big.variants(),
            Err(PredictError::TooMany { n: 1_000_000, .. })
        ));
    }
}

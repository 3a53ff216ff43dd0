//! systemd-pcrlock component files (pure core): the uapi `.pcrlock` JSON,
//! `{"records":[{"pcr":N,"digests":[{"hashAlg":"sha256","digest":"<hex>"}]}]}` (CEL-JSON records
//! without `recnum`/`content`), one file per variant of a component; alternatives of one
//! component go into a `NNN-name.pcrlock.d/` directory. systemd-pcrlock drops from its policy
//! every PCR whose log records it cannot match to a component, so without such files for our
//! measurements it silently stops locking PCR 13.

use crate::digest::HashAlg;
use crate::hex;
use crate::measure::pcr;
use serde_json::{json, Value};
use thiserror::Error;

/// One record: the PCR and its digest per bank.
pub type Record = (u32, Vec<(HashAlg, Vec<u8>)>);

/// One variant of a component: the records it measures, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub records: Vec<Record>,
}

/// Why a `.pcrlock` file was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("pcrlock file: {0}")]
pub struct PcrlockError(pub String);

impl Variant {
    /// The records of measuring `events` (event strings) into `pcr` in every bank of `banks`.
    pub fn of_events(pcr: u32, banks: &[HashAlg], events: &[String]) -> Self {
        Self {
            records: events
                .iter()
                .map(|e| (pcr, pcr::event_digests(banks, e)))
                .collect(),
        }
    }

    /// The file's JSON text (one line, newline-terminated, as systemd writes them).
    pub fn to_json(&self) -> String {
        let recs: Vec<Value> = self
            .records
            .iter()
            .map(|(p, ds)| {
                json!({"pcr": p, "digests": ds.iter().map(|(b, d)| json!({
                    "hashAlg": b.name(), "digest": hex::encode(d)})).collect::<Vec<_>>()})
            })
            .collect();
        format!("{}\n", json!({ "records": recs }))
    }

    /// Parses a `.pcrlock` file (ignoring `recnum`, `content` and `content_type`, as systemd
    /// does); digests of unknown algorithms are refused rather than silently dropped.
    pub fn parse(text: &[u8]) -> Result<Self, PcrlockError> {
        let e = |s: String| PcrlockError(s);
        let v: Value = serde_json::from_slice(text).map_err(|x| e(x.to_string()))?;
        let recs = v
            .get("records")
            .and_then(Value::as_array)
            .ok_or_else(|| e("no \"records\" array".into()))?;
        let mut records = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            let p = r
                .get("pcr")
                .and_then(Value::as_u64)
                .filter(|p| *p < pcr::PCR_COUNT as u64)
                .ok_or_else(|| e(format!("record {i}: \"pcr\" is not 0-23")))?
                as u32;
            let ds = r
                .get("digests")
                .and_then(Value::as_array)
                .ok_or_else(|| e(format!("record {i}: no \"digests\" array")))?;
            let mut digests = Vec::new();
            for d in ds {
                let alg = d.get("hashAlg").and_then(Value::as_str).unwrap_or("");
                let bank = HashAlg::from_name(alg).map_err(|x| e(format!("record {i}: {x}")))?;
                let hexs = d.get("digest").and_then(Value::as_str).unwrap_or("");
                let b = hex::decode(hexs).map_err(|x| e(format!("record {i}: {x}")))?;
                if b.len() != bank.digest_size() {
                    return Err(e(format!("record {i}: {alg} digest is {} bytes", b.len())));
                }
                digests.push((bank, b));
            }
            records.push((p, digests));
        }
        Ok(Self { records })
    }
}

/// The value `pcr` holds in `bank` after the records of `variants`, in order, from the reset
/// value: what systemd-pcrlock computes for one combination of component variants.
pub fn replay(variants: &[&Variant], pcr: u32, bank: HashAlg) -> Option<Vec<u8>> {
    let mut v = pcr::initial_value(pcr, bank);
    for var in variants {
        for (p, ds) in &var.records {
            if *p != pcr {
                continue;
            }
            let d = ds.iter().find(|(b, _)| *b == bank)?;
            v = pcr::extend(bank, &v, &d.1);
        }
    }
    Some(v)
}

/// A component file name: `NNN-verity-<what>.pcrlock` with `NNN` picked so our components sort
/// after systemd's own initrd ones (the images are merged after `sysinit`'s 850).
pub fn component_name(index: usize, what: &str) -> String {
    let safe: String = what
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}-verity-{safe}", 860 + index.min(89))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trips_and_matches_the_uapi_shape() {
        let v = Variant::of_events(13, &[HashAlg::Sha256], &["sysext:a:00:unsigned".into()]);
        let text = v.to_json();
        let j: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(j["records"][0]["pcr"], 13);
        assert_eq!(j["records"][0]["digests"][0]["hashAlg"], "sha256");
        assert_eq!(
            j["records"][0]["digests"][0]["digest"].as_str().unwrap(),
            hex::encode(&HashAlg::Sha256.digest(b"sysext:a:00:unsigned"))
        );
        assert_eq!(Variant::parse(text.as_bytes()).unwrap(), v);
        assert!(Variant::parse(br#"{"records":[{"pcr":24,"digests":[]}]}"#).is_err());
        assert!(Variant::parse(
            br#"{"records":[{"pcr":1,"digests":[{"hashAlg":"md5","digest":""}]}]}"#
        )
        .is_err());
        assert_eq!(
            Variant::parse(br#"{"records":[]}"#).unwrap().records.len(),
            0
        );
        assert_eq!(component_name(0, "sysext-tools"), "860-verity-sysext-tools");
        assert_eq!(component_name(1, "a b"), "861-verity-a_b");
    }
}

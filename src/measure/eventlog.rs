//! systemd's userspace measurement log, `tpm2-measure.log` (spec/systemd.md 4.5): an RFC 7464 JSON
//! text sequence (each record is 0x1E, one JSON object, LF) of CEL-JSON-like records
//! `{pcr, digests:[{hashAlg, digest}], content_type:"systemd", content:{string, bootId, timestamp,
//! eventType}}`, without `recnum`.
//!
//! This file is the pure format: a strict reader that names the record and byte offset of anything
//! it refuses (and treats a record without its final LF as a torn write), and the writer of one
//! record. The file protocol (lock, sticky bit, fsync) is in [`super::logfile`].

use crate::digest::HashAlg;
use crate::hex;
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

/// RFC 7464 record separator.
pub const RS: u8 = 0x1e;

/// Why bytes are not a well-formed log.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LogFormatError {
    #[error(
        "byte offset {offset}: data before the first record separator (0x1E); not an RFC 7464 \
         JSON text sequence"
    )]
    Garbage { offset: u64 },
    #[error(
        "record {record} at byte offset {offset} does not end with a newline: the log is torn \
         (a writer stopped in the middle of a record)"
    )]
    Truncated { record: usize, offset: u64 },
    #[error("record {record} at byte offset {offset} is not valid JSON: {msg}")]
    Json {
        record: usize,
        offset: u64,
        msg: String,
    },
    #[error("record {record} at byte offset {offset}: {what}")]
    Field {
        record: usize,
        offset: u64,
        what: String,
    },
}

/// One digest of a record. `bank` is None for algorithms this crate does not know (they are kept
/// so a log is shown faithfully, but never replayed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDigest {
    /// The `hashAlg` name as written.
    pub hash_alg: String,
    /// The bank, when the name is one of sha1/sha256/sha384/sha512.
    pub bank: Option<HashAlg>,
    /// The digest bytes.
    pub digest: Vec<u8>,
}

/// One record of the log, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// The PCR extended; None for records about NV-index PCRs, which carry no `pcr`.
    pub pcr: Option<u32>,
    /// One digest per extended bank.
    pub digests: Vec<LogDigest>,
    /// `"systemd"` for systemd's and our records.
    pub content_type: Option<String>,
    /// The `content` object as written (Null when absent).
    pub content: Value,
}

impl LogRecord {
    /// The measured string (`content.string`).
    pub fn string(&self) -> Option<&str> {
        self.content.get("string")?.as_str()
    }

    /// `content.eventType`.
    pub fn event_type(&self) -> Option<&str> {
        self.content.get("eventType")?.as_str()
    }

    /// `content.timestamp` (CLOCK_BOOTTIME in microseconds).
    pub fn timestamp(&self) -> Option<u64> {
        self.content.get("timestamp")?.as_u64()
    }

    /// The digest for `bank`, if the record has one.
    pub fn digest(&self, bank: HashAlg) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|d| d.bank == Some(bank))
            .map(|d| d.digest.as_slice())
    }

    /// The record as one RFC 7464 element (RS, JSON, LF); `content` keeps its fields.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut obj = serde_json::Map::new();
        if let Some(p) = self.pcr {
            obj.insert("pcr".into(), p.into());
        }
        let digests = self
            .digests
            .iter()
            .map(|d| serde_json::json!({"hashAlg": d.hash_alg, "digest": hex::encode(&d.digest)}))
            .collect();
        obj.insert("digests".into(), Value::Array(digests));
        if let Some(c) = &self.content_type {
            obj.insert("content_type".into(), c.clone().into());
        }
        if !self.content.is_null() {
            obj.insert("content".into(), self.content.clone());
        }
        frame(&serde_json::to_vec(&Value::Object(obj)).expect("a Value serializes"))
    }
}

/// A record this program writes, in systemd's field order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// The PCR extended; None for a record of something that extended no PCR (a
    /// `--dangerous-no-tpm` bypass), which replay skips like systemd's NvPCR records.
    pub pcr: Option<u32>,
    /// One digest per bank that was extended.
    pub digests: Vec<(HashAlg, Vec<u8>)>,
    /// The event string that was hashed.
    pub string: String,
    /// The boot ID as 32 lower-case hex digits (omitted when the kernel does not say).
    pub boot_id: Option<String>,
    /// CLOCK_BOOTTIME in microseconds.
    pub timestamp_us: u64,
    /// The class: sysext, confext, nextroot.
    pub event_type: String,
    /// The admitted image's `IMAGE_VERSION=` (`content.imageVersion`), when it carries one. Not
    /// hashed: the PCR holds H(string) only, and the version is fixed by the root hash in it.
    pub image_version: Option<String>,
}

#[derive(Serialize)]
struct OutRecord<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pcr: Option<u32>,
    digests: Vec<OutDigest>,
    content_type: &'static str,
    content: OutContent<'a>,
}

#[derive(Serialize)]
struct OutDigest {
    #[serde(rename = "hashAlg")]
    hash_alg: &'static str,
    digest: String,
}

#[derive(Serialize)]
struct OutContent<'a> {
    string: &'a str,
    #[serde(rename = "bootId", skip_serializing_if = "Option::is_none")]
    boot_id: Option<&'a str>,
    timestamp: u64,
    #[serde(rename = "eventType")]
    event_type: &'a str,
    #[serde(rename = "imageVersion", skip_serializing_if = "Option::is_none")]
    image_version: Option<&'a str>,
}

impl NewRecord {
    /// The record as one RFC 7464 element. JSON escapes every control character inside strings,
    /// so neither RS nor LF can occur inside the object.
    pub fn to_bytes(&self) -> Vec<u8> {
        let out = OutRecord {
            pcr: self.pcr,
            digests: self
                .digests
                .iter()
                .map(|(b, d)| OutDigest {
                    hash_alg: b.name(),
                    digest: hex::encode(d),
                })
                .collect(),
            content_type: "systemd",
            content: OutContent {
                string: &self.string,
                boot_id: self.boot_id.as_deref(),
                timestamp: self.timestamp_us,
                event_type: &self.event_type,
                image_version: self.image_version.as_deref(),
            },
        };
        frame(&serde_json::to_vec(&out).expect("plain structs serialize"))
    }
}

fn frame(json: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(json.len() + 2);
    v.push(RS);
    v.extend_from_slice(json);
    v.push(b'\n');
    v
}

/// Parses a whole log. Records are numbered from 0 in the order they appear (CEL's `recnum`).
/// Consecutive separators are ignored (RFC 7464 2.1), but the last record must end with LF: a
/// writer that stopped early leaves a torn log, and a torn log is an error, never half a record.
pub fn parse_log(bytes: &[u8]) -> Result<Vec<LogRecord>, LogFormatError> {
    let first = bytes.iter().position(|&b| b == RS).unwrap_or(bytes.len());
    if let Some(p) = bytes[..first].iter().position(|b| !b.is_ascii_whitespace()) {
        return Err(LogFormatError::Garbage { offset: p as u64 });
    }
    let mut out = Vec::new();
    let mut pos = first;
    while pos < bytes.len() {
        let start = pos + 1;
        let end = bytes[start..]
            .iter()
            .position(|&b| b == RS)
            .map_or(bytes.len(), |p| start + p);
        let elem = &bytes[start..end];
        let at_end = end == bytes.len();
        pos = end;
        if elem.is_empty() && !at_end {
            continue;
        }
        let record = out.len();
        let offset = (start - 1) as u64;
        if elem.last() != Some(&b'\n') {
            return Err(LogFormatError::Truncated { record, offset });
        }
        out.push(parse_record(elem, record, offset)?);
    }
    Ok(out)
}

fn parse_record(elem: &[u8], record: usize, offset: u64) -> Result<LogRecord, LogFormatError> {
    let field = |what: String| LogFormatError::Field {
        record,
        offset,
        what,
    };
    let v: Value = serde_json::from_slice(elem).map_err(|e| LogFormatError::Json {
        record,
        offset,
        msg: e.to_string(),
    })?;
    let Value::Object(mut obj) = v else {
        return Err(field("not a JSON object".into()));
    };
    let pcr = match obj.remove("pcr") {
        None => None,
        Some(p) => match p.as_u64() {
            Some(n) if n < u64::from(super::pcr::PCR_COUNT) => Some(n as u32),
            _ => return Err(field(format!("\"pcr\" is {p}, not a PCR number 0-23"))),
        },
    };
    let Some(Value::Array(ds)) = obj.remove("digests") else {
        return Err(field("no \"digests\" array".into()));
    };
    let mut digests: Vec<LogDigest> = Vec::with_capacity(ds.len());
    for (i, d) in ds.iter().enumerate() {
        let alg = d.get("hashAlg").and_then(Value::as_str);
        let dig = d.get("digest").and_then(Value::as_str);
        let (Some(alg), Some(dig)) = (alg, dig) else {
            return Err(field(format!(
                "digest {i} lacks a \"hashAlg\" or \"digest\" string"
            )));
        };
        let bytes = hex::decode(dig).map_err(|e| field(format!("digest {i} ({alg}): {e}")))?;
        let bank = HashAlg::from_name(alg).ok();
        if let Some(b) = bank {
            if bytes.len() != b.digest_size() {
                return Err(field(format!(
                    "{alg} digest is {} bytes, must be {}",
                    bytes.len(),
                    b.digest_size()
                )));
            }
        }
        if digests.iter().any(|x| x.hash_alg.eq_ignore_ascii_case(alg)) {
            return Err(field(format!("two digests for {alg}")));
        }
        digests.push(LogDigest {
            hash_alg: alg.to_string(),
            bank,
            digest: bytes,
        });
    }
    let content_type = match obj.remove("content_type") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => return Err(field(format!("\"content_type\" is {other}, not a string"))),
    };
    let content = obj.remove("content").unwrap_or(Value::Null);
    if !(content.is_object() || content.is_null()) {
        return Err(field("\"content\" is not an object".into()));
    }
    Ok(LogRecord {
        pcr,
        digests,
        content_type,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NewRecord {
        NewRecord {
            pcr: Some(13),
            digests: vec![
                (HashAlg::Sha1, HashAlg::Sha1.digest(b"x")),
                (HashAlg::Sha256, HashAlg::Sha256.digest(b"x")),
            ],
            string: "x".into(),
            boot_id: Some("0123456789abcdef0123456789abcdef".into()),
            timestamp_us: 42,
            event_type: "sysext".into(),
            image_version: None,
        }
    }

    #[test]
    fn an_image_version_is_an_extra_content_field() {
        let r = NewRecord {
            image_version: Some("2.1".into()),
            ..sample()
        };
        let b = r.to_bytes();
        assert!(String::from_utf8_lossy(&b)
            .ends_with("\"eventType\":\"sysext\",\"imageVersion\":\"2.1\"}}\n"));
        let back = parse_log(&b).unwrap();
        assert_eq!(back[0].content["imageVersion"], "2.1");
        // The digests are those of the string alone.
        assert_eq!(
            back[0].digest(HashAlg::Sha256),
            Some(&HashAlg::Sha256.digest(b"x")[..])
        );
    }

    #[test]
    fn writes_systemds_layout() {
        let b = sample().to_bytes();
        assert_eq!(b[0], RS);
        assert_eq!(*b.last().unwrap(), b'\n');
        let s = std::str::from_utf8(&b[1..]).unwrap();
        assert_eq!(
            s,
            "{\"pcr\":13,\"digests\":[{\"hashAlg\":\"sha1\",\"digest\":\
             \"11f6ad8ec52a2984abaafd7c3b516503785c2072\"},{\"hashAlg\":\"sha256\",\"digest\":\
             \"2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881\"}],\
             \"content_type\":\"systemd\",\"content\":{\"string\":\"x\",\"bootId\":\
             \"0123456789abcdef0123456789abcdef\",\"timestamp\":42,\"eventType\":\"sysext\"}}\n"
        );
    }

    #[test]
    fn a_record_without_pcr_has_no_pcr_field() {
        let r = NewRecord {
            pcr: None,
            ..sample()
        };
        let b = r.to_bytes();
        assert!(!String::from_utf8_lossy(&b).contains("\"pcr\""));
        let back = parse_log(&b).unwrap();
        assert_eq!(back[0].pcr, None);
        assert_eq!(back[0].string(), Some("x"));
    }

    #[test]
    fn round_trips_and_reads_systemd_records() {
        // A record as systemd-pcrextend writes it (spec/systemd.md 4.5), then ours.
        let systemd = "\u{1e}{\"pcr\":11,\"digests\":[{\"hashAlg\":\"sha256\",\"digest\":\
            \"b6d90fdfddb4df16198e2b8ede9bdd47413b4c5dbb100ea0287b45bde42e4e41\"}],\
            \"content_type\":\"systemd\",\"content\":{\"string\":\"enter-initrd\",\
            \"bootId\":\"0123456789abcdef0123456789abcdef\",\"timestamp\":1,\"eventType\":\"phase\"}}\n";
        let mut log = systemd.as_bytes().to_vec();
        log.extend(sample().to_bytes());
        let recs = parse_log(&log).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].pcr, Some(11));
        assert_eq!(recs[0].event_type(), Some("phase"));
        assert_eq!(recs[1].string(), Some("x"));
        assert_eq!(recs[1].timestamp(), Some(42));
        assert_eq!(
            recs[1].digest(HashAlg::Sha256),
            Some(HashAlg::Sha256.digest(b"x").as_slice())
        );
        let again: Vec<u8> = recs.iter().flat_map(LogRecord::to_bytes).collect();
        assert_eq!(parse_log(&again).unwrap(), recs);
        assert_eq!(parse_log(b"").unwrap(), vec![]);
        // RFC 7464: consecutive separators are no records.
        let mut doubled = vec![RS, RS];
        doubled.extend(sample().to_bytes());
        assert_eq!(parse_log(&doubled).unwrap().len(), 1);
    }

    #[test]
    fn refuses_torn_and_malformed_logs() {
        let good = sample().to_bytes();
        let mut torn = good.clone();
        torn.extend_from_slice(&good[..good.len() / 2]);
        assert_eq!(
            parse_log(&torn),
            Err(LogFormatError::Truncated {
                record: 1,
                offset: good.len() as u64
            })
        );
        let mut rs_only = good.clone();
        rs_only.push(RS);
        assert!(matches!(
            parse_log(&rs_only),
            Err(LogFormatError::Truncated { record: 1, .. })
        ));
        assert_eq!(
            parse_log(b"x\x1e{}\n"),
            Err(LogFormatError::Garbage { offset: 0 })
        );
        let cases: &[(&str, &str)] = &[
            ("[]", "not a JSON object"),
            ("{\"pcr\":24,\"digests\":[]}", "not a PCR number"),
            ("{\"pcr\":-1,\"digests\":[]}", "not a PCR number"),
            ("{\"pcr\":1}", "no \"digests\""),
            ("{\"digests\":[{\"hashAlg\":\"sha1\"}]}", "lacks"),
            (
                "{\"digests\":[{\"hashAlg\":\"sha1\",\"digest\":\"zz\"}]}",
                "invalid hex",
            ),
            (
                "{\"digests\":[{\"hashAlg\":\"sha256\",\"digest\":\"00\"}]}",
                "must be 32",
            ),
            (
                "{\"digests\":[{\"hashAlg\":\"sm3_256\",\"digest\":\"00\"},\
                 {\"hashAlg\":\"sm3_256\",\"digest\":\"00\"}]}",
                "two digests",
            ),
            ("{\"digests\":[],\"content_type\":1}", "content_type"),
            ("{\"digests\":[],\"content\":[]}", "not an object"),
        ];
        for (json, want) in cases {
            let bytes = format!("\u{1e}{json}\n");
            let err = parse_log(bytes.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
            assert!(err.contains("record 0 at byte offset 0"), "{err}");
        }
        assert!(matches!(
            parse_log(b"\x1e{\"pcr\":\n"),
            Err(LogFormatError::Json { record: 0, .. })
        ));
        // Unknown banks are kept but not attributed to a bank.
        let r = parse_log(b"\x1e{\"digests\":[{\"hashAlg\":\"sm3_256\",\"digest\":\"00\"}]}\n")
            .unwrap();
        assert_eq!(r[0].digests[0].bank, None);
        assert_eq!(r[0].pcr, None);
    }

    proptest::proptest! {
        // What the fuzz target checks, on a budget: no panic on any mutation of a good log, and
        // whatever is accepted survives a write and a re-read.
        #[test]
        fn mutated_logs_never_panic(pos in 0usize..400, byte in proptest::prelude::any::<u8>(),
                                    cut in 0usize..400) {
            let mut log = sample().to_bytes();
            log.extend(sample().to_bytes());
            let p = pos % log.len();
            log[p] = byte;
            log.truncate(cut.max(1).min(log.len()));
            if let Ok(recs) = parse_log(&log) {
                let again: Vec<u8> = recs.iter().flat_map(LogRecord::to_bytes).collect();
                let back = parse_log(&again).unwrap();
                proptest::prop_assert_eq!(back.len(), recs.len());
                for (a, b) in back.iter().zip(&recs) {
                    proptest::prop_assert_eq!(&a.digests, &b.digests);
                    proptest::prop_assert_eq!(a.pcr, b.pcr);
                }
            }
        }
    }
}

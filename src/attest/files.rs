//! The attestation files (I/O edge): the AK directory (`ak.pub`, `ak.priv`, `ak.name`, `ek.pub`,
//! the formats `tpm2_createak`/`tpm2_createek` write) and the quote directory (`quote.msg`
//! TPMS_ATTEST, `quote.sig` TPMT_SIGNATURE, `quote.pcrs` tpm2-tools serialized PCR values,
//! `keylime-quote.txt` the same as one Keylime quote line, and `tpm2-measure.log` when an event
//! log was quoted with it). Every file is written atomically; reading names the file that failed.

use super::check::{check, CheckReport, Evidence, Expect};
use super::pcrblob::PcrValues;
use super::policy::PcrPolicy;
use super::public::TpmPublic;
use super::quoteline::QuoteParts;
use super::AttestError;
use crate::digest::HashAlg;
use crate::io::output::write_atomic;
use crate::measure::eventlog::parse_log;
use std::path::{Path, PathBuf};

/// `ak.pub`.
pub const AK_PUB: &str = "ak.pub";
/// `ak.priv`.
pub const AK_PRIV: &str = "ak.priv";
/// `ak.name`.
pub const AK_NAME: &str = "ak.name";
/// `ek.pub`.
pub const EK_PUB: &str = "ek.pub";
/// `quote.msg`.
pub const QUOTE_MSG: &str = "quote.msg";
/// `quote.sig`.
pub const QUOTE_SIG: &str = "quote.sig";
/// `quote.pcrs`.
pub const QUOTE_PCRS: &str = "quote.pcrs";
/// `keylime-quote.txt`.
pub const QUOTE_LINE: &str = "keylime-quote.txt";
/// `tpm2-measure.log`.
pub const QUOTE_LOG: &str = "tpm2-measure.log";

/// The largest evidence file read (an event log may be a few MiB; quotes are tiny).
const MAX_FILE: u64 = 16 << 20;

/// Reads a whole file, bounded, naming it on failure.
pub fn read(path: &Path) -> Result<Vec<u8>, AttestError> {
    use std::io::Read;
    let io = |source| AttestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut v = Vec::new();
    f.take(MAX_FILE + 1).read_to_end(&mut v).map_err(io)?;
    if v.len() as u64 > MAX_FILE {
        return Err(AttestError::Usage(format!(
            "{}: larger than 16 MiB, not attestation evidence",
            path.display()
        )));
    }
    Ok(v)
}

/// Writes `bytes` to `dir/name` atomically.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, AttestError> {
    let p = dir.join(name);
    write_atomic(&p, bytes).map_err(|source| AttestError::Io {
        path: p.clone(),
        source,
    })?;
    Ok(p)
}

/// Reads and parses an AK public area (`ak.pub`, or the `aik_tpm` a registrar returned).
pub fn read_ak(path: &Path) -> Result<TpmPublic, AttestError> {
    let b = read(path)?;
    let ak = TpmPublic::parse(&b).map_err(|e| AttestError::Ak {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !ak.is_restricted_signer() {
        return Err(AttestError::Ak {
            path: path.to_path_buf(),
            reason: "not a restricted signing key, so what it signs is not necessarily \
                     TPM-generated: it cannot be an attestation key"
                .into(),
        });
    }
    Ok(ak)
}

/// Reads a Keylime policy file.
pub fn read_policy(path: &Path) -> Result<PcrPolicy, AttestError> {
    PcrPolicy::parse(&read(path)?).map_err(|e| AttestError::Policy {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The evidence files: a quote directory, or a file holding one Keylime quote line.
pub struct QuoteFiles {
    pub parts: QuoteParts,
    /// The event log bytes, when the directory has one.
    pub log: Option<Vec<u8>>,
}

/// Reads a quote directory (or quote-line file). A quote line that does not parse is evidence
/// that fails the signature check, so it comes back as a [`QuoteParts`] of empty parts.
pub fn read_quote(path: &Path) -> Result<(QuoteFiles, Option<String>), AttestError> {
    if path.is_dir() {
        let parts = QuoteParts {
            attest: read(&path.join(QUOTE_MSG))?,
            signature: read(&path.join(QUOTE_SIG))?,
            pcrs: read(&path.join(QUOTE_PCRS))?,
        };
        let lp = path.join(QUOTE_LOG);
        let log = if lp.exists() { Some(read(&lp)?) } else { None };
        return Ok((QuoteFiles { parts, log }, None));
    }
    let b = read(path)?;
    let text = String::from_utf8_lossy(&b);
    match QuoteParts::parse(&text) {
        Ok(parts) => Ok((QuoteFiles { parts, log: None }, None)),
        Err(e) => Ok((
            QuoteFiles {
                parts: QuoteParts {
                    attest: vec![],
                    signature: vec![],
                    pcrs: vec![],
                },
                log: None,
            },
            Some(format!("{}: {e}", path.display())),
        )),
    }
}

/// What `attest check` is given.
pub struct CheckInput<'a> {
    pub ak: &'a Path,
    pub nonce: &'a [u8],
    pub quote: &'a Path,
    pub policy: &'a Path,
    pub hash: HashAlg,
    pub bank: HashAlg,
}

/// Reads everything and runs every check. Errors are operational (exit 2); a failed check is in
/// the report.
pub fn check_files(i: &CheckInput) -> Result<CheckReport, AttestError> {
    let ak = read_ak(i.ak)?;
    let policy = read_policy(i.policy)?;
    let (files, line_err) = read_quote(i.quote)?;
    let records = files
        .log
        .as_ref()
        .map(|b| parse_log(b).map_err(|e| e.to_string()));
    let ev = Evidence {
        attest: &files.parts.attest,
        signature: &files.parts.signature,
        pcrs: &files.parts.pcrs,
        log: records.as_ref().map(|r| r.as_deref().map_err(Clone::clone)),
    };
    let mut report = check(
        &ev,
        &Expect {
            ak: &ak,
            nonce: i.nonce,
            hash: i.hash,
            bank: i.bank,
            policy: &policy,
        },
    );
    if let Some(e) = line_err {
        report.results[0].1 = super::check::Outcome::Fail(e);
    }
    Ok(report)
}

/// Writes a quote directory and returns the Keylime line.
pub fn write_quote(
    dir: &Path,
    attest: &[u8],
    signature: &[u8],
    values: &PcrValues,
    log: Option<&[u8]>,
) -> Result<String, AttestError> {
    std::fs::create_dir_all(dir).map_err(|source| AttestError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let pcrs = PcrValues::build(&values.values);
    let line = QuoteParts {
        attest: attest.to_vec(),
        signature: signature.to_vec(),
        pcrs: pcrs.clone(),
    }
    .to_line();
    write(dir, QUOTE_MSG, attest)?;
    write(dir, QUOTE_SIG, signature)?;
    write(dir, QUOTE_PCRS, &pcrs)?;
    if let Some(l) = log {
        write(dir, QUOTE_LOG, l)?;
    }
    write(dir, QUOTE_LINE, format!("{line}\n").as_bytes())?;
    Ok(line)
}

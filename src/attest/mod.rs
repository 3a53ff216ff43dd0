//! Remote attestation: the attestation key ([`tpm`], `tpm` feature), TPM quotes and the parsers of
//! what a quote is made of ([`wire`], [`public`], [`quote`], [`pcrblob`], [`quoteline`]), the
//! offline check a verifier makes ([`check`]), and the policies a fleet verifier enforces: a
//! Keylime `tpm_policy` and systemd-pcrlock component files, predicted from the images a release
//! allows ([`policy`], [`pcrlock`]).
//!
//! Trust: the only trusted inputs are the AK public area (registered with the verifier), the
//! nonce and the policy. Everything in a quote is untrusted until the signature check passed,
//! and the PCR values until they hash to the signed digest.
//!
//! Layer L16 (`tests/layering.rs`): it only reads what lower layers produce (images, the event log,
//! PCR math), so it could sit lower; it is placed just below `cli` because nothing but the CLI calls
//! it, which keeps every other layer free to change without touching attestation.

pub mod check;
pub mod export;
pub mod files;
pub mod pcrblob;
pub mod pcrlock;
pub mod policy;
pub mod public;
pub mod quote;
pub mod quoteline;
#[cfg(feature = "tpm")]
pub mod tpm;
pub mod wire;

use crate::digest::HashAlg;
use crate::measure::tpm::{TpmError, TpmSpec};
use crate::measure::EventLog;
use pcrblob::PcrValues;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why an attestation command could not do its job (operational: exit 2). Failed checks are not
/// errors: they are in a [`check::CheckReport`].
#[derive(Debug, Error)]
pub enum AttestError {
    #[error(transparent)]
    Tpm(#[from] TpmError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a usable attestation key: {reason}", path.display())]
    Ak { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Policy { path: PathBuf, reason: String },
    #[error("{0}")]
    Usage(String),
}

/// What `attest ak create` did.
#[derive(Debug, Clone)]
pub struct AkInfo {
    /// True when a new key was made; false when the directory's key was loaded.
    pub created: bool,
    /// The AK's TPM name, hex.
    pub name: String,
    /// `rsa2048`, ...
    pub key: String,
    /// Files in the directory.
    pub files: Vec<PathBuf>,
}

/// The longest nonce a quote carries (TPM2B_DATA holds a TPMT_HA: at most 64 bytes of digest).
pub const MAX_NONCE: usize = 64;

/// Checks a nonce as TPM2_Quote will take it.
pub fn check_nonce(nonce: &[u8]) -> Result<(), AttestError> {
    if nonce.is_empty() || nonce.len() > MAX_NONCE {
        return Err(AttestError::Usage(format!(
            "the nonce is {} bytes; a quote carries 1-{MAX_NONCE}",
            nonce.len()
        )));
    }
    Ok(())
}

#[cfg(not(feature = "tpm"))]
fn not_built(spec: &TpmSpec) -> AttestError {
    AttestError::Tpm(TpmError::NotBuilt {
        spec: spec.to_string(),
    })
}

/// Creates an AK in `dir` (or, when `dir` already holds one, checks that it loads on this TPM),
/// writing `ak.pub`, `ak.priv`, `ak.name` and `ek.pub`.
pub fn ak_create(spec: &TpmSpec, dir: &Path) -> Result<AkInfo, AttestError> {
    #[cfg(not(feature = "tpm"))]
    {
        let _ = dir;
        Err(not_built(spec))
    }
    #[cfg(feature = "tpm")]
    {
        std::fs::create_dir_all(dir).map_err(|source| AttestError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let (pubp, privp) = (dir.join(files::AK_PUB), dir.join(files::AK_PRIV));
        let (blobs, created) = if pubp.exists() && privp.exists() {
            let b = tpm::AkBlobs {
                public: files::read(&pubp)?,
                private: files::read(&privp)?,
            };
            tpm::load_check(spec, &b)?;
            (b, false)
        } else {
            (tpm::create_ak(spec)?, true)
        };
        let ak = public::TpmPublic::parse(&blobs.public).map_err(|e| AttestError::Ak {
            path: pubp.clone(),
            reason: e.to_string(),
        })?;
        let ek = tpm::ek_public(spec)?;
        let mut written = Vec::new();
        if created {
            // The private blob first: a directory with ak.pub but no ak.priv is never left.
            written.push(files::write(dir, files::AK_PRIV, &blobs.private)?);
            written.push(files::write(dir, files::AK_PUB, &blobs.public)?);
        }
        written.push(files::write(dir, files::AK_NAME, &ak.name())?);
        written.push(files::write(dir, files::EK_PUB, &ek)?);
        Ok(AkInfo {
            created,
            name: crate::hex::encode(&ak.name()),
            key: ak.describe(),
            files: written,
        })
    }
}

/// What `attest quote` produced.
#[derive(Debug, Clone)]
pub struct QuoteInfoOut {
    pub line: String,
    pub values: PcrValues,
    pub log_records: Option<usize>,
    pub reset_count: u32,
}

/// Quotes `pcrs` of `bank` with the AK in `ak_dir`, writes the quote directory `out`. With an
/// event log, the log is read under its shared lock held across the quote, so no measurement
/// lands between the two and the log replays to the quoted values.
pub fn take_quote(
    spec: &TpmSpec,
    ak_dir: &Path,
    nonce: &[u8],
    bank: HashAlg,
    pcrs: &[u32],
    event_log: Option<&Path>,
    out: &Path,
) -> Result<QuoteInfoOut, AttestError> {
    check_nonce(nonce)?;
    if pcrs.is_empty() {
        return Err(AttestError::Usage("no PCR to quote".into()));
    }
    for &p in pcrs {
        crate::measure::pcr::check_pcr(p).map_err(|e| AttestError::Usage(e.to_string()))?;
    }
    // A log that does not exist yet means nothing was measured: the quote carries an empty log.
    let reader = match event_log {
        Some(p) if p.exists() => Some(Some(
            EventLog::new(p)
                .lock_shared()
                .map_err(|e| AttestError::Usage(e.to_string()))?,
        )),
        Some(_) => Some(None),
        None => None,
    };
    #[cfg(not(feature = "tpm"))]
    {
        let _ = (ak_dir, bank, out, reader);
        Err(not_built(spec))
    }
    #[cfg(feature = "tpm")]
    {
        let blobs = tpm::AkBlobs {
            public: files::read(&ak_dir.join(files::AK_PUB))?,
            private: files::read(&ak_dir.join(files::AK_PRIV))?,
        };
        let raw = tpm::quote(spec, &blobs, nonce, bank, pcrs)?;
        let q = quote::QuoteInfo::parse(&raw.attest)
            .map_err(|e| AttestError::Usage(format!("the TPM's quote does not parse: {e}")))?;
        let sig = quote::QuoteSignature::parse(&raw.signature)
            .map_err(|e| AttestError::Usage(format!("the TPM's signature does not parse: {e}")))?;
        let values = PcrValues {
            selection: q.selection.clone(),
            values: raw.values,
        };
        if values.digest(sig.hash()) != q.pcr_digest {
            return Err(AttestError::Usage(
                "the PCRs changed between the quote and reading them back (a measurement \
                 outside the event log lock?); quote again"
                    .into(),
            ));
        }
        let log_bytes: Option<Vec<u8>> = reader.as_ref().map(|r| {
            r.iter()
                .flat_map(|r| r.records().iter().flat_map(|x| x.to_bytes()))
                .collect()
        });
        let line = files::write_quote(
            out,
            &raw.attest,
            &raw.signature,
            &values,
            log_bytes.as_deref(),
        )?;
        Ok(QuoteInfoOut {
            line,
            values,
            log_records: reader
                .as_ref()
                .map(|r| r.as_ref().map_or(0, |r| r.records().len())),
            reset_count: q.reset_count,
        })
    }
}

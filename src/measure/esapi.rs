//! The [`Tpm`] trait on a real TPM through tss-esapi 7.7 (libtss2 3.x): `/dev/tpmrm0` through the
//! device TCTI, or swtpm over TCP (spec/test-environment.md 4). The TCTI string is built from a
//! [`TpmSpec`] that was parsed strictly, never handed over raw (tss-esapi 7 ignores unknown keys).
//!
//! Errors are sorted by whether the TPM answered: a TPM-layer response code means the command
//! was refused and nothing changed ([`TpmError::Refused`]); anything from the TCTI, resource
//! manager or ESAPI layers might have happened after the command left, so it is
//! [`TpmError::Transport`] and measurement treats the PCR as possibly extended.

use super::tpm::{Tpm, TpmError, TpmSpec};
use crate::digest::HashAlg;
use std::str::FromStr;
use tss_esapi::constants::response_code::Tss2ResponseCode;
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::PcrHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    CapabilityData, Digest, DigestValues, PcrSelectionListBuilder, PcrSlot,
};
use tss_esapi::tcti_ldr::{DeviceConfig, NetworkTPMConfig, TctiNameConf};
use tss_esapi::Context;

/// A TPM reached through tss-esapi.
pub struct EsapiTpm {
    ctx: Context,
}

/// The tss-esapi name of a bank.
pub(crate) fn alg(bank: HashAlg) -> HashingAlgorithm {
    match bank {
        HashAlg::Sha1 => HashingAlgorithm::Sha1,
        HashAlg::Sha256 => HashingAlgorithm::Sha256,
        HashAlg::Sha384 => HashingAlgorithm::Sha384,
        HashAlg::Sha512 => HashingAlgorithm::Sha512,
    }
}

fn bank_of(a: HashingAlgorithm) -> Option<HashAlg> {
    match a {
        HashingAlgorithm::Sha1 => Some(HashAlg::Sha1),
        HashingAlgorithm::Sha256 => Some(HashAlg::Sha256),
        HashingAlgorithm::Sha384 => Some(HashAlg::Sha384),
        HashingAlgorithm::Sha512 => Some(HashAlg::Sha512),
        _ => None,
    }
}

/// The TSS layer of a response code (bits 16-23); 0 is the TPM itself.
fn answered_by_tpm(e: &tss_esapi::Error) -> bool {
    match e {
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatOne(rc)) => (rc.0 >> 16) & 0xff == 0,
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatZero(rc)) => (rc.0 >> 16) & 0xff == 0,
        _ => false,
    }
}

/// The library's text plus the raw response code, which its text often does not explain.
fn reason(e: &tss_esapi::Error) -> String {
    match e {
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatOne(rc)) => {
            format!("{e} ({:#x})", rc.0)
        }
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatZero(rc)) => {
            format!("{e} ({:#x})", rc.0)
        }
        _ => e.to_string(),
    }
}

/// Sorts a tss-esapi error into refused (the TPM answered) or transport (it may have acted).
pub(crate) fn classify(op: &'static str, e: tss_esapi::Error) -> TpmError {
    let reason = reason(&e);
    if answered_by_tpm(&e) {
        TpmError::Refused { op, reason }
    } else {
        TpmError::Transport { op, reason }
    }
}

/// The selection bit of a PCR.
pub(crate) fn slot(pcr: u32) -> Result<PcrSlot, TpmError> {
    if pcr >= 24 {
        return Err(TpmError::NoSuchPcr(pcr));
    }
    PcrSlot::try_from(1u32 << pcr).map_err(|_| TpmError::NoSuchPcr(pcr))
}

fn handle(pcr: u32) -> Result<PcrHandle, TpmError> {
    if pcr >= 24 {
        return Err(TpmError::NoSuchPcr(pcr));
    }
    // ESYS_TR_PCR0..31 are the numbers 0..31.
    PcrHandle::try_from(pcr).map_err(|_| TpmError::NoSuchPcr(pcr))
}

/// Opens an ESAPI context on the TPM named by `spec`; the swtpm TCTI connects at initialisation,
/// so an absent TPM fails here. Shared by measurement and attestation.
pub(crate) fn open_context(spec: &TpmSpec) -> Result<Context, TpmError> {
    let unreachable = |reason: String| TpmError::Unreachable {
        spec: spec.to_string(),
        reason,
    };
    let conf = match spec {
        TpmSpec::Device(path) => {
            if !std::path::Path::new(path).exists() {
                return Err(unreachable(format!("{path} does not exist")));
            }
            TctiNameConf::Device(
                DeviceConfig::from_str(path).map_err(|e| unreachable(e.to_string()))?,
            )
        }
        TpmSpec::Swtpm { host, port } => TctiNameConf::Swtpm(
            NetworkTPMConfig::from_str(&format!("host={host},port={port}"))
                .map_err(|e| unreachable(e.to_string()))?,
        ),
    };
    Context::new(conf).map_err(|e| {
        unreachable(format!(
            "{} (is the TPM running{}?)",
            reason(&e),
            match spec {
                TpmSpec::Swtpm { port, .. } =>
                    format!(" and listening on ports {port} and {}", port + 1),
                TpmSpec::Device(_) => String::new(),
            }
        ))
    })
}

impl EsapiTpm {
    /// Connects, and proves with a first command that the TPM answers.
    pub fn open(spec: &TpmSpec) -> Result<Self, TpmError> {
        let ctx = open_context(spec)?;
        let mut tpm = Self { ctx };
        // A first command proves the TPM answers (the TCTI may connect lazily).
        tpm.active_banks().map_err(|e| TpmError::Unreachable {
            spec: spec.to_string(),
            reason: e.to_string(),
        })?;
        Ok(tpm)
    }

    /// The tss-esapi context, for the crate's other TPM users (the rollback epoch's NV indexes),
    /// so every user opens a TPM the same way.
    pub(crate) fn context(&mut self) -> &mut Context {
        &mut self.ctx
    }
}

impl Tpm for EsapiTpm {
    fn active_banks(&mut self) -> Result<Vec<HashAlg>, TpmError> {
        let (data, _more) = self
            .ctx
            .get_capability(CapabilityType::AssignedPcr, 0, 16)
            .map_err(|e| classify("TPM2_GetCapability(PCRS)", e))?;
        let CapabilityData::AssignedPcr(list) = data else {
            return Err(TpmError::Transport {
                op: "TPM2_GetCapability(PCRS)",
                reason: "the answer is not a PCR allocation".into(),
            });
        };
        let mut banks: Vec<HashAlg> = list
            .get_selections()
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| bank_of(s.hashing_algorithm()))
            .collect();
        banks.sort_by_key(|b| b.digest_size());
        banks.dedup();
        Ok(banks)
    }

    fn pcr_read(&mut self, pcr: u32, bank: HashAlg) -> Result<Vec<u8>, TpmError> {
        let sel = PcrSelectionListBuilder::new()
            .with_selection(alg(bank), &[slot(pcr)?])
            .build()
            .map_err(|e| TpmError::Invalid {
                op: "build a PCR selection",
                reason: e.to_string(),
            })?;
        let (_counter, _sel, digests) = self
            .ctx
            .pcr_read(sel)
            .map_err(|e| classify("TPM2_PCR_Read", e))?;
        // An unallocated bank comes back as an empty selection with no digests.
        match digests.value() {
            [d] => Ok(d.value().to_vec()),
            [] => Err(TpmError::BankNotActive(bank)),
            more => Err(TpmError::Transport {
                op: "TPM2_PCR_Read",
                reason: format!("{} digests for one PCR", more.len()),
            }),
        }
    }

    fn pcr_extend(&mut self, pcr: u32, digests: &[(HashAlg, Vec<u8>)]) -> Result<(), TpmError> {
        let h = handle(pcr)?;
        let mut vals = DigestValues::new();
        for (bank, d) in digests {
            if d.len() != bank.digest_size() {
                return Err(TpmError::DigestLength {
                    bank: *bank,
                    got: d.len(),
                    want: bank.digest_size(),
                });
            }
            let dig = Digest::try_from(d.clone()).map_err(|e| TpmError::Invalid {
                op: "build a digest",
                reason: e.to_string(),
            })?;
            vals.set(alg(*bank), dig);
        }
        // PCR_Extend needs an authorisation even though the PCRs have empty auth. The empty
        // password (TPM_RS_PW) adds no round trip. An HMAC session would add two (start, flush),
        // which through a VM's emulated TPM cost most of the boot hook, and would protect nothing:
        // unsalted and unbound, its key comes from nonces anyone on the bus sees, and the digests
        // are not secret.
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |c| c.pcr_extend(h, vals))
            .map_err(|e| classify("TPM2_PCR_Extend", e))
    }
}

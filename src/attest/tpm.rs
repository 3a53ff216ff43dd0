//! The attestation key and TPM2_Quote on a real TPM through tss-esapi 7.7 (I/O edge; `tpm`
//! feature). The AK is what `tpm2_createak` makes by default: an RSA 2048 restricted signing key
//! (RSASSA, SHA-256) under the RSA endorsement key, created with the EK's policy
//! (PolicySecret(endorsement)). It is kept as its public and wrapped private blobs and loaded
//! under the EK again for every quote, as a fleet agent does; the EK itself is re-derived from the
//! endorsement seed each time (same template, same key).
//!
//! Every object loaded is flushed before returning, also on errors: swtpm has no resource
//! manager and keeps transient objects across connections.

use crate::digest::HashAlg;
use crate::measure::esapi::{alg, classify, open_context, slot};
use crate::measure::tpm::{TpmError, TpmSpec};
use tss_esapi::abstraction::{ak, ek, AsymmetricAlgorithmSelection};
use tss_esapi::handles::{KeyHandle, ObjectHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::structures::{
    Data, PcrSelectionListBuilder, Private, Public, PublicBuffer, SignatureScheme,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::Context;

/// An attestation key as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkBlobs {
    /// TPM2B_PUBLIC (`ak.pub`, as `tpm2_createak -u` writes it).
    pub public: Vec<u8>,
    /// TPM2B_PRIVATE (`ak.priv`, the private part wrapped by the EK; useless off this TPM).
    pub private: Vec<u8>,
}

/// A quote as the TPM returned it, with the PCR values read right after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawQuote {
    /// Marshalled TPMS_ATTEST.
    pub attest: Vec<u8>,
    /// Marshalled TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// (bank, PCR, value) for every quoted PCR, ascending.
    pub values: Vec<(HashAlg, u32, Vec<u8>)>,
}

fn invalid(op: &'static str) -> impl Fn(tss_esapi::Error) -> TpmError {
    move |e| TpmError::Invalid {
        op,
        reason: e.to_string(),
    }
}

fn flush(ctx: &mut Context, h: KeyHandle) {
    // A failed flush leaves an object slot in use; nothing else depends on it.
    let _ = ctx.flush_context(ObjectHandle::from(h));
}

fn endorsement_key(ctx: &mut Context) -> Result<KeyHandle, TpmError> {
    ek::create_ek_object_2(
        ctx,
        AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
        None,
    )
    .map_err(|e| classify("TPM2_CreatePrimary(EK)", e))
}

fn tpm2b(bytes: &[u8]) -> Vec<u8> {
    let mut v = (bytes.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

fn public_bytes(p: Public) -> Result<Vec<u8>, TpmError> {
    PublicBuffer::try_from(p)
        .and_then(|b| b.marshall())
        .map_err(invalid("marshal a public area"))
}

/// The RSA endorsement key's public area (TPM2B_PUBLIC), as `tpm2_createek -G rsa -u` writes it.
pub fn ek_public(spec: &TpmSpec) -> Result<Vec<u8>, TpmError> {
    let mut ctx = open_context(spec)?;
    let ekh = endorsement_key(&mut ctx)?;
    let r = ctx
        .read_public(ekh)
        .map_err(|e| classify("TPM2_ReadPublic(EK)", e));
    flush(&mut ctx, ekh);
    public_bytes(r?.0)
}

/// Creates a new attestation key under the EK.
pub fn create_ak(spec: &TpmSpec) -> Result<AkBlobs, TpmError> {
    let mut ctx = open_context(spec)?;
    let ekh = endorsement_key(&mut ctx)?;
    let r = ak::create_ak(
        &mut ctx,
        ekh,
        HashingAlgorithm::Sha256,
        SignatureSchemeAlgorithm::RsaSsa,
        None,
        None,
    )
    .map_err(|e| classify("TPM2_Create(AK)", e));
    flush(&mut ctx, ekh);
    let r = r?;
    Ok(AkBlobs {
        public: public_bytes(r.out_public)?,
        private: tpm2b(r.out_private.value()),
    })
}

fn load(ctx: &mut Context, ekh: KeyHandle, blobs: &AkBlobs) -> Result<KeyHandle, TpmError> {
    let public = PublicBuffer::unmarshall(&blobs.public)
        .and_then(Public::try_from)
        .map_err(invalid("read ak.pub"))?;
    let p = &blobs.private;
    if p.len() < 2 || u16::from_be_bytes([p[0], p[1]]) as usize != p.len() - 2 {
        return Err(TpmError::Invalid {
            op: "read ak.priv",
            reason: "not a TPM2B_PRIVATE (size prefix does not match the file)".into(),
        });
    }
    let private = Private::try_from(p[2..].to_vec()).map_err(invalid("read ak.priv"))?;
    ak::load_ak(ctx, ekh, None, private, public).map_err(|e| classify("TPM2_Load(AK)", e))
}

/// Checks that the AK loads under this TPM's EK (it was made on this TPM).
pub fn load_check(spec: &TpmSpec, blobs: &AkBlobs) -> Result<(), TpmError> {
    let mut ctx = open_context(spec)?;
    let ekh = endorsement_key(&mut ctx)?;
    let r = load(&mut ctx, ekh, blobs);
    if let Ok(h) = &r {
        flush(&mut ctx, *h);
    }
    flush(&mut ctx, ekh);
    r.map(|_| ())
}

fn read_pcrs(
    ctx: &mut Context,
    bank: HashAlg,
    pcrs: &[u32],
) -> Result<Vec<(HashAlg, u32, Vec<u8>)>, TpmError> {
    let mut out = Vec::new();
    for &p in pcrs {
        let sel = PcrSelectionListBuilder::new()
            .with_selection(alg(bank), &[slot(p)?])
            .build()
            .map_err(invalid("build a PCR selection"))?;
        let (_, _, d) = ctx
            .pcr_read(sel)
            .map_err(|e| classify("TPM2_PCR_Read", e))?;
        match d.value() {
            [v] => out.push((bank, p, v.value().to_vec())),
            [] => return Err(TpmError::BankNotActive(bank)),
            _ => {
                return Err(TpmError::Transport {
                    op: "TPM2_PCR_Read",
                    reason: "several digests for one PCR".into(),
                })
            }
        }
    }
    Ok(out)
}

/// TPM2_Quote over `pcrs` of `bank` with the AK, `nonce` as qualifying data, signed with the
/// AK's own scheme; then the PCR values, read back. The caller checks that the values hash to
/// the quoted digest (a measurement between quote and read changes them) and asks again.
pub fn quote(
    spec: &TpmSpec,
    blobs: &AkBlobs,
    nonce: &[u8],
    bank: HashAlg,
    pcrs: &[u32],
) -> Result<RawQuote, TpmError> {
    let mut ctx = open_context(spec)?;
    let ekh = endorsement_key(&mut ctx)?;
    let akh = match load(&mut ctx, ekh, blobs) {
        Ok(h) => h,
        Err(e) => {
            flush(&mut ctx, ekh);
            return Err(e);
        }
    };
    flush(&mut ctx, ekh);
    let r = quote_loaded(&mut ctx, akh, nonce, bank, pcrs);
    flush(&mut ctx, akh);
    r
}

fn quote_loaded(
    ctx: &mut Context,
    akh: KeyHandle,
    nonce: &[u8],
    bank: HashAlg,
    pcrs: &[u32],
) -> Result<RawQuote, TpmError> {
    let slots = pcrs
        .iter()
        .map(|&p| slot(p))
        .collect::<Result<Vec<_>, _>>()?;
    let sel = PcrSelectionListBuilder::new()
        .with_selection(alg(bank), &slots)
        .build()
        .map_err(invalid("build a PCR selection"))?;
    let data = Data::try_from(nonce.to_vec()).map_err(invalid("use the nonce"))?;
    let (attest, sig) = ctx
        .execute_with_nullauth_session(|c| c.quote(akh, data, SignatureScheme::Null, sel))
        .map_err(|e| classify("TPM2_Quote", e))?;
    let mut sorted = pcrs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    Ok(RawQuote {
        attest: attest.marshall().map_err(invalid("marshal the quote"))?,
        signature: sig.marshall().map_err(invalid("marshal the signature"))?,
        values: read_pcrs(ctx, bank, &sorted)?,
    })
}

//! Root-hash signatures for images, through the crate's [`crate::sign`] module: signing at build
//! time, and checking against a trust store of `*.crt` files the way systemd does (spec/systemd.md
//! 3.6: the signer must be one of the trusted certificates itself; embedded certificates are ignored;
//! no chain or expiry checks). Who signed is [`crate::sign::Signer`]. I/O edge (reads PEM files).

use crate::sign::{self, Signer, TrustStore};
use std::path::Path;

/// Signs the lower-case hex of `root_hash` with PEM files `key` and `cert` (detached DER PKCS#7,
/// no signed attributes; the certificate embedded only if `embed_cert`). Returns (signature,
/// certificate DER).
pub fn sign_root_hash(
    key: &Path,
    cert: &Path,
    root_hash: &[u8],
    embed_cert: bool,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let cert_pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let cert_der =
        sign::cert_from_pem(&cert_pem).map_err(|e| format!("{}: {e}", cert.display()))?;
    let sig = sign::sign_root_hash(
        &key_pem,
        &cert_pem,
        &crate::hex::encode(root_hash),
        embed_cert,
    )
    .map_err(|e| format!("signing with {}: {e}", key.display()))?;
    Ok((sig, cert_der))
}

/// Checks `sig_der` over `content` against `trust`.
pub fn verify_signature(
    sig_der: &[u8],
    content: &[u8],
    trust: &TrustStore,
) -> Result<Signer, String> {
    if trust.is_empty() {
        return Err("no trusted certificates (*.crt in the trust directories)".into());
    }
    sign::verify_signature(sig_der, content, trust).map_err(|e| e.to_string())
}

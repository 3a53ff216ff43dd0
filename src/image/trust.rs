//! Root-hash signatures for images: signing at build time and checking against a trust store of
//! `*.crt` files (systemd's verity.d convention, spec/systemd.md 3.6: the signer must be one of the
//! trusted certificates itself; embedded certificates are ignored; no chain or expiry checks).
//!
//! Interim implementation over the `openssl` command line (`smime -sign/-verify -nointern
//! -noverify`), until the crate's own `sign` module lands; the functions keep the shape of that
//! module's API so the switch is local to this file. I/O edge.

use crate::digest::HashAlg;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Who signed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Signer {
    /// SHA-256 of the certificate's DER, lower-case hex.
    pub fingerprint: String,
    /// Subject distinguished name.
    pub subject: String,
    /// The certificate (DER).
    #[serde(skip)]
    pub cert_der: Vec<u8>,
}

/// The directories systemd reads `*.crt` from, under `root`.
pub fn default_dirs(root: &Path) -> Vec<PathBuf> {
    [
        "etc/verity.d",
        "run/verity.d",
        "usr/local/lib/verity.d",
        "usr/lib/verity.d",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect()
}

/// PEM certificate files (`*.crt`) in `dirs`; a name in an earlier dir masks later ones, and an
/// empty file or a symlink to /dev/null masks it entirely.
pub fn cert_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen = std::collections::BTreeMap::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        let mut names: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
        names.sort();
        for p in names {
            let Some(n) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if n.ends_with(".crt") && !seen.contains_key(&n) {
                seen.insert(n, p);
            }
        }
    }
    seen.into_values()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0))
        .collect()
}

/// Decodes the first PEM block labelled `label`.
pub fn pem_decode(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let s = text.find(&begin)? + begin.len();
    let e = s + text[s..].find(&end)?;
    super::sigpart::base64_decode(&text[s..e])
}

/// Lower-case hex SHA-256 of a certificate's DER.
pub fn fingerprint(cert_der: &[u8]) -> String {
    crate::hex::encode(&HashAlg::Sha256.digest(cert_der))
}

fn subject_of(der: &[u8]) -> String {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_default()
}

fn openssl(args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Signs the lower-case hex of `root_hash` (detached DER PKCS#7, binary, no signed attributes,
/// no certificates embedded unless `embed_cert`). Returns (signature, certificate DER).
pub fn sign_root_hash(
    key: &Path,
    cert: &Path,
    root_hash: &[u8],
    embed_cert: bool,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let pem = std::fs::read_to_string(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let cert_der = pem_decode(&pem, "CERTIFICATE")
        .ok_or_else(|| format!("{}: no PEM certificate", cert.display()))?;
    let dir = super::fsread::TempDir::new().map_err(|e| format!("temporary directory: {e}"))?;
    let content = dir.path().join("roothash");
    let sig = dir.path().join("sig.der");
    std::fs::write(&content, crate::hex::encode(root_hash)).map_err(|e| e.to_string())?;
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "smime".as_ref(),
        "-sign".as_ref(),
        "-noattr".as_ref(),
        "-binary".as_ref(),
        "-outform".as_ref(),
        "der".as_ref(),
        "-in".as_ref(),
        content.as_os_str(),
        "-signer".as_ref(),
        cert.as_os_str(),
        "-inkey".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        sig.as_os_str(),
    ];
    if !embed_cert {
        args.push("-nocerts".as_ref());
    }
    openssl(&args).map_err(|e| format!("signing failed: {e}"))?;
    let der = std::fs::read(&sig).map_err(|e| e.to_string())?;
    Ok((der, cert_der))
}

/// Checks `sig_der` over `content` against the certificates in `dirs`. The signer must be one
/// of them.
pub fn verify_signature(
    sig_der: &[u8],
    content: &[u8],
    dirs: &[PathBuf],
) -> Result<Signer, String> {
    let certs = cert_files(dirs);
    if certs.is_empty() {
        return Err(format!(
            "no trusted certificates (*.crt) in {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let dir = super::fsread::TempDir::new().map_err(|e| format!("temporary directory: {e}"))?;
    let bundle = dir.path().join("trust.pem");
    let mut all = String::new();
    for c in &certs {
        let t = std::fs::read_to_string(c).map_err(|e| format!("{}: {e}", c.display()))?;
        all.push_str(&t);
        all.push('\n');
    }
    let sig = dir.path().join("sig.der");
    let data = dir.path().join("content");
    let signer = dir.path().join("signer.pem");
    std::fs::write(&bundle, all).map_err(|e| e.to_string())?;
    std::fs::write(&sig, sig_der).map_err(|e| e.to_string())?;
    std::fs::write(&data, content).map_err(|e| e.to_string())?;
    openssl(&[
        "smime".as_ref(),
        "-verify".as_ref(),
        "-binary".as_ref(),
        "-inform".as_ref(),
        "der".as_ref(),
        "-in".as_ref(),
        sig.as_os_str(),
        "-content".as_ref(),
        data.as_os_str(),
        "-certfile".as_ref(),
        bundle.as_os_str(),
        "-nointern".as_ref(),
        "-noverify".as_ref(),
        "-signer".as_ref(),
        signer.as_os_str(),
        "-out".as_ref(),
        "/dev/null".as_ref(),
    ])
    .map_err(|e| format!("signature does not verify against the trusted certificates: {e}"))?;
    let pem = std::fs::read_to_string(&signer).map_err(|e| e.to_string())?;
    let cert_der = pem_decode(&pem, "CERTIFICATE").ok_or("openssl wrote no signer certificate")?;
    Ok(Signer {
        fingerprint: fingerprint(&cert_der),
        subject: subject_of(&cert_der),
        cert_der,
    })
}

//! Trust stores: directories of PEM `*.crt` certificates, searched like systemd's `verity.d`
//! (/etc, /run, /usr/local/lib, /usr/lib, optionally under another root). A file name found in an
//! earlier directory hides the same name in later ones; an empty file or a symlink to /dev/null
//! masks it. This is the I/O edge of signature checking; the checks themselves are pure.

use super::keys::pem_blocks;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The default directories, in priority order, as systemd searches them.
const DEFAULT_DIRS: &[&str] = &[
    "etc/verity.d",
    "run/verity.d",
    "usr/local/lib/verity.d",
    "usr/lib/verity.d",
];

/// A trust directory or certificate file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TrustError {
    #[error("cannot read trust directory {path}: {reason}")]
    Dir { path: PathBuf, reason: String },
    #[error("cannot read certificate {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} is not a PEM certificate: {reason}")]
    BadCert { path: PathBuf, reason: String },
}

/// One trusted certificate and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedCert {
    /// The certificate's DER.
    pub der: Vec<u8>,
    /// The file it was read from, if any.
    pub path: Option<PathBuf>,
}

/// The certificates a signer must be one of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustStore {
    certs: Vec<TrustedCert>,
}

/// The subject of a certificate (`CN=...`), or a placeholder if it does not parse.
pub fn cert_subject(der: &[u8]) -> String {
    X509Certificate::from_der(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|_| "<unparseable certificate>".into())
}

impl TrustStore {
    /// The default search path under `root` (`/` for the running system).
    pub fn default_dirs(root: &Path) -> Vec<PathBuf> {
        DEFAULT_DIRS.iter().map(|d| root.join(d)).collect()
    }

    /// A store of the given DER certificates. Certificates that do not parse never match a signer.
    pub fn from_certs(certs: Vec<Vec<u8>>) -> TrustStore {
        TrustStore {
            certs: certs
                .into_iter()
                .map(|der| TrustedCert { der, path: None })
                .collect(),
        }
    }

    /// The certificates, in file-name order.
    pub fn certs(&self) -> &[TrustedCert] {
        &self.certs
    }

    /// True when no certificate is trusted.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// Loads every `*.crt` from `dirs` (missing directories are skipped). A file that exists but
    /// is not a PEM certificate is an error rather than silently ignored.
    pub fn load(dirs: &[PathBuf]) -> Result<TrustStore, TrustError> {
        let mut by_name: BTreeMap<std::ffi::OsString, PathBuf> = BTreeMap::new();
        for dir in dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(TrustError::Dir {
                        path: dir.clone(),
                        reason: e.to_string(),
                    })
                }
            };
            for entry in entries {
                let entry = entry.map_err(|e| TrustError::Dir {
                    path: dir.clone(),
                    reason: e.to_string(),
                })?;
                let name = entry.file_name();
                if !name.to_string_lossy().ends_with(".crt") {
                    continue;
                }
                by_name.entry(name).or_insert_with(|| entry.path());
            }
        }
        let mut certs = Vec::new();
        for path in by_name.into_values() {
            if is_masked(&path) {
                continue;
            }
            let data = std::fs::read(&path).map_err(|e| TrustError::Read {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            for der in parse_pem_certs(&data).map_err(|reason| TrustError::BadCert {
                path: path.clone(),
                reason,
            })? {
                certs.push(TrustedCert {
                    der,
                    path: Some(path.clone()),
                });
            }
        }
        Ok(TrustStore { certs })
    }
}

/// The DER of the first certificate in a PEM file.
pub fn cert_from_pem(pem: &[u8]) -> Result<Vec<u8>, super::SignError> {
    parse_pem_certs(pem)
        .map(|mut c| c.remove(0))
        .map_err(super::SignError::Cert)
}

/// Masked as systemd masks drop-ins: a symlink to /dev/null, or an empty file.
fn is_masked(path: &Path) -> bool {
    if std::fs::read_link(path).is_ok_and(|t| t == Path::new("/dev/null")) {
        return true;
    }
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0)
}

/// Every CERTIFICATE block of a PEM file, each checked to parse as X.509.
pub(crate) fn parse_pem_certs(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for block in pem_blocks(data)? {
        if block.label != "CERTIFICATE" {
            continue;
        }
        X509Certificate::from_der(&block.contents).map_err(|e| format!("bad X.509: {e}"))?;
        out.push(block.contents);
    }
    if out.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA: &[u8] = include_bytes!("../../keys/rsa2048.crt");
    const P256: &[u8] = include_bytes!("../../keys/p256.crt");

    #[test]
    fn default_dirs_are_systemds_under_the_root() {
        let d = TrustStore::default_dirs(Path::new("/x"));
        let want: Vec<PathBuf> = [
            "/x/etc/verity.d",
            "/x/run/verity.d",
            "/x/usr/local/lib/verity.d",
            "/x/usr/lib/verity.d",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(d, want);
    }

    #[test]
    fn earlier_dirs_win_masks_hide_and_only_crt_counts() {
        let t = tempfile::tempdir().unwrap();
        let dirs = TrustStore::default_dirs(t.path());
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        // a.crt: /etc's copy (P-256) hides /usr/lib's (RSA).
        std::fs::write(dirs[0].join("a.crt"), P256).unwrap();
        std::fs::write(dirs[3].join("a.crt"), RSA).unwrap();
        // b.crt in /usr/lib is masked by an empty file in /run, c.crt by a /dev/null link.
        std::fs::write(dirs[3].join("b.crt"), RSA).unwrap();
        std::fs::write(dirs[1].join("b.crt"), b"").unwrap();
        std::fs::write(dirs[3].join("c.crt"), RSA).unwrap();
        std::os::unix::fs::symlink("/dev/null", dirs[2].join("c.crt")).unwrap();
        // d.pem is not read at all, even though it is garbage.
        std::fs::write(dirs[0].join("d.pem"), b"garbage").unwrap();
        let s = TrustStore::load(&dirs).unwrap();
        assert_eq!(s.certs().len(), 1);
        assert_eq!(s.certs()[0].path.as_deref(), Some(&*dirs[0].join("a.crt")));
        assert_eq!(cert_subject(&s.certs()[0].der), "CN=verity TEST-ONLY P-256");
    }

    #[test]
    fn a_broken_crt_is_an_error_naming_it_and_missing_dirs_are_fine() {
        let t = tempfile::tempdir().unwrap();
        let bad = t.path().join("bad.crt");
        std::fs::write(
            &bad,
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = TrustStore::load(&[t.path().to_path_buf()]).unwrap_err();
        assert!(
            matches!(&e, TrustError::BadCert { path, .. } if *path == bad),
            "{e}"
        );
        let none = TrustStore::load(&[t.path().join("missing")]).unwrap();
        assert!(none.is_empty());
    }
}

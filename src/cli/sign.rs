//! `verity sign | verify-signature`: root-hash signatures as the kernel, systemd and veritysetup
//! use them (detached DER PKCS#7 over the lower-case hex root hash, no newline).

use super::{failed, op_err, CliError, CliResult};
use crate::hex;
use crate::sign::{self, SignError, Signer, SigningKey, TrustStore};
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum Command {
    /// Sign a root hash: write a detached DER PKCS#7 signature over its lower-case hex form.
    #[command(disable_help_flag = true)]
    Sign(SignArgs),
    /// Check a root-hash signature: the signer must be a certificate from the trust store.
    #[command(disable_help_flag = true)]
    VerifySignature(VerifySignatureArgs),
}

/// The root hash, given inline or in a file (veritysetup's `--root-hash-file` format).
#[derive(Args, Debug)]
pub struct RootHashArgs {
    /// Root hash as hex.
    #[arg(long, conflicts_with = "root_hash_file")]
    pub root_hash: Option<String>,
    /// Read the root hash from this file (hex; surrounding whitespace is ignored).
    #[arg(long)]
    pub root_hash_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1): RSA 2048-8192, ECDSA P-256 or P-384.
    #[arg(long)]
    pub key: PathBuf,
    /// The signer's certificate, PEM.
    #[arg(long)]
    pub cert: PathBuf,
    #[command(flatten)]
    pub root: RootHashArgs,
    /// Write the signature here (default: standard output, unless it is a terminal).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Embed the certificate in the signature, as systemd-repart does (verifiers still ignore it
    /// for trust).
    #[arg(long)]
    pub embed_cert: bool,
    /// Machine-readable output (needs -o).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct VerifySignatureArgs {
    #[command(flatten)]
    pub root: RootHashArgs,
    /// The DER PKCS#7 signature file (e.g. NAME.roothash.p7s).
    #[arg(long)]
    pub signature: PathBuf,
    /// Trusted certificate directory (`*.crt`, PEM); repeatable; replaces the default verity.d dirs.
    #[arg(long = "trust")]
    pub trust: Vec<PathBuf>,
    /// Look for the default verity.d directories under this root instead of /.
    #[arg(long = "root")]
    pub root_dir: Option<PathBuf>,
    /// Also require the signer to be issued by a valid CA from this directory, with validity dates
    /// and key usage checked (stricter than systemd); repeatable.
    #[arg(long = "require-chain")]
    pub require_chain: Vec<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: Command) -> CliResult {
    match cmd {
        Command::Sign(a) => sign_cmd(a),
        Command::VerifySignature(a) => verify_cmd(a),
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| op_err(format!("cannot read {what} {}: {e}", path.display())))
}

/// The root hash in the form the kernel checks: lower-case hex without newline.
fn root_hex(a: &RootHashArgs) -> Result<String, CliError> {
    let text = match (&a.root_hash, &a.root_hash_file) {
        (Some(h), None) => h.clone(),
        (None, Some(f)) => String::from_utf8(read_file(f, "root hash file")?)
            .map_err(|_| op_err(format!("root hash file {} is not text", f.display())))?
            .trim()
            .to_string(),
        _ => {
            return Err(op_err(
                "give the root hash with --root-hash or --root-hash-file",
            ))
        }
    };
    let bytes =
        hex::decode(&text).map_err(|e| op_err(format!("invalid root hash {text:?}: {e}")))?;
    if bytes.is_empty() {
        return Err(op_err("the root hash is empty"));
    }
    Ok(hex::encode(&bytes))
}

fn sign_cmd(a: SignArgs) -> CliResult {
    let root = root_hex(&a.root)?;
    let key = SigningKey::from_pem(&read_file(&a.key, "key")?)
        .map_err(|e| op_err(format!("{}: {e}", a.key.display())))?;
    let cert_pem = read_file(&a.cert, "certificate")?;
    let cert_der =
        sign::cert_from_pem(&cert_pem).map_err(|e| op_err(format!("{}: {e}", a.cert.display())))?;
    let sig = sign::sign_with(&key, &cert_der, &root, a.embed_cert).map_err(|e| match e {
        SignError::KeyCertMismatch { .. } => failed(format!(
            "{} does not belong to {}: {e}",
            a.key.display(),
            a.cert.display()
        )),
        e => op_err(e),
    })?;
    let fingerprint = hex::encode(&crate::digest::HashAlg::Sha256.digest(&cert_der));
    match &a.output {
        Some(out) => crate::io::output::write_atomic(out, &sig)
            .map_err(|e| op_err(format!("writing signature {}: {e}", out.display())))?,
        None => {
            if a.json {
                return Err(op_err(
                    "--json needs -o: the signature itself goes to stdout otherwise",
                ));
            }
            let mut stdout = std::io::stdout().lock();
            if stdout.is_terminal() {
                return Err(op_err(
                    "refusing to write a binary signature to a terminal; use -o FILE",
                ));
            }
            stdout
                .write_all(&sig)
                .and_then(|()| stdout.flush())
                .map_err(|e| op_err(format!("writing signature to stdout: {e}")))?;
            return Ok(());
        }
    }
    let out = a.output.as_ref().expect("checked above");
    if a.json {
        let v = json!({
            "rootHash": root,
            "certificateFingerprint": fingerprint,
            "signer": sign::cert_subject(&cert_der),
            "signature": out.display().to_string(),
            "embeddedCertificate": a.embed_cert,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        println!("Root hash:       \t{root}");
        println!("Signature:       \t{}", out.display());
        println!("Certificate fingerprint:\t{fingerprint}");
    }
    Ok(())
}

/// Checks `sig_path` over `root_hex` against the given trust dirs (or the default verity.d dirs
/// under `root_dir`). Shared with `verity verify --root-hash-signature`.
pub(super) fn check_signature(
    sig_path: &Path,
    root_hex: &str,
    trust: &[PathBuf],
    root_dir: Option<&Path>,
) -> Result<Signer, CliError> {
    let sig = read_file(sig_path, "signature")?;
    let dirs = crate::host::trust_dirs(root_dir.unwrap_or(Path::new("/")), trust);
    let store = TrustStore::load(&dirs).map_err(op_err)?;
    sign::verify_signature(&sig, root_hex.as_bytes(), &store).map_err(|e| {
        let hint = if store.is_empty() {
            format!(
                " (no certificate in {})",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        };
        failed(format!(
            "signature {} over root hash {root_hex} rejected: {e}{hint}",
            sig_path.display()
        ))
    })
}

fn verify_cmd(a: VerifySignatureArgs) -> CliResult {
    let root = root_hex(&a.root)?;
    let signer = check_signature(&a.signature, &root, &a.trust, a.root_dir.as_deref())?;
    if !a.require_chain.is_empty() {
        let cas = TrustStore::load(&a.require_chain).map_err(op_err)?;
        if cas.is_empty() {
            return Err(op_err(format!(
                "--require-chain: no CA certificate (*.crt) in {}",
                a.require_chain
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        sign::verify_chain(&signer, &cas, std::time::SystemTime::now()).map_err(|e| {
            failed(format!(
                "signature {}: --require-chain: {e}",
                a.signature.display()
            ))
        })?;
    }
    if a.json {
        let v = json!({
            "verified": true,
            "rootHash": root,
            "signer": signer.subject,
            "certificateFingerprint": signer.fingerprint_hex(),
            "chainVerified": !a.require_chain.is_empty(),
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        println!(
            "Signature {} is valid: root hash {root} signed by {} (certificate fingerprint {})",
            a.signature.display(),
            signer.subject,
            signer.fingerprint_hex()
        );
    }
    Ok(())
}

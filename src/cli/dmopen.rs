//! `verity open` / `verity close`: activate and remove a kernel dm-verity device by hand, like
//! `veritysetup open`/`close`, through the same device-mapper code the boot path uses.
//!
//! The device is named after the root hash (`<hex>-verity`), so a second `open` of the same tree
//! reuses it when its table and signature state cover what this call verified
//! ([`crate::verity::reuse`]); otherwise it is refused with exit 1. With `--root-hash-signature`
//! the signature goes to the kernel through the thread keyring; a kernel that does not trust the
//! signer refuses the table (exit 1).

use super::dmverity::{load_geometry, open_source, read_root, CommonArgs};
use super::{failed, op_err, CliResult};
use crate::sys::dm::{self, DevNum, DmError, Signature, VerityRequest};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

/// Kernel activation verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Activate a read-only dm-verity device (kernel device-mapper); prints its node.
    #[command(disable_help_flag = true)]
    Open(Box<OpenArgs>),
    /// Remove a dm-verity device made by `open` (by name or by root hash).
    Close {
        /// Device name, or the root hash it was named after.
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct OpenArgs {
    /// Data block device.
    pub data: PathBuf,
    /// Hash block device (with the veritysetup superblock at --hash-offset).
    pub hash_device: PathBuf,
    /// Root hash as hex (or use --root-hash-file).
    pub root_hash: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Read the root hash from this file.
    #[arg(long)]
    pub root_hash_file: Option<PathBuf>,
    /// Detached PKCS#7 signature of the root hash, handed to the kernel to check.
    #[arg(long)]
    pub root_hash_signature: Option<PathBuf>,
    /// Certificate dirs (repeatable): verify the signature in userspace first; then a kernel that
    /// does not trust the signer may still activate the device, as systemd does.
    #[arg(long)]
    pub trust: Vec<PathBuf>,
}

pub fn run(cmd: Command) -> CliResult {
    match cmd {
        Command::Open(a) => open(*a),
        Command::Close { name } => {
            let name = if name.ends_with("-verity") {
                name
            } else {
                format!("{name}-verity")
            };
            dm::deactivate(&name).map_err(op_err)
        }
    }
}

/// The device number of a block device (dm tables name devices by number).
fn block_dev(p: &Path) -> Result<DevNum, super::CliError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m =
        std::fs::metadata(p).map_err(|e| op_err(format!("cannot stat {}: {e}", p.display())))?;
    if !m.file_type().is_block_device() {
        return Err(op_err(format!(
            "{} is not a block device (attach image files with losetup first)",
            p.display()
        )));
    }
    let r = m.rdev();
    Ok(DevNum {
        major: rustix::fs::major(r),
        minor: rustix::fs::minor(r),
    })
}

fn open(a: OpenArgs) -> CliResult {
    let data_dev = block_dev(&a.data)?;
    let hash_dev = block_dev(&a.hash_device)?;
    let hash = open_source(&a.hash_device, "hash device")?;
    let (geometry, uuid) = load_geometry(&a.common, &hash, &a.hash_device, None)?;
    let root = read_root(a.root_hash.as_deref(), a.root_hash_file.as_deref())?;
    if root.len() != geometry.params.alg.digest_size() {
        return Err(op_err(format!(
            "root hash has {} bytes; {} needs {}",
            root.len(),
            geometry.params.alg.name(),
            geometry.params.alg.digest_size()
        )));
    }
    let sig = match &a.root_hash_signature {
        Some(p) => Some(
            std::fs::read(p)
                .map_err(|e| op_err(format!("cannot read signature {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let mut userspace_verified = false;
    let mut signer = None;
    if let Some(der) = &sig {
        if !a.trust.is_empty() {
            let trust = crate::sign::TrustStore::load(&a.trust)
                .map_err(|e| op_err(format!("trust store: {e}")))?;
            let root_hex = crate::hex::encode(&root);
            // Refused here, before any device-mapper call: nothing is activated for a bad signature.
            let s = crate::sign::verify_signature(der, root_hex.as_bytes(), &trust)
                .map_err(|e| failed(format!("signature check failed: {e}")))?;
            signer = Some(s.fingerprint_hex());
            userspace_verified = true;
        }
    }
    let req = VerityRequest {
        geometry: &geometry,
        data_dev,
        hash_dev,
        root: &root,
        uuid,
        fec: None,
        signature: Signature::None,
    };
    // With a superblock, go through the fd-based entry the merge pipeline uses, so the same code
    // path is exercised from the command line (and in the VM test).
    let files = if a.common.no_superblock {
        None
    } else {
        let open = |p: &Path| {
            std::fs::File::open(p).map_err(|e| op_err(format!("cannot open {}: {e}", p.display())))
        };
        Some((open(&a.data)?, open(&a.hash_device)?))
    };
    let load = |signature: Signature<'_>| match &files {
        None => dm::activate_verity(&VerityRequest {
            signature,
            ..req.clone()
        }),
        Some((df, hf)) => dm::activate_block_files(df, hf, a.common.hash_offset, &root, signature),
    };
    // Whether a kernel refusal of the signature may fall back is admission's decision.
    let res = match &sig {
        Some(der) => crate::admit::integrity::activate_signed(load, der, userspace_verified),
        None => load(Signature::None),
    };
    let m = res.map_err(|e| match e {
        DmError::SignatureRejected { .. }
        | DmError::SignatureUnsupported(..)
        | DmError::Reuse { .. } => failed(e),
        e => op_err(e),
    })?;
    if a.common.json {
        println!(
            "{}",
            serde_json::json!({
                "name": m.name, "device": m.dev.to_string(), "path": m.path,
                "reused": m.reused, "kernelSignature": m.kernel_signature,
                "kernelSignatureNote": m.kernel_signature_note, "signer": signer,
            })
        );
    } else {
        println!("{}", m.path.display());
    }
    Ok(())
}

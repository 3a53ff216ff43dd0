//! Verifying a dissected image: every check by name (gpt or sidecar, partitions, partition-uuids,
//! signature-json, verity-superblock, signature, verity-tree, extension-release, image-policy),
//! collected in a [`Report`]; each check is one function in `checks.rs`, run in order from its
//! table. THIS IS THE ONLY PLACE THAT MINTS `Verified` tokens (only it can
//! build a [`VerifyKey`]): `Verified<VerifiedImage>` when no check failed, `Verified<ImageInfo>`
//! derived from that token by [`activated`] (the pipeline passes the image token through instead of
//! minting its own), and `Verified<ImageInfo>` for a directory tree that the image policy
//! explicitly allows ([`admit_directory`], recorded as a bypass). I/O edge (it reads the image and
//! runs the trust-store check).

mod admit;
mod checks;

use super::ddi::{Dissected, Extent, HashDevice, Layout};
use super::fsread::FsType;
use super::policy::Policy;
use super::release::{OsRelease, Scope};
use super::token::Verified;
use super::Class;
use crate::io::FileSource;
use crate::sign::Signer;
use crate::sys::memfd::SealedMemfd;
use crate::verity::Geometry;
use serde::Serialize;
use std::collections::BTreeMap;

/// What to check against.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Trusted signer certificates.
    pub trust: crate::sign::TrustStore,
    /// The image policy.
    pub policy: Policy,
    /// The class the image is to be used as (default: from the file name, else from which
    /// extension-release file it carries).
    pub class: Option<Class>,
    /// Host os-release to match the extension-release against (None: only its presence is checked).
    pub host: Option<OsRelease>,
    /// Host architecture (systemd id) for ARCHITECTURE=.
    pub host_arch: String,
    /// Required scope.
    pub scope: Scope,
    /// Read and check the extension-release file.
    pub read_release: bool,
    /// How the data is checked against the tree.
    pub data: DataCheck,
}

/// How [`verify`] checks the data blocks against the authenticated tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataCheck {
    /// Read the data where it is, once (`image verify`, `image inspect`, `pcr predict`).
    Here,
    /// Copy the data once into a memfd, seal it, and check the sealed copy; the copy is handed
    /// over in [`VerifiedImage::sealed`] for mounting (`--integrity userspace`).
    Sealed,
    /// The data will be served through kernel dm-verity, which checks every block as it is read:
    /// skip the userspace walk of the data (the signature over the root hash is still checked).
    /// Treated as [`DataCheck::Here`] when `read_release` is set, since the release file would
    /// otherwise be read from unchecked blocks.
    Kernel,
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Passed.
    Pass,
    /// Failed.
    Fail,
    /// Not applicable or not reached.
    Skip,
}

/// One named check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable name (see the module docs).
    pub name: &'static str,
    /// Result.
    pub result: Outcome,
    /// What was found.
    pub detail: String,
    /// Wall time since the previous check (or the start) in microseconds: what this check cost.
    pub micros: u64,
}

/// Verity parameters, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct VerityInfo {
    /// Hash algorithm.
    pub hash: &'static str,
    /// Data block size.
    pub data_block_size: u32,
    /// Hash block size.
    pub hash_block_size: u32,
    /// Data blocks covered.
    pub data_blocks: u64,
    /// Salt, hex.
    pub salt: String,
    /// Superblock UUID.
    pub uuid: String,
}

/// Everything found and checked.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Image path.
    pub image: String,
    /// Image name.
    pub name: String,
    /// `ddi` or `sidecar`/`bare`.
    pub layout: &'static str,
    /// Partitions (DDI).
    pub partitions: Vec<PartitionInfo>,
    /// Architecture (DDI).
    pub architecture: Option<&'static str>,
    /// `root` or `usr`.
    pub designator: &'static str,
    /// Class used.
    pub class: Option<Class>,
    /// File system.
    pub filesystem: Option<FsType>,
    /// Data extent.
    pub data: Extent,
    /// Verity parameters.
    pub verity: Option<VerityInfo>,
    /// Root hash (hex), as claimed by the signature JSON, the partition UUIDs or the sidecar.
    pub root_hash: Option<String>,
    /// certificateFingerprint from the signature JSON.
    pub claimed_fingerprint: Option<String>,
    /// Verified signer.
    pub signer: Option<Signer>,
    /// extension-release fields.
    pub extension_release: Option<BTreeMap<String, String>>,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// When the previous check ended, for [`Check::micros`].
    #[serde(skip)]
    clock: std::time::Instant,
}

/// One GPT partition, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    /// 1-based index.
    pub index: usize,
    /// Type UUID.
    pub type_uuid: String,
    /// Type, as systemd names it, if known.
    pub type_name: Option<String>,
    /// Partition UUID.
    pub uuid: String,
    /// Label.
    pub label: String,
    /// Byte offset.
    pub offset: u64,
    /// Byte size.
    pub size: u64,
}

impl Report {
    /// True if no check failed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.result != Outcome::Fail)
    }

    /// The failed checks.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|c| c.result == Outcome::Fail)
            .collect()
    }

    fn push(&mut self, name: &'static str, result: Outcome, detail: impl Into<String>) {
        let now = std::time::Instant::now();
        let micros = crate::timing::micros(now - self.clock);
        self.clock = now;
        self.checks.push(Check {
            name,
            result,
            detail: detail.into(),
            micros,
        });
    }
}

/// The verity data of a verified image: hash device, tree layout and root hash (not the
/// activation mode, which is [`crate::image::Integrity`]).
pub struct VerityData {
    /// The hash device (a duplicate descriptor of the image for DDIs).
    pub hash: HashDevice,
    /// Tree layout from the superblock.
    pub geometry: Geometry,
    /// Verified root hash.
    pub root_hash: crate::verity::RootHash,
}

/// An image that passed every check; only [`verify`] creates it (inside [`Verified`]).
pub struct VerifiedImage {
    /// With [`DataCheck::Sealed`]: the data partition copied once into a sealed memfd, and (for
    /// a verity image) checked there block by block against the authenticated tree. These are
    /// the bytes to mount.
    pub sealed: Option<SealedMemfd>,
    /// The image descriptor that was verified.
    pub source: FileSource,
    /// Image name.
    pub name: String,
    /// Class it was verified as.
    pub class: Class,
    /// File-system partition.
    pub data: Extent,
    /// File system.
    pub fs: Option<FsType>,
    /// Verity tree (None only if the policy allowed an unprotected image).
    pub integrity: Option<VerityData>,
    /// Who signed (None if the policy allowed no signature).
    pub signer: Option<Signer>,
    /// Parsed extension-release.
    pub extension_release: Option<OsRelease>,
}

fn hex(b: &[u8]) -> String {
    crate::hex::encode(b)
}

/// Runs every check on `d`, in the order of the table in `checks.rs`. The report always comes back;
/// the token only if nothing failed.
pub fn verify(
    d: Dissected,
    opts: &VerifyOptions,
) -> (Report, Result<Verified<VerifiedImage>, String>) {
    let mut run = checks::Run::new(d, opts);
    for (_, check) in checks::CHECKS {
        check(&mut run);
    }
    let checks::Run {
        d,
        r,
        geom,
        claimed,
        sealed,
        ext_release,
        ..
    } = run;
    if !r.ok() {
        let names: Vec<&str> = r.failures().iter().map(|c| c.name).collect();
        let msg = format!("{}: failed checks: {}", r.image, names.join(", "));
        return (r, Err(msg));
    }
    let Some(class) = r.class else {
        return (r, Err("the image class is unknown (pass --class)".into()));
    };
    let integrity = match (d.verity, geom, claimed) {
        (Some(hash), Some(geometry), Some(root_hash)) => Some(VerityData {
            hash,
            geometry,
            root_hash: crate::verity::RootHash::new(root_hash),
        }),
        _ => None,
    };
    let vi = VerifiedImage {
        sealed,
        source: d.source,
        name: d.name,
        class,
        data: d.data,
        fs: r.filesystem,
        integrity,
        signer: r.signer.clone(),
        extension_release: ext_release,
    };
    // The one place an image token is minted from a check: every check passed.
    (r, Ok(Verified::mint(vi, VerifyKey(()))))
}

/// The key [`Verified::mint`] takes. Its field is private to this module, so only the functions
/// here mint tokens.
pub struct VerifyKey(());

pub use admit::{activated, admit_directory, directory_allowed, with_version};

/// A token around anything, for unit tests of the code that consumes tokens.
#[cfg(test)]
pub(crate) fn test_token<T>(inner: T) -> Verified<T> {
    Verified::mint(inner, VerifyKey(()))
}

/// "signature not found", where it was looked for, and files nearby that look like a misnamed one.
fn signature_not_found(d: &Dissected) -> String {
    match &d.layout {
        Layout::Gpt(_) => format!(
            "signature not found: the GPT has no {}-verity-sig partition{}",
            d.designator,
            d.arch.map(|a| format!(" for {a}")).unwrap_or_default()
        ),
        Layout::Bare => {
            let (looked, near) =
                super::sidecar::signature_search(d.source.path(), d.designator, d.verity.is_some());
            let list = |v: &[std::path::PathBuf]| {
                v.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
            };
            let mut msg = format!(
                "signature not found: looked for {}",
                list(&looked).join(" and ")
            );
            if !near.is_empty() {
                msg.push_str(&format!(
                    "; found {}, which is not a name signatures are looked for under",
                    list(&near).join(", ")
                ));
            }
            msg
        }
    }
}

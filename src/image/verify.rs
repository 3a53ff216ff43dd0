//! Verifying a dissected image: every check by name (gpt or sidecar, partitions, partition-uuids,
//! signature-json, verity-superblock, signature, verity-tree, extension-release, image-policy),
//! collected in a [`Report`]. THIS IS THE ONLY PLACE THAT MINTS `Verified` tokens (only it can
//! build a [`VerifyKey`]): `Verified<VerifiedImage>` when no check failed, `Verified<ImageInfo>`
//! derived from that token by [`activated`] (the pipeline passes the image token through instead of
//! minting its own), and `Verified<ImageInfo>` for a directory tree that the image policy
//! explicitly allows ([`admit_directory`], recorded as a bypass). I/O edge (it reads the image and
//! runs the trust-store check).

mod admit;

use super::content::{check_release, check_tree, seal_copy, TreeOutcome};
use super::ddi::{Dissected, Extent, HashDevice, Layout, Signature};
use super::fsread::{self, FsType};
use super::policy::{Policy, State};
use super::release::{OsRelease, Scope};
use super::token::Verified;
use super::trust::{self, Signer};
use super::Class;
use crate::io::FileSource;
use crate::sys::memfd::SealedMemfd;
use crate::verity::authtree::AuthTree;
use crate::verity::hasher::BlockHasher;
use crate::verity::source::Slice;
use crate::verity::{geometry::hash_start_block, BlockSource, Geometry, Superblock};
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

/// Integrity data of a verified image.
pub struct Integrity {
    /// The hash device (a duplicate descriptor of the image for DDIs).
    pub hash: HashDevice,
    /// Tree layout from the superblock.
    pub geometry: Geometry,
    /// Verified root hash.
    pub root_hash: Vec<u8>,
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
    pub integrity: Option<Integrity>,
    /// Who signed (None if the policy allowed no signature).
    pub signer: Option<Signer>,
    /// Parsed extension-release.
    pub extension_release: Option<OsRelease>,
}

fn hex(b: &[u8]) -> String {
    crate::hex::encode(b)
}

fn top_root(geom: &Geometry, hash: &dyn BlockSource) -> Option<Vec<u8>> {
    let top = geom.levels.last()?;
    let hbs = geom.params.hash_block_size as usize;
    let mut buf = vec![0u8; hbs];
    hash.read_at(&mut buf, top.start * hbs as u64).ok()?;
    let h = BlockHasher::new(geom.params.alg, &geom.params.salt, geom.params.hash_type);
    Some(h.hash(&buf))
}

/// Runs every check on `d`. The report always comes back; the token only if nothing failed.
pub fn verify(
    d: Dissected,
    opts: &VerifyOptions,
) -> (Report, Result<Verified<VerifiedImage>, String>) {
    let mut r = Report {
        image: d.source.path().display().to_string(),
        name: d.name.clone(),
        layout: match d.layout {
            Layout::Gpt(_) => "ddi",
            Layout::Bare => "bare",
        },
        partitions: Vec::new(),
        architecture: d.arch,
        designator: d.designator,
        class: opts.class.or(d.class_hint),
        filesystem: fsread::detect_in(&d.source, d.data),
        data: d.data,
        verity: None,
        root_hash: None,
        claimed_fingerprint: None,
        signer: None,
        extension_release: None,
        checks: Vec::new(),
        clock: std::time::Instant::now(),
    };
    match &d.layout {
        Layout::Gpt(g) => {
            for p in &g.partitions {
                r.partitions.push(PartitionInfo {
                    index: p.index,
                    type_uuid: p.type_guid.to_string(),
                    type_name: super::arch::classify(p.type_guid)
                        .map(|(a, role)| {
                            let base = role.name();
                            match base.split_once('-') {
                                Some((d, rest)) => format!("{d}-{a}-{rest}"),
                                None => format!("{base}-{a}"),
                            }
                        })
                        .or_else(|| {
                            (p.type_guid == super::arch::LINUX_GENERIC)
                                .then(|| "linux-generic".to_string())
                        }),
                    uuid: p.uuid.to_string(),
                    label: p.name.clone(),
                    offset: p.offset(g.sector),
                    size: p.size(g.sector),
                });
            }
            r.push(
                "gpt",
                Outcome::Pass,
                format!(
                    "primary and backup headers and entry arrays valid, {}-byte sectors, {} partitions",
                    g.sector,
                    g.partitions.len()
                ),
            );
        }
        Layout::Bare => r.push(
            "sidecar",
            Outcome::Pass,
            if d.verity.is_some() {
                "bare file system with .verity and root-hash sidecars"
            } else {
                "bare file system without sidecars"
            },
        ),
    }
    r.push(
        "partitions",
        Outcome::Pass,
        format!(
            "{} data partition{}{}{}",
            d.designator,
            d.arch.map(|a| format!(" for {a}")).unwrap_or_default(),
            if d.verity.is_some() { ", verity" } else { "" },
            if d.signature.is_some() {
                ", signature"
            } else {
                ""
            }
        ),
    );

    // Signature JSON (or p7s), parsed.
    let (json_root, sig_der) = match &d.signature {
        Some(Signature::Json(Ok(sp))) => {
            r.claimed_fingerprint = sp.cert_fingerprint.map(|f| hex(&f));
            (Some(sp.root_hash.clone()), Some(sp.signature.clone()))
        }
        Some(Signature::Json(Err(e))) => {
            r.push("signature-json", Outcome::Fail, e.to_string());
            (None, None)
        }
        Some(Signature::P7s(der)) => (None, Some(der.clone())),
        None => (None, None),
    };

    // Verity superblock and geometry.
    let mut geom = None;
    if let Some(v) = &d.verity {
        let hash = Slice::new(&v.source, v.extent.offset, v.extent.size);
        let mut sb = vec![0u8; crate::verity::superblock::SUPERBLOCK_SIZE];
        let res = hash
            .read_at(&mut sb, 0)
            .map_err(|e| format!("reading the superblock at byte {}: {e}", v.extent.offset))
            .and_then(|_| Superblock::parse(&sb).map_err(|e| e.to_string()))
            .and_then(|s| {
                let p = s.params();
                let hs = hash_start_block(0, p.hash_block_size, true).map_err(|e| e.to_string())?;
                let g = Geometry::new(p, hs).map_err(|e| e.to_string())?;
                if g.data_size() > d.data.size {
                    return Err(format!(
                        "superblock covers {} bytes but the data partition has {}",
                        g.data_size(),
                        d.data.size
                    ));
                }
                if g.hash_end() > v.extent.size {
                    return Err(format!(
                        "tree needs {} bytes but the verity partition has {}",
                        g.hash_end(),
                        v.extent.size
                    ));
                }
                r.verity = Some(VerityInfo {
                    hash: g.params.alg.name(),
                    data_block_size: g.params.data_block_size,
                    hash_block_size: g.params.hash_block_size,
                    data_blocks: g.params.data_blocks,
                    salt: hex(&g.params.salt),
                    uuid: crate::verity::superblock::uuid_to_string(&s.uuid),
                });
                Ok(g)
            });
        match res {
            Ok(g) => {
                r.push(
                    "verity-superblock",
                    Outcome::Pass,
                    "format 1 superblock valid",
                );
                geom = Some(g);
            }
            Err(e) => r.push("verity-superblock", Outcome::Fail, e),
        }
    } else {
        r.push("verity-superblock", Outcome::Skip, "no verity data");
    }

    // Which root hash is claimed, and do the claims agree with each other and with the tree?
    let uuid_halves = match (d.data_uuid, d.verity.as_ref().and_then(|v| v.uuid)) {
        (Some(a), Some(b)) if d.verity.is_some() => Some((a.0, b.0)),
        _ => None,
    };
    let tree_root = match (&geom, &d.verity) {
        (Some(g), Some(v)) => top_root(g, &Slice::new(&v.source, v.extent.offset, v.extent.size)),
        _ => None,
    };
    let matches_uuids = |root: &[u8]| {
        uuid_halves.is_some_and(|(a, b)| {
            root.len() >= 16 && root[..16] == a && root[root.len() - 16..] == b
        })
    };
    let mut claimed: Option<Vec<u8>> = json_root
        .clone()
        .or_else(|| d.sidecar_root_hash.clone())
        .or_else(|| uuid_halves.map(|(a, b)| [a, b].concat()));
    // Each claim (UUIDs, JSON rootHash) must agree with at least one other source (the other
    // claim or the tree itself); the one that agrees with neither is the tampered one.
    if let Some((a, b)) = uuid_halves {
        let ok = json_root.as_deref().is_some_and(matches_uuids)
            || tree_root.as_deref().is_some_and(matches_uuids)
            || (json_root.is_none() && tree_root.is_none());
        if ok {
            r.push(
                "partition-uuids",
                Outcome::Pass,
                "data/verity partition UUIDs are the first/last 128 bits of the root hash",
            );
        } else {
            r.push(
                "partition-uuids",
                Outcome::Fail,
                format!(
                    "partition UUIDs {} / {} do not match the root hash {}",
                    super::gpt::Guid(a),
                    super::gpt::Guid(b),
                    hex(json_root
                        .as_ref()
                        .or(tree_root.as_ref())
                        .expect("checked above"))
                ),
            );
        }
    }
    if let Some(j) = &json_root {
        let ok = matches_uuids(j) || tree_root.as_ref() == Some(j) || tree_root.is_none();
        if ok {
            r.push(
                "signature-json",
                Outcome::Pass,
                "JSON valid, NUL-padded, rootHash matches the verity root hash",
            );
        } else {
            let t = tree_root.clone().expect("checked above");
            r.push(
                "signature-json",
                Outcome::Fail,
                format!(
                    "rootHash {} in the signature JSON differs from the verity tree's root hash {}",
                    hex(j),
                    hex(&t)
                ),
            );
            // The tree and the UUIDs agree: carry on with their root so the report shows whether
            // the rest is sound (the image fails either way).
            if matches_uuids(&t) {
                claimed = Some(t);
            }
        }
    }
    r.root_hash = claimed.as_ref().map(|c| hex(c));

    // The signature against the trust store.
    let mut signed = false;
    match (&sig_der, &claimed) {
        (Some(der), Some(root)) => {
            match trust::verify_signature(der, hex(root).as_bytes(), &opts.trust) {
                Ok(s) => {
                    r.push(
                        "signature",
                        Outcome::Pass,
                        format!("signed by {} (sha256 {})", s.subject, s.fingerprint),
                    );
                    r.signer = Some(s);
                    signed = true;
                }
                Err(e) => r.push("signature", Outcome::Fail, e),
            }
        }
        (Some(_), None) => r.push("signature", Outcome::Fail, "a signature but no root hash"),
        (None, _) if matches!(d.signature, Some(Signature::Json(Err(_)))) => r.push(
            "signature",
            Outcome::Skip,
            "signature partition unusable (see signature-json)",
        ),
        (None, _) => {
            // Never silently unsigned: say where the signature was looked for, and fail here
            // already when the policy needs one (a missing or misnamed .p7s is the usual cause).
            let state = if d.verity.is_some() {
                State::Verity
            } else {
                State::Unprotected
            };
            let where_ = signature_not_found(&d);
            if opts.policy.check(d.designator, state, None, None).is_ok() {
                r.push(
                    "signature",
                    Outcome::Skip,
                    format!("unsigned, which the image policy allows: {where_}"),
                );
            } else {
                r.push("signature", Outcome::Fail, where_);
            }
        }
    }

    // The full tree: the upper levels are read once and authenticated, then the data (in place,
    // or copied once into a sealed memfd and checked there) streams past with level 0.
    let data_check = if opts.read_release && opts.data == DataCheck::Kernel {
        DataCheck::Here
    } else {
        opts.data
    };
    let mut tree: Option<AuthTree> = None;
    let mut sealed: Option<SealedMemfd> = None;
    let mut tree_ok = false;
    match (&geom, &d.verity, &claimed) {
        (Some(_), Some(_), Some(_)) if data_check == DataCheck::Kernel => r.push(
            "verity-tree",
            Outcome::Skip,
            "data is checked by kernel dm-verity as it is read",
        ),
        (Some(g), Some(v), Some(root)) => {
            let hash = Slice::new(&v.source, v.extent.offset, v.extent.size);
            let res = check_tree(&d, g, &hash, root, data_check);
            match res {
                Ok(TreeOutcome::Good(t, s)) => {
                    tree_ok = true;
                    tree = Some(*t);
                    sealed = s;
                    r.push(
                        "verity-tree",
                        Outcome::Pass,
                        format!(
                            "all {} data blocks match the root hash",
                            g.params.data_blocks
                        ),
                    );
                }
                Ok(TreeOutcome::Bad(b)) => {
                    let abs = match b.location {
                        crate::verity::verify::Location::Data { .. } => d.data.offset + b.offset,
                        _ => v.extent.offset + b.offset,
                    };
                    r.push(
                        "verity-tree",
                        Outcome::Fail,
                        format!("{b} (image byte {abs})"),
                    )
                }
                Err(e) => r.push("verity-tree", Outcome::Fail, e),
            }
        }
        (_, None, _) => r.push("verity-tree", Outcome::Skip, "no verity data"),
        _ => r.push(
            "verity-tree",
            Outcome::Skip,
            "no usable superblock or root hash",
        ),
    }
    if d.verity.is_none() && data_check == DataCheck::Sealed {
        // An unprotected image the policy may allow: the caller still mounts a sealed copy.
        match seal_copy(&d, d.data.size) {
            Ok(s) => sealed = Some(s),
            Err(e) => r.push("open", Outcome::Fail, e),
        }
    }

    // extension-release: only from bytes that passed the tree (or from an unprotected image).
    let mut ext_release = None;
    if !opts.read_release {
        r.push("extension-release", Outcome::Skip, "not requested");
    } else if d.verity.is_some() && !tree_ok {
        r.push(
            "extension-release",
            Outcome::Skip,
            "not read from unverified data",
        );
    } else {
        let res = match (&tree, &d.verity) {
            (Some(t), Some(v)) => {
                let hash = Slice::new(&v.source, v.extent.offset, v.extent.size);
                let data = Slice::new(&d.source, d.data.offset, d.data.size);
                match &sealed {
                    Some(s) => check_release(&d, opts, &t.reader(s, &hash), &mut r.filesystem),
                    None => check_release(&d, opts, &t.reader(&data, &hash), &mut r.filesystem),
                }
            }
            // No tree (the policy decides whether that is acceptable): the bounded readers
            // parse the bytes as they are.
            _ => {
                let data = Slice::new(&d.source, d.data.offset, d.data.size);
                check_release(&d, opts, &data, &mut r.filesystem)
            }
        };
        match res {
            Ok((class, rel, detail)) => {
                r.class = Some(class);
                r.extension_release = Some(rel.fields.clone());
                ext_release = Some(rel);
                r.push("extension-release", Outcome::Pass, detail);
            }
            Err(e) => r.push("extension-release", Outcome::Fail, e),
        }
    }

    // Image policy.
    let state = if d.verity.is_none() {
        State::Unprotected
    } else if signed {
        State::Signed
    } else {
        State::Verity
    };
    let other = if d.designator == "root" {
        "usr"
    } else {
        "root"
    };
    let attrs = d.data_attrs;
    let pol = opts
        .policy
        .check(
            d.designator,
            state,
            attrs.map(|a| a & super::gpt::ATTR_READ_ONLY != 0),
            attrs.map(|a| a & super::gpt::ATTR_GROWFS != 0),
        )
        .and_then(|_| opts.policy.check(other, State::Absent, None, None));
    match pol {
        Ok(()) => r.push(
            "image-policy",
            Outcome::Pass,
            format!(
                "{}={} allowed by {}",
                d.designator,
                state.word(),
                opts.policy
            ),
        ),
        Err(e) => r.push("image-policy", Outcome::Fail, e.to_string()),
    }

    if !r.ok() {
        let names: Vec<&str> = r.failures().iter().map(|c| c.name).collect();
        let msg = format!("{}: failed checks: {}", r.image, names.join(", "));
        return (r, Err(msg));
    }
    let Some(class) = r.class else {
        return (r, Err("the image class is unknown (pass --class)".into()));
    };
    let integrity = match (d.verity, geom, claimed) {
        (Some(hash), Some(geometry), Some(root_hash)) => Some(Integrity {
            hash,
            geometry,
            root_hash,
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
    // The one place an image token is minted from a check: every check above passed.
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

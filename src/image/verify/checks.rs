//! The named checks of [`super::verify`], one function each, run in order from [`CHECKS`]. Each
//! step reads what the earlier ones established from [`Run`] and records its outcome(s) in the
//! report; a step may record nothing (not applicable) or more than one entry (the signature JSON
//! is checked once for syntax and once against the other root-hash claims). The order is the
//! order of the report and is part of its format (the tamper tests compare it).

use super::super::content::{check_release, check_tree, seal_copy, TreeOutcome};
use super::super::ddi::{Dissected, Layout, Signature};
use super::super::fsread;
use super::super::policy::State;
use super::super::release::OsRelease;
use super::super::trust;
use super::{
    hex, signature_not_found, DataCheck, Outcome, PartitionInfo, Report, VerifyOptions, VerityInfo,
};
use crate::sys::memfd::SealedMemfd;
use crate::verity::authtree::AuthTree;
use crate::verity::hasher::BlockHasher;
use crate::verity::source::Slice;
use crate::verity::{geometry::hash_start_block, BlockSource, Geometry, Superblock};

/// One step: the name of the check it records (the first, where it records several) and the
/// function doing it.
pub(super) type Step = (&'static str, fn(&mut Run<'_>));

/// The checks, in report order.
pub(super) const CHECKS: &[Step] = &[
    ("gpt/sidecar", layout),
    ("partitions", partitions),
    ("signature-json", signature_json),
    ("verity-superblock", verity_superblock),
    ("partition-uuids", partition_uuids),
    ("signature-json", root_hash_json),
    ("signature", signature),
    ("verity-tree", verity_tree),
    ("extension-release", extension_release),
    ("image-policy", image_policy),
];

/// What the checks found so far; [`super::verify`] turns it into the token at the end.
pub(super) struct Run<'a> {
    pub(super) d: Dissected,
    pub(super) opts: &'a VerifyOptions,
    pub(super) r: Report,
    /// rootHash from the signature JSON.
    json_root: Option<Vec<u8>>,
    /// The PKCS#7 signature (from the JSON or a .p7s).
    sig_der: Option<Vec<u8>>,
    /// Tree layout from a valid superblock.
    pub(super) geom: Option<Geometry>,
    /// The data and verity partition UUIDs, when both exist.
    uuid_halves: Option<([u8; 16], [u8; 16])>,
    /// The root hash computed from the tree's top block.
    tree_root: Option<Vec<u8>>,
    /// The root hash everything is checked against.
    pub(super) claimed: Option<Vec<u8>>,
    /// The signature verified.
    signed: bool,
    /// The authenticated tree (after a passing `verity-tree`).
    tree: Option<AuthTree>,
    /// The sealed data copy ([`DataCheck::Sealed`]).
    pub(super) sealed: Option<SealedMemfd>,
    /// `verity-tree` passed.
    tree_ok: bool,
    /// Parsed extension-release.
    pub(super) ext_release: Option<OsRelease>,
}

impl<'a> Run<'a> {
    /// An empty report for `d`.
    pub(super) fn new(d: Dissected, opts: &'a VerifyOptions) -> Self {
        let r = Report {
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
        Run {
            d,
            opts,
            r,
            json_root: None,
            sig_der: None,
            geom: None,
            uuid_halves: None,
            tree_root: None,
            claimed: None,
            signed: false,
            tree: None,
            sealed: None,
            tree_ok: false,
            ext_release: None,
        }
    }

    /// The root hash a claim should be matched against the UUIDs with.
    fn matches_uuids(&self, root: &[u8]) -> bool {
        self.uuid_halves.is_some_and(|(a, b)| {
            root.len() >= 16 && root[..16] == a && root[root.len() - 16..] == b
        })
    }

    /// The hash device's extent as a block source.
    fn hash_slice(&self) -> Option<Slice<'_, crate::io::FileSource>> {
        let v = self.d.verity.as_ref()?;
        Some(Slice::new(&v.source, v.extent.offset, v.extent.size))
    }
}

fn top_root(geom: &Geometry, hash: &dyn BlockSource) -> Option<Vec<u8>> {
    let top = geom.levels.last()?;
    let hbs = geom.params.hash_block_size as usize;
    let mut buf = vec![0u8; hbs];
    hash.read_at(&mut buf, top.start * hbs as u64).ok()?;
    let h = BlockHasher::new(geom.params.alg, &geom.params.salt, geom.params.hash_type);
    Some(h.hash(&buf))
}

/// `gpt` (a DDI: both headers and entry arrays) or `sidecar` (a bare file system); lists the
/// partitions for the report.
fn layout(run: &mut Run<'_>) {
    let (d, r) = (&run.d, &mut run.r);
    match &d.layout {
        Layout::Gpt(g) => {
            for p in &g.partitions {
                r.partitions.push(PartitionInfo {
                    index: p.index,
                    type_uuid: p.type_guid.to_string(),
                    type_name: type_name(p.type_guid),
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
}

/// A partition type as systemd names it (`root-x86-64-verity`), if known.
fn type_name(t: super::super::gpt::Guid) -> Option<String> {
    super::super::arch::classify(t)
        .map(|(a, role)| {
            let base = role.name();
            match base.split_once('-') {
                Some((d, rest)) => format!("{d}-{a}-{rest}"),
                None => format!("{base}-{a}"),
            }
        })
        .or_else(|| (t == super::super::arch::LINUX_GENERIC).then(|| "linux-generic".to_string()))
}

/// `partitions`: which parts were found (dissection already refused an unusable set).
fn partitions(run: &mut Run<'_>) {
    let d = &run.d;
    let detail = format!(
        "{} data partition{}{}{}",
        d.designator,
        d.arch.map(|a| format!(" for {a}")).unwrap_or_default(),
        if d.verity.is_some() { ", verity" } else { "" },
        if d.signature.is_some() {
            ", signature"
        } else {
            ""
        }
    );
    run.r.push("partitions", Outcome::Pass, detail);
}

/// `signature-json`, first half: the signature partition parses (recorded only when it does not;
/// whether its rootHash agrees is [`root_hash_json`]).
fn signature_json(run: &mut Run<'_>) {
    match &run.d.signature {
        Some(Signature::Json(Ok(sp))) => {
            run.r.claimed_fingerprint = sp.cert_fingerprint.map(|f| hex(&f));
            run.json_root = Some(sp.root_hash.clone());
            run.sig_der = Some(sp.signature.clone());
        }
        Some(Signature::Json(Err(e))) => {
            run.r.push("signature-json", Outcome::Fail, e.to_string());
        }
        Some(Signature::P7s(der)) => run.sig_der = Some(der.clone()),
        None => {}
    }
}

/// `verity-superblock`: the superblock parses and the tree it describes fits both partitions.
fn verity_superblock(run: &mut Run<'_>) {
    let Some(hash) = run.hash_slice() else {
        run.r
            .push("verity-superblock", Outcome::Skip, "no verity data");
        return;
    };
    let v = run.d.verity.as_ref().expect("hash_slice found it");
    let mut sb = vec![0u8; crate::verity::superblock::SUPERBLOCK_SIZE];
    let res = hash
        .read_at(&mut sb, 0)
        .map_err(|e| format!("reading the superblock at byte {}: {e}", v.extent.offset))
        .and_then(|_| Superblock::parse(&sb).map_err(|e| e.to_string()))
        .and_then(|s| {
            let p = s.params();
            let hs = hash_start_block(0, p.hash_block_size, true).map_err(|e| e.to_string())?;
            let g = Geometry::new(p, hs).map_err(|e| e.to_string())?;
            if g.data_size() > run.d.data.size {
                return Err(format!(
                    "superblock covers {} bytes but the data partition has {}",
                    g.data_size(),
                    run.d.data.size
                ));
            }
            if g.hash_end() > v.extent.size {
                return Err(format!(
                    "tree needs {} bytes but the verity partition has {}",
                    g.hash_end(),
                    v.extent.size
                ));
            }
            let info = VerityInfo {
                hash: g.params.alg.name(),
                data_block_size: g.params.data_block_size,
                hash_block_size: g.params.hash_block_size,
                data_blocks: g.params.data_blocks,
                salt: hex(&g.params.salt),
                uuid: crate::verity::superblock::uuid_to_string(&s.uuid),
            };
            Ok((g, info))
        });
    match res {
        Ok((g, info)) => {
            run.r.verity = Some(info);
            run.r.push(
                "verity-superblock",
                Outcome::Pass,
                "format 1 superblock valid",
            );
            run.geom = Some(g);
        }
        Err(e) => run.r.push("verity-superblock", Outcome::Fail, e),
    }
}

/// `partition-uuids`: collects the root-hash claims (signature JSON, sidecar, partition UUIDs)
/// and the tree's own root, then checks the UUIDs. Each claim must agree with at least one other
/// source (the other claim or the tree itself); the one that agrees with neither is the
/// tampered one.
fn partition_uuids(run: &mut Run<'_>) {
    let d = &run.d;
    run.uuid_halves = match (d.data_uuid, d.verity.as_ref().and_then(|v| v.uuid)) {
        (Some(a), Some(b)) if d.verity.is_some() => Some((a.0, b.0)),
        _ => None,
    };
    run.tree_root = match (&run.geom, run.hash_slice()) {
        (Some(g), Some(hash)) => top_root(g, &hash),
        _ => None,
    };
    run.claimed = run
        .json_root
        .clone()
        .or_else(|| run.d.sidecar_root_hash.clone())
        .or_else(|| run.uuid_halves.map(|(a, b)| [a, b].concat()));
    let Some((a, b)) = run.uuid_halves else {
        return;
    };
    let ok = run
        .json_root
        .as_deref()
        .is_some_and(|j| run.matches_uuids(j))
        || run
            .tree_root
            .as_deref()
            .is_some_and(|t| run.matches_uuids(t))
        || (run.json_root.is_none() && run.tree_root.is_none());
    if ok {
        run.r.push(
            "partition-uuids",
            Outcome::Pass,
            "data/verity partition UUIDs are the first/last 128 bits of the root hash",
        );
    } else {
        let detail = format!(
            "partition UUIDs {} / {} do not match the root hash {}",
            super::super::gpt::Guid(a),
            super::super::gpt::Guid(b),
            hex(run
                .json_root
                .as_ref()
                .or(run.tree_root.as_ref())
                .expect("checked above"))
        );
        run.r.push("partition-uuids", Outcome::Fail, detail);
    }
}

/// `signature-json`, second half: its rootHash agrees with the UUIDs or the tree. Settles the
/// root hash the rest is checked against.
fn root_hash_json(run: &mut Run<'_>) {
    if let Some(j) = run.json_root.clone() {
        let ok =
            run.matches_uuids(&j) || run.tree_root.as_ref() == Some(&j) || run.tree_root.is_none();
        if ok {
            run.r.push(
                "signature-json",
                Outcome::Pass,
                "JSON valid, NUL-padded, rootHash matches the verity root hash",
            );
        } else {
            let t = run.tree_root.clone().expect("checked above");
            run.r.push(
                "signature-json",
                Outcome::Fail,
                format!(
                    "rootHash {} in the signature JSON differs from the verity tree's root hash {}",
                    hex(&j),
                    hex(&t)
                ),
            );
            // The tree and the UUIDs agree: carry on with their root so the report shows whether
            // the rest is sound (the image fails either way).
            if run.matches_uuids(&t) {
                run.claimed = Some(t);
            }
        }
    }
    run.r.root_hash = run.claimed.as_ref().map(|c| hex(c));
}

/// `signature`: the PKCS#7 signature over the root hash against the trust store; an unsigned
/// image says where the signature was looked for.
fn signature(run: &mut Run<'_>) {
    let (d, opts, r) = (&run.d, run.opts, &mut run.r);
    match (&run.sig_der, &run.claimed) {
        (Some(der), Some(root)) => {
            match trust::verify_signature(der, hex(root).as_bytes(), &opts.trust) {
                Ok(s) => {
                    r.push(
                        "signature",
                        Outcome::Pass,
                        format!("signed by {} (sha256 {})", s.subject, s.fingerprint_hex()),
                    );
                    r.signer = Some(s);
                    run.signed = true;
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
            let where_ = signature_not_found(d);
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
}

/// How the data is checked: a kernel check is done here anyway when the release file is to be
/// read, since it would otherwise come from unchecked blocks.
fn data_check(opts: &VerifyOptions) -> DataCheck {
    if opts.read_release && opts.data == DataCheck::Kernel {
        DataCheck::Here
    } else {
        opts.data
    }
}

/// `verity-tree`: the upper levels are read once and authenticated, then the data (in place, or
/// copied once into a sealed memfd and checked there) streams past with level 0. An unprotected
/// image to be sealed is copied here too (`open` if that fails).
fn verity_tree(run: &mut Run<'_>) {
    let how = data_check(run.opts);
    let d = &run.d;
    match (&run.geom, &d.verity, &run.claimed) {
        (Some(_), Some(_), Some(_)) if how == DataCheck::Kernel => run.r.push(
            "verity-tree",
            Outcome::Skip,
            "data is checked by kernel dm-verity as it is read",
        ),
        (Some(g), Some(v), Some(root)) => {
            let hash = Slice::new(&v.source, v.extent.offset, v.extent.size);
            match check_tree(d, g, &hash, root, how) {
                Ok(TreeOutcome::Good(t, s)) => {
                    run.tree_ok = true;
                    run.tree = Some(*t);
                    run.sealed = s;
                    run.r.push(
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
                    run.r.push(
                        "verity-tree",
                        Outcome::Fail,
                        format!("{b} (image byte {abs})"),
                    )
                }
                Err(e) => run.r.push("verity-tree", Outcome::Fail, e),
            }
        }
        (_, None, _) => run.r.push("verity-tree", Outcome::Skip, "no verity data"),
        _ => run.r.push(
            "verity-tree",
            Outcome::Skip,
            "no usable superblock or root hash",
        ),
    }
    if d.verity.is_none() && how == DataCheck::Sealed {
        // An unprotected image the policy may allow: the caller still mounts a sealed copy.
        match seal_copy(d, d.data.size) {
            Ok(s) => run.sealed = Some(s),
            Err(e) => run.r.push("open", Outcome::Fail, e),
        }
    }
}

/// `extension-release`: only from bytes that passed the tree (or from an unprotected image).
fn extension_release(run: &mut Run<'_>) {
    let (d, opts) = (&run.d, run.opts);
    if !opts.read_release {
        run.r
            .push("extension-release", Outcome::Skip, "not requested");
        return;
    }
    if d.verity.is_some() && !run.tree_ok {
        run.r.push(
            "extension-release",
            Outcome::Skip,
            "not read from unverified data",
        );
        return;
    }
    let fs = &mut run.r.filesystem;
    let data = Slice::new(&d.source, d.data.offset, d.data.size);
    let res = match (&run.tree, &d.verity) {
        (Some(t), Some(v)) => {
            let hash = Slice::new(&v.source, v.extent.offset, v.extent.size);
            match &run.sealed {
                Some(s) => check_release(d, opts, &t.reader(s, &hash), fs),
                None => check_release(d, opts, &t.reader(&data, &hash), fs),
            }
        }
        // No tree (the policy decides whether that is acceptable): the bounded readers parse
        // the bytes as they are.
        _ => check_release(d, opts, &data, fs),
    };
    match res {
        Ok((class, rel, detail)) => {
            run.r.class = Some(class);
            run.r.extension_release = Some(rel.fields.clone());
            run.ext_release = Some(rel);
            run.r.push("extension-release", Outcome::Pass, detail);
        }
        Err(e) => run.r.push("extension-release", Outcome::Fail, e),
    }
}

/// `image-policy`: the protection found (and the GPT flags) against the policy, which must also
/// allow the other designator to be absent.
fn image_policy(run: &mut Run<'_>) {
    let (d, opts) = (&run.d, run.opts);
    let state = if d.verity.is_none() {
        State::Unprotected
    } else if run.signed {
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
            attrs.map(|a| a & super::super::gpt::ATTR_READ_ONLY != 0),
            attrs.map(|a| a & super::super::gpt::ATTR_GROWFS != 0),
        )
        .and_then(|_| opts.policy.check(other, State::Absent, None, None));
    match pol {
        Ok(()) => run.r.push(
            "image-policy",
            Outcome::Pass,
            format!(
                "{}={} allowed by {}",
                d.designator,
                state.word(),
                opts.policy
            ),
        ),
        Err(e) => run.r.push("image-policy", Outcome::Fail, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::CHECKS;

    /// The report order is part of its format: reordering the table must be deliberate.
    #[test]
    fn table_order_is_the_report_order() {
        let names: Vec<&str> = CHECKS.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "gpt/sidecar",
                "partitions",
                "signature-json",
                "verity-superblock",
                "partition-uuids",
                "signature-json",
                "signature",
                "verity-tree",
                "extension-release",
                "image-policy"
            ]
        );
    }
}

//! `soft-reboot prepare`: the image goes through the same admission pipeline as an extension
//! ([`crate::admit`]: open once, signature and policy, integrity activation by the kernel or in
//! userspace, read-only mount in a private workspace, rollback check), must be an
//! OS tree (os-release and an executable init), is measured as class `nextroot` (PCR 15 by
//! default; the token says `nextroot`, so any measurer measures it as such), and only then is moved
//! onto the nextroot and recorded.

use super::plan::StageRecord;
use super::stage::{self, StageFacts};
use crate::admit::{self, Activator, ImageKind, Measurer};
use crate::host::Host;
use crate::merge::apply::Workspace;
use std::path::{Path, PathBuf};

/// What one `soft-reboot prepare` is asked to stage; everything about the host (root, trust,
/// policy and PCR of a root image, integrity, workspace, ratchet) is in the [`Host`].
#[derive(Debug, Clone)]
pub struct PrepareRequest {
    /// The root image.
    pub image: PathBuf,
    /// Where to mount it (default /run/nextroot).
    pub nextroot: PathBuf,
    /// Where to record it.
    pub record: PathBuf,
    /// The init the tree must provide (default: systemd's list).
    pub init: Option<String>,
}

/// Which step refused the image, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareError {
    /// Whether a check failed (exit 1) rather than an operation (exit 2).
    pub check_failed: bool,
    /// The message, naming the image and the step.
    pub message: String,
}

/// The image name: the file name without `.raw`.
fn image_name(path: &Path) -> String {
    let n = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    n.strip_suffix(".raw").unwrap_or(&n).to_string()
}

/// Runs the whole prepare of `req` on `host`, checking versions against `rollback` (from
/// [`Host::rollback_guard`]) and measuring with `measurer` (from [`Host::open_tpm`]). On failure
/// nothing stays mounted and no record is written.
pub fn prepare(
    host: &Host,
    req: &PrepareRequest,
    rollback: crate::rollback::admit::Guard,
    measurer: &mut dyn Measurer,
    dm: Option<&dyn Activator>,
) -> Result<StageRecord, PrepareError> {
    let op = |m: String| PrepareError {
        check_failed: false,
        message: m,
    };
    let check = |m: String| PrepareError {
        check_failed: true,
        message: m,
    };
    let name = image_name(&req.image);
    let img = req.image.display().to_string();
    stage::check_nextroot_free(&req.nextroot).map_err(op)?;
    let kind = match std::fs::metadata(&req.image) {
        Ok(m) if m.is_file() => ImageKind::Raw,
        Ok(m) if m.is_dir() => ImageKind::Directory,
        Ok(_) => ImageKind::Block,
        Err(e) => return Err(op(format!("{img}: {e}"))),
    };
    std::fs::create_dir_all(&host.workspace)
        .map_err(|e| op(format!("{}: {e}", host.workspace.display())))?;
    let ws = Workspace::create(&host.workspace).map_err(|e| op(e.to_string()))?;
    let cfg = host.nextroot_admit_config(rollback, ws.images());
    let prepared = admit::prepare(&name, &req.image, kind, &cfg, dm)
        .map_err(|f| check(format!("{img}: {:?} check failed: {}", f.check(), f.error)))?;
    let mounted = prepared.mount_path().to_path_buf();
    if prepared.info().root_hash.is_none() {
        prepared.discard();
        return Err(check(format!(
            "{img}: a root image must be verity-protected; this one has no root hash"
        )));
    }
    let tree = match stage::check_tree(&mounted, req.init.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            prepared.discard();
            return Err(check(format!("{img}: not a bootable OS tree: {e}")));
        }
    };
    let floor_key = admit::rollback::root_floor_key(&name, &mounted);
    let admitted = prepared
        .measure(host.nextroot_pcr(), measurer)
        .map_err(|f| op(format!("{img}: measurement failed: {}", f.error)))?;
    let version = admitted.info().version.clone();
    let info = admitted.info();
    let rec = admitted.token().record();
    let facts = StageFacts {
        image: img.clone(),
        root_hash: info.root_hash.clone(),
        signer: info.signer.clone(),
        pcr: Some(rec.pcr),
        event: Some(rec.event.clone()),
        dangerous: Vec::new(),
    };
    let record = stage::install(
        admitted.mount_path(),
        &req.nextroot,
        &req.record,
        &facts,
        &tree,
    )
    .map_err(op)?;
    drop(ws);
    if let (true, Some(v)) = (host.ratchet, version) {
        let admitted = [(crate::rollback::Class::Root, floor_key, v)];
        crate::rollback::admit::ratchet(&host.root, &admitted)
            .map_err(|e| op(format!("{img}: staged, but --ratchet failed: {e}")))?;
    }
    Ok(record)
}

//! Staging a verified root at the nextroot and recording what was staged.
//!
//! `soft-reboot prepare` runs the image through the pipeline into a private workspace mount, checks
//! that the tree is an OS (os-release and an executable init, [`crate::image::ostree::check_tree`]), has it measured as
//! class nextroot, and only then moves the mount onto the nextroot ([`install`]). The record it
//! writes (default [`DEFAULT_RECORD`]) pins that mount by device, root inode and mount id, so that
//! `soft-reboot exec` (or an operator) can tell the staged root from anything mounted there later.

use super::plan::{DevId, Observed, StageRecord, RECORD_VERSION};
// Where it was defined before it moved down to `image` (which needs it for `image build --class
// root`); `soft-reboot prepare` and the CLI keep calling it from here.
pub use crate::image::ostree::{check_tree, OsTree};
use crate::io::output::write_atomic;
use crate::sys::pivot;
use rustix::fd::{AsFd, OwnedFd};
use std::io;
use std::path::Path;

/// Where systemd looks for the next root.
pub const DEFAULT_NEXTROOT: &str = "/run/nextroot";
/// Where prepare records what it staged.
pub const DEFAULT_RECORD: &str = "/run/verity/nextroot.json";

/// The identity of the directory `dir` (opened at `path`) as the kernel reports it now.
pub fn observe(dir: &OwnedFd, path: &Path) -> io::Result<Observed> {
    let id = pivot::mount_identity(dir.as_fd(), path)?;
    Ok(Observed {
        dev: DevId {
            major: id.dev.0,
            minor: id.dev.1,
        },
        ino: id.ino,
        mnt_id: id.mnt_id,
        mnt_id_unique: id.mnt_id_unique,
        parent_mnt_id: id.parent_mnt_id,
    })
}

/// What the pipeline established about the image, for the record.
#[derive(Debug, Clone, Default)]
pub struct StageFacts {
    /// The image file.
    pub image: String,
    /// Lower-case hex root hash.
    pub root_hash: Option<String>,
    /// Signer certificate fingerprint.
    pub signer: Option<String>,
    /// PCR extended.
    pub pcr: Option<u32>,
    /// Event string measured.
    pub event: Option<String>,
    /// Bypasses asked for by name.
    pub dangerous: Vec<String>,
}

/// Refuses a nextroot that already has something mounted on it: staging over it would hide, not
/// replace, what is there.
pub fn check_nextroot_free(nextroot: &Path) -> Result<(), String> {
    std::fs::create_dir_all(nextroot).map_err(|e| format!("{}: {e}", nextroot.display()))?;
    match pivot::is_mount_point(nextroot) {
        Ok(false) => Ok(()),
        Ok(true) => Err(format!(
            "{} already has a mount; unmount it (umount -l {}) before staging another root",
            nextroot.display(),
            nextroot.display()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Records the mount now at `nextroot` as staged, writing the record atomically to `record_path`.
pub fn record_staged(
    nextroot: &Path,
    record_path: &Path,
    facts: &StageFacts,
    tree: &OsTree,
) -> Result<StageRecord, String> {
    let root = pivot::open_dir(nextroot).map_err(|e| e.to_string())?;
    let now = observe(&root, nextroot).map_err(|e| e.to_string())?;
    if now.mnt_id == now.parent_mnt_id {
        return Err(format!("{} is not a mount point", nextroot.display()));
    }
    let record = StageRecord {
        version: RECORD_VERSION,
        nextroot: nextroot.to_string_lossy().into_owned(),
        image: facts.image.clone(),
        root_hash: facts.root_hash.clone(),
        signer: facts.signer.clone(),
        mount: now,
        init: tree.init.clone(),
        os_release: tree.os_release.clone(),
        pcr: facts.pcr,
        event: facts.event.clone(),
        dangerous: facts.dangerous.clone(),
    };
    if let Some(dir) = record_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    write_atomic(record_path, record.to_json().as_bytes())
        .map_err(|e| format!("writing {}: {e}", record_path.display()))?;
    Ok(record)
}

/// Moves the verified, measured mount from the workspace onto the nextroot and records it. On
/// failure the mount is detached, so no unrecorded root is left staged.
pub fn install(
    workspace_mount: &Path,
    nextroot: &Path,
    record_path: &Path,
    facts: &StageFacts,
    tree: &OsTree,
) -> Result<StageRecord, String> {
    check_nextroot_free(nextroot)?;
    if let Err(e) = pivot::move_mount_to(workspace_mount, nextroot) {
        let _ = pivot::detach(workspace_mount);
        return Err(e.to_string());
    }
    record_staged(nextroot, record_path, facts, tree).inspect_err(|_| {
        let _ = pivot::detach(nextroot);
    })
}

//! The merge verbs as library calls on a [`Host`]: what `verity sysext|confext merge|refresh|
//! unmerge` and the boot hook run, so a program that embeds the library (an installer, an update
//! agent) merges exactly as they do. Order: rollback floors and epoch, host os-release, class
//! lock, TPM, then the engine; `--ratchet` after a successful merge, under the lock.

use super::engine::{self, MergeError, MergeOutcome, MergeRequest};
use super::plan::Class;
use crate::admit;
use crate::host::Host;

/// `merge` or `refresh` of one class on `host`. [`MergeError::Host`] means it could not start (no
/// host ID, unreadable rollback state, TPM unreachable) or `--ratchet` failed afterwards;
/// [`MergeError::Strict`] that `host.strict` refused a failing image.
pub fn merge(host: &Host, req: &MergeRequest) -> Result<MergeOutcome, MergeError> {
    // Floors and epoch are read before anything is opened or mounted: a corrupt state file or an
    // unreadable epoch stops the merge here, with nothing merged.
    let guard = host.rollback_guard().map_err(MergeError::Host)?;
    let cfg = host
        .admit_config(req.class, guard)
        .map_err(MergeError::Host)?;
    // Before the TPM is opened: a second merge waits here for the first one to finish.
    let lock = engine::lock_class(&host.root, req.class)?;
    if host.tpm.dangerous_no_tpm {
        eprintln!(
            "verity: WARNING: --dangerous-no-tpm: merged images are NOT measured into any PCR \
             (the bypass is recorded in {})",
            host.event_log.display()
        );
    }
    let mut m = host.measurer().map_err(MergeError::Host)?;
    // The floors rise under the class lock, after the merge they belong to.
    let out = engine::merge(
        &lock,
        host,
        req,
        &cfg,
        m.as_mut(),
        admit::integrity::kernel(),
    )?;
    if host.ratchet {
        ratchet_merged(host, &out).map_err(MergeError::Host)?;
    }
    Ok(out)
}

/// `unmerge` of one class on `host`: removes our overlays; returns (unmerged hierarchies,
/// warnings). Nothing merged is not an error.
pub fn unmerge(host: &Host, class: Class) -> Result<(Vec<String>, Vec<String>), MergeError> {
    engine::unmerge(&host.root, class, &host.workspace)
}

/// `--ratchet` after a successful merge: each merged image's floor rises to its version.
fn ratchet_merged(host: &Host, o: &MergeOutcome) -> Result<(), String> {
    let admitted: Vec<_> = o
        .merged
        .iter()
        .filter_map(|m| {
            let v = m.info.version.clone()?;
            let name = crate::image::release::release_name(&m.info.name).to_string();
            Some((m.info.class.into(), name, v))
        })
        .collect();
    crate::rollback::admit::ratchet(&host.root, &admitted)
        .map_err(|e| format!("merged, but --ratchet could not raise the floors: {e}"))
}

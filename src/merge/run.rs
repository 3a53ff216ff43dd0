//! The merge verbs as library calls on a [`Host`]: what `verity sysext|confext merge|refresh|
//! unmerge` and the boot hook run, so a program that embeds the library (an installer, an update
//! agent) merges exactly as they do. Order: rollback floors and epoch, host os-release, class
//! lock, TPM, then the engine; `--ratchet` after a successful merge, under the lock.

use super::engine::{self, MergeError, MergeOutcome, MergeRequest, NoTpm, TpmMeasurer};
use super::plan::Class;
use crate::admit::{self, Measurer};
use crate::host::{Host, Measuring};
use crate::rollback::admit::Guard;

/// The admission settings of `class` on `host` (the per-image pipeline's configuration), with
/// `rollback` as the floors. Fails when the host os-release has no ID and the release check is
/// not skipped: extensions cannot be matched against it.
pub fn admission(host: &Host, class: Class, rollback: Guard) -> Result<admit::Config, String> {
    Ok(admit::Config {
        class,
        in_initrd: super::discover::in_initrd(&host.root),
        host: host.checked_os_release()?,
        arch: crate::host::running_arch(),
        root: host.root.clone(),
        image_policy: host.class(class).image_policy.clone(),
        trust: host.trust.clone(),
        integrity: host.integrity,
        pcr: host.pcr(class),
        force: host.skip_release_check,
        nextroot: false,
        workspace: Default::default(),
        rollback,
    })
}

/// The measurer for what [`Host::open_tpm`] opened: the TPM, or the `--dangerous-no-tpm` one that
/// records the bypass in the event log instead.
pub fn measurer(m: Measuring) -> Box<dyn Measurer> {
    match m.tpm {
        Some((tpm, bypasses)) => Box::new(TpmMeasurer {
            tpm,
            log: m.log,
            bypasses,
        }),
        None => Box::new(NoTpm { log: m.log }),
    }
}

/// `merge` or `refresh` of one class on `host`. [`MergeError::Host`] means it could not start (no
/// host ID, unreadable rollback state, TPM unreachable) or `--ratchet` failed afterwards;
/// [`MergeError::Strict`] that `host.strict` refused a failing image.
pub fn merge(host: &Host, req: &MergeRequest) -> Result<MergeOutcome, MergeError> {
    // Floors and epoch are read before anything is opened or mounted: a corrupt state file or an
    // unreadable epoch stops the merge here, with nothing merged.
    let guard = host.rollback_guard().map_err(MergeError::Host)?;
    let cfg = admission(host, req.class, guard).map_err(MergeError::Host)?;
    // Before the TPM is opened: a second merge waits here for the first one to finish.
    let lock = engine::lock_class(&host.root, req.class)?;
    if host.tpm.dangerous_no_tpm {
        eprintln!(
            "verity: WARNING: --dangerous-no-tpm: merged images are NOT measured into any PCR \
             (the bypass is recorded in {})",
            host.event_log.display()
        );
    }
    let mut m = measurer(host.open_tpm().map_err(MergeError::Host)?);
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

//! The merge verbs as a library: discover, run every image through the pipeline, plan, apply.
//! Failures are per image (reported, skipped); `strict` turns any failure into "change nothing",
//! decided before anything is measured or mounted over a hierarchy. Merge, refresh and unmerge of
//! one class under one root hold an exclusive `flock` on `<root>/run/verity/<class>.lock` for their
//! whole run, so a second one waits and then sees the first one's result.

use super::apply::{self, ApplyError, ApplyReport, Workspace};
use super::discover::{discover, in_initrd, Candidate};
use super::plan::{plan, ExtensionInput, PlanOptions};
use super::status::{host_path, is_ours};
/// The measurers, defined with the measuring step of admission (re-exported for callers that
/// named them here).
pub use crate::admit::measure::{NoTpm, TpmMeasurer};
use crate::admit::{self, Activator, Admitted, ImageFailure, ImageInfo, Measurer};
use crate::gate::MeasurementRecord;
use crate::host::Host;
use std::path::{Path, PathBuf};

/// What one merge or refresh is asked to do; everything about the host (root, strictness,
/// noexec, workspace) is in the [`Host`] it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeRequest {
    /// The class merged.
    pub class: super::plan::Class,
    /// Replace the current merge atomically (`refresh`) instead of refusing one that exists.
    pub refresh: bool,
    /// `--mutable` (the boot hook: `no`).
    pub mutable: super::mutable::MutableMode,
}

impl MergeRequest {
    /// A read-only `merge` of `class`.
    pub fn merge(class: super::plan::Class) -> Self {
        MergeRequest {
            class,
            refresh: false,
            mutable: Default::default(),
        }
    }
}

/// One merged image, for reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergedImage {
    /// What was admitted.
    #[serde(flatten)]
    pub info: ImageInfo,
    /// Its measurement.
    pub measurement: MeasurementRecord,
    /// How long each step of its admission took.
    pub steps: crate::timing::Steps,
}

/// What a merge or refresh did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MergeOutcome {
    /// Admitted and merged images.
    pub merged: Vec<MergedImage>,
    /// Images skipped, with the check that refused them.
    pub skipped: Vec<ImageFailure>,
    /// The mounts.
    pub apply: ApplyReport,
    /// Wall time of building and switching in the overlays, in microseconds.
    pub overlay_micros: u64,
}

/// Why the whole operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// `merge` while a hierarchy is already ours.
    #[error("already merged: {0:?} (use refresh, or unmerge first)")]
    AlreadyMerged(Vec<String>),
    /// `--strict` and some image failed; nothing was changed.
    #[error("--strict: {} image(s) failed, nothing merged", .0.len())]
    Strict(Vec<ImageFailure>),
    /// Mounting failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The operation could not start (host os-release without an ID, unreadable rollback state,
    /// TPM unreachable) or could not finish its bookkeeping (`--ratchet`): an operational error,
    /// not an image's fault.
    #[error("{0}")]
    Host(String),
    /// The class's lock could not be taken.
    #[error("lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The exclusive lock of one class under one root, held until dropped. [`merge`] requires it, so
/// the caller takes it before opening the TPM (a second merge must wait, not race for the TPM).
pub struct ClassLock {
    _file: std::fs::File,
}

/// Takes the exclusive lock of `class` under `root`, waiting for a merge, refresh or unmerge that
/// holds it: without it two merges both find the hierarchy unmerged, both measure and stack two
/// overlays.
pub fn lock_class(root: &Path, class: super::plan::Class) -> Result<ClassLock, MergeError> {
    let dir = root.join("run/verity");
    let path = dir.join(format!("{}.lock", class.name()));
    let err = |source| MergeError::Lock {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    loop {
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive) {
            Err(rustix::io::Errno::INTR) => continue,
            r => r.map_err(|e| err(e.into()))?,
        }
        return Ok(ClassLock { _file: f });
    }
}

/// Discovers `cfg.class` images under `cfg.root`.
pub fn list(cfg: &admit::Config) -> Vec<Candidate> {
    discover(&cfg.root, cfg.class, in_initrd(&cfg.root))
}

/// `merge` or `refresh` (`req.refresh`) of `req.class` on `host`, under the class lock the caller
/// holds, admitting images with `pipeline` (built from the same host by
/// [`Host::admit_config`]).
pub fn merge(
    _lock: &ClassLock,
    host: &Host,
    req: &MergeRequest,
    pipeline: &admit::Config,
    measurer: &mut dyn Measurer,
    dm: Option<&dyn Activator>,
) -> Result<MergeOutcome, MergeError> {
    let (class, refresh) = (req.class, req.refresh);
    let root = &host.root;
    if !refresh {
        let ours: Vec<String> = class
            .hierarchies()
            .iter()
            .map(|h| host_path(root, h))
            .filter(|p| is_ours(p, class))
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if !ours.is_empty() {
            return Err(MergeError::AlreadyMerged(ours));
        }
    }
    let ws = Workspace::create(&host.workspace)?;
    let mut cfg = pipeline.clone();
    cfg.workspace = ws.images();
    let mut prepared = Vec::new();
    let mut skipped = Vec::new();
    for c in discover(root, class, cfg.in_initrd) {
        match admit::prepare(&c.name, &c.path, c.kind, &cfg, dm) {
            Ok(p) => prepared.push(p),
            Err(f) => skipped.push(f),
        }
    }
    if host.strict && !skipped.is_empty() {
        prepared.into_iter().for_each(|p| p.discard());
        return Err(MergeError::Strict(skipped));
    }
    // Measure each image before any overlay shows it; a failed measurement drops that image.
    let mut admitted: Vec<Admitted> = Vec::new();
    for p in prepared {
        match p.measure(cfg.pcr, measurer) {
            Ok(a) => admitted.push(a),
            Err(f) => skipped.push(f),
        }
    }
    if host.strict && !skipped.is_empty() {
        return Err(MergeError::Strict(skipped));
    }
    let inputs: Vec<ExtensionInput> = admitted
        .iter()
        .map(|a| ExtensionInput {
            name: a.info().name.clone(),
            provides: a.provides(),
        })
        .collect();
    // Under an old overlay the host's emptiness is only visible to apply (through a peeled copy).
    let host_has = |h: &str| {
        let p = host_path(root, h);
        is_ours(&p, class)
            || std::fs::read_dir(&p)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
    };
    let p = plan(
        class,
        &inputs,
        &host_has,
        PlanOptions {
            noexec: host.class(class).noexec,
            mutable: req.mutable,
        },
    );
    let overlay_start = std::time::Instant::now();
    let report = if p.hierarchies.is_empty() && refresh {
        // Nothing usable: refresh degrades to unmerge, like systemd.
        let (unmerged, warnings) = apply::unmerge(root, class, &ws)?;
        ApplyReport {
            unmerged,
            warnings,
            ..ApplyReport::default()
        }
    } else {
        apply::apply(root, &p, &admitted, &ws, refresh)?
    };
    let merged = admitted
        .iter()
        .filter(|a| p.extensions.contains(&a.info().name))
        .map(|a| MergedImage {
            info: a.info().clone(),
            measurement: a.token().record().clone(),
            steps: a.steps().clone(),
        })
        .collect();
    Ok(MergeOutcome {
        merged,
        skipped,
        apply: report,
        overlay_micros: crate::timing::micros(overlay_start.elapsed()),
    })
}

/// `unmerge`: removes our overlays; returns (unmerged hierarchies, warnings).
pub fn unmerge(
    root: &Path,
    class: super::plan::Class,
    workspace_base: &Path,
) -> Result<(Vec<String>, Vec<String>), MergeError> {
    let _lock = lock_class(root, class)?;
    let any = class
        .hierarchies()
        .iter()
        .any(|h| is_ours(&host_path(root, h), class));
    if !any {
        return Ok((Vec::new(), Vec::new()));
    }
    let ws = Workspace::create(workspace_base)?;
    Ok(apply::unmerge(root, class, &ws)?)
}

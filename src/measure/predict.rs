//! PCR prediction for release tooling and remote verifiers: what admitting an image or a
//! directory extension would measure (its event and the bypass records before it), derived
//! through the same token steps as the merge (`image::verify::activated`,
//! `image::verify::admit_directory`) so a prediction cannot disagree with what the merge
//! measures, and the event strings a sequence of admissions extends. The bank math is
//! [`super::pcr::predict`]; `verity pcr predict` only parses and prints.

use super::step::all_bypasses;
use crate::gate::{admission_events, Bypass, ImageEvent, Subject};
use crate::image::policy::Policy;
use crate::image::verify::{activated, admit_directory, verify, VerifyOptions};
use crate::image::{AdmitAs, Class, DissectOptions, Dissected, ImageKind};
use std::path::Path;

/// Why a prediction could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The image did not verify; it would never be measured (a failed check, exit 1).
    #[error("{0}")]
    NotVerified(String),
    /// The input could not be used (exit 2).
    #[error("{0}")]
    Unusable(String),
}

fn unusable(msg: String) -> PredictError {
    PredictError::Unusable(msg)
}

/// Splits the requested bypasses into those the admission adds to the token itself and those
/// that belong to the measuring context.
fn split_bypasses(with_bypass: &[Bypass]) -> (Vec<Bypass>, Vec<Bypass>) {
    with_bypass
        .iter()
        .partition(|b| **b == Bypass::SkipReleaseCheck)
}

/// Verifies the image at `path` and returns what admitting it would measure: its event and its
/// bypasses, in the measuring step's order. An image that does not verify is never measured, so
/// predicting for it is [`PredictError::NotVerified`].
pub fn image_admission(
    path: &Path,
    arch: Option<String>,
    opts: &VerifyOptions,
    with_bypass: &[Bypass],
) -> Result<(ImageEvent, Vec<Bypass>), PredictError> {
    let f = std::fs::File::open(path).map_err(|e| unusable(format!("{}: {e}", path.display())))?;
    let d = Dissected::open(f, path, &DissectOptions { arch })
        .map_err(|e| unusable(format!("{}: {e}", path.display())))?;
    let (_, res) = verify(d, opts);
    let v = res.map_err(|e| {
        PredictError::NotVerified(format!(
            "{}: {e}; an image that does not verify is never measured",
            path.display()
        ))
    })?;
    let class = v.get().class;
    // The image's own name (release name, version cut off), as predictions always used.
    let name = v.get().name.clone();
    let (own, context) = split_bypasses(with_bypass);
    let info = activated(
        v,
        AdmitAs {
            name,
            kind: ImageKind::Raw,
            path: path.to_path_buf(),
            class,
            nextroot: false,
            bypasses: own,
        },
    );
    let ev = info.get().event();
    ev.validate()
        .map_err(|e| unusable(format!("{}: cannot be measured: {e}", path.display())))?;
    Ok((ev, all_bypasses(info.get().bypasses(), &context)))
}

/// The event and bypass records merging the directory `path` as `class` (sysext or confext)
/// would measure. The name is the directory's own name, as the merge takes it from the search
/// path. Errors start with the path.
pub fn dir_admission(
    path: &Path,
    class: Class,
    with_bypass: &[Bypass],
) -> Result<(ImageEvent, Vec<Bypass>), PredictError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| unusable(format!("{}: no usable directory name", path.display())))?;
    if !path.is_dir() {
        return Err(unusable(format!("{}: not a directory", path.display())));
    }
    // Asking for the prediction of a directory extension is the explicit policy that admits it.
    let policy = Policy::parse("root=unprotected").map_err(|e| unusable(e.to_string()))?;
    let (own, context) = split_bypasses(with_bypass);
    let how = AdmitAs {
        name: name.to_string(),
        kind: ImageKind::Directory,
        path: path.to_path_buf(),
        class,
        nextroot: false,
        bypasses: own,
    };
    let info = admit_directory(&policy, how, path)
        .map_err(|e| unusable(format!("{}: {e}", path.display())))?;
    let ev = info.get().event();
    ev.validate()
        .map_err(|e| unusable(format!("{}: cannot be measured: {e}", path.display())))?;
    Ok((ev, all_bypasses(info.get().bypasses(), &context)))
}

/// The event strings one admission extends, in order: each bypass record, then the event.
pub fn admission_strings(ev: &ImageEvent, bypasses: &[Bypass]) -> Vec<String> {
    admission_events(&ev.event_string(), &ev.class, bypasses)
        .into_iter()
        .map(|(string, _)| string)
        .collect()
}

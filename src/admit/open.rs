//! Step 1 for raw images (GPT DDIs, bare file systems with sidecars): open the image once and
//! dissect it. Every later step reads that one descriptor (or the sealed copy made from it).

use super::AdmitError;
use crate::image::{self, Dissected};
use crate::timing::Steps;
use std::fs::File;
use std::path::Path;

/// Opens `path` and dissects it (the architecture is not pinned: any partition the image policy
/// and the release check accept).
pub fn dissect(path: &Path, steps: &mut Steps) -> Result<Dissected, AdmitError> {
    let file = steps
        .time("open", || File::open(path))
        .map_err(|e| AdmitError::Open(format!("open: {e}")))?;
    steps
        .time("dissect", || {
            Dissected::open(file, path, &image::DissectOptions { arch: None })
        })
        .map_err(|e| AdmitError::Dissect(e.to_string()))
}

//! `verity pcr predict --dir PATH`: what merging a directory extension measures, computed the way
//! the merge computes it (the same token derivation, [`crate::image::verify::admit_directory`]), so
//! release tooling and remote verifiers can predict PCRs for unprotected extensions too.

use super::{op_err, CliError};
use crate::gate::Bypass;
use crate::image::policy::Policy;
use crate::image::{AdmitAs, Class, ImageKind};
use crate::measure::{ImageEvent, Subject};
use std::path::Path;

/// The event and bypass records merging the directory `path` as `class` would measure. The name
/// is the directory's own name, as the merge takes it from the search path.
pub fn dir_admission(
    path: &Path,
    class: &str,
    with_bypass: &[Bypass],
) -> Result<(ImageEvent, Vec<Bypass>), CliError> {
    let class = Class::from_name(class)
        .filter(|c| matches!(c, Class::Sysext | Class::Confext))
        .ok_or_else(|| op_err(format!("--dir-class {class}: sysext or confext")))?;
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        op_err(format!(
            "--dir {}: no usable directory name",
            path.display()
        ))
    })?;
    if !path.is_dir() {
        return Err(op_err(format!("--dir {}: not a directory", path.display())));
    }
    // Asking for the prediction of a directory extension is the explicit policy that admits it.
    let policy = Policy::parse("root=unprotected").map_err(op_err)?;
    let (own, context): (Vec<Bypass>, Vec<Bypass>) = with_bypass
        .iter()
        .partition(|b| **b == Bypass::SkipReleaseCheck);
    let how = AdmitAs {
        name: name.to_string(),
        kind: ImageKind::Directory,
        path: path.to_path_buf(),
        class,
        nextroot: false,
        bypasses: own,
    };
    let info = crate::image::verify::admit_directory(&policy, how, path)
        .map_err(|e| op_err(format!("--dir {}: {e}", path.display())))?;
    let ev = info.get().event();
    ev.validate()
        .map_err(|e| op_err(format!("--dir {}: cannot be measured: {e}", path.display())))?;
    Ok((
        ev,
        crate::measure::step::all_bypasses(info.get().bypasses(), &context),
    ))
}

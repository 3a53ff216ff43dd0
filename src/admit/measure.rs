//! Step 6: measurement. A [`Measurer`] (the TPM one, or the recorded `--dangerous-no-tpm` bypass)
//! calls the measuring step (`measure::step`), the only code that can mint the
//! `Measured<Verified<ImageInfo>>` token an admitted image carries.

use super::{AdmitError, Admitted, ImageFailure, Prepared};
use crate::image::ImageInfo;
use crate::image::Verified;
use crate::measure::step::Measured;
use crate::sys::mount;

/// Records an admitted image in the TPM and the event log.
pub trait Measurer {
    /// Measures one verified image into `pcr`.
    fn measure(
        &mut self,
        v: Verified<ImageInfo>,
        pcr: u32,
    ) -> Result<Measured<Verified<ImageInfo>>, String>;
}

impl Prepared {
    /// Measures it; on failure its mount is removed and it is not admitted.
    pub fn measure(self, pcr: u32, measurer: &mut dyn Measurer) -> Result<Admitted, ImageFailure> {
        let (name, path) = (self.info().name.clone(), self.info().path.clone());
        let mut steps = self.steps;
        match steps.time("measure", || measurer.measure(self.verified, pcr)) {
            Ok(token) => Ok(Admitted {
                token,
                mount_path: self.mount_path,
                _backing: self.backing,
                steps,
            }),
            Err(r) => {
                let _ = mount::detach(&self.mount_path);
                Err(ImageFailure {
                    name,
                    path,
                    error: AdmitError::Measure(r),
                })
            }
        }
    }
}

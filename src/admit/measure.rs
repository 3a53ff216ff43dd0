//! Step 6: measurement. A [`Measurer`] (the TPM one, or the recorded `--dangerous-no-tpm` bypass)
//! calls the measuring step (`measure::step`), the only code that can mint the
//! `Measured<Verified<ImageInfo>>` token an admitted image carries.

use super::{AdmitError, Admitted, ImageFailure, Prepared};
use crate::gate::Bypass;
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

/// The `--dangerous-no-tpm` measurer: no PCR is extended; each admission is recorded in the event
/// log as a `dangerous:no-tpm:<event>` record (without a `pcr` field), through the log's lock, and
/// the token's record says so. Used only when asked for by name.
pub struct NoTpm {
    /// The event log the bypass records go to.
    pub log: crate::measure::EventLog,
}

impl Measurer for NoTpm {
    fn measure(
        &mut self,
        v: Verified<ImageInfo>,
        pcr: u32,
    ) -> Result<Measured<Verified<ImageInfo>>, String> {
        crate::measure::step::record_unmeasured(v, &self.log, pcr, &[Bypass::NoTpm])
            .map_err(|e| e.to_string())
    }
}

/// The real measurer: for each image, its bypass records and then its event, extended into every
/// active bank of the PCR and appended to the event log (`measure::step::measure`), before the
/// image can reach an overlay. Also measures soft-reboot roots (their tokens say `nextroot`).
pub struct TpmMeasurer {
    /// The TPM.
    pub tpm: Box<dyn crate::measure::Tpm>,
    /// The event log.
    pub log: crate::measure::EventLog,
    /// Bypasses of the measuring context, recorded with every image (`--dangerous-tpm-simulator`).
    pub bypasses: Vec<Bypass>,
}

impl Measurer for TpmMeasurer {
    fn measure(
        &mut self,
        v: Verified<ImageInfo>,
        pcr: u32,
    ) -> Result<Measured<Verified<ImageInfo>>, String> {
        crate::measure::step::measure(v, self.tpm.as_mut(), &self.log, pcr, &self.bypasses)
            .map_err(|e| e.to_string())
    }
}

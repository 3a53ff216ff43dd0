//! Proof tokens for the pipeline's order (DESIGN.md section 2).
//!
//! [`Verified<T>`] can only be minted by the verification code and [`Measured<T>`] only by the
//! measurement code, after the PCR extend and the event-log append both succeeded. `merge` and
//! `soft_reboot` take `Measured<Verified<_>>` and nothing else, so an unverified or unmeasured merge
//! does not compile. The fields are private and the constructors are `pub(crate)`: code outside this
//! crate cannot forge a token, and inside it the only callers are the verify and measure steps.

/// An image (or anything else) whose integrity chain was checked.
#[derive(Debug)]
pub struct Verified<T> {
    inner: T,
}

impl<T> Verified<T> {
    /// Only the verification step calls this, after every check passed.
    #[allow(dead_code)] // until the image verifier lands; remove then
    pub(crate) fn mint(inner: T) -> Self {
        Self { inner }
    }

    /// Read access; there is no way to get a mutable reference or to rebuild the token.
    pub fn get(&self) -> &T {
        &self.inner
    }
}

/// A verified thing whose measurement reached the TPM and the event log.
#[derive(Debug)]
pub struct Measured<T> {
    inner: T,
    record: MeasurementRecord,
}

/// What was measured, kept with the token for reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MeasurementRecord {
    /// The PCR that was extended.
    pub pcr: u32,
    /// The event string that was hashed into every bank.
    pub event: String,
    /// Per-bank digests of the event string: (bank name, lower-case hex).
    pub digests: Vec<(String, String)>,
}

impl<T> Measured<T> {
    /// Only the measurement step calls this, after the extend and the log append succeeded.
    #[allow(dead_code)] // until the measurement step lands; remove then
    pub(crate) fn mint(inner: T, record: MeasurementRecord) -> Self {
        Self { inner, record }
    }

    /// Read access to what was measured.
    pub fn get(&self) -> &T {
        &self.inner
    }

    /// The measurement that admitted it.
    pub fn record(&self) -> &MeasurementRecord {
        &self.record
    }
}

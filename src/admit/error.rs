//! Why an image was refused: [`AdmitError`], one variant per pipeline check, each carrying the text
//! the merge report, the boot report and `soft-reboot prepare` print; [`ImageFailure`] adds which
//! image it was. The JSON form (`name`, `path`, `check`, `reason`) and the text form are the ones
//! the reports have always had.

use serde::ser::SerializeStruct;
use std::fmt;
use std::path::PathBuf;

/// The pipeline step that refused an image (the `check` field of reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// Opening or reading the image.
    Open,
    /// Working out what the image is.
    Dissect,
    /// Signature verification.
    Signature,
    /// The image policy.
    Policy,
    /// dm-verity or userspace verification of the data.
    Integrity,
    /// The read-only mount.
    Mount,
    /// extension-release compatibility.
    Release,
    /// Rollback protection: the version (or epoch) is below its floor.
    Rollback,
    /// PCR extend or event-log append.
    Measure,
}

/// A refused check and what the report says about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The image could not be opened or read.
    #[error("{0}")]
    Open(String),
    /// Not a DDI, sidecar image or file system we know, or malformed.
    #[error("{0}")]
    Dissect(String),
    /// No trusted signature (or the trust store could not be loaded).
    #[error("{0}")]
    Signature(String),
    /// The image policy refuses the image (or does not parse).
    #[error("{0}")]
    Policy(String),
    /// The verity superblock, tree or data do not match, or activation failed.
    #[error("{0}")]
    Integrity(String),
    /// The read-only mount (or its workspace directory) failed.
    #[error("{0}")]
    Mount(String),
    /// The extension-release (or a root's os-release) refuses the image.
    #[error("{0}")]
    Release(String),
    /// The version or epoch is below the floor kept for (`class`, `key`).
    #[error("{class} {key}: {reason}")]
    Rollback {
        /// The floor's class.
        class: crate::rollback::Class,
        /// The floor's name.
        key: String,
        /// Why it is below.
        reason: String,
    },
    /// PCR extend or event-log append failed.
    #[error("{0}")]
    Measure(String),
}

impl AdmitError {
    /// The check this error refuses at.
    pub fn check(&self) -> Check {
        match self {
            AdmitError::Open(_) => Check::Open,
            AdmitError::Dissect(_) => Check::Dissect,
            AdmitError::Signature(_) => Check::Signature,
            AdmitError::Policy(_) => Check::Policy,
            AdmitError::Integrity(_) => Check::Integrity,
            AdmitError::Mount(_) => Check::Mount,
            AdmitError::Release(_) => Check::Release,
            AdmitError::Rollback { .. } => Check::Rollback,
            AdmitError::Measure(_) => Check::Measure,
        }
    }
}

/// One image that was not admitted: which, and the refused check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    /// Image name.
    pub name: String,
    /// Where it was found.
    pub path: PathBuf,
    /// The refused check.
    pub error: AdmitError,
}

impl ImageFailure {
    /// The step that refused it.
    pub fn check(&self) -> Check {
        self.error.check()
    }

    /// Why, as the reports print it.
    pub fn reason(&self) -> String {
        self.error.to_string()
    }
}

impl fmt::Display for ImageFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {:?} check failed: {}",
            self.name,
            self.path.display(),
            self.check(),
            self.error
        )
    }
}

/// The report shape: `name`, `path`, `check`, `reason`.
impl serde::Serialize for ImageFailure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ImageFailure", 4)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("path", &self.path)?;
        st.serialize_field("check", &self.check())?;
        st.serialize_field("reason", &self.reason())?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_shape_is_unchanged() {
        let f = ImageFailure {
            name: "foo".into(),
            path: "/x/foo.raw".into(),
            error: AdmitError::Rollback {
                class: crate::rollback::Class::Sysext,
                key: "foo".into(),
                reason: "below".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"name":"foo","path":"/x/foo.raw","check":"rollback","reason":"sysext foo: below"}"#
        );
        assert_eq!(
            f.to_string(),
            "foo (/x/foo.raw): Rollback check failed: sysext foo: below"
        );
    }
}

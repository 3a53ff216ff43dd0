//! The rollback decision (pure core): what the verified image says about itself (`IMAGE_VERSION=`,
//! `VERITY_EPOCH=`), the floor kept for its name, and the TPM epoch → admit, or a refusal whose
//! text starts with "rollback" and names what was found and the bound it is below.
//!
//! Rules, in order:
//! 1. When a TPM epoch exists, the image's `VERITY_EPOCH=` (a decimal number; absent means 0) must
//!    not be below it. This holds whatever the state file says, or if it is gone.
//! 2. When a floor exists for the image's name, the image must carry `IMAGE_VERSION=` and it must
//!    not be below the floor (`strverscmp_improved`; equal is admitted).
//! 3. Otherwise the image is admitted: without a floor, any version (or none) is fine.

use crate::image::version::strverscmp_improved;
use std::cmp::Ordering;
use thiserror::Error;

/// What the verified image says about itself, as read from its extension-release (os-release for
/// a root). Never from a file name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evidence<'a> {
    /// `IMAGE_VERSION=`, if present.
    pub version: Option<&'a str>,
    /// `VERITY_EPOCH=`, if present, unparsed.
    pub epoch: Option<&'a str>,
}

/// Why an image is refused as a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("rollback: IMAGE_VERSION={version} is below the floor {floor}")]
    BelowFloor { version: String, floor: String },
    #[error(
        "rollback: the image carries no IMAGE_VERSION=, but a floor ({floor}) exists for its name, \
         so its version cannot be shown to be at or above it"
    )]
    NoVersion { floor: String },
    #[error(
        "rollback: VERITY_EPOCH={epoch} is below the TPM epoch {tpm_epoch} (NV counter): this \
         image belongs to an epoch that was retired"
    )]
    BelowEpoch { epoch: u64, tpm_epoch: u64 },
    #[error(
        "rollback: VERITY_EPOCH={0:?} is not a decimal number, so it cannot be compared with the \
         TPM epoch"
    )]
    BadEpoch(String),
}

/// Parses `VERITY_EPOCH=`: plain decimal digits, no sign, fits in 64 bits.
pub fn parse_epoch(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Decides whether an image may be admitted (see the module docs for the rules).
pub fn decide(
    found: &Evidence<'_>,
    floor: Option<&str>,
    tpm_epoch: Option<u64>,
) -> Result<(), Refusal> {
    if let Some(tpm_epoch) = tpm_epoch {
        let epoch = match found.epoch {
            None => 0,
            Some(s) => parse_epoch(s).ok_or_else(|| Refusal::BadEpoch(s.to_string()))?,
        };
        if epoch < tpm_epoch {
            return Err(Refusal::BelowEpoch { epoch, tpm_epoch });
        }
    }
    let Some(floor) = floor else {
        return Ok(());
    };
    let Some(version) = found.version else {
        return Err(Refusal::NoVersion {
            floor: floor.to_string(),
        });
    };
    if strverscmp_improved(version, floor) == Ordering::Less {
        return Err(Refusal::BelowFloor {
            version: version.to_string(),
            floor: floor.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev<'a>(version: Option<&'a str>, epoch: Option<&'a str>) -> Evidence<'a> {
        Evidence { version, epoch }
    }

    #[test]
    fn floors() {
        // No floor: anything, even no version.
        assert_eq!(decide(&ev(None, None), None, None), Ok(()));
        assert_eq!(decide(&ev(Some("0.1"), None), None, None), Ok(()));
        // At or above the floor.
        assert_eq!(decide(&ev(Some("2.0"), None), Some("2.0"), None), Ok(()));
        assert_eq!(decide(&ev(Some("2.10"), None), Some("2.9"), None), Ok(()));
        // Below: the reason names rollback, the version and the floor.
        let r = decide(&ev(Some("1.9"), None), Some("2.0"), None).unwrap_err();
        assert_eq!(
            r,
            Refusal::BelowFloor {
                version: "1.9".into(),
                floor: "2.0".into()
            }
        );
        let text = r.to_string();
        assert!(text.starts_with("rollback:") && text.contains("1.9") && text.contains("2.0"));
        assert!(decide(&ev(Some("2.0~rc1"), None), Some("2.0"), None).is_err());
        // No version once a floor exists.
        let r = decide(&ev(None, None), Some("1"), None).unwrap_err();
        assert!(matches!(r, Refusal::NoVersion { .. }));
        assert!(r.to_string().contains("IMAGE_VERSION="), "{r}");
    }

    #[test]
    fn epochs() {
        // No epoch index: VERITY_EPOCH is not looked at, even when malformed.
        assert_eq!(decide(&ev(None, Some("junk")), None, None), Ok(()));
        // Absent means 0.
        assert_eq!(decide(&ev(None, None), None, Some(0)), Ok(()));
        assert_eq!(
            decide(&ev(None, None), None, Some(1)),
            Err(Refusal::BelowEpoch {
                epoch: 0,
                tpm_epoch: 1
            })
        );
        assert_eq!(decide(&ev(None, Some("3")), None, Some(3)), Ok(()));
        assert_eq!(decide(&ev(None, Some("4")), None, Some(3)), Ok(()));
        // The epoch holds even where the floor would admit (the state file was deleted).
        let r = decide(&ev(Some("9"), Some("2")), None, Some(3)).unwrap_err();
        assert!(r
            .to_string()
            .starts_with("rollback: VERITY_EPOCH=2 is below the TPM epoch 3"));
        for bad in ["", "-1", "+1", "1.0", " 1", "0x10", "99999999999999999999"] {
            assert_eq!(
                decide(&ev(None, Some(bad)), None, Some(0)),
                Err(Refusal::BadEpoch(bad.into())),
                "{bad:?}"
            );
        }
        assert_eq!(parse_epoch("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_epoch("007"), Some(7));
        // Both bounds apply; the epoch is checked first.
        assert!(matches!(
            decide(&ev(Some("1"), Some("0")), Some("2"), Some(1)),
            Err(Refusal::BelowEpoch { .. })
        ));
        assert!(matches!(
            decide(&ev(Some("1"), Some("1")), Some("2"), Some(1)),
            Err(Refusal::BelowFloor { .. })
        ));
    }
}

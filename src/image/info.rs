//! What an admitted image is, as the merge pipeline, soft-reboot and the boot hook see it:
//! [`ImageInfo`], the content of their `Verified`/`Measured` tokens. The trust facts in it (root
//! hash, signer, protection, the bypasses that weakened it) are filled in only by
//! [`super::verify::activated`] and [`super::verify::admit_directory`] from what the verification
//! established; the caller only names the image and says how it will be used ([`AdmitAs`]).

use super::Class;
use crate::gate::{Bypass, ImageEvent, Subject, UNPROTECTED, UNPROTECTED_TREE};
use std::path::PathBuf;

/// What kind of image a search-path entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    /// A plain directory tree.
    Directory,
    /// A regular `.raw` file.
    Raw,
    /// A block device.
    Block,
}

/// How the caller names and uses an image it asks to admit. Nothing in here is a trust fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmitAs {
    /// Image name (from the search path).
    pub name: String,
    /// Directory, raw or block.
    pub kind: ImageKind,
    /// Where it was found.
    pub path: PathBuf,
    /// The class it is admitted as.
    pub class: Class,
    /// A root image for a soft reboot: measured as `nextroot`.
    pub nextroot: bool,
    /// Bypasses the caller applied on top of verification (`--dangerous-skip-release-check`).
    pub bypasses: Vec<Bypass>,
}

/// What the verification established about an image; wrapped in the proof tokens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageInfo {
    /// Image name.
    pub name: String,
    /// Class it is admitted as.
    pub class: Class,
    /// Directory, raw or block.
    pub kind: ImageKind,
    /// Where it was found.
    pub path: PathBuf,
    /// Lower-case hex root hash, if the image has a verity tree.
    pub root_hash: Option<String>,
    /// Lower-case hex SHA-256 of the signer certificate, if signed.
    pub signer: Option<String>,
    /// How it was protected: `unprotected`, `verity` or `signed`.
    pub protection: String,
    /// A directory extension's `verity-tree-v1` content digest (lower-case hex) of the tree as
    /// merged ([`super::treedigest`]); measured in place of a root hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree_digest: Option<String>,
    /// Measured as a soft-reboot root (`nextroot`) rather than as its class.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nextroot: bool,
    /// Bypasses that weakened its admission, recorded before its measurement.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bypasses: Vec<Bypass>,
    /// `IMAGE_VERSION=` of its verified release file (os-release for a root), once admission has
    /// read it; recorded beside the event in the event log (not part of the measured string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl ImageInfo {
    /// The event class: `nextroot` for a soft-reboot root, else the image class.
    pub fn event_class(&self) -> &'static str {
        if self.nextroot {
            "nextroot"
        } else {
            self.class.name()
        }
    }

    /// The event string of DESIGN.md section 5: `<class>:<name>:<root-hash>:<signer>`.
    pub fn event_string(&self) -> String {
        self.event().event_string()
    }
}

impl Subject for ImageInfo {
    fn event(&self) -> ImageEvent {
        ImageEvent {
            class: self.event_class().to_string(),
            name: self.name.clone(),
            root_hash_hex: match (&self.root_hash, &self.tree_digest) {
                (Some(h), _) => h.clone(),
                (None, Some(d)) => format!("{UNPROTECTED_TREE}{d}"),
                (None, None) => UNPROTECTED.to_string(),
            },
            signer: self.signer.clone(),
        }
    }

    fn bypasses(&self) -> Vec<Bypass> {
        self.bypasses.clone()
    }

    fn version(&self) -> Option<String> {
        self.version.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_strings_come_from_the_content() {
        let mut i = ImageInfo {
            name: "foo".into(),
            class: Class::Confext,
            kind: ImageKind::Raw,
            path: "/x".into(),
            root_hash: Some("ab".into()),
            signer: None,
            protection: "verity".into(),
            tree_digest: None,
            nextroot: false,
            bypasses: vec![],
            version: None,
        };
        assert_eq!(i.event_string(), "confext:foo:ab:unsigned");
        i.nextroot = true;
        i.root_hash = None;
        assert_eq!(i.event_string(), "nextroot:foo:unprotected:unsigned");
        i.tree_digest = Some("cd".repeat(32));
        assert_eq!(
            i.event_string(),
            format!("nextroot:foo:unprotected-tree-{}:unsigned", "cd".repeat(32))
        );
        assert!(i.event().validate().is_ok());
        // The field parses back only as a whole SHA-256 digest.
        i.tree_digest = Some("CD".repeat(32));
        assert!(i.event().validate().is_err());
        i.tree_digest = Some("cd".repeat(31));
        assert!(i.event().validate().is_err());
    }
}

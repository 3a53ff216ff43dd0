//! The tokens of admitted images ([`ImageInfo`] in a [`Verified`]), derived only from what
//! [`super::verify`] established (an activated image) or from the policy and the tree itself (a
//! directory extension). A child of `verify` so that [`super::VerifyKey`] stays private to it.

use super::super::info::{AdmitAs, ImageInfo};
use super::super::policy::{Policy, State};
use super::super::treedigest;
use super::{VerifiedImage, VerifyKey};
use crate::gate::Bypass;
use crate::image::Verified;
use std::path::Path;

/// The token of an activated image, derived from (and consuming) the image's own token: the root
/// hash, signer and protection are the ones [`super::verify`] established; `how` only names it. An image
/// without a hash tree (admitted because the policy allows `unprotected`) carries that bypass.
pub fn activated(v: Verified<VerifiedImage>, how: AdmitAs) -> Verified<ImageInfo> {
    let vi = v.get();
    let signer = vi.signer.as_ref().map(|s| s.fingerprint_hex());
    let protection = match (&vi.integrity, &signer) {
        (None, _) => "unprotected",
        (Some(_), None) => "verity",
        (Some(_), Some(_)) => "signed",
    };
    let mut bypasses = how.bypasses;
    if vi.integrity.is_none() && !bypasses.contains(&Bypass::Unprotected) {
        bypasses.insert(0, Bypass::Unprotected);
    }
    let info = ImageInfo {
        name: how.name,
        class: vi.class,
        kind: how.kind,
        path: how.path,
        root_hash: vi.integrity.as_ref().map(|i| i.root_hash.to_hex()),
        signer,
        protection: protection.into(),
        tree_digest: None,
        nextroot: how.nextroot,
        bypasses,
        version: None,
    };
    Verified::mint(info, VerifyKey(()))
}

/// Whether `policy` (the user's; the default admits signed images only) admits a directory
/// extension: only when it allows `unprotected` for root or usr (systemd's rule). Asked before
/// anything is mounted.
pub fn directory_allowed(policy: &Policy) -> Result<(), String> {
    let allowed = ["root", "usr"]
        .iter()
        .any(|d| policy.check(d, State::Unprotected, None, None).is_ok());
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "directory extensions are unprotected; the image policy {policy} does not allow \
             unprotected images"
        ))
    }
}

/// A directory tree has no hash tree and no signature: it is admitted only when `policy` allows
/// it ([`directory_allowed`]); its token records the [`Bypass::Unprotected`] and the
/// `verity-tree-v1` digest of `tree`, the read-only mount that is merged (not a second lookup of
/// the source path), so what is measured is what the merge shows.
pub fn admit_directory(
    policy: &Policy,
    how: AdmitAs,
    tree: &Path,
) -> Result<Verified<ImageInfo>, String> {
    directory_allowed(policy)?;
    let digest = treedigest::tree_digest(tree).map_err(|e| format!("tree digest: {e}"))?;
    let mut bypasses = vec![Bypass::Unprotected];
    bypasses.extend(
        how.bypasses
            .into_iter()
            .filter(|b| *b != Bypass::Unprotected),
    );
    let info = ImageInfo {
        name: how.name,
        class: how.class,
        kind: how.kind,
        path: how.path,
        root_hash: None,
        signer: None,
        protection: "unprotected".into(),
        tree_digest: Some(digest),
        nextroot: how.nextroot,
        bypasses,
        version: None,
    };
    Ok(Verified::mint(info, VerifyKey(())))
}

/// The token with the `IMAGE_VERSION=` that admission read from the verified, mounted tree's
/// release file (the rollback step), so the event log can record it. Nothing else changes.
pub fn with_version(v: Verified<ImageInfo>, version: Option<String>) -> Verified<ImageInfo> {
    let info = ImageInfo {
        version,
        ..v.get().clone()
    };
    Verified::mint(info, VerifyKey(()))
}

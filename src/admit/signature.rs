//! Step 2: signature against the trust store, image policy, and the verity superblock and tree, as
//! the image module checks them on the descriptor [`super::open`] opened. With userspace integrity
//! the image module also copies the data once into a sealed memfd and verifies that copy, so the
//! bytes checked are the bytes mounted; with kernel integrity the kernel checks each block as it
//! is read.

use super::integrity::Mode;
use super::{AdmitError, Config};
use crate::image::Verified;
use crate::image::{self, Dissected, VerifiedImage};
use crate::sign::TrustStore;
use crate::timing::Steps;

/// Runs the image module's checks; the first failed one names the refusal.
pub fn verify(
    d: Dissected,
    cfg: &Config,
    mode: Mode,
    steps: &mut Steps,
) -> Result<Verified<VerifiedImage>, AdmitError> {
    let dirs = if cfg.trust.is_empty() {
        TrustStore::default_dirs(&cfg.root)
    } else {
        cfg.trust.clone()
    };
    let trust =
        TrustStore::load(&dirs).map_err(|e| AdmitError::Signature(format!("trust store: {e}")))?;
    let opts = image::VerifyOptions {
        trust,
        policy: cfg.policy(false)?,
        class: Some(cfg.class),
        host: None,
        host_arch: cfg.arch.clone(),
        scope: cfg.scope(),
        // extension-release is checked on the mounted, verified tree (step 4).
        read_release: false,
        data: match mode {
            Mode::Kernel => image::verify::DataCheck::Kernel,
            Mode::Userspace => image::verify::DataCheck::Sealed,
        },
    };
    let (report, res) = image::verify(d, &opts);
    // The image module times its checks; the signature ones are one step, the rest is verity.
    for c in &report.checks {
        let step = if c.name.starts_with("signature") {
            "signature"
        } else {
            "verity"
        };
        steps.add(step, std::time::Duration::from_micros(c.micros));
    }
    res.map_err(|msg| {
        let failed = report.failures();
        let detail: Vec<String> = failed
            .iter()
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        let text = if detail.is_empty() {
            msg
        } else {
            detail.join("; ")
        };
        match failed.first().map(|c| c.name) {
            Some("signature") => AdmitError::Signature(text),
            Some("image-policy") => AdmitError::Policy(text),
            Some("verity-tree") | Some("verity-superblock") | Some("partition-uuids") => {
                AdmitError::Integrity(text)
            }
            Some(_) | None => AdmitError::Dissect(text),
        }
    })
}

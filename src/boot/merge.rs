//! The boot hook's real per-class pipeline: the sysext/confext merge of `crate::merge::run` on
//! the hook's [`Host`], each merged or refused image turned into a report entry; and the one
//! function that turns a `boot.toml` into that host.

use super::config::{Class, Config};
use super::report::{self, ImageReport};
use super::ClassPipeline;
use crate::host::{ClassSettings, Host, TpmSetup};
use crate::merge::engine::{MergeOutcome, MergeRequest};

/// The config's host settings as a [`Host`]: root, trust, per-class policy/PCR/noexec, TPM (the
/// simulator only if the config or the command line allowed it), event log, integrity, ratchet.
/// The hook never skips the release check, never runs without a TPM and is never strict (one
/// bad image must not stop the boot: `required` and `on-failure` decide).
pub fn host_from_config(cfg: &Config) -> Host {
    let mut h = Host::new(&cfg.root);
    h.trust = cfg.trust.clone();
    for c in [Class::Sysext, Class::Confext] {
        let cc = cfg.class(c);
        *h.class_mut(c) = ClassSettings {
            image_policy: cc.image_policy.clone(),
            pcr: Some(cfg.pcr(c)),
            noexec: cc.noexec,
        };
    }
    h.tpm = TpmSetup {
        spec: Some(cfg.tpm.clone()),
        dangerous_simulator: cfg.dangerous_tpm_simulator,
        dangerous_no_tpm: false,
    };
    h.event_log = cfg.event_log.clone();
    h.integrity = cfg.integrity;
    h.ratchet = cfg.ratchet;
    h
}

/// The real per-class pipeline on one host; remembers the last class's overlay time for the
/// report.
pub struct MergePipeline<'a> {
    host: &'a Host,
    overlay_micros: Option<u64>,
}

impl<'a> MergePipeline<'a> {
    /// The pipeline merging on `host`.
    pub fn new(host: &'a Host) -> Self {
        MergePipeline {
            host,
            overlay_micros: None,
        }
    }
}

impl ClassPipeline for MergePipeline<'_> {
    fn last_overlay_micros(&self) -> Option<u64> {
        self.overlay_micros
    }

    fn run_class(&mut self, class: Class, _cfg: &Config) -> Result<Vec<ImageReport>, String> {
        self.overlay_micros = None;
        let req = MergeRequest::merge(class);
        let out = crate::merge::run::merge(self.host, &req).map_err(|e| e.to_string())?;
        self.overlay_micros = Some(out.overlay_micros);
        for w in &out.apply.warnings {
            eprintln!("verity: warning: {}: {w}", class.name());
        }
        let integrity = self
            .host
            .uses_kernel(crate::admit::integrity::kernel().is_some());
        Ok(reports(class, out, integrity))
    }
}

/// One report entry per merged and per refused image.
fn reports(class: Class, out: MergeOutcome, kernel: bool) -> Vec<ImageReport> {
    let integrity = if kernel { "kernel" } else { "userspace" };
    let mut list = Vec::new();
    for m in out.merged {
        let digest = m
            .measurement
            .digests
            .iter()
            .find(|(bank, _)| bank == "sha256")
            .map(|(_, d)| d.clone());
        list.push(ImageReport {
            class,
            name: m.info.name,
            path: m.info.path.to_string_lossy().into_owned(),
            status: report::Status::Accepted,
            reason: None,
            root_hash: m.info.root_hash,
            signer: m.info.signer,
            pcr: Some(m.measurement.pcr),
            digest,
            integrity: Some(integrity.to_string()),
            version: m.info.version,
            steps: m.steps,
        });
    }
    for f in out.skipped {
        let reason = f.reason();
        let check = serde_json::to_value(f.check())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        list.push(ImageReport {
            class,
            name: f.name,
            path: f.path.to_string_lossy().into_owned(),
            status: report::Status::Rejected,
            // The engine's reasons usually start with the check already.
            reason: Some(if reason.starts_with(&check) {
                reason
            } else {
                format!("{check}: {reason}")
            }),
            root_hash: None,
            signer: None,
            pcr: None,
            digest: None,
            integrity: None,
            version: None,
            steps: Default::default(),
        });
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Integrity;
    use std::path::PathBuf;

    #[test]
    fn the_config_becomes_the_host() {
        let text = "root = \"/sysroot\"\ntrust = [\"/etc/keys\"]\n\
                    tpm = \"swtpm:host=127.0.0.1,port=2321\"\ndangerous-tpm-simulator = true\n\
                    integrity = \"userspace\"\nratchet = true\nevent-log = \"/run/log/m.log\"\n\
                    [sysext]\nimage-policy = \"root=signed\"\n[confext]\npcr = 9\nnoexec = false\n";
        let h = host_from_config(&super::super::config::parse(text).unwrap());
        assert_eq!(h.root, PathBuf::from("/sysroot"));
        assert_eq!(h.trust, vec![PathBuf::from("/etc/keys")]);
        assert_eq!(h.tpm.spec_or_default(), "swtpm:host=127.0.0.1,port=2321");
        assert!(h.tpm.dangerous_simulator && !h.tpm.dangerous_no_tpm);
        assert_eq!(h.integrity, Integrity::Userspace);
        assert!(h.ratchet && !h.strict && !h.skip_release_check);
        assert_eq!(h.event_log, PathBuf::from("/run/log/m.log"));
        assert_eq!(h.sysext.image_policy.as_deref(), Some("root=signed"));
        assert_eq!(h.confext.image_policy, None);
        assert_eq!(
            (
                h.pcr(crate::image::Class::Sysext),
                h.pcr(crate::image::Class::Confext)
            ),
            (13, 9)
        );
        assert_eq!(h.confext.noexec, Some(false));
        // The empty config is the command line's defaults but for the TPM, named explicitly.
        let d = host_from_config(&Config::default());
        assert_eq!(d.tpm.spec.as_deref(), Some("device:/dev/tpmrm0"));
        assert_eq!(
            Host {
                tpm: TpmSetup::default(),
                sysext: ClassSettings::default(),
                confext: ClassSettings::default(),
                ..d.clone()
            },
            Host::new("/")
        );
    }
}

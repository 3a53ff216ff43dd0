//! `verity boot`: the boot-time hook as a library call. [`run`] takes the [`Host`] (built from the
//! config by [`host_from_config`], or by an embedder from its own values) and the config, runs the
//! verify -> measure -> merge pipeline for each configured class, decides the outcome (required
//! images, on-failure) and returns the report; the command line only parses, calls it, writes and
//! prints the report and picks the exit code.
//!
//! The per-class work is behind [`ClassPipeline`], so the decision logic here is tested against a
//! fake ([`run_with`]); the real implementation is [`merge::MergePipeline`], the merge of
//! `crate::merge::run` with kernel activation from `crate::sys::dm`.
//!
//! Layer L15 (`tests/layering.rs`): above `merge` and `reboot`, below `attest` and `cli`.

pub mod config;
pub mod install;
pub mod merge;
pub mod report;

pub use merge::host_from_config;

use crate::host::Host;
use config::{Class, Config};
use report::{ImageReport, Report};

/// One class's verify/measure/merge run, as the boot hook sees it.
pub trait ClassPipeline {
    /// Verifies, measures and merges every image of `class`; returns one entry per image that was
    /// considered, accepted or rejected. `Err` means the class could not be processed at all (TPM
    /// unreachable, hierarchy busy), which is an error of the hook, not of an image.
    fn run_class(&mut self, class: Class, cfg: &Config) -> Result<Vec<ImageReport>, String>;

    /// How long the last [`ClassPipeline::run_class`] spent on its overlays, if it got there.
    fn last_overlay_micros(&self) -> Option<u64> {
        None
    }
}

/// The boot hook: verifies, measures and merges every class `cfg` names on `host`, and returns
/// the report (`config_path` is recorded in it); `log` receives each decision as it is made.
/// Nothing is written: the caller stores the report ([`report::Report::to_json`]).
/// Of `cfg`, only `classes`, `required` and `on-failure` are read here: its host settings (root,
/// trust, TPM, ...) reach the run through `host` ([`host_from_config`] for a `boot.toml`).
pub fn run(
    host: &Host,
    cfg: &Config,
    config_path: &str,
    log: &mut dyn FnMut(LogEvent<'_>),
) -> Report {
    run_with(cfg, config_path, &mut merge::MergePipeline::new(host), log)
}

/// [`run`] with another per-class pipeline (a fake, in tests).
pub fn run_with(
    cfg: &Config,
    config_path: &str,
    pipeline: &mut dyn ClassPipeline,
    log: &mut dyn FnMut(LogEvent<'_>),
) -> Report {
    let started = std::time::Instant::now();
    let mut images = Vec::new();
    let mut errors = Vec::new();
    let mut timing = Vec::new();
    for &class in &cfg.classes {
        let t = std::time::Instant::now();
        let ran = pipeline.run_class(class, cfg);
        timing.push(report::ClassTiming {
            class,
            micros: crate::timing::micros(t.elapsed()),
            overlay_micros: ran.as_ref().ok().and(pipeline.last_overlay_micros()),
        });
        match ran {
            Ok(list) => {
                for i in list {
                    log(LogEvent::Image(&i));
                    images.push(i);
                }
            }
            Err(e) => {
                let msg = format!("{}: {e}", class.name());
                log(LogEvent::Error(&msg));
                errors.push(msg);
            }
        }
    }
    let mut r = Report::new(
        config_path,
        images,
        &cfg.required,
        errors,
        cfg.on_failure == config::OnFailure::Continue,
    );
    r.timing = timing;
    r.micros = crate::timing::micros(started.elapsed());
    for m in &r.missing_required {
        log(LogEvent::Error(&format!(
            "required image {m} was not accepted (on-failure = {:?})",
            cfg.on_failure
        )));
    }
    r
}

/// Something worth one log line.
#[derive(Debug)]
pub enum LogEvent<'a> {
    /// A decision about one image.
    Image(&'a ImageReport),
    /// A class could not be processed, or a required image is missing.
    Error(&'a str),
}

#[cfg(test)]
mod tests {
    use super::config::{parse, Class};
    use super::report::{Outcome, Status};
    use super::*;

    /// A fake pipeline: a fixed list of (class, name, accepted) decisions, or an error per class.
    struct Fake(Vec<(Class, &'static str, bool)>, Option<Class>);

    impl ClassPipeline for Fake {
        fn run_class(&mut self, class: Class, cfg: &Config) -> Result<Vec<ImageReport>, String> {
            if self.1 == Some(class) {
                return Err("TPM unreachable: device:/dev/tpmrm0".into());
            }
            Ok(self
                .0
                .iter()
                .filter(|(c, _, _)| *c == class)
                .map(|&(c, n, ok)| ImageReport {
                    class: c,
                    name: n.into(),
                    path: format!("/run/extensions/{n}.raw"),
                    status: if ok {
                        Status::Accepted
                    } else {
                        Status::Rejected
                    },
                    reason: (!ok).then(|| "signature: untrusted signer".into()),
                    root_hash: None,
                    signer: None,
                    pcr: ok.then(|| cfg.pcr(c)),
                    digest: None,
                    integrity: None,
                    version: None,
                    steps: Default::default(),
                })
                .collect())
        }
    }

    fn go(cfg: &str, fake: Fake) -> (Report, Vec<String>) {
        let cfg = parse(cfg).unwrap();
        let mut lines = Vec::new();
        let mut p = fake;
        let r = run_with(&cfg, "/etc/verity/boot.toml", &mut p, &mut |e| {
            lines.push(match e {
                LogEvent::Image(i) => report::log_line(i, true),
                LogEvent::Error(m) => report::prefixed(report::Priority::Err, m, true),
            })
        });
        (r, lines)
    }

    #[test]
    fn classes_run_in_order_and_each_decision_is_logged() {
        let fake = Fake(
            vec![
                (Class::Confext, "etc1", true),
                (Class::Sysext, "good", true),
                (Class::Sysext, "evil", false),
            ],
            None,
        );
        let (r, lines) = go("required = [\"good\"]", fake);
        assert_eq!(r.outcome, Outcome::Ok);
        let names: Vec<_> = r.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["good", "evil", "etc1"]);
        assert_eq!(r.images[2].pcr, Some(12));
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("<4>sysext evil: rejected"));
    }

    #[test]
    fn required_rejection_follows_on_failure() {
        let mk = || Fake(vec![(Class::Sysext, "base", false)], None);
        let (r, lines) = go("required = [\"base\"]", mk());
        assert_eq!((r.outcome, r.exit_code), (Outcome::RequiredFailed, 1));
        assert!(lines.last().unwrap().starts_with("<3>required image base"));
        let (r, _) = go("required = [\"base\"]\non-failure = \"continue\"", mk());
        assert_eq!(
            (r.outcome, r.exit_code),
            (Outcome::RequiredFailedContinued, 0)
        );
        let (r, _) = go("required = [\"base\"]\non-failure = \"emergency\"", mk());
        assert_eq!(r.exit_code, 1);
    }

    #[test]
    fn class_error_is_exit_2_and_other_classes_still_run() {
        let fake = Fake(vec![(Class::Confext, "etc1", true)], Some(Class::Sysext));
        let (r, _) = go("", fake);
        assert_eq!((r.outcome, r.exit_code), (Outcome::Error, 2));
        assert_eq!(r.images.len(), 1);
        assert!(r.errors[0].starts_with("sysext: TPM unreachable"));
    }

    #[test]
    fn only_configured_classes_run() {
        let fake = Fake(vec![(Class::Confext, "etc1", true)], Some(Class::Sysext));
        let (r, _) = go("classes = [\"confext\"]", fake);
        assert_eq!(r.outcome, Outcome::Ok);
    }
}

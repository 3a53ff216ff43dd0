//! `verity sysext|confext merge|unmerge|refresh|status|list`: argument parsing and output for the
//! gated overlay merges; the work is in `merge::engine`.

use super::{failed, op_err, CliResult};
use crate::image::release::OsRelease;
use crate::merge::engine::{self, MergeError, MergeOptions, NoTpm};
use crate::merge::pipeline::{Integrity, PipelineConfig};
use crate::merge::plan::Class;
use crate::merge::status;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

/// The two command groups.
#[derive(Subcommand)]
pub enum Command {
    /// System extensions: overlays on /usr and /opt.
    Sysext {
        #[command(subcommand)]
        verb: Verb,
    },
    /// Configuration extensions: an overlay on /etc.
    Confext {
        #[command(subcommand)]
        verb: Verb,
    },
}

/// The verbs, the same for both classes.
#[derive(Subcommand)]
pub enum Verb {
    /// Verify, measure and merge every extension image found.
    Merge(MergeArgs),
    /// Remove our overlays (keeps unrelated submounts); nothing merged is not an error.
    Unmerge(CommonArgs),
    /// Replace the current merge atomically (MOVE_MOUNT_BENEATH) with a fresh one.
    Refresh(MergeArgs),
    /// Show which hierarchies are merged and with what.
    Status(CommonArgs),
    /// List discovered images (no validation).
    List(CommonArgs),
}

/// Options every verb takes.
#[derive(Args)]
pub struct CommonArgs {
    /// Operate on another tree (search paths, hierarchies, os-release under DIR).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Machine-readable output on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s {
        "yes" | "true" | "1" | "on" => Ok(true),
        "no" | "false" | "0" | "off" => Ok(false),
        _ => Err(format!("expected yes or no, got {s:?}")),
    }
}

/// Options of merge and refresh.
#[derive(Args)]
pub struct MergeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Certificate directories (repeatable); replaces the default verity.d search path.
    #[arg(long)]
    trust: Vec<PathBuf>,
    /// systemd image-policy string.
    #[arg(long)]
    image_policy: Option<String>,
    /// TPM to measure into: `device:/dev/tpmrm0` (default) or `swtpm:host=H,port=P`.
    #[arg(long)]
    tpm: Option<String>,
    /// Event log path.
    #[arg(long, default_value = "/run/log/systemd/tpm2-measure.log")]
    event_log: PathBuf,
    /// How verified images are activated.
    #[arg(long, value_enum, default_value = "auto")]
    integrity: Integrity,
    /// Any failing image stops the whole merge with nothing changed.
    #[arg(long)]
    strict: bool,
    /// Mount with noexec (default: yes for confext, no for sysext).
    #[arg(long, value_parser = parse_yes_no)]
    noexec: Option<bool>,
    /// Skip the extension-release compatibility check (systemd-sysext's `--force`): the image
    /// may not fit this host. Named as a bypass because it weakens what is admitted.
    #[arg(long = "dangerous-skip-release-check")]
    force: bool,
    /// PCR to extend (default 13 for sysext, 12 for confext).
    #[arg(long)]
    pcr: Option<u32>,
    /// Merge without measuring into a TPM; the bypass is written to the event log.
    #[arg(long)]
    dangerous_no_tpm: bool,
    /// Allow `--tpm swtpm:...`: measure into a TPM simulator (tests, demos); recorded with every
    /// measurement.
    #[arg(long)]
    dangerous_tpm_simulator: bool,
}

fn host_os_release(root: &Path) -> OsRelease {
    for p in ["etc/os-release", "usr/lib/os-release"] {
        if let Ok(t) = std::fs::read(root.join(p)) {
            // An unparsable os-release has no usable ID: do_merge refuses it as such.
            return OsRelease::parse(&t).unwrap_or_default();
        }
    }
    Default::default()
}

/// Everything a merge needs besides the class's images: shared by `sysext|confext merge` and the
/// boot hook, so both open the TPM, read os-release and pick the activator the same way.
#[derive(Debug, Clone)]
pub(crate) struct MergeSetup {
    pub class: Class,
    pub root: PathBuf,
    pub image_policy: Option<String>,
    pub trust: Vec<PathBuf>,
    pub integrity: Integrity,
    pub pcr: Option<u32>,
    pub force: bool,
    pub strict: bool,
    pub noexec: Option<bool>,
    /// `None` = the default TPM.
    pub tpm: Option<String>,
    pub event_log: PathBuf,
    pub dangerous_no_tpm: bool,
    pub dangerous_tpm_simulator: bool,
}

impl MergeArgs {
    fn setup(&self, class: Class) -> MergeSetup {
        MergeSetup {
            class,
            root: self.common.root.clone(),
            image_policy: self.image_policy.clone(),
            trust: self.trust.clone(),
            integrity: self.integrity,
            pcr: self.pcr,
            force: self.force,
            strict: self.strict,
            noexec: self.noexec,
            tpm: self.tpm.clone(),
            event_log: self.event_log.clone(),
            dangerous_no_tpm: self.dangerous_no_tpm,
            dangerous_tpm_simulator: self.dangerous_tpm_simulator,
        }
    }
}

fn config(s: &MergeSetup) -> PipelineConfig {
    let root = s.root.clone();
    PipelineConfig {
        class: s.class,
        in_initrd: crate::merge::discover::in_initrd(&root),
        host: host_os_release(&root),
        arch: super::image::host_arch(),
        root,
        image_policy: s.image_policy.clone(),
        trust: s.trust.clone(),
        integrity: s.integrity,
        pcr: s.pcr.unwrap_or(s.class.default_pcr()),
        force: s.force,
        nextroot: false,
        workspace: PathBuf::new(),
    }
}

const WORKSPACE_BASE: &str = "/run/verity";

fn print_json<T: serde::Serialize>(v: &T) -> CliResult {
    println!("{}", serde_json::to_string_pretty(v).map_err(op_err)?);
    Ok(())
}

/// The kernel activator, where this build has one.
fn dm_activator() -> Option<&'static dyn crate::merge::pipeline::DmActivator> {
    #[cfg(feature = "dm")]
    {
        Some(&crate::sys::dm::DeviceMapper)
    }
    #[cfg(not(feature = "dm"))]
    {
        None
    }
}

/// Reads os-release, opens the measurer and runs the merge. The outer `Err` means the merge could
/// not start (no host ID, TPM unreachable): an operational error, not an image's fault.
pub(crate) fn run_merge(
    s: &MergeSetup,
    refresh: bool,
) -> Result<Result<engine::MergeOutcome, MergeError>, String> {
    let cfg = config(s);
    if cfg.host.get("ID").map(|s| s.is_empty()).unwrap_or(true) && !s.force {
        return Err(format!(
            "{}: host os-release has no ID (looked in etc/os-release and usr/lib/os-release)",
            s.root.display()
        ));
    }
    let log = crate::measure::EventLog::new(s.event_log.clone());
    let mut measurer: Box<dyn crate::merge::pipeline::Measurer> = if s.dangerous_no_tpm {
        eprintln!(
            "verity: WARNING: --dangerous-no-tpm: merged images are NOT measured into any PCR \
             (the bypass is recorded in {})",
            s.event_log.display()
        );
        Box::new(NoTpm { log })
    } else {
        let spec = s
            .tpm
            .clone()
            .unwrap_or_else(|| crate::measure::DEFAULT_TPM.to_string());
        let (tpm, bypasses) = crate::measure::tpm::open_production_tpm(
            &spec,
            s.dangerous_tpm_simulator,
            "pass --dangerous-tpm-simulator",
        )
        .map_err(|e| format!("TPM {spec}: {e}"))?;
        Box::new(engine::TpmMeasurer { tpm, log, bypasses })
    };
    let opts = MergeOptions {
        pipeline: cfg,
        strict: s.strict,
        noexec: s.noexec,
        workspace_base: PathBuf::from(WORKSPACE_BASE),
    };
    Ok(engine::merge(
        &opts,
        measurer.as_mut(),
        dm_activator(),
        refresh,
    ))
}

fn do_merge(class: Class, a: MergeArgs, refresh: bool) -> CliResult {
    let out = match run_merge(&a.setup(class), refresh).map_err(op_err)? {
        Ok(o) => o,
        Err(MergeError::Strict(fails)) => {
            for f in &fails {
                eprintln!("verity: {f}");
            }
            if a.common.json {
                print_json(&serde_json::json!({ "merged": [], "skipped": fails, "strict": true }))?;
            }
            return Err(failed(format!(
                "--strict: {} image(s) failed, nothing merged",
                fails.len()
            )));
        }
        Err(e @ MergeError::AlreadyMerged(_)) => return Err(op_err(e)),
        Err(e) => return Err(op_err(e)),
    };
    for w in &out.apply.warnings {
        eprintln!("verity: warning: {w}");
    }
    for f in &out.skipped {
        eprintln!("verity: skipped {f}");
    }
    if a.common.json {
        print_json(&out)?;
    } else {
        for m in &out.merged {
            println!(
                "merged {} ({}, {}) pcr {}",
                m.info.name,
                m.info.path.display(),
                m.info.protection,
                m.measurement.pcr
            );
        }
        for h in &out.apply.merged {
            println!("{} {h}", if refresh { "refreshed" } else { "mounted" });
        }
        for h in &out.apply.unmerged {
            println!("unmerged {h}");
        }
        if out.merged.is_empty() {
            println!("no {} image merged", class.name());
        }
    }
    if !out.skipped.is_empty() {
        return Err(failed(format!("{} image(s) skipped", out.skipped.len())));
    }
    Ok(())
}

fn run_class(class: Class, verb: Verb) -> CliResult {
    match verb {
        Verb::Merge(a) => do_merge(class, a, false),
        Verb::Refresh(a) => do_merge(class, a, true),
        Verb::Unmerge(c) => {
            let (done, warnings) =
                engine::unmerge(&c.root, class, Path::new(WORKSPACE_BASE)).map_err(op_err)?;
            for w in &warnings {
                eprintln!("verity: warning: {w}");
            }
            if c.json {
                print_json(&serde_json::json!({ "unmerged": done }))
            } else {
                if done.is_empty() {
                    println!("nothing to unmerge");
                }
                for h in done {
                    println!("unmerged {h}");
                }
                Ok(())
            }
        }
        Verb::Status(c) => {
            let st = status::status(&c.root, class);
            if c.json {
                return print_json(&st);
            }
            println!("{:<24} {:<24} SINCE", "HIERARCHY", "EXTENSIONS");
            for s in st {
                let ext = if s.merged {
                    s.extensions.join(", ")
                } else {
                    "none".to_string()
                };
                let since = s.since.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
                println!("{:<24} {:<24} {since}", s.hierarchy, ext);
            }
            Ok(())
        }
        Verb::List(c) => {
            let cands = crate::merge::discover::discover(
                &c.root,
                class,
                crate::merge::discover::in_initrd(&c.root),
            );
            if c.json {
                return print_json(&cands);
            }
            println!("{:<20} {:<10} {:<40} MTIME", "NAME", "TYPE", "PATH");
            for x in cands {
                let kind = serde_json::to_value(x.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                println!(
                    "{:<20} {:<10} {:<40} {}",
                    x.name,
                    kind,
                    x.path.display(),
                    x.mtime
                );
            }
            Ok(())
        }
    }
}

/// Runs a `sysext` or `confext` command.
pub fn run(cmd: Command) -> CliResult {
    match cmd {
        Command::Sysext { verb } => run_class(Class::Sysext, verb),
        Command::Confext { verb } => run_class(Class::Confext, verb),
    }
}

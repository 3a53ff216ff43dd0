//! `verity boot [--config FILE]` and `verity boot install [--root DIR]`: the boot hook's command line.
//! Exit codes: 0 everything required is in (or on-failure = continue), 1 a required image was
//! rejected or missing, 2 the hook could not run (bad config, TPM unreachable, report unwritable).

use super::{op_err, CliError, CliResult};
use crate::boot::config::{self, Class, Config};
use crate::boot::report::{self, ImageReport, Outcome, Priority};
use crate::boot::{self as hook, ClassPipeline, LogEvent};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

/// The boot hook.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Verify, measure and merge every extension the config names, and write the report.
    Boot(BootArgs),
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BootArgs {
    #[command(subcommand)]
    sub: Option<BootSub>,
    /// Config file.
    #[arg(long, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Print the report as JSON on stdout too.
    #[arg(long)]
    json: bool,
    /// Write the report here instead of the config's `report` path.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Allow the config's `tpm` to be a simulator (swtpm), like `dangerous-tpm-simulator = true`.
    #[arg(long)]
    dangerous_tpm_simulator: bool,
}

#[derive(Subcommand, Debug)]
enum BootSub {
    /// Install the systemd units and example configs (under --root, default /).
    Install {
        /// Tree to install into.
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
}

pub fn run(cmd: Command) -> CliResult {
    let Command::Boot(a) = cmd;
    match a.sub {
        Some(BootSub::Install { root }) => install(&root),
        None => boot(&a.config, a.json, a.report, a.dangerous_tpm_simulator),
    }
}

fn install(root: &Path) -> CliResult {
    let done = crate::boot::install::install(root)
        .map_err(|e| op_err(format!("installing under {}: {e}", root.display())))?;
    for i in done {
        let what = if i.kept { "kept existing" } else { "installed" };
        println!("{what} {}", i.path.display());
    }
    println!("enable with: systemctl enable verity-boot.service (already linked into sysinit.target.wants)");
    Ok(())
}

/// stderr goes to the journal when `JOURNAL_STREAM` names stderr's own device and inode.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let env = std::env::var("JOURNAL_STREAM").ok();
    // stat() of the /proc fd link reaches the open file itself, sockets included.
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(m) => report::is_journal_stream(env.as_deref(), m.dev(), m.ino()),
        Err(_) => false,
    }
}

/// The real per-class pipeline: the sysext/confext merge engine with the config's settings.
/// The real per-class pipeline; remembers the last class's overlay time for the report.
#[derive(Default)]
struct Pipeline {
    overlay_micros: Option<u64>,
}

fn merge_class(c: Class) -> crate::merge::plan::Class {
    match c {
        Class::Sysext => crate::merge::plan::Class::Sysext,
        Class::Confext => crate::merge::plan::Class::Confext,
    }
}

fn integrity(cfg: &Config) -> crate::merge::pipeline::Integrity {
    use crate::merge::pipeline::Integrity as I;
    match cfg.integrity {
        config::Integrity::Auto => I::Auto,
        config::Integrity::Kernel => I::Kernel,
        config::Integrity::Userspace => I::Userspace,
    }
}

/// How the pipeline activated images (it decides `auto` the same way).
fn integrity_used(cfg: &Config) -> &'static str {
    match cfg.integrity {
        config::Integrity::Kernel => "kernel",
        config::Integrity::Userspace => "userspace",
        config::Integrity::Auto => {
            if cfg!(feature = "dm") && Path::new("/dev/mapper/control").exists() {
                "kernel"
            } else {
                "userspace"
            }
        }
    }
}

impl ClassPipeline for Pipeline {
    fn last_overlay_micros(&self) -> Option<u64> {
        self.overlay_micros
    }

    fn run_class(&mut self, class: Class, cfg: &Config) -> Result<Vec<ImageReport>, String> {
        let cc = cfg.class(class);
        let setup = super::ext::MergeSetup {
            class: merge_class(class),
            root: cfg.root.clone(),
            image_policy: cc.image_policy.clone(),
            trust: cfg.trust.clone(),
            integrity: integrity(cfg),
            pcr: Some(cfg.pcr(class)),
            force: false,
            strict: false,
            noexec: cc.noexec,
            tpm: Some(cfg.tpm.clone()),
            event_log: cfg.event_log.clone(),
            dangerous_no_tpm: false,
            dangerous_tpm_simulator: cfg.dangerous_tpm_simulator,
            mutable: crate::merge::mutable::MutableMode::No,
            ratchet: cfg.ratchet,
        };
        self.overlay_micros = None;
        let out = super::ext::run_merge(&setup, false)?.map_err(|e| e.to_string())?;
        self.overlay_micros = Some(out.overlay_micros);
        for w in &out.apply.warnings {
            eprintln!("verity: warning: {}: {w}", class.name());
        }
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
                integrity: Some(integrity_used(cfg).to_string()),
                version: m.info.version,
                steps: m.steps,
            });
        }
        for f in out.skipped {
            let check = serde_json::to_value(f.check)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            list.push(ImageReport {
                class,
                name: f.name,
                path: f.path.to_string_lossy().into_owned(),
                status: report::Status::Rejected,
                // The engine's reasons usually start with the check already.
                reason: Some(if f.reason.starts_with(&check) {
                    f.reason
                } else {
                    format!("{check}: {}", f.reason)
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
        Ok(list)
    }
}

fn boot(
    config_path: &Path,
    json: bool,
    report_path: Option<PathBuf>,
    tpm_simulator: bool,
) -> CliResult {
    let journal = stderr_is_journal();
    let say = |p: Priority, m: &str| eprintln!("{}", report::prefixed(p, m, journal));
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| op_err(format!("cannot read config {}: {e}", config_path.display())))?;
    let refused = |e: config::ConfigError| {
        op_err(match e.line {
            Some(l) => format!("{}:{l}: {}", config_path.display(), e.reason),
            None => format!("{}: {}", config_path.display(), e.reason),
        })
    };
    let mut cfg = config::parse(&text).map_err(refused)?;
    cfg.check_tpm(&text, tpm_simulator).map_err(refused)?;
    cfg.dangerous_tpm_simulator |= tpm_simulator;
    if let Some(p) = report_path {
        cfg.report = p;
    }
    let mut pipeline = Pipeline::default();
    let rep = hook::run(
        &cfg,
        &config_path.to_string_lossy(),
        &mut pipeline,
        &mut |e| match e {
            LogEvent::Image(i) => eprintln!("{}", report::log_line(i, journal)),
            LogEvent::Error(m) => say(Priority::Err, m),
        },
    );
    let json_text = rep.to_json();
    if let Some(dir) = cfg.report.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut code = rep.exit_code;
    if let Err(e) = crate::io::output::write_atomic(&cfg.report, json_text.as_bytes()) {
        say(
            Priority::Err,
            &format!("cannot write the report {}: {e}", cfg.report.display()),
        );
        code = 2;
    }
    if json {
        print!("{json_text}");
    }
    if rep.outcome == Outcome::RequiredFailed && cfg.on_failure == config::OnFailure::Emergency {
        say(Priority::Err, "requesting emergency mode");
        let r = std::process::Command::new("systemctl")
            .args(["--no-block", "start", "emergency.target"])
            .status();
        if !matches!(r, Ok(s) if s.success()) {
            say(
                Priority::Err,
                "could not request emergency mode (systemctl failed)",
            );
        }
    }
    let accepted = rep
        .images
        .iter()
        .filter(|i| i.status == report::Status::Accepted)
        .count();
    let summary = format!(
        "{accepted} of {} images accepted ({:?}); report in {}",
        rep.images.len(),
        rep.outcome,
        cfg.report.display()
    );
    match code {
        0 => {
            say(Priority::Info, &summary);
            Ok(())
        }
        1 => Err(CliError::Failed(summary)),
        _ => Err(CliError::Usage(summary)),
    }
}

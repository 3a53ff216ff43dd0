//! `verity boot [--config FILE]` and `verity boot install [--root DIR]`: the boot hook's command line.
//! It parses the config, turns it into a host (`boot::host_from_config`), calls `boot::run`, writes
//! and prints the report.
//! Exit codes: 0 everything required is in (or on-failure = continue), 1 a required image was
//! rejected or missing, 2 the hook could not run (bad config, TPM unreachable, report unwritable).

use super::{op_err, CliError, CliResult};
use crate::boot::config;
use crate::boot::report::{self, Outcome, Priority};
use crate::boot::{self as hook, LogEvent};
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
    let host = hook::host_from_config(&cfg);
    let rep = hook::run(
        &host,
        &cfg,
        &config_path.to_string_lossy(),
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

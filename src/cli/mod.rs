//! Command-line layer: argument parsing, human and `--json` output, exit codes, progress bars.
//! Exit codes: 0 success, 1 a verification/signature/policy check failed, 2 usage or operational error.
//!
//! Layer L17 (`tests/layering.rs`), the top: it may import everything, and nothing imports it. It
//! parses and prints; every decision is a library call below it.

use clap::{Parser, Subcommand};
use std::ffi::OsString;

mod attest;
mod boot;
#[cfg(feature = "dm")]
mod dmopen;
mod dmverity;
mod ext;
mod image;
mod predict;
mod predict_export;
mod progress;
mod reboot;
mod rollback;
mod sign;
mod tpm;

/// What went wrong, and so which exit code.
#[derive(Debug)]
pub enum CliError {
    /// A check failed (exit 1).
    Failed(String),
    /// Bad usage, configuration, or an operational failure such as a missing file (exit 2).
    Usage(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
        }
    }

    fn message(&self) -> &str {
        match self {
            CliError::Failed(m) | CliError::Usage(m) => m,
        }
    }
}

/// Shorthand for an operational error (exit 2).
pub(crate) fn op_err(msg: impl std::fmt::Display) -> CliError {
    CliError::Usage(msg.to_string())
}

/// Shorthand for a failed check (exit 1).
pub(crate) fn failed(msg: impl std::fmt::Display) -> CliError {
    CliError::Failed(msg.to_string())
}

pub(crate) type CliResult = Result<(), CliError>;

/// `--json=pretty|short|off`, as systemd's tools take it (a plain `--json` is `pretty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonMode {
    /// Indented.
    Pretty,
    /// One line.
    Short,
    /// Human text, as without `--json`.
    Off,
}

pub(crate) fn parse_json_mode(s: &str) -> Result<JsonMode, String> {
    match s {
        "pretty" => Ok(JsonMode::Pretty),
        "short" => Ok(JsonMode::Short),
        "off" => Ok(JsonMode::Off),
        _ => Err(format!("expected pretty, short or off, got {s:?}")),
    }
}

/// Prints `v` as JSON on stdout in the given mode (`Off` prints nothing).
pub(crate) fn print_json<T: serde::Serialize>(mode: JsonMode, v: &T) -> CliResult {
    let text = match mode {
        JsonMode::Pretty => serde_json::to_string_pretty(v),
        JsonMode::Short => serde_json::to_string(v),
        JsonMode::Off => return Ok(()),
    }
    .map_err(op_err)?;
    println!("{text}");
    Ok(())
}

#[derive(Parser)]
#[command(
    name = "verity",
    version,
    about = "Integrity engine for image-based Linux",
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print help.
    #[arg(short = '?', long = "help", action = clap::ArgAction::Help, global = true)]
    help: Option<bool>,
    /// Print version.
    #[arg(short = 'V', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    DmVerity(dmverity::Command),
    #[cfg(feature = "dm")]
    #[command(flatten)]
    DmOpen(dmopen::Command),
    #[command(flatten)]
    Boot(boot::Command),
    #[command(flatten)]
    Ext(ext::Command),
    #[command(flatten)]
    Image(image::Command),
    #[command(flatten)]
    Sign(sign::Command),
    #[command(flatten)]
    Reboot(reboot::Command),
    #[command(flatten)]
    Tpm(tpm::Command),
    #[command(flatten)]
    Rollback(rollback::Command),
    #[command(flatten)]
    Attest(attest::Command),
    // Further command groups are flattened in here, one line each.
}

/// Verbs whose veritysetup-style options may come before the verb.
const VERITYSETUP_VERBS: &[&str] = &["format", "verify", "dump", "repair"];

/// veritysetup accepts options before the action (`veritysetup --hash=sha1 format a b`, `-h sha1
/// format`). Move leading options after the verb so the parser sees them where it expects them;
/// option values are skipped when looking for the verb.
fn find_verb_after_values(args: Vec<OsString>) -> Vec<OsString> {
    let s: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let with_value = dmverity::OPTIONS_WITH_VALUES;
    let mut i = 1;
    while i < s.len() {
        let a = &s[i];
        if !a.starts_with('-') {
            break;
        }
        if !a.contains('=') && with_value.contains(&a.as_str()) {
            i += 2;
        } else {
            i += 1;
        }
    }
    if i < s.len() && i > 1 && VERITYSETUP_VERBS.contains(&s[i].as_str()) {
        let mut out = vec![args[0].clone(), args[i].clone()];
        out.extend(args[1..i].iter().cloned());
        out.extend(args[i + 1..].iter().cloned());
        out
    } else {
        args
    }
}

/// Runs the CLI and returns the exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    let args = find_verb_after_values(args);
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 2,
            };
        }
    };
    let res = match cli.command {
        Command::DmVerity(c) => dmverity::run(c),
        #[cfg(feature = "dm")]
        Command::DmOpen(c) => dmopen::run(c),
        Command::Boot(c) => boot::run(c),
        Command::Ext(c) => ext::run(c),
        Command::Image(c) => image::run(c),
        Command::Sign(c) => sign::run(c),
        Command::Rollback(c) => rollback::run(c),
        Command::Reboot(c) => reboot::run(c),
        Command::Tpm(c) => tpm::run(c),
        Command::Attest(c) => attest::run(c),
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("verity: {}", e.message());
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn options_before_the_verb_move_after_it() {
        assert_eq!(
            find_verb_after_values(v(&["verity", "--hash=sha1", "format", "a", "b"])),
            v(&["verity", "format", "--hash=sha1", "a", "b"])
        );
        assert_eq!(
            find_verb_after_values(v(&["verity", "-h", "sha1", "-s", "-", "format", "a", "b"])),
            v(&["verity", "format", "-h", "sha1", "-s", "-", "a", "b"])
        );
        assert_eq!(
            find_verb_after_values(v(&["verity", "format", "a", "b"])),
            v(&["verity", "format", "a", "b"])
        );
    }
}

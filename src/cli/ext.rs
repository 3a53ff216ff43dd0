//! `verity sysext|confext merge|unmerge|refresh|status|list`: argument parsing and output for the
//! gated overlay merges. The parsed options become a [`Host`] in one place ([`ExtArgs::host`]);
//! the work is in `merge::run`.

use super::{failed, op_err, CliResult};
use crate::host::{ClassSettings, Host, TpmSetup};
use crate::image::Integrity;
use crate::merge::engine::{MergeError, MergeRequest};
use crate::merge::mutable::MutableMode;
use crate::merge::plan::Class;
use crate::merge::run as merge_run;
use crate::merge::status;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// The two command groups.
#[derive(Subcommand)]
pub enum Command {
    /// System extensions: overlays on /usr and /opt.
    Sysext {
        #[command(flatten)]
        opts: ExtArgs,
        /// What to do (default: status).
        #[command(subcommand)]
        verb: Option<Verb>,
    },
    /// Configuration extensions: an overlay on /etc.
    Confext {
        #[command(flatten)]
        opts: ExtArgs,
        /// What to do (default: status).
        #[command(subcommand)]
        verb: Option<Verb>,
    },
}

/// The verbs, the same for both classes. Every verb takes every option (before or after the
/// verb) and ignores those that do not apply to it, as systemd-sysext does: scripts can reuse
/// one option string.
#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Verify, measure and merge every extension image found.
    Merge,
    /// Remove our overlays (keeps unrelated submounts); nothing merged is not an error.
    Unmerge,
    /// Replace the current merge atomically (MOVE_MOUNT_BENEATH) with a fresh one.
    Refresh,
    /// Show which hierarchies are merged, with what, since when, and whether writable.
    Status,
    /// List discovered images (no validation).
    List,
}

fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s {
        "yes" | "true" | "1" | "on" => Ok(true),
        "no" | "false" | "0" | "off" => Ok(false),
        _ => Err(format!("expected yes or no, got {s:?}")),
    }
}

fn parse_mutable(s: &str) -> Result<MutableMode, String> {
    MutableMode::parse(s).ok_or_else(|| {
        format!("expected no, yes, auto, import, ephemeral or ephemeral-import, got {s:?}")
    })
}

/// The options of every verb (global: accepted before or after the verb).
#[derive(Args, Clone)]
pub struct ExtArgs {
    /// Operate on another tree (search paths, hierarchies, os-release under DIR).
    #[arg(long, global = true, default_value = "/")]
    root: PathBuf,
    /// Machine-readable output on stdout: pretty (plain --json), short (one line) or off.
    #[arg(long, global = true, value_name = "pretty|short|off", num_args = 0..=1,
          require_equals = true, default_missing_value = "pretty", value_parser = super::parse_json_mode)]
    json: Option<super::JsonMode>,
    /// Certificate directories (repeatable); replaces the default verity.d search path.
    #[arg(long, global = true)]
    trust: Vec<PathBuf>,
    /// systemd image-policy string.
    #[arg(long, global = true)]
    image_policy: Option<String>,
    /// TPM to measure into: `device:/dev/tpmrm0` (default) or `swtpm:host=H,port=P`.
    #[arg(long, global = true)]
    tpm: Option<String>,
    /// Event log path.
    #[arg(
        long,
        global = true,
        default_value = "/run/log/systemd/tpm2-measure.log"
    )]
    event_log: PathBuf,
    /// How verified images are activated.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    integrity: Integrity,
    /// Any failing image stops the whole merge with nothing changed.
    #[arg(long, global = true)]
    strict: bool,
    /// After a successful merge, raise each merged image's rollback floor to its IMAGE_VERSION=
    /// (in ROOT/var/lib/verity/rollback.json; each change is logged on stderr).
    #[arg(long, global = true)]
    ratchet: bool,
    /// Mount with noexec (default: yes for confext, no for sysext).
    #[arg(long, global = true, value_parser = parse_yes_no)]
    noexec: Option<bool>,
    /// Mutability of the merged hierarchies (systemd's modes; default from
    /// SYSTEMD_SYSEXT_MUTABLE_MODE / SYSTEMD_CONFEXT_MUTABLE_MODE, else no). Writable and imported
    /// layers are host directories: never verified, never measured.
    #[arg(long, global = true, value_name = "no|yes|auto|import|ephemeral|ephemeral-import",
          value_parser = parse_mutable)]
    mutable: Option<MutableMode>,
    /// Skip the extension-release compatibility check (systemd-sysext's `--force`): the image
    /// may not fit this host. Named as a bypass because it weakens what is admitted.
    #[arg(long = "dangerous-skip-release-check", global = true)]
    force: bool,
    /// PCR to extend (default 13 for sysext, 12 for confext).
    #[arg(long, global = true)]
    pcr: Option<u32>,
    /// Merge without measuring into a TPM; the bypass is written to the event log.
    #[arg(long, global = true)]
    dangerous_no_tpm: bool,
    /// Allow `--tpm swtpm:...`: measure into a TPM simulator (tests, demos); recorded with every
    /// measurement.
    #[arg(long, global = true)]
    dangerous_tpm_simulator: bool,
    /// Accepted for systemd-sysext compatibility; verity never reloads the service manager.
    #[arg(long, global = true)]
    no_reload: bool,
    /// Accepted for systemd-sysext compatibility; verity never pages.
    #[arg(long, global = true)]
    no_pager: bool,
    /// Omit the header line of `status` and `list` tables.
    #[arg(long, global = true)]
    no_legend: bool,
}

impl ExtArgs {
    /// The mutable mode: `--mutable`, else the class's environment variable (an unparsable
    /// value is warned about and ignored, as systemd does), else `no`.
    fn mutable_mode(&self, class: Class) -> MutableMode {
        if let Some(m) = self.mutable {
            return m;
        }
        let var = match class {
            Class::Sysext => "SYSTEMD_SYSEXT_MUTABLE_MODE",
            Class::Confext => "SYSTEMD_CONFEXT_MUTABLE_MODE",
        };
        match std::env::var(var) {
            Ok(v) => MutableMode::parse(&v).unwrap_or_else(|| {
                eprintln!("verity: warning: cannot parse {var}={v:?}, ignoring it");
                MutableMode::No
            }),
            Err(_) => MutableMode::No,
        }
    }

    /// The parsed options as the host context of a `class` operation (the options name one
    /// class's policy, PCR and noexec).
    fn host(&self, class: Class) -> Host {
        let mut h = Host::new(&self.root);
        h.trust = self.trust.clone();
        *h.class_mut(class) = ClassSettings {
            image_policy: self.image_policy.clone(),
            pcr: self.pcr,
            noexec: self.noexec,
        };
        h.tpm = TpmSetup {
            spec: self.tpm.clone(),
            dangerous_simulator: self.dangerous_tpm_simulator,
            dangerous_no_tpm: self.dangerous_no_tpm,
        };
        h.event_log = self.event_log.clone();
        h.integrity = self.integrity;
        h.strict = self.strict;
        h.ratchet = self.ratchet;
        h.skip_release_check = self.force;
        h
    }
}

fn print_json<T: serde::Serialize>(mode: super::JsonMode, v: &T) -> CliResult {
    super::print_json(mode, v)
}

/// A timestamp as systemd prints one (`Fri 2026-12-04 12:00:00 UTC`), in the local time zone.
fn format_time(secs: i64) -> String {
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => t
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .strftime("%a %Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => secs.to_string(),
    }
}

fn do_merge(class: Class, a: &ExtArgs, refresh: bool) -> CliResult {
    let json = a.json.filter(|m| *m != super::JsonMode::Off);
    let req = MergeRequest {
        class,
        refresh,
        mutable: a.mutable_mode(class),
    };
    let out = match merge_run::merge(&a.host(class), &req) {
        Ok(o) => o,
        Err(MergeError::Strict(fails)) => {
            for f in &fails {
                eprintln!("verity: {f}");
            }
            if let Some(m) = json {
                print_json(
                    m,
                    &serde_json::json!({ "merged": [], "skipped": fails, "strict": true }),
                )?;
            }
            return Err(failed(format!(
                "--strict: {} image(s) failed, nothing merged",
                fails.len()
            )));
        }
        Err(e) => return Err(op_err(e)),
    };
    for w in &out.apply.warnings {
        eprintln!("verity: warning: {w}");
    }
    for f in &out.skipped {
        eprintln!("verity: skipped {f}");
    }
    for m in &out.apply.mutable {
        eprintln!(
            "verity: note: {} is merged with --mutable={}: its writable/imported layers are not verified or measured",
            m.hierarchy,
            m.mode.name()
        );
    }
    if let Some(m) = json {
        print_json(m, &out)?;
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

fn do_unmerge(class: Class, c: &ExtArgs) -> CliResult {
    let (done, warnings) = merge_run::unmerge(&c.host(class), class).map_err(op_err)?;
    for w in &warnings {
        eprintln!("verity: warning: {w}");
    }
    match c.json.filter(|m| *m != super::JsonMode::Off) {
        Some(m) => print_json(m, &serde_json::json!({ "unmerged": done })),
        None => {
            if done.is_empty() {
                println!("nothing to unmerge");
            }
            for h in done {
                println!("unmerged {h}");
            }
            Ok(())
        }
    }
}

fn do_status(class: Class, c: &ExtArgs) -> CliResult {
    let st = status::status(&c.root, class);
    if let Some(m) = c.json.filter(|m| *m != super::JsonMode::Off) {
        return print_json(m, &st);
    }
    if !c.no_legend {
        println!(
            "{:<24} {:<24} {:<10} SINCE",
            "HIERARCHY", "EXTENSIONS", "MUTABLE"
        );
    }
    for s in st {
        let ext = if s.merged {
            s.extensions.join(", ")
        } else {
            "none".to_string()
        };
        let since = s.since.map(format_time).unwrap_or_else(|| "-".into());
        let mutable = match (s.merged, s.mutable) {
            (false, _) => "-",
            (true, true) => "yes",
            (true, false) => "no",
        };
        println!("{:<24} {:<24} {mutable:<10} {since}", s.hierarchy, ext);
    }
    Ok(())
}

fn do_list(class: Class, c: &ExtArgs) -> CliResult {
    let cands = crate::merge::discover::discover(
        &c.root,
        class,
        crate::merge::discover::in_initrd(&c.root),
    );
    if let Some(m) = c.json.filter(|m| *m != super::JsonMode::Off) {
        return print_json(m, &cands);
    }
    if !c.no_legend {
        println!("{:<20} {:<10} {:<40} MTIME", "NAME", "TYPE", "PATH");
    }
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
            format_time(x.mtime)
        );
    }
    Ok(())
}

fn run_class(class: Class, opts: &ExtArgs, verb: Option<Verb>) -> CliResult {
    match verb.unwrap_or(Verb::Status) {
        Verb::Merge => do_merge(class, opts, false),
        Verb::Refresh => do_merge(class, opts, true),
        Verb::Unmerge => do_unmerge(class, opts),
        Verb::Status => do_status(class, opts),
        Verb::List => do_list(class, opts),
    }
}

/// Runs a `sysext` or `confext` command.
pub fn run(cmd: Command) -> CliResult {
    match cmd {
        Command::Sysext { opts, verb } => run_class(Class::Sysext, &opts, verb),
        Command::Confext { opts, verb } => run_class(Class::Confext, &opts, verb),
    }
}

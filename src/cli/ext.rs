//! `verity sysext|confext merge|unmerge|refresh|status|list`: argument parsing and output for the
//! gated overlay merges; the work is in `merge::engine`.

use super::{failed, op_err, CliResult};
use crate::image::release::OsRelease;
use crate::merge::engine::{self, MergeError, MergeOptions, NoTpm};
use crate::merge::mutable::MutableMode;
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
    /// `--mutable`.
    pub mutable: MutableMode,
    /// `--ratchet`: raise the floors of what was merged.
    pub ratchet: bool,
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

    fn setup(&self, class: Class) -> MergeSetup {
        MergeSetup {
            class,
            mutable: self.mutable_mode(class),
            root: self.root.clone(),
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
            ratchet: self.ratchet,
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
        rollback: crate::rollback::admit::Guard::none(),
    }
}

const WORKSPACE_BASE: &str = "/run/verity";

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
    let mut cfg = config(s);
    // Floors and epoch are read before anything is opened or mounted: a corrupt state file or an
    // unreadable epoch stops the merge here (exit 2), with nothing merged.
    let epoch = crate::rollback::admit::epoch_for(
        s.tpm.as_deref(),
        s.dangerous_no_tpm,
        s.dangerous_tpm_simulator,
    )?;
    cfg.rollback = crate::rollback::admit::Guard::load(&s.root, epoch)?;
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
        mutable: s.mutable,
        workspace_base: PathBuf::from(WORKSPACE_BASE),
    };
    let out = engine::merge(&opts, measurer.as_mut(), dm_activator(), refresh);
    if let (true, Ok(o)) = (s.ratchet, &out) {
        ratchet_merged(&s.root, o)?;
    }
    Ok(out)
}

/// `--ratchet` after a successful merge: each merged image's floor rises to its version.
fn ratchet_merged(root: &Path, o: &engine::MergeOutcome) -> Result<(), String> {
    let admitted: Vec<_> = o
        .merged
        .iter()
        .filter_map(|m| {
            let v = m.info.version.clone()?;
            let name = crate::merge::plan::release_name(&m.info.name).to_string();
            Some((m.info.class.into(), name, v))
        })
        .collect();
    crate::rollback::admit::ratchet(root, &admitted)
        .map_err(|e| format!("merged, but --ratchet could not raise the floors: {e}"))
}

fn do_merge(class: Class, a: &ExtArgs, refresh: bool) -> CliResult {
    let json = a.json.filter(|m| *m != super::JsonMode::Off);
    let out = match run_merge(&a.setup(class), refresh).map_err(op_err)? {
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
    let (done, warnings) =
        engine::unmerge(&c.root, class, Path::new(WORKSPACE_BASE)).map_err(op_err)?;
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

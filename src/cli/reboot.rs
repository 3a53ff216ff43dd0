//! `verity soft-reboot prepare | exec`: stage a verified, measured root at /run/nextroot, and switch
//! into it where systemd is not PID 1.

use super::{failed, op_err, CliResult};
use crate::host::{ClassSettings, Host, TpmSetup};
use crate::image::Integrity;
use crate::reboot::exec::{self, ExecOptions, SwitchError};
use crate::reboot::plan::{parse_keep_fd, KeepFd};
use crate::reboot::prepare::{self, PrepareRequest};
use crate::reboot::stage::{self, StageFacts, DEFAULT_NEXTROOT, DEFAULT_RECORD};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// The soft-reboot command group.
#[derive(Subcommand)]
pub enum Command {
    /// Stage a verified root for a soft reboot, or switch into it.
    #[command(name = "soft-reboot", subcommand)]
    SoftReboot(Verb),
}

/// The soft-reboot verbs.
#[derive(Subcommand)]
pub enum Verb {
    /// Verify, measure (class nextroot) and mount a root image at the nextroot; record what was staged.
    Prepare(PrepareArgs),
    /// As PID 1 of a PID namespace: check the staged root and switch into it.
    Exec(ExecArgs),
}

/// Options of `soft-reboot prepare`.
#[derive(Args)]
pub struct PrepareArgs {
    /// The signed root image (made by `verity image build --class root`).
    pub image: Option<PathBuf>,
    /// Where to mount it.
    #[arg(long, default_value = DEFAULT_NEXTROOT)]
    pub nextroot: PathBuf,
    /// Where to record what was staged.
    #[arg(long, default_value = DEFAULT_RECORD)]
    pub record: PathBuf,
    /// The init the new root must provide (default: systemd's, then /sbin/init).
    #[arg(long)]
    pub init: Option<String>,
    /// Certificate directory (repeatable; replaces the default verity.d search path).
    #[arg(long)]
    pub trust: Vec<PathBuf>,
    /// systemd image policy (default: signed images only).
    #[arg(long = "image-policy")]
    pub image_policy: Option<String>,
    /// How the verified image is activated.
    #[arg(long, value_enum, default_value = "auto")]
    pub integrity: Integrity,
    /// PCR to extend with the nextroot measurement.
    #[arg(long, default_value_t = crate::measure::PCR_NEXTROOT)]
    pub pcr: u32,
    /// TPM to measure into: `device:/dev/tpmrm0` (default) or `swtpm:host=H,port=P`.
    #[arg(long)]
    pub tpm: Option<String>,
    /// Event log.
    #[arg(long = "event-log", default_value = crate::measure::DEFAULT_EVENT_LOG)]
    pub event_log: PathBuf,
    /// Where the private workspace is mounted while the image is checked.
    #[arg(long, default_value = "/run/verity")]
    pub workspace: PathBuf,
    /// Record whatever is already mounted at the nextroot WITHOUT verifying or measuring it (the
    /// record says so, and so does every later step); the bypass itself is written to the event
    /// log, and extended into --pcr when a TPM is there.
    #[arg(long)]
    pub dangerous_premounted: bool,
    /// Allow `--tpm swtpm:...`: measure into a TPM simulator (tests, demos); recorded with the
    /// measurement.
    #[arg(long)]
    pub dangerous_tpm_simulator: bool,
    /// The system whose rollback floors apply (ROOT/var/lib/verity/rollback.json) and whose
    /// verity.d holds the default certificates.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// After a successful prepare, raise the root's rollback floor (class root, its os-release
    /// IMAGE_ID=) to its IMAGE_VERSION= (logged on stderr).
    #[arg(long)]
    pub ratchet: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl PrepareArgs {
    /// The parsed options as the host context of the prepare (the one place they become one).
    fn host(&self) -> Host {
        let mut h = Host::new(&self.root);
        h.trust = self.trust.clone();
        h.nextroot = ClassSettings {
            image_policy: self.image_policy.clone(),
            pcr: Some(self.pcr),
            noexec: None,
        };
        h.tpm = TpmSetup {
            spec: self.tpm.clone(),
            dangerous_simulator: self.dangerous_tpm_simulator,
            dangerous_no_tpm: false,
        };
        h.event_log = self.event_log.clone();
        h.integrity = self.integrity;
        h.ratchet = self.ratchet;
        h.workspace = self.workspace.clone();
        h
    }
}

/// Options of `soft-reboot exec`.
#[derive(Args)]
pub struct ExecArgs {
    /// The staged root.
    #[arg(long, default_value = DEFAULT_NEXTROOT)]
    pub nextroot: PathBuf,
    /// The staging record written by prepare.
    #[arg(long, default_value = DEFAULT_RECORD)]
    pub record: PathBuf,
    /// The init to execute, inside the new root (default: the one prepare found).
    #[arg(long)]
    pub init: Option<String>,
    /// A descriptor to hand to the new init, `N` or `N:NAME` (repeatable; renumbered from 3, with
    /// LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID set).
    #[arg(long = "keep-fd", value_name = "N[:NAME]")]
    pub keep_fd: Vec<String>,
    /// Refuse unless the staged root hash is this one.
    #[arg(long)]
    pub root_hash: Option<String>,
    /// Do not try pivot_root; move the new root onto / and chroot (what happens anyway where
    /// pivot_root is impossible, e.g. from an initramfs).
    #[arg(long)]
    pub no_pivot: bool,
}

/// Runs a soft-reboot command.
pub fn run(cmd: Command) -> CliResult {
    match cmd {
        Command::SoftReboot(Verb::Prepare(a)) => prepare(a),
        Command::SoftReboot(Verb::Exec(a)) => exec_cmd(a),
    }
}

fn prepare(a: PrepareArgs) -> CliResult {
    let record = if a.dangerous_premounted {
        if a.image.is_some() {
            return Err(op_err(
                "--dangerous-premounted records what is already mounted; it takes no IMAGE",
            ));
        }
        let tree = stage::check_tree(&a.nextroot, a.init.as_deref())
            .map_err(|e| failed(format!("{e}; nothing staged")))?;
        let facts = StageFacts {
            image: String::new(),
            dangerous: vec!["premounted".into()],
            ..StageFacts::default()
        };
        eprintln!(
            "verity: warning: {} recorded as staged WITHOUT verification or measurement (--dangerous-premounted)",
            a.nextroot.display()
        );
        record_premounted(&a)?;
        stage::record_staged(&a.nextroot, &a.record, &facts, &tree).map_err(op_err)?
    } else {
        let Some(image) = a.image.clone() else {
            return Err(op_err("soft-reboot prepare: IMAGE is required"));
        };
        let host = a.host();
        // Floors and epoch first (exit 2 if unreadable), before the TPM is opened to measure.
        let rollback = host.rollback_guard().map_err(op_err)?;
        let mut measurer = host.measurer().map_err(op_err)?;
        let req = PrepareRequest {
            image,
            nextroot: a.nextroot.clone(),
            record: a.record.clone(),
            init: a.init.clone(),
        };
        prepare::prepare(
            &host,
            &req,
            rollback,
            measurer.as_mut(),
            crate::admit::integrity::kernel(),
        )
        .map_err(|e| {
            let m = format!("{}; nothing staged", e.message);
            if e.check_failed {
                failed(m)
            } else {
                op_err(m)
            }
        })?
    };
    if a.json {
        println!("{}", record.to_json().trim_end());
    } else {
        println!(
            "Staged {} at {} (device {}, mount {}), init {}",
            record.root_hash.as_deref().unwrap_or("an unverified tree"),
            record.nextroot,
            record.mount.dev,
            record.mount.mnt_id,
            record.init
        );
    }
    Ok(())
}

/// Writes the premounted bypass to the event log before anything is recorded as staged, and
/// extends it into `--pcr` when there is a TPM: the one given with --tpm (which must then work),
/// else the default device if this machine has one. No log record, nothing staged.
fn record_premounted(a: &PrepareArgs) -> CliResult {
    let host = a.host();
    let m = host
        .open_tpm_if_present()
        .map_err(|e| op_err(format!("{e}; nothing staged")))?;
    let (mut tpm, context) = match m.tpm {
        Some((t, b)) => (Some(t), b),
        None => {
            eprintln!(
                "verity: warning: no TPM at {}: the --dangerous-premounted bypass is \
                 recorded in the event log only",
                crate::measure::DEFAULT_TPM.trim_start_matches("device:")
            );
            (None, Vec::new())
        }
    };
    let log = m.log;
    crate::measure::step::record_bypass(
        tpm.as_mut()
            .map(|t| &mut **t as &mut dyn crate::measure::Tpm),
        &log,
        host.nextroot_pcr(),
        crate::gate::Bypass::Premounted,
        &a.nextroot.display().to_string(),
        &context,
    )
    .map_err(|e| {
        op_err(format!(
            "recording --dangerous-premounted: {e}; nothing staged"
        ))
    })?;
    Ok(())
}

fn exec_cmd(a: ExecArgs) -> CliResult {
    let keep: Vec<KeepFd> = a
        .keep_fd
        .iter()
        .map(|s| parse_keep_fd(s))
        .collect::<Result<_, _>>()
        .map_err(op_err)?;
    let opts = ExecOptions {
        nextroot: a.nextroot,
        record: a.record,
        init: a.init,
        keep,
        expect_root_hash: a.root_hash,
        no_pivot: a.no_pivot,
    };
    let e = exec::switch(&opts);
    match e {
        SwitchError::Refused(_) => Err(failed(e.message())),
        SwitchError::Failed(_) | SwitchError::AfterSwitch(_) => Err(op_err(e.message())),
    }
}

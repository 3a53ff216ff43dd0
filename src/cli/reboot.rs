//! `verity soft-reboot prepare | exec`: stage a verified, measured root at /run/nextroot, and switch
//! into it where systemd is not PID 1.

use super::{failed, op_err, CliResult};
use crate::reboot::exec::{self, ExecOptions, SwitchError};
use crate::reboot::plan::{parse_keep_fd, KeepFd};
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
    /// Record whatever is already mounted at the nextroot WITHOUT verifying or measuring it (the
    /// record says so, and so does every later step).
    #[arg(long)]
    pub dangerous_premounted: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
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
        stage::record_staged(&a.nextroot, &a.record, &facts, &tree).map_err(op_err)?
    } else {
        let Some(image) = a.image else {
            return Err(op_err("soft-reboot prepare: IMAGE is required"));
        };
        return Err(op_err(format!(
            "{}: staging a signed image needs the image pipeline, which this build does not have yet",
            image.display()
        )));
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

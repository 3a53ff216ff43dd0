//! The switch itself, for a process that is PID 1 of its PID namespace (appliances, initrd-less
//! images, containers; where systemd is PID 1, `systemctl soft-reboot` does this instead).
//!
//! Order (systemd's switch_root, spec/systemd.md 5.1 step 6, plus the checks that make it verified):
//! 1. every check that needs no change: PID 1, the staging record, the mount at the nextroot is the
//!    staged one (device, root inode, mount id; and the root hash if the caller names one), the new
//!    root has an os-release and an init the kernel can execute (its interpreter too), the kept
//!    descriptors are open;
//! 2. `/` recursively private, then `/dev`, `/proc`, `/sys` bound recursively and `/run`
//!    non-recursively (its submounts, the nextroot among them, stay behind) into the new root;
//!    binding and then detaching the old root moves them, and unlike `MS_MOVE` can be undone;
//! 3. `pivot_root` and a lazy detach of the old root (or `MS_MOVE` + `chroot` where pivot_root is
//!    impossible);
//! 4. exec of the init with the kept descriptors renumbered from 3 and `LISTEN_*` set.
//!
//! A failure in 1 or 2 (or a pivot that the kernel refuses) unmounts whatever was bound and leaves
//! the current root running; [`SwitchError::root_untouched`] says so.

use super::plan::{self, KeepFd, Observed, StageRecord};
use super::stage::observe;
use crate::image::ostree::{find_init, find_os_release};
use crate::sys::pivot::{self, PivotError};
use rustix::fd::{AsFd, OwnedFd};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What `soft-reboot exec` was asked to do.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The staged root (default /run/nextroot).
    pub nextroot: PathBuf,
    /// The staging record written by prepare.
    pub record: PathBuf,
    /// The init to run, inside the new root; default: the one prepare found.
    pub init: Option<String>,
    /// Descriptors to hand over, in order.
    pub keep: Vec<KeepFd>,
    /// If given, the staged root hash must be this one.
    pub expect_root_hash: Option<String>,
    /// Skip pivot_root and use the `MS_MOVE` + `chroot` fallback directly.
    pub no_pivot: bool,
}

/// Why the switch did not happen (or, past the point of no return, why it failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchError {
    /// A check failed; nothing was changed.
    Refused(String),
    /// An operation failed before the pivot; everything done so far was undone.
    Failed(String),
    /// The root was switched but the init could not be started: nothing can be undone.
    AfterSwitch(String),
}

impl SwitchError {
    /// Whether the current root is still the running one.
    pub fn root_untouched(&self) -> bool {
        !matches!(self, SwitchError::AfterSwitch(_))
    }

    /// The message, with what it means for the running system.
    pub fn message(&self) -> String {
        match self {
            SwitchError::Refused(m) | SwitchError::Failed(m) => {
                format!("{m}; soft reboot not performed, the current root keeps running")
            }
            SwitchError::AfterSwitch(m) => {
                format!("{m}; the root was already switched, nothing can be undone")
            }
        }
    }
}

/// Everything the checks established, for the switch.
struct Checked {
    root: OwnedFd,
    init: String,
}

fn refused(m: impl std::fmt::Display) -> SwitchError {
    SwitchError::Refused(m.to_string())
}

fn precheck(opts: &ExecOptions) -> Result<(Checked, StageRecord), SwitchError> {
    let pid = pivot::own_pid();
    if pid != 1 {
        return Err(refused(format!(
            "soft-reboot exec must run as PID 1 of its PID namespace (this is PID {pid}); \
             on a systemd host use `systemctl soft-reboot`"
        )));
    }
    let bytes = std::fs::read(&opts.record).map_err(|e| {
        refused(format!(
            "staging record {}: {e} (run `verity soft-reboot prepare` first)",
            opts.record.display()
        ))
    })?;
    let record = StageRecord::parse(&bytes)
        .map_err(|e| refused(format!("{}: {e}", opts.record.display())))?;
    if !record.dangerous.is_empty() {
        eprintln!(
            "verity: warning: the staged root was admitted with --dangerous-{}: it was not verified or measured",
            record.dangerous.join(", --dangerous-")
        );
    }
    let nr = &opts.nextroot;
    let root = pivot::open_dir(nr).map_err(|e| refused(format!("nextroot: {e}")))?;
    let now: Observed = observe(&root, nr).map_err(|e| refused(format!("nextroot: {e}")))?;
    plan::check_staged(
        &record,
        &nr.to_string_lossy(),
        &now,
        opts.expect_root_hash.as_deref(),
    )
    .map_err(|e| refused(format!("nextroot is not what prepare staged: {e}")))?;
    find_os_release(&root).map_err(|e| refused(format!("{}: {e}", nr.display())))?;
    let init = find_init(&root, opts.init.as_deref().or(Some(record.init.as_str())))
        .map_err(|e| refused(format!("{}: {e}", nr.display())))?;
    plan::check_keep_list(&opts.keep).map_err(refused)?;
    for k in &opts.keep {
        if !pivot::fd_is_open(k.fd) {
            return Err(refused(format!(
                "--keep-fd {}: descriptor is not open",
                k.fd
            )));
        }
    }
    for d in ["dev", "proc", "sys", "run"] {
        if !pivot::is_dir_in(root.as_fd(), d) {
            return Err(refused(format!(
                "{}: the new root has no /{d} directory to carry /{d} into",
                nr.display()
            )));
        }
    }
    Ok((Checked { root, init }, record))
}

/// Undoes the binds made so far, newest first.
fn roll_back(done: &[PathBuf]) {
    for p in done.iter().rev() {
        let _ = pivot::detach(p);
    }
    let _ = rustix::process::chdir("/");
}

/// Carries the API file systems into the new root. Returns the bind targets made.
fn carry_mounts(nextroot: &Path) -> Result<Vec<PathBuf>, (Vec<PathBuf>, String)> {
    let mut done = Vec::new();
    // /run non-recursively: its submounts (the nextroot itself among them) stay behind.
    let list: [(&str, bool); 6] = [
        ("/dev", true),
        ("/proc", true),
        ("/sys", true),
        ("/run", false),
        ("/run/credentials", true),
        ("/run/host", true),
    ];
    for (src, recursive) in list {
        let srcp = Path::new(src);
        match pivot::is_mount_point(srcp) {
            Ok(true) => {}
            // Not mounted here (e.g. no /sys in a minimal container): nothing to carry.
            Ok(false) | Err(_) => continue,
        }
        let dst = nextroot.join(src.trim_start_matches('/'));
        if src.starts_with("/run/") && !dst.is_dir() {
            continue;
        }
        if let Err(e) = pivot::bind(srcp, &dst, recursive) {
            return Err((done, e.to_string()));
        }
        done.push(dst);
    }
    Ok(done)
}

/// Performs the soft reboot. Only returns on failure.
pub fn switch(opts: &ExecOptions) -> SwitchError {
    let (checked, _record) = match precheck(opts) {
        Ok(c) => c,
        Err(e) => return e,
    };
    if let Err(e) = pivot::make_rprivate() {
        return SwitchError::Failed(e.to_string());
    }
    let done = match carry_mounts(&opts.nextroot) {
        Ok(d) => d,
        Err((done, e)) => {
            roll_back(&done);
            return SwitchError::Failed(e);
        }
    };
    let pivoted = if opts.no_pivot {
        Err(PivotError::Refused(std::io::Error::other(
            "pivot_root not tried (--no-pivot)",
        )))
    } else {
        pivot::pivot_into(checked.root.as_fd())
    };
    match pivoted {
        Ok(()) => {}
        Err(PivotError::Pivoted(e)) => return SwitchError::AfterSwitch(e.to_string()),
        Err(PivotError::Refused(pe)) => {
            if let Err(me) = pivot::move_and_chroot(checked.root.as_fd()) {
                roll_back(&done);
                return SwitchError::Failed(format!("{pe}; fallback: {me}"));
            }
        }
    }
    let base: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let env: Vec<(OsString, OsString)> = plan::listen_env(&base, pivot::own_pid(), &opts.keep)
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let fds: Vec<i32> = opts.keep.iter().map(|k| k.fd).collect();
    let e = pivot::exec_with_fds(Path::new(&checked.init), &checked.init, &fds, &env);
    SwitchError::AfterSwitch(e.to_string())
}

//! Child processes tracked by pidfd, never by a bare PID (spec/systemd.md section 6).
//!
//! [`Child::spawn`] starts a `std::process::Command` and immediately takes a pidfd for it with
//! `pidfd_open`. That is race-free: until somebody reaps the child its PID cannot be reused, and only
//! this wrapper reaps it (through `waitid(P_PIDFD)`, never `waitpid`). Waiting polls the pidfd, so a
//! timeout never leaves us signalling a stale PID; killing goes through `pidfd_send_signal`. Dropping
//! a child that was not waited for kills and reaps it, so helpers such as swtpm or mkfs.erofs never
//! outlive their owner or pile up as zombies (PID 1 on the build machines does not reap orphans).

use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::process::{
    pidfd_open, pidfd_send_signal, waitid, Pid, PidfdFlags, Signal, WaitIdOptions,
};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A running child process, identified by its pidfd.
#[derive(Debug)]
pub struct Child {
    // Kept for its pipes only; never waited on through std, which would use the bare PID.
    inner: std::process::Child,
    pidfd: OwnedFd,
    program: String,
    status: Option<ExitStatus>,
}

impl Child {
    /// Spawns `cmd` and takes a pidfd for it before anything can reap it.
    pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut inner = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;
        let pid = i32::try_from(inner.id())
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::other(format!("{program}: kernel returned PID 0")))?;
        match pidfd_open(pid, PidfdFlags::empty()) {
            Ok(pidfd) => Ok(Child {
                inner,
                pidfd,
                program,
                status: None,
            }),
            Err(e) => {
                // No pidfd: the child is still ours and unreaped, so the PID is still valid here.
                let _ = inner.kill();
                let _ = inner.wait();
                Err(io::Error::new(
                    e.kind(),
                    format!("pidfd_open for {program} failed: {e}"),
                ))
            }
        }
    }

    /// The program name, for messages.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The pidfd (for callers that poll several children at once).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The PID, for messages only; never use it to signal or wait.
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Takes the child's stdin pipe, if it was set to `Stdio::piped()`.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.inner.stdin.take()
    }

    /// Takes the child's stdout pipe, if it was set to `Stdio::piped()`.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.inner.stdout.take()
    }

    /// Takes the child's stderr pipe, if it was set to `Stdio::piped()`.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.inner.stderr.take()
    }

    /// Sends `sig` through the pidfd. Signalling a child that already exited (but is not yet
    /// reaped) is harmless; signalling one we reaped is refused here instead of hitting a reused PID.
    pub fn signal(&self, sig: Signal) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        pidfd_send_signal(&self.pidfd, sig).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("pidfd_send_signal to {}: {e}", self.program),
            )
        })
    }

    /// Kills the child with SIGKILL.
    pub fn kill(&self) -> io::Result<()> {
        self.signal(Signal::KILL)
    }

    /// Reaps the child if it has exited, without blocking.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.wait_timeout(Duration::ZERO)
    }

    /// Waits until the child exits.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(s) = self.wait_timeout(Duration::from_secs(3600))? {
                return Ok(s);
            }
        }
    }

    /// Waits at most `timeout` for the child to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ts = rustix::event::Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            };
            let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
            match poll(&mut fds, Some(&ts)) {
                Ok(0) => return Ok(None),
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("poll on pidfd of {}: {e}", self.program),
                    ))
                }
            }
        }
        let status = loop {
            match waitid(
                rustix::process::WaitId::PidFd(self.pidfd.as_fd()),
                WaitIdOptions::EXITED,
            ) {
                Ok(Some(st)) => break st,
                Ok(None) => return Ok(None),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("waitid on pidfd of {}: {e}", self.program),
                    ))
                }
            }
        };
        // Re-encode as a wait status so callers get the familiar std type.
        let raw = match (status.exit_status(), status.terminating_signal()) {
            (Some(code), _) => (code & 0xff) << 8,
            (None, Some(sig)) => sig & 0x7f,
            (None, None) => 0xff << 8,
        };
        let st = ExitStatus::from_raw(raw);
        self.status = Some(st);
        Ok(Some(st))
    }

    /// Waits at most `timeout`; past it, kills the child (through the pidfd) and reaps it.
    /// Returns the status and whether the timeout fired.
    pub fn wait_or_kill(&mut self, timeout: Duration) -> io::Result<(ExitStatus, bool)> {
        if let Some(s) = self.wait_timeout(timeout)? {
            return Ok((s, false));
        }
        self.kill()?;
        Ok((self.wait()?, true))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.kill();
            let _ = self.wait();
        }
    }
}

/// Runs `cmd` to completion with stdout and stderr captured, like `Command::output`, but tracked by
/// pidfd. Both pipes are drained concurrently so a chatty child cannot block on a full pipe.
pub fn output(cmd: &mut Command) -> io::Result<std::process::Output> {
    use std::io::Read;
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Child::spawn(cmd)?;
    let mut out = child.take_stdout();
    let mut err = child.take_stderr();
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut v);
        }
        v
    });
    let mut stdout = Vec::new();
    if let Some(o) = out.as_mut() {
        o.read_to_end(&mut stdout)?;
    }
    let stderr = err_reader.join().unwrap_or_default();
    let status = child.wait()?;
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn exit_codes_come_back_through_the_pidfd() {
        for code in [0, 1, 7, 255] {
            let mut c =
                Child::spawn(Command::new("sh").args(["-c", &format!("exit {code}")])).unwrap();
            let st = c.wait().unwrap();
            assert_eq!(st.code(), Some(code));
            // A second wait returns the cached status instead of waiting on a reaped PID.
            assert_eq!(c.wait().unwrap().code(), Some(code));
        }
    }

    #[test]
    fn timeout_then_kill_reports_the_signal() {
        let mut c = Child::spawn(Command::new("sleep").arg("30")).unwrap();
        assert!(c.wait_timeout(Duration::from_millis(50)).unwrap().is_none());
        let (st, timed_out) = c.wait_or_kill(Duration::from_millis(10)).unwrap();
        assert!(timed_out);
        assert_eq!(st.signal(), Some(libc::SIGKILL));
        // Signalling after the reap is a no-op, not a signal to whoever has the PID now.
        c.signal(Signal::TERM).unwrap();
    }

    #[test]
    fn output_captures_both_streams() {
        let o = output(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"])).unwrap();
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"err\n");
        assert_eq!(o.status.code(), Some(3));
    }

    #[test]
    fn dropping_a_running_child_kills_it() {
        let c = Child::spawn(
            Command::new("sleep")
                .arg("30")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
        let pidfd = rustix::io::dup(c.pidfd()).unwrap();
        drop(c);
        // The pidfd stays valid after the reap and polls readable: the process is gone.
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        assert_eq!(poll(&mut fds, None).unwrap(), 1);
    }

    #[test]
    fn a_missing_program_is_named() {
        let e = Child::spawn(&mut Command::new("/nonexistent/helper")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/helper"), "{e}");
    }
}

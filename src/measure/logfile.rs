//! The event-log file and systemd's protocol for it (spec/systemd.md 4.5), the I/O edge of
//! [`super::eventlog`]: mode 0600, `flock(LOCK_EX)` taken before the PCR extend, the sticky bit set
//! while a measurement is in flight and cleared after the record is fsynced. A log found with the
//! sticky bit set (or ending mid-record) is torn: it is never appended to, so every measurement
//! after a crash between extend and append fails instead of producing a log that lies.
//!
//! Readers take `LOCK_SH`, so they never see a record half written by a concurrent measurement,
//! and a sticky bit seen under the shared lock really is a torn log.

use super::eventlog::{parse_log, LogFormatError, LogRecord, NewRecord};
use rustix::fs::{flock, FlockOperation};
use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Where systemd (and this program, by default) writes userspace measurements.
pub const DEFAULT_EVENT_LOG: &str = "/run/log/systemd/tpm2-measure.log";

/// A larger log is not read: systemd's logs hold a few dozen records.
pub const MAX_LOG_SIZE: u64 = 64 << 20;

const STICKY: u32 = 0o1000;

/// What went wrong with the log file.
#[derive(Debug, Error)]
pub enum LogFileError {
    #[error("event log {path}: cannot {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error("event log {path} is not a regular file")]
    NotRegular { path: PathBuf },
    #[error(
        "event log {path} is torn ({why}); it is not appended to and measurements fail until it \
         is repaired or moved away"
    )]
    Torn { path: PathBuf, why: String },
    #[error("event log {path}: {source}")]
    Format {
        path: PathBuf,
        source: LogFormatError,
    },
    #[error("event log {path} is {size} bytes, more than the {MAX_LOG_SIZE}-byte limit")]
    TooLarge { path: PathBuf, size: u64 },
}

/// The event log at a path. Nothing is opened until a lock is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    path: PathBuf,
}

/// An I/O error on the log at `path` during `op`.
fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> LogFileError + 'a {
    move |source| LogFileError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

impl EventLog {
    /// The log at `path` (see [`DEFAULT_EVENT_LOG`]).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, op: &'static str) -> impl FnOnce(io::Error) -> LogFileError + '_ {
        io_err(&self.path, op)
    }

    /// Opens (creating it 0600, and its directory 0755), takes the exclusive lock and refuses a
    /// torn log. Take this before the PCR extend and hold it until the record is written.
    pub fn lock_for_append(&self) -> Result<LogWriter, LogFileError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(self.io("create its directory"))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(&self.path)
            .map_err(self.io("open for appending"))?;
        lock(&file, FlockOperation::LockExclusive).map_err(self.io("lock (LOCK_EX)"))?;
        self.check_not_torn(&file)?;
        Ok(LogWriter {
            file,
            path: self.path.clone(),
            in_progress: false,
        })
    }

    /// Takes the shared lock and reads every record; the lock is held until the returned reader
    /// is dropped, so values read from the TPM meanwhile belong to exactly these records.
    pub fn lock_shared(&self) -> Result<LogReader, LogFileError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(&self.path)
            .map_err(self.io("open for reading"))?;
        lock(&file, FlockOperation::LockShared).map_err(self.io("lock (LOCK_SH)"))?;
        let size = self.check_not_torn(&file)?;
        if size > MAX_LOG_SIZE {
            return Err(LogFileError::TooLarge {
                path: self.path.clone(),
                size,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        (&file)
            .take(MAX_LOG_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(self.io("read"))?;
        let records = parse_log(&bytes).map_err(|source| LogFileError::Format {
            path: self.path.clone(),
            source,
        })?;
        Ok(LogReader {
            _file: file,
            records,
        })
    }

    /// Reads every record under the shared lock and releases it.
    pub fn read(&self) -> Result<Vec<LogRecord>, LogFileError> {
        Ok(self.lock_shared()?.records)
    }

    /// Refuses a log whose sticky bit is set or that ends mid-record; returns its size.
    fn check_not_torn(&self, file: &File) -> Result<u64, LogFileError> {
        let md = file.metadata().map_err(self.io("stat"))?;
        if !md.is_file() {
            return Err(LogFileError::NotRegular {
                path: self.path.clone(),
            });
        }
        let torn = |why: String| LogFileError::Torn {
            path: self.path.clone(),
            why,
        };
        if md.mode() & STICKY != 0 {
            return Err(torn(
                "its sticky bit is set: a measurement stopped between the PCR extend and the \
                 end of its record"
                    .into(),
            ));
        }
        if md.len() > 0 {
            let mut last = [0u8; 1];
            file.read_exact_at(&mut last, md.len() - 1)
                .map_err(self.io("read its last byte"))?;
            if last[0] != b'\n' {
                return Err(torn(format!(
                    "it ends mid-record at byte {} (no final newline)",
                    md.len()
                )));
            }
        }
        Ok(md.len())
    }
}

/// `flock`, retried when a signal interrupts the wait.
fn lock(file: &File, op: FlockOperation) -> io::Result<()> {
    loop {
        match flock(file, op) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// The log, locked for reading; the lock goes with it.
pub struct LogReader {
    _file: File,
    records: Vec<LogRecord>,
}

impl LogReader {
    /// The records, in order.
    pub fn records(&self) -> &[LogRecord] {
        &self.records
    }
}

/// The log, locked exclusively and known not torn. Dropping it releases the lock; if a
/// measurement was marked in progress and not completed, the sticky bit stays and the log is torn
/// from then on, which is the point: the PCR may have moved without a record.
pub struct LogWriter {
    file: File,
    path: PathBuf,
    in_progress: bool,
}

impl LogWriter {
    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, op: &'static str) -> impl FnOnce(io::Error) -> LogFileError + '_ {
        io_err(&self.path, op)
    }

    fn set_mode(&self, mode: u32, op: &'static str) -> Result<(), LogFileError> {
        self.file
            .set_permissions(Permissions::from_mode(mode))
            .map_err(self.io(op))?;
        self.file.sync_all().map_err(self.io("fsync"))
    }

    /// Sets the sticky bit (durably) before the PCR extend.
    pub fn mark_in_progress(&mut self) -> Result<(), LogFileError> {
        self.set_mode(0o600 | STICKY, "set the sticky bit")?;
        self.in_progress = true;
        Ok(())
    }

    /// Clears the sticky bit without writing: for when the TPM definitely did not change.
    pub fn clear_in_progress(&mut self) -> Result<(), LogFileError> {
        self.set_mode(0o600, "clear the sticky bit")?;
        self.in_progress = false;
        Ok(())
    }

    /// Whether a measurement is marked in flight.
    pub fn in_progress(&self) -> bool {
        self.in_progress
    }

    /// Appends one record, fsyncs it, then clears the sticky bit and fsyncs again. Any failure
    /// leaves the sticky bit set.
    pub fn append(&mut self, rec: &NewRecord) -> Result<(), LogFileError> {
        if !self.in_progress {
            self.mark_in_progress()?;
        }
        let bytes = rec.to_bytes();
        (&self.file)
            .write_all(&bytes)
            .map_err(self.io("append a record"))?;
        self.file.sync_all().map_err(self.io("fsync"))?;
        self.clear_in_progress()
    }
}

/// The kernel's boot ID as 32 lower-case hex digits (systemd's `bootId`), if it can be read.
pub fn boot_id() -> Option<String> {
    let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id: String = s.trim().chars().filter(|&c| c != '-').collect();
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

/// CLOCK_BOOTTIME in microseconds (systemd's `timestamp`).
pub fn boottime_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    (t.tv_sec as u64) * 1_000_000 + (t.tv_nsec as u64) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::HashAlg;

    fn rec(s: &str) -> NewRecord {
        NewRecord {
            pcr: Some(13),
            digests: vec![(HashAlg::Sha256, HashAlg::Sha256.digest(s.as_bytes()))],
            string: s.into(),
            boot_id: boot_id(),
            timestamp_us: boottime_us(),
            event_type: "sysext".into(),
            image_version: None,
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn appends_with_the_sticky_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/tpm2-measure.log");
        let log = EventLog::new(&path);
        let mut w = log.lock_for_append().unwrap();
        assert_eq!(mode(&path), 0o600);
        w.mark_in_progress().unwrap();
        assert_eq!(mode(&path), 0o1600);
        w.append(&rec("a")).unwrap();
        assert_eq!(mode(&path), 0o600);
        drop(w);
        log.lock_for_append().unwrap().append(&rec("b")).unwrap();
        let recs = log.read().unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].string(), Some("b"));
        assert_eq!(
            std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o755
        );
    }

    #[test]
    fn a_dropped_measurement_leaves_the_log_torn() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path().join("log"));
        let mut w = log.lock_for_append().unwrap();
        w.mark_in_progress().unwrap();
        drop(w);
        let e = log.lock_for_append().err().unwrap();
        assert!(matches!(e, LogFileError::Torn { .. }), "{e}");
        assert!(e.to_string().contains("sticky bit"), "{e}");
        assert!(matches!(log.read(), Err(LogFileError::Torn { .. })));
    }

    #[test]
    fn a_half_record_is_torn_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut half = rec("a").to_bytes();
        half.truncate(10);
        std::fs::write(&path, &half).unwrap();
        let log = EventLog::new(&path);
        let e = log.lock_for_append().err().unwrap();
        assert!(e.to_string().contains("ends mid-record at byte 10"), "{e}");
        std::fs::write(&path, b"junk\n").unwrap();
        assert!(matches!(log.read(), Err(LogFileError::Format { .. })));
        assert!(matches!(
            EventLog::new(dir.path()).lock_for_append(),
            Err(LogFileError::Io { .. })
        ));
    }

    #[test]
    fn clock_and_boot_id() {
        let id = boot_id().expect("Linux has a boot ID");
        assert_eq!(id.len(), 32);
        let a = boottime_us();
        assert!(a > 0 && boottime_us() >= a);
    }
}

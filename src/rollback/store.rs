//! The floor store: `/var/lib/verity/rollback.json` under `--root` (I/O edge).
//!
//! Reading fails closed: a file that exists but cannot be read or is not exactly the format of
//! [`super::floors`] is an error naming the file, never "no floors". Only a missing file means
//! no floors (a first run, or a deleted file: the TPM epoch is the defence against the latter).
//!
//! Writing is atomic and durable: the new content goes to a temporary file in the same
//! directory, which is fsynced, renamed over the old file, and the directory fsynced, so a crash
//! leaves the old floors or the new ones, never a torn file. Changes are read-modify-write under
//! an exclusive `flock` on a lock file beside it (the state file itself is replaced by each
//! write, so it cannot carry the lock), so two raises (or a raise and a ratchet) never lose one.

use super::floors::{Floors, FloorsError, MAX_STATE_SIZE};
use rustix::fs::{flock, FlockOperation};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The state file, relative to the root.
pub const STATE_FILE: &str = "var/lib/verity/rollback.json";

/// The lock file's name, in the state file's directory.
const LOCK_NAME: &str = ".rollback.json.lock";

/// Why the store could not be read or written.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("rollback state {path}: cannot {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error(
        "rollback state {path} {source}; refusing to admit anything against floors that cannot \
         be read (repair or restore the file; deleting it drops every floor)"
    )]
    Corrupt { path: PathBuf, source: FloorsError },
    #[error("rollback state {path} is not a regular file")]
    NotRegular { path: PathBuf },
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Where the floors are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloorStore {
    path: PathBuf,
}

impl FloorStore {
    /// The store of the system at `root` (`ROOT/var/lib/verity/rollback.json`).
    pub fn under_root(root: &Path) -> Self {
        Self {
            path: root.join(STATE_FILE),
        }
    }

    /// A store at an explicit path.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn dir(&self) -> &Path {
        self.path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    /// Reads the floors; a missing file is no floors, anything else that is wrong is an error.
    /// No lock is needed to read: the file is only ever replaced whole, by rename.
    pub fn load(&self) -> Result<Floors, StoreError> {
        let p = &self.path;
        let f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(p)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Floors::new()),
            Err(e) => return Err(io_err(p, "open")(e)),
        };
        if !f.metadata().map_err(io_err(p, "stat"))?.is_file() {
            return Err(StoreError::NotRegular { path: p.clone() });
        }
        let mut bytes = Vec::new();
        f.take(MAX_STATE_SIZE as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err(p, "read"))?;
        Floors::parse(&bytes).map_err(|source| StoreError::Corrupt {
            path: p.clone(),
            source,
        })
    }

    /// Takes the exclusive lock (creating the directory 0755 and the lock file 0600 if needed)
    /// and reads the floors under it. Change them through the returned value and
    /// [`LockedFloors::commit`]; the lock is released when it is dropped.
    pub fn lock(&self) -> Result<LockedFloors, StoreError> {
        let dir = self.dir();
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io_err(dir, "create its directory"))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(&lock_path)
            .map_err(io_err(&lock_path, "open its lock file"))?;
        loop {
            match flock(&lock, FlockOperation::LockExclusive) {
                Err(rustix::io::Errno::INTR) => continue,
                r => {
                    break r
                        .map_err(io::Error::from)
                        .map_err(io_err(&lock_path, "lock"))?
                }
            }
        }
        let floors = self.load()?;
        Ok(LockedFloors {
            store: self.clone(),
            _lock: lock,
            floors,
        })
    }

    /// Replaces the file with `floors`: temporary file, fsync, rename, fsync of the directory.
    fn write(&self, floors: &Floors) -> Result<(), StoreError> {
        let dir = self.dir();
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "rollback.json".into());
        let tmp = dir.join(format!(".{name}.tmp"));
        // Only writers holding the lock get here, so a temporary file left over is from a
        // writer that crashed: it is garbage.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err(&tmp, "remove a stale temporary file")(e))
            }
            _ => {}
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(&tmp)
            .map_err(io_err(&tmp, "create"))?;
        let done = f
            .write_all(&floors.to_json())
            .and_then(|()| f.sync_all())
            .map_err(io_err(&tmp, "write"))
            .and_then(|()| {
                std::fs::rename(&tmp, &self.path).map_err(io_err(&self.path, "replace"))
            });
        if let Err(e) = done {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir, "fsync the directory"))
    }
}

/// The floors, read under the store's exclusive lock.
pub struct LockedFloors {
    store: FloorStore,
    _lock: File,
    floors: Floors,
}

impl LockedFloors {
    /// The floors as read (and as changed so far).
    pub fn floors(&self) -> &Floors {
        &self.floors
    }

    /// The floors, to change before [`LockedFloors::commit`].
    pub fn floors_mut(&mut self) -> &mut Floors {
        &mut self.floors
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// Writes the floors atomically; the lock is still held afterwards.
    pub fn commit(&self) -> Result<(), StoreError> {
        self.store.write(&self.floors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollback::Class;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn missing_is_empty_and_changes_persist() {
        let t = tempfile::tempdir().unwrap();
        let s = FloorStore::under_root(t.path());
        assert_eq!(s.path(), t.path().join("var/lib/verity/rollback.json"));
        assert!(s.load().unwrap().is_empty());
        let mut l = s.lock().unwrap();
        l.floors_mut().raise(Class::Sysext, "foo", "2").unwrap();
        l.commit().unwrap();
        drop(l);
        assert_eq!(s.load().unwrap().get(Class::Sysext, "foo"), Some("2"));
        let dir = t.path().join("var/lib/verity");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        // No temporary file is left behind.
        assert_eq!(names.len(), 2, "{names:?}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(s.path()), 0o644);
        assert_eq!(mode(&dir.join(LOCK_NAME)), 0o600);
    }

    #[test]
    fn corrupt_and_odd_files_fail_closed_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        let s = FloorStore::at(t.path().join("rollback.json"));
        for bad in [&b""[..], b"{", b"{\"schema\":9,\"floors\":[]}", b"\xff\xfe"] {
            std::fs::write(s.path(), bad).unwrap();
            let e = s.load().unwrap_err();
            assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
            assert!(
                e.to_string().contains(&s.path().display().to_string()),
                "{e}"
            );
            // A change cannot start from a file it cannot read either.
            assert!(s.lock().is_err());
        }
        std::fs::remove_file(s.path()).unwrap();
        std::fs::create_dir(s.path()).unwrap();
        assert!(matches!(s.load(), Err(StoreError::NotRegular { .. })));
        std::fs::remove_dir(s.path()).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", s.path()).unwrap();
        assert!(matches!(s.load(), Err(StoreError::Io { op: "open", .. })));
    }

    #[test]
    fn stale_temporary_files_are_replaced_and_concurrent_raises_both_land() {
        let t = tempfile::tempdir().unwrap();
        let s = FloorStore::under_root(t.path());
        std::fs::create_dir_all(t.path().join("var/lib/verity")).unwrap();
        std::fs::write(t.path().join("var/lib/verity/.rollback.json.tmp"), b"junk").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut l = s.lock().unwrap();
                    l.floors_mut()
                        .raise(Class::Confext, &format!("n{i}"), "1")
                        .unwrap();
                    l.commit().unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.load().unwrap().len(), 8);
    }
}

//! Writing output files atomically: a new file is written under a temporary name in the same
//! directory, synced and renamed into place only when complete, so a failed run leaves nothing.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// A file being written; dropped without [`PendingFile::commit`], it is removed.
pub struct PendingFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
}

impl PendingFile {
    /// Creates a temporary file beside `dest`.
    pub fn create(dest: &Path) -> io::Result<Self> {
        let dir = dest.parent().filter(|p| !p.as_os_str().is_empty());
        let name = dest.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "output has no file name")
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp.{}", std::process::id()));
        let tmp = match dir {
            Some(d) => d.join(tmp_name),
            None => PathBuf::from(tmp_name),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
            file: Some(file),
        })
    }

    /// Creates a temporary file beside the existing regular file `dest` holding a copy of its
    /// bytes and its permissions, so a caller that rewrites part of `dest` in place can do so in the
    /// copy and [`PendingFile::commit`] it: a crash leaves `dest` old or wholly new, never mixed.
    /// (The owner is the caller's, as for any new file.)
    pub fn create_from_copy(dest: &Path) -> io::Result<Self> {
        let p = Self::create(dest)?;
        let mut src = File::open(dest)?;
        io::copy(&mut src, &mut p.file())?;
        p.file().set_permissions(src.metadata()?.permissions())?;
        Ok(p)
    }

    /// The open temporary file.
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("open until commit")
    }

    /// Syncs and renames into place.
    pub fn commit(mut self) -> io::Result<()> {
        let f = self.file.take().expect("open until commit");
        f.sync_all()?;
        drop(f);
        fs::rename(&self.tmp, &self.dest)
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `dest` atomically.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let p = PendingFile::create(dest)?;
    io::Write::write_all(&mut p.file(), bytes)?;
    p.commit()
}

//! The file side of `repair`: opens the devices read-write, runs the correction pass, writes the
//! corrected blocks back when [`crate::verity::fec::repair`] allows it, syncs, and rewrites stale
//! parity rounds; every error names the device and the byte. Used by `verity repair` and by
//! programs embedding the library.

use super::format::{fec_layout, Error, FecSpec};
use super::FileSource;
use crate::verity::fec::repair::{stale_parity, write_back};
use crate::verity::fec::{correct_image, FecLayout, FecOutcome};
use crate::verity::format::Progress;
use crate::verity::{BlockSource, Geometry};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// What a repair found and did.
pub struct Repaired {
    /// The correction pass.
    pub outcome: FecOutcome,
    /// The FEC layout used.
    pub layout: FecLayout,
    /// The corrected blocks were written back (and synced).
    pub written: bool,
    /// The FEC device, open (read-write if parity rebuilding was asked for).
    pub fec: FileSource,
}

/// Opens `path` read-write (blocks are verified and written back through the same descriptor).
pub fn open_rw(path: &Path, what: &str) -> Result<FileSource, Error> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| {
            Error(format!(
                "cannot open {what} {} for writing: {e}",
                path.display()
            ))
        })?;
    FileSource::from_file(f, path).map_err(|e| Error(format!("{}: {e}", path.display())))
}

/// Opens the FEC device (read-write only when its parity is to be rebuilt).
pub fn open_fec(path: &Path, writable: bool) -> Result<FileSource, Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .map_err(|e| Error(format!("cannot open FEC device {}: {e}", path.display())))?;
    FileSource::from_file(file, path).map_err(|e| Error(format!("{}: {e}", path.display())))
}

/// A blocks sink over an open source's file, for the write-back.
struct At<'a>(&'a FileSource);

impl crate::verity::BlockSink for At<'_> {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.0.file().write_all_at(buf, offset)
    }
}

/// Corrects `data`/`hash` (opened with [`open_rw`]) from the parity in `f`, confirms against
/// `root`, and writes back only a fully confirmed correction. `writable_fec` opens the parity
/// read-write for [`rebuild_parity`].
#[allow(clippy::too_many_arguments)]
pub fn repair(
    f: &FecSpec,
    writable_fec: bool,
    data_path: &Path,
    hash_path: &Path,
    geom: &Geometry,
    data: &FileSource,
    hash: &FileSource,
    root: &[u8],
    progress: &dyn Progress,
) -> Result<Repaired, Error> {
    let fec = open_fec(f.device.as_path(), writable_fec)?;
    let (layout, _) = fec_layout(f, hash_path, geom, hash.size())?;
    let outcome = correct(
        geom, &layout, data, hash, &fec, root, data_path, hash_path, progress,
    )?;
    let written = write_back(&outcome, &mut At(data), &mut At(hash)).map_err(|e| {
        let path = if e.data { data_path } else { hash_path };
        Error(format!(
            "writing {} at byte {}: {}",
            path.display(),
            e.offset,
            e.source
        ))
    })?;
    if written {
        for (src, path) in [(data, data_path), (hash, hash_path)] {
            src.file()
                .sync_all()
                .map_err(|e| Error(format!("syncing {}: {e}", path.display())))?;
        }
    }
    Ok(Repaired {
        outcome,
        layout,
        written,
        fec,
    })
}

/// The correction pass alone (`verify --fec-device`): never writes.
#[allow(clippy::too_many_arguments)]
pub fn correct(
    geom: &Geometry,
    l: &FecLayout,
    data: &FileSource,
    hash: &FileSource,
    fec: &FileSource,
    root: &[u8],
    data_path: &Path,
    hash_path: &Path,
    progress: &dyn Progress,
) -> Result<FecOutcome, Error> {
    progress.begin("verifying", geom.data_size());
    let out = correct_image(geom, l, data, hash, fec, root, &|n| progress.set(n)).map_err(|e| {
        Error(format!(
            "{} / {}: {e}",
            data_path.display(),
            hash_path.display()
        ))
    })?;
    progress.end();
    Ok(out)
}

/// Re-encodes the parity of the (now verified) image and rewrites the rounds that differ;
/// returns how many were rewritten.
pub fn rebuild_parity(
    r: &Repaired,
    data: &FileSource,
    hash: &FileSource,
    fec_path: &Path,
) -> Result<u64, Error> {
    let stale = stale_parity(&r.layout, data, hash, &r.fec)
        .map_err(|e| Error(format!("re-encoding parity: {e}")))?;
    for (off, new) in &stale {
        r.fec
            .file()
            .write_all_at(new, *off)
            .map_err(|e| Error(format!("writing {} at byte {off}: {e}", fec_path.display())))?;
    }
    r.fec
        .file()
        .sync_all()
        .map_err(|e| Error(format!("syncing {}: {e}", fec_path.display())))?;
    Ok(stale.len() as u64)
}

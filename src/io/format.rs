//! The file side of `format`: opens the data, writes the tree, superblock and FEC parity through
//! a temporary file renamed over the old one when complete (a crash or a full disk leaves the old
//! file or the whole new one), syncs, and names the device in every error. The planning and the
//! bytes come from [`crate::verity::format`] and [`crate::verity::fec`]; this is only where they
//! go. Used by `verity format` and by programs embedding the library.

use super::output::PendingFile;
use super::{FileSink, FileSource};
use crate::verity::build::BuildError;
use crate::verity::fec::repair::{plan_layout, LayoutPlanError};
use crate::verity::fec::{encode_parity, FecLayout, ParityStream};
use crate::verity::format::{FormatError, FormatOptions, FormatPlan, Progress};
use crate::verity::{BlockSource, Geometry};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// An operational error (exit 2 in the CLI), naming the file it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

fn err(msg: String) -> Error {
    Error(msg)
}

/// Where the FEC parity goes (veritysetup's `--fec-device`, `--fec-roots`, `--fec-offset`).
#[derive(Debug, Clone)]
pub struct FecSpec {
    /// Device or file holding the parity (created if missing on format).
    pub device: PathBuf,
    /// Parity bytes per codeword, 2 to 24.
    pub roots: u32,
    /// Byte offset of the parity on the device (a multiple of 512).
    pub offset: u64,
}

/// What a format wrote.
#[derive(Debug, Clone)]
pub struct Formatted {
    /// The root hash.
    pub root: Vec<u8>,
    /// The FEC layout, and whether the parity is on the hash device.
    pub fec: Option<(FecLayout, bool)>,
}

/// Whether `a` and `b` are the same file (both exist and share device and inode).
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Whether two paths name the same file (also when one does not exist yet but the paths agree).
pub fn same_path(a: &Path, b: &Path) -> bool {
    a == b || same_file(a, b)
}

/// Opens `path` for reading, naming it as `what` ("data device") in the error.
pub fn open_source(path: &Path, what: &str) -> Result<FileSource, Error> {
    FileSource::open(path).map_err(|e| err(format!("cannot open {what} {}: {e}", path.display())))
}

/// Opens the data and plans the format of `hash_path` for it.
pub fn plan(
    data_path: &Path,
    hash_path: &Path,
    opts: FormatOptions,
    progress: &dyn Progress,
) -> Result<(FileSource, FormatPlan), Error> {
    let data = open_source(data_path, "data device")?;
    let name = data_path.display().to_string();
    let same = same_file(data_path, hash_path);
    let plan = FormatPlan::new(opts, data.size(), &name, same, progress)
        .map_err(|e| err(e.to_string()))?;
    Ok((data, plan))
}

/// The FEC layout for an image whose hash device currently holds `hash_size` bytes, and whether
/// the parity is on the hash device.
pub fn fec_layout(
    f: &FecSpec,
    hash_path: &Path,
    geom: &Geometry,
    hash_size: u64,
) -> Result<(FecLayout, bool), Error> {
    let on_hash = same_path(&f.device, hash_path);
    let fec = f.device.display();
    let l = plan_layout(geom, f.roots, f.offset, hash_size, on_hash).map_err(|e| match e {
        LayoutPlanError::Layout(e) => err(format!("--fec-device {fec}: {e}")),
        LayoutPlanError::HashOverlap { hash_end } => err(format!(
            "hash area (ends at byte {hash_end}) overlaps with FEC area (--fec-offset {}) on {fec}",
            f.offset
        )),
    })?;
    Ok((l, on_hash))
}

/// The temporary file a regular output file is written to, or None to write in place (a device,
/// the data file itself). `what` names it in the error ("hash file").
fn pending_for(path: &Path, in_place: bool, what: &str) -> Result<Option<PendingFile>, Error> {
    let pending = match std::fs::metadata(path) {
        _ if in_place => None,
        Ok(m) if !m.is_file() => None,
        Ok(_) => Some(PendingFile::create_from_copy(path)),
        Err(_) => Some(PendingFile::create(path)),
    };
    pending.transpose().map_err(|e| {
        err(format!(
            "cannot create {what} {} (temporary copy beside it): {e}",
            path.display()
        ))
    })
}

fn clone(f: &File, p: &Path) -> Result<File, Error> {
    f.try_clone()
        .map_err(|e| err(format!("{}: {e}", p.display())))
}

/// Writes the planned tree and superblock of `data` to `hash_path`, then the FEC parity if asked.
/// An existing regular hash file is copied first (what lies outside the hash area survives, as
/// with veritysetup's in-place write); a device or the data file itself is written in place.
pub fn format(
    data_path: &Path,
    data: &FileSource,
    hash_path: &Path,
    plan: &FormatPlan,
    fec: Option<&FecSpec>,
    progress: &dyn Progress,
) -> Result<Formatted, Error> {
    let same = same_file(data_path, hash_path);
    let pending = pending_for(hash_path, same, "hash file")?;
    let file = match &pending {
        Some(p) => p.file().try_clone(),
        None => OpenOptions::new().read(true).write(true).open(hash_path),
    }
    .map_err(|e| {
        err(format!(
            "cannot open hash device {}: {e}",
            hash_path.display()
        ))
    })?;
    // The FEC layout depends only on sizes known now, so the parity can be accumulated while the
    // tree pass has each block in cache (one read of the data instead of two) when it fits.
    let stream = match fec {
        Some(f) => ParityStream::new(
            &fec_layout(f, hash_path, &plan.geom, hash_size_after(&file, plan))?.0,
        ),
        None => None,
    };
    let mut sink = FileSink::new(file);
    // A failed write names the hash device (the disk that is full), a failed read the data.
    let root = plan
        .write_with_parity(data, &mut sink, progress, stream.as_ref())
        .map_err(|e| match e {
            FormatError::Build(e @ BuildError::WriteHash { .. }) => {
                err(format!("{}: {e}", hash_path.display()))
            }
            FormatError::Build(e) => err(format!("{}: {e}", data_path.display())),
            FormatError::Superblock(e) => err(format!(
                "writing superblock to {}: {e}",
                hash_path.display()
            )),
        })?;
    let file = sink.into_file();
    let end = hash_size_after(&file, plan);
    if super::file::file_size(&file).unwrap_or(0) < end {
        file.set_len(end)
            .map_err(|e| err(format!("extending {}: {e}", hash_path.display())))?;
    }
    let fec = match fec {
        Some(f) => Some(format_parity(
            f, hash_path, data_path, &plan.geom, data, &file, stream, progress,
        )?),
        None => None,
    };
    file.sync_all()
        .map_err(|e| err(format!("syncing {}: {e}", hash_path.display())))?;
    if let Some(p) = pending {
        p.commit()
            .map_err(|e| err(format!("writing {}: {e}", hash_path.display())))?;
    }
    Ok(Formatted { root, fec })
}

/// The size the hash file will have once the tree is written: veritysetup extends a regular file
/// to the end of the hash area (unless it writes nothing); a device keeps its size.
fn hash_size_after(file: &File, plan: &FormatPlan) -> u64 {
    let cur = super::file::file_size(file).unwrap_or(0);
    let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
    if plan.writes_anything() && regular {
        cur.max(plan.geom.hash_end())
    } else {
        cur
    }
}

/// Encodes the parity for a freshly built tree. `hash_file` is the (possibly temporary) hash file
/// the tree was written to, already at its final size. `stream` holds the data blocks' share of
/// the parity if the tree pass computed it; it is used only if its layout is the one the files
/// now give (else the round encoder reads everything again).
#[allow(clippy::too_many_arguments)]
fn format_parity(
    f: &FecSpec,
    hash_path: &Path,
    data_path: &Path,
    geom: &Geometry,
    data: &FileSource,
    hash_file: &File,
    stream: Option<ParityStream>,
    progress: &dyn Progress,
) -> Result<(FecLayout, bool), Error> {
    let fec_path = f.device.as_path();
    let hash_size = super::file::file_size(hash_file)
        .map_err(|e| err(format!("size of {}: {e}", hash_path.display())))?;
    let (l, on_hash) = fec_layout(f, hash_path, geom, hash_size)?;
    if on_hash && hash_size < f.offset {
        // The parity covers the hash device up to --fec-offset. veritysetup (2.6 and 2.7) reads
        // that range and fails ("Failed to read RS block") when the file ends before it; we
        // zero-fill the gap instead, which gives exactly the bytes veritysetup writes on a file
        // already extended to --fec-offset.
        hash_file.set_len(f.offset).map_err(|e| {
            err(format!(
                "extending {} to --fec-offset {}: {e}",
                hash_path.display(),
                f.offset
            ))
        })?;
    }
    let on_data = same_path(fec_path, data_path);
    if on_data && f.offset < geom.data_size() {
        return Err(err(format!(
            "data area (ends at byte {}) overlaps with FEC area (--fec-offset {})",
            geom.data_size(),
            f.offset
        )));
    }
    let hash_src = FileSource::from_file(clone(hash_file, hash_path)?, hash_path)
        .map_err(|e| err(format!("{}: {e}", hash_path.display())))?;
    // A separate FEC file is written like the hash file; on the hash file it shares the hash
    // file's fate; a device or the data file is written in place.
    let pending = pending_for(fec_path, on_hash || on_data, "FEC file")?;
    let fec_file = if on_hash {
        clone(hash_file, hash_path)?
    } else if let Some(p) = &pending {
        clone(p.file(), fec_path)?
    } else {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(fec_path)
            .map_err(|e| {
                err(format!(
                    "cannot open FEC device {}: {e}",
                    fec_path.display()
                ))
            })?
    };
    progress.begin("FEC parity", l.rounds());
    let mut sink = FileSink::new(fec_file);
    match stream.filter(|s| *s.layout() == l) {
        Some(s) => s.finish(data, &hash_src, &mut sink, &|n| progress.set(n)),
        None => encode_parity(&l, data, &hash_src, &mut sink, &|n| progress.set(n)),
    }
    .map_err(|e| err(format!("FEC device {}: {e}", fec_path.display())))?;
    progress.end();
    sink.file()
        .sync_all()
        .map_err(|e| err(format!("syncing {}: {e}", fec_path.display())))?;
    if let Some(p) = pending {
        p.commit()
            .map_err(|e| err(format!("writing {}: {e}", fec_path.display())))?;
    }
    Ok((l, on_hash))
}

//! The FEC side of `verity format | verify | dump | repair`: veritysetup's `--fec-device`,
//! `--fec-roots` and `--fec-offset`, parity encoding after the tree, correction during verify, and
//! the `repair` verb that writes corrected blocks back once the whole tree verifies with them.

use super::super::{failed, op_err, progress::bytes_bar, CliError, CliResult};
use crate::hex;
use crate::io::{output::PendingFile, FileSink, FileSource};
use crate::verity::fec::layout::covered_hash_blocks;
use crate::verity::fec::{correct_image, encode_parity, FecLayout, FecOutcome};
use crate::verity::verify::Location;
use crate::verity::{BlockSource, Geometry};
use clap::Args;
use serde_json::json;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// veritysetup's FEC options.
#[derive(Args, Clone, Debug, Default)]
pub struct FecArgs {
    /// Device or file holding the Reed-Solomon parity (created if missing on format).
    #[arg(long)]
    pub fec_device: Option<PathBuf>,
    /// Parity bytes per codeword, 2 to 24.
    #[arg(long, default_value_t = 2)]
    pub fec_roots: u32,
    /// Byte offset of the parity on the FEC device (a multiple of 512).
    #[arg(long, default_value_t = 0)]
    pub fec_offset: u64,
}

/// Whether two paths name the same file (also when one does not exist yet but the paths agree).
pub(super) fn same_path(a: &Path, b: &Path) -> bool {
    a == b || super::same_file(a, b)
}

/// The FEC layout for an image whose hash device currently holds `hash_size` bytes.
pub(super) fn layout(
    f: &FecArgs,
    fec: &Path,
    hash_path: &Path,
    geom: &Geometry,
    hash_size: u64,
) -> Result<(FecLayout, bool), CliError> {
    let p = &geom.params;
    let on_hash = same_path(fec, hash_path);
    let hb = covered_hash_blocks(
        hash_size,
        f.fec_offset,
        on_hash,
        p.data_block_size,
        geom.hash_start_block,
    );
    let l = FecLayout::new(
        p.data_block_size,
        p.hash_block_size,
        f.fec_roots,
        p.data_blocks,
        geom.hash_start_block,
        hb,
        f.fec_offset,
    )
    .map_err(|e| op_err(format!("--fec-device {}: {e}", fec.display())))?;
    if on_hash && f.fec_offset < geom.hash_end() {
        return Err(op_err(format!(
            "hash area (ends at byte {}) overlaps with FEC area (--fec-offset {}) on {}",
            geom.hash_end(),
            f.fec_offset,
            fec.display()
        )));
    }
    Ok((l, on_hash))
}

/// The FEC lines of format and dump, in veritysetup's spelling: (after "Hash algorithm", at end).
pub(super) fn fact_lines(l: &FecLayout, f: &FecArgs, on_hash: bool) -> (Vec<String>, Vec<String>) {
    let mid = vec![
        format!("FEC RS roots:   \t{}", l.roots),
        format!("FEC blocks:     \t{}", l.parity_blocks()),
    ];
    let mut end = Vec::new();
    if f.fec_offset == 0 && !on_hash {
        end.push(format!("FEC device size: \t{} [bytes]", l.parity_bytes()));
    }
    (mid, end)
}

/// Encodes the parity for a freshly built tree. `hash_file` is the (possibly temporary) hash file
/// the tree was written to, already at its final size.
#[allow(clippy::too_many_arguments)]
pub(super) fn format_parity(
    f: &FecArgs,
    fec_path: &Path,
    hash_path: &Path,
    data_path: &Path,
    geom: &Geometry,
    data: &FileSource,
    hash_file: &File,
    json_out: bool,
) -> Result<(FecLayout, bool), CliError> {
    let hash_size = crate::io::file::file_size(hash_file)
        .map_err(|e| op_err(format!("size of {}: {e}", hash_path.display())))?;
    let (l, on_hash) = layout(f, fec_path, hash_path, geom, hash_size)?;
    if on_hash && hash_size < f.fec_offset {
        // The parity covers the hash device up to --fec-offset. veritysetup (2.6 and 2.7) reads
        // that range and fails ("Failed to read RS block") when the file ends before it; we
        // zero-fill the gap instead, which gives exactly the bytes veritysetup writes on a file
        // already extended to --fec-offset.
        hash_file.set_len(f.fec_offset).map_err(|e| {
            op_err(format!(
                "extending {} to --fec-offset {}: {e}",
                hash_path.display(),
                f.fec_offset
            ))
        })?;
    }
    if same_path(fec_path, data_path) && f.fec_offset < geom.data_size() {
        return Err(op_err(format!(
            "data area (ends at byte {}) overlaps with FEC area (--fec-offset {})",
            geom.data_size(),
            f.fec_offset
        )));
    }
    let hash_src = FileSource::from_file(clone(hash_file, hash_path)?, hash_path)
        .map_err(|e| op_err(format!("{}: {e}", hash_path.display())))?;
    // A separate FEC file is written like the hash file: into a temporary file (a copy of an
    // existing one) renamed over it when complete, so a crash leaves the old parity or the new.
    // On the hash file it shares the hash file's fate; a device or the data file is in place.
    let pending = if on_hash || same_path(fec_path, data_path) {
        None
    } else {
        match std::fs::metadata(fec_path) {
            Ok(m) if !m.is_file() => None,
            Ok(_) => Some(PendingFile::create_from_copy(fec_path)),
            Err(_) => Some(PendingFile::create(fec_path)),
        }
    }
    .transpose()
    .map_err(|e| {
        op_err(format!(
            "cannot create FEC file {} (temporary copy beside it): {e}",
            fec_path.display()
        ))
    })?;
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
                op_err(format!(
                    "cannot open FEC device {}: {e}",
                    fec_path.display()
                ))
            })?
    };
    let bar = bytes_bar(l.rounds(), json_out, "FEC parity");
    let mut sink = FileSink::new(fec_file);
    encode_parity(&l, data, &hash_src, &mut sink, &|n| bar.set_position(n))
        .map_err(|e| op_err(format!("FEC device {}: {e}", fec_path.display())))?;
    bar.finish_and_clear();
    sink.file()
        .sync_all()
        .map_err(|e| op_err(format!("syncing {}: {e}", fec_path.display())))?;
    if let Some(p) = pending {
        p.commit()
            .map_err(|e| op_err(format!("writing {}: {e}", fec_path.display())))?;
    }
    Ok((l, on_hash))
}

fn clone(f: &File, p: &Path) -> Result<File, CliError> {
    f.try_clone()
        .map_err(|e| op_err(format!("{}: {e}", p.display())))
}

/// Verifies with correction. Prints what was corrected; never writes.
#[allow(clippy::too_many_arguments)]
pub(super) fn verify_with_fec(
    f: &FecArgs,
    fec_path: &Path,
    data_path: &Path,
    hash_path: &Path,
    geom: &Geometry,
    data: &FileSource,
    hash: &FileSource,
    root: &[u8],
    json_out: bool,
) -> CliResult {
    let fec = FileSource::open(fec_path).map_err(|e| {
        op_err(format!(
            "cannot open FEC device {}: {e}",
            fec_path.display()
        ))
    })?;
    let (l, _) = layout(f, fec_path, hash_path, geom, hash.size())?;
    let out = run_correction(
        geom, &l, data, hash, &fec, root, json_out, data_path, hash_path,
    )?;
    report(&out, root, json_out, false);
    conclude(&out, data_path, root, "verified")
}

#[allow(clippy::too_many_arguments)]
fn run_correction(
    geom: &Geometry,
    l: &FecLayout,
    data: &FileSource,
    hash: &FileSource,
    fec: &FileSource,
    root: &[u8],
    json_out: bool,
    data_path: &Path,
    hash_path: &Path,
) -> Result<FecOutcome, CliError> {
    let bar = bytes_bar(geom.data_size(), json_out, "verifying");
    let out =
        correct_image(geom, l, data, hash, fec, root, &|n| bar.set_position(n)).map_err(|e| {
            op_err(format!(
                "{} / {}: {e}",
                data_path.display(),
                hash_path.display()
            ))
        })?;
    bar.finish_and_clear();
    Ok(out)
}

fn report(out: &FecOutcome, root: &[u8], json_out: bool, written: bool) {
    if json_out {
        let fixes: Vec<_> = out
            .corrections
            .iter()
            .map(|c| json!({"block": c.location, "offset": c.offset, "bytes": c.bytes}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "verified": out.is_ok(),
                "root_hash": hex::encode(root),
                "initial_bad_blocks": out.initial.bad,
                "corrected_blocks": if out.is_ok() { fixes } else { Vec::new() },
                "corrected_bytes": if out.is_ok() { out.bytes() } else { 0 },
                "written": written,
                "bad_blocks": out.last.bad,
                "unverifiable_blocks": out.last.unverifiable,
            }))
            .expect("json")
        );
        return;
    }
    if out.initial.is_ok() {
        return;
    }
    for b in &out.initial.bad {
        eprintln!("verity: {b}");
    }
    if out.is_ok() {
        for c in &out.corrections {
            let what = match c.location {
                Location::Data { block } => format!("data block {block}"),
                Location::Hash { level, index } => format!("hash block {index} of level {level}"),
            };
            eprintln!(
                "verity: {what} (byte {}): {} bytes corrected from FEC{}",
                c.offset,
                c.bytes,
                if written { " and written back" } else { "" }
            );
        }
        // veritysetup's line, for scripts that look for it.
        eprintln!("Found {} repairable errors with FEC device.", out.bytes());
    } else {
        for b in &out.last.bad {
            eprintln!("verity: not correctable from FEC: {b}");
        }
    }
}

fn conclude(out: &FecOutcome, data_path: &Path, root: &[u8], verb: &str) -> CliResult {
    if out.is_ok() {
        if !out.initial.is_ok() {
            eprintln!(
                "verity: warning: {} blocks ({} bytes) of {} were corrected with FEC and {verb} against the root hash",
                out.corrections.len(),
                out.bytes(),
                data_path.display()
            );
        }
        return Ok(());
    }
    let first = out
        .last
        .bad
        .first()
        .map(|b| b.to_string())
        .unwrap_or_else(|| format!("{} blocks could not be checked", out.last.unverifiable));
    Err(failed(format!(
        "verification of {} against root hash {} failed even with FEC: {first}",
        data_path.display(),
        hex::encode(root)
    )))
}

/// `verity repair`: correct, confirm against the tree, then write back.
#[allow(clippy::too_many_arguments)]
pub(super) fn repair(
    f: &FecArgs,
    rebuild_parity: bool,
    data_path: &Path,
    hash_path: &Path,
    geom: &Geometry,
    data: &FileSource,
    hash: &FileSource,
    root: &[u8],
    json_out: bool,
) -> CliResult {
    let fec_path = f
        .fec_device
        .as_deref()
        .ok_or_else(|| op_err("repair needs --fec-device"))?;
    let fec_file = OpenOptions::new()
        .read(true)
        .write(rebuild_parity)
        .open(fec_path)
        .map_err(|e| {
            op_err(format!(
                "cannot open FEC device {}: {e}",
                fec_path.display()
            ))
        })?;
    let fec = FileSource::from_file(fec_file, fec_path)
        .map_err(|e| op_err(format!("{}: {e}", fec_path.display())))?;
    let (l, _) = layout(f, fec_path, hash_path, geom, hash.size())?;
    let out = run_correction(
        geom, &l, data, hash, &fec, root, json_out, data_path, hash_path,
    )?;
    if !out.is_ok() {
        // Past capacity nothing is written: partial corrections are not confirmed by the root.
        report(&out, root, json_out, false);
        return conclude(&out, data_path, root, "repaired");
    }
    for c in &out.corrections {
        let (file, path) = match c.location {
            Location::Data { .. } => (data.file(), data_path),
            Location::Hash { .. } => (hash.file(), hash_path),
        };
        // One positioned write per block: after a crash each block is either old or corrected.
        file.write_all_at(&c.block, c.offset).map_err(|e| {
            op_err(format!(
                "writing {} at byte {}: {e}",
                path.display(),
                c.offset
            ))
        })?;
    }
    for (file, path) in [(data.file(), data_path), (hash.file(), hash_path)] {
        file.sync_all()
            .map_err(|e| op_err(format!("syncing {}: {e}", path.display())))?;
    }
    report(&out, root, json_out, true);
    if rebuild_parity {
        rebuild(&l, data, hash, &fec, fec_path, json_out)?;
    }
    conclude(&out, data_path, root, "repaired")
}

/// Re-encodes the parity of the (now verified) image and rewrites the rounds that differ.
fn rebuild(
    l: &FecLayout,
    data: &FileSource,
    hash: &FileSource,
    fec: &FileSource,
    fec_path: &Path,
    json_out: bool,
) -> CliResult {
    let mut fresh = Vec::new();
    let base = FecLayout {
        fec_offset: 0,
        ..*l
    };
    encode_parity(&base, data, hash, &mut fresh, &|_| ())
        .map_err(|e| op_err(format!("re-encoding parity: {e}")))?;
    let per = l.round_parity_bytes();
    let mut old = vec![0u8; per];
    let mut rewritten = 0u64;
    for (n, new) in fresh.chunks(per).enumerate() {
        let off = l.parity_offset(n as u64);
        let have = fec.read_at(&mut old, off).is_ok();
        if !have || old != new {
            fec.file().write_all_at(new, off).map_err(|e| {
                op_err(format!("writing {} at byte {off}: {e}", fec_path.display()))
            })?;
            rewritten += 1;
        }
    }
    fec.file()
        .sync_all()
        .map_err(|e| op_err(format!("syncing {}: {e}", fec_path.display())))?;
    if !json_out && rewritten > 0 {
        eprintln!(
            "verity: rewrote the parity of {rewritten} of {} rounds in {}",
            l.rounds(),
            fec_path.display()
        );
    }
    Ok(())
}

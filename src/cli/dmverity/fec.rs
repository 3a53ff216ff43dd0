//! The FEC side of `verity format | verify | dump | repair`: veritysetup's `--fec-device`,
//! `--fec-roots` and `--fec-offset`, parity encoding after the tree, correction during verify, and
//! the `repair` verb that writes corrected blocks back once the whole tree verifies with them.

use super::super::progress::Bars;
use super::super::{failed, op_err, CliError, CliResult};
use crate::hex;
use crate::io::format::{fec_layout, FecSpec};
use crate::io::repair::{correct, rebuild_parity};
use crate::io::FileSource;
use crate::verity::fec::{FecLayout, FecOutcome};
use crate::verity::verify::Location;
use crate::verity::{BlockSource, Geometry};
use clap::Args;
use serde_json::json;
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

/// The library's FEC request, if `--fec-device` was given.
pub(super) fn spec(f: &FecArgs) -> Option<FecSpec> {
    f.fec_device.as_ref().map(|d| FecSpec {
        device: d.clone(),
        roots: f.fec_roots,
        offset: f.fec_offset,
    })
}

/// The FEC layout for an image whose hash device currently holds `hash_size` bytes (`--fec-device`
/// must be given).
pub(super) fn layout(
    f: &FecArgs,
    hash_path: &Path,
    geom: &Geometry,
    hash_size: u64,
) -> Result<(FecLayout, bool), CliError> {
    let spec = spec(f).ok_or_else(|| op_err("--fec-device is needed"))?;
    fec_layout(&spec, hash_path, geom, hash_size).map_err(op_err)
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
    let fec = crate::io::repair::open_fec(fec_path, false).map_err(op_err)?;
    let (l, _) = layout(f, hash_path, geom, hash.size())?;
    let out = correct(
        geom,
        &l,
        data,
        hash,
        &fec,
        root,
        data_path,
        hash_path,
        &Bars::new(json_out),
    )
    .map_err(op_err)?;
    report(&out, root, json_out, false);
    conclude(&out, data_path, root, "verified")
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

/// `verity repair`: correct, confirm against the tree, then write back (the library decides what
/// may be written); prints what happened.
#[allow(clippy::too_many_arguments)]
pub(super) fn repair(
    f: &FecArgs,
    rebuild: bool,
    data_path: &Path,
    hash_path: &Path,
    geom: &Geometry,
    data: &FileSource,
    hash: &FileSource,
    root: &[u8],
    json_out: bool,
) -> CliResult {
    let spec = spec(f).ok_or_else(|| op_err("repair needs --fec-device"))?;
    let r = crate::io::repair::repair(
        &spec,
        rebuild,
        data_path,
        hash_path,
        geom,
        data,
        hash,
        root,
        &Bars::new(json_out),
    )
    .map_err(op_err)?;
    // Past capacity nothing is written: partial corrections are not confirmed by the root.
    report(&r.outcome, root, json_out, r.written);
    if r.written && rebuild {
        let rewritten = rebuild_parity(&r, data, hash, &spec.device).map_err(op_err)?;
        if !json_out && rewritten > 0 {
            eprintln!(
                "verity: rewrote the parity of {rewritten} of {} rounds in {}",
                r.layout.rounds(),
                spec.device.display()
            );
        }
    }
    conclude(&r.outcome, data_path, root, "repaired")
}

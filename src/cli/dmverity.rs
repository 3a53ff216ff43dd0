//! `verity format | verify | dump`: veritysetup's verbs, options (short ones included: `-h` is
//! `--hash`, `-s` is `--salt`) and `Key:\tvalue` output, so scripts written for it keep working.

use super::progress::{bytes_bar, Bars};
use super::{failed, op_err, CliError, CliResult};
use crate::digest::HashAlg;
use crate::hex;
use crate::io::format as io_format;
use crate::io::repair::open_rw;
use crate::io::FileSource;
use crate::verity::format::FormatOptions;
use crate::verity::geometry::{check_block_size, hash_start_block, MAX_SALT};
use crate::verity::superblock::{parse_uuid, SUPERBLOCK_SIZE};
use crate::verity::verify::{verify_image, VerifyOptions};
use crate::verity::{BlockSource, Geometry, Params, Superblock};
use clap::{Args, Subcommand};
use facts::{hash_device_size, print_facts, Facts};
use fec::FecArgs;
use serde_json::json;
use std::path::{Path, PathBuf};

mod facts;
mod fec;

/// Options that take a separate value, for moving options that precede the verb.
pub(super) const OPTIONS_WITH_VALUES: &[&str] = &[
    "-h",
    "--hash",
    "-s",
    "--salt",
    "--data-block-size",
    "--hash-block-size",
    "--uuid",
    "--format",
    "--hash-offset",
    "--data-blocks",
    "--root-hash-file",
    "--root-hash-signature",
    "--trust",
    "--fec-device",
    "--fec-roots",
    "--fec-offset",
];

#[derive(Subcommand)]
pub enum Command {
    /// Build a hash tree for DATA into HASH and print the root hash (veritysetup format).
    #[command(disable_help_flag = true, args_override_self = true)]
    Format(FormatArgs),
    /// Check every data and hash block of DATA/HASH against the root hash (veritysetup verify).
    #[command(disable_help_flag = true, args_override_self = true)]
    Verify(VerifyArgs),
    /// Print the superblock of HASH (veritysetup dump).
    #[command(disable_help_flag = true, args_override_self = true)]
    Dump(DumpArgs),
    /// Correct bad data and hash blocks from the FEC parity and write them back, once the whole
    /// tree verifies with them; writes nothing if something cannot be corrected.
    #[command(disable_help_flag = true)]
    Repair(RepairArgs),
}

/// Options shared by the veritysetup verbs.
#[derive(Args, Clone, Debug)]
pub struct CommonArgs {
    /// Hash algorithm (sha1, sha256, sha384, sha512).
    #[arg(short = 'h', long = "hash", default_value = "sha256")]
    pub hash: String,
    /// Data block size in bytes.
    #[arg(long, default_value_t = 4096)]
    pub data_block_size: u64,
    /// Hash block size in bytes.
    #[arg(long, default_value_t = 4096)]
    pub hash_block_size: u64,
    /// Salt as hex, or '-' for none.
    #[arg(short = 's', long)]
    pub salt: Option<String>,
    /// Hash type: 1 normal, 0 Chrome OS.
    #[arg(long = "format", default_value_t = 1)]
    pub format: u32,
    /// No superblock: every parameter comes from the command line.
    #[arg(long)]
    pub no_superblock: bool,
    /// Byte offset of the superblock (or tree) on the hash device.
    #[arg(long, default_value_t = 0)]
    pub hash_offset: u64,
    /// Number of data blocks (default: all whole blocks of DATA).
    #[arg(long)]
    pub data_blocks: Option<u64>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// More output.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Debug output (lines start with '#').
    #[arg(long)]
    pub debug: bool,
    /// Accepted for veritysetup compatibility; never asks anything anyway.
    #[arg(short = 'q', long = "batch-mode")]
    pub batch_mode: bool,
    /// Print help.
    #[arg(short = '?', long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

#[derive(Args, Debug)]
pub struct FormatArgs {
    /// Data device or file.
    pub data: PathBuf,
    /// Hash device or file (may be DATA itself with --hash-offset past the data).
    pub hash_device: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
    /// UUID for the superblock (default: random).
    #[arg(long)]
    pub uuid: Option<String>,
    /// Write the root hash (hex, no newline) to this file.
    #[arg(long)]
    pub root_hash_file: Option<PathBuf>,
    #[command(flatten)]
    pub fec: FecArgs,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Data device or file.
    pub data: PathBuf,
    /// Hash device or file.
    pub hash_device: PathBuf,
    /// Root hash as hex (or use --root-hash-file).
    pub root_hash: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Read the root hash from this file.
    #[arg(long)]
    pub root_hash_file: Option<PathBuf>,
    /// List every bad block instead of stopping at the first.
    #[arg(long)]
    pub all: bool,
    /// Check this detached PKCS#7 signature over the root hash before the tree (as veritysetup).
    #[arg(long)]
    pub root_hash_signature: Option<PathBuf>,
    /// Trusted certificate directory for --root-hash-signature (repeatable; replaces the default
    /// verity.d directories).
    #[arg(long = "trust")]
    pub trust: Vec<PathBuf>,
    #[command(flatten)]
    pub fec: FecArgs,
}

#[derive(Args, Debug)]
pub struct RepairArgs {
    /// Data device or file (written in place).
    pub data: PathBuf,
    /// Hash device or file (written in place).
    pub hash_device: PathBuf,
    /// Root hash as hex (or use --root-hash-file).
    pub root_hash: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Read the root hash from this file.
    #[arg(long)]
    pub root_hash_file: Option<PathBuf>,
    #[command(flatten)]
    pub fec: FecArgs,
    /// Also re-encode the parity and rewrite the parts of it that are damaged.
    #[arg(long)]
    pub rebuild_parity: bool,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Hash device or file.
    pub hash_device: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub fec: FecArgs,
}

pub fn run(cmd: Command) -> CliResult {
    let debug = match &cmd {
        Command::Format(a) => a.common.debug,
        Command::Verify(a) => a.common.debug,
        Command::Dump(a) => a.common.debug,
        Command::Repair(a) => a.common.debug,
    };
    if debug {
        crate::verity::stats::enable();
    }
    let r = match cmd {
        Command::Format(a) => format(a),
        Command::Verify(a) => verify(a),
        Command::Dump(a) => dump(a),
        Command::Repair(a) => repair(a),
    };
    if debug {
        print_stats();
    }
    r
}

/// `--debug`: where the time of the hashing and parity threads went, per stage.
fn print_stats() {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "# code paths: SHA-256 {:?}, RS parity {} (rounds), {} (streamed with the tree, when it fits)",
        crate::sys::simd::sha256_mb::best_tier(),
        if crate::sys::simd::rs_avx2::available() {
            "avx2"
        } else {
            "portable"
        },
        match crate::sys::simd::gf_mac::best() {
            Some(k) => format!("{k:?}"),
            None => "off".into(),
        }
    );
    for (stage, threads, c, wall, cpu) in
        crate::verity::stats::summary(&crate::verity::stats::take())
    {
        eprintln!(
            "# {stage}: {threads} thread runs, {} pieces; read {:.0} ms, compute {:.0} ms, waiting {:.0} ms, handing on {:.0} ms; thread wall {:.0} ms, thread CPU {:.0} ms",
            c.pieces,
            ms(c.read),
            ms(c.work),
            ms(c.wait),
            ms(c.consume),
            ms(wall),
            ms(cpu)
        );
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], CliError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .map_err(|e| op_err(format!("the system random generator failed: {e}")))?;
    Ok(b)
}

/// Parses `--salt`: hex, `-` for empty, or absent for 32 random bytes.
pub(crate) fn parse_salt(salt: Option<&str>) -> Result<Vec<u8>, CliError> {
    match salt {
        None => Ok(random_bytes::<32>()?.to_vec()),
        Some("-") | Some("") => Ok(Vec::new()),
        Some(h) => {
            let s = hex::decode(h).map_err(|e| op_err(format!("invalid --salt: {e}")))?;
            if s.len() > MAX_SALT {
                return Err(op_err(format!(
                    "invalid --salt: {} bytes, at most {MAX_SALT} are allowed",
                    s.len()
                )));
            }
            Ok(s)
        }
    }
}

pub(super) fn open_source(path: &Path, what: &str) -> Result<FileSource, CliError> {
    io_format::open_source(path, what).map_err(op_err)
}

/// Checks the common options that do not depend on any file.
fn check_common(c: &CommonArgs) -> Result<(HashAlg, u32, u32), CliError> {
    let alg = HashAlg::from_name(&c.hash).map_err(|e| op_err(format!("--hash: {e}")))?;
    let dbs = check_block_size("data", c.data_block_size)
        .map_err(|e| op_err(format!("--data-block-size: {e}")))?;
    let hbs = check_block_size("hash", c.hash_block_size)
        .map_err(|e| op_err(format!("--hash-block-size: {e}")))?;
    if c.format > 1 {
        return Err(op_err(format!("--format {}: only 0 and 1 exist", c.format)));
    }
    if !c.hash_offset.is_multiple_of(512) {
        return Err(op_err(format!(
            "--hash-offset {} is not a multiple of 512",
            c.hash_offset
        )));
    }
    Ok((alg, dbs, hbs))
}

fn format(a: FormatArgs) -> CliResult {
    let c = &a.common;
    let (alg, dbs, hbs) = check_common(c)?;
    let salt = parse_salt(c.salt.as_deref())?;
    let uuid = match &a.uuid {
        Some(u) => parse_uuid(u).ok_or_else(|| op_err(format!("--uuid {u:?} is not a UUID")))?,
        None => uuid::Builder::from_random_bytes(random_bytes::<16>()?)
            .into_uuid()
            .into_bytes(),
    };
    let opts = FormatOptions {
        alg,
        data_block_size: dbs,
        hash_block_size: hbs,
        salt,
        hash_type: c.format,
        hash_offset: c.hash_offset,
        superblock: !c.no_superblock,
        data_blocks: c.data_blocks,
        uuid,
    };
    let bars = Bars::new(c.json);
    let (data, plan) = io_format::plan(&a.data, &a.hash_device, opts, &bars).map_err(op_err)?;
    let spec = fec::spec(&a.fec);
    let done = io_format::format(&a.data, &data, &a.hash_device, &plan, spec.as_ref(), &bars)
        .map_err(op_err)?;
    if let Some(rf) = &a.root_hash_file {
        crate::io::output::write_atomic(rf, hex::encode(&done.root).as_bytes())
            .map_err(|e| op_err(format!("writing root hash file {}: {e}", rf.display())))?;
    }
    let on_hash_blocks = match &done.fec {
        Some((l, true)) => l.parity_blocks(),
        _ => 0,
    };
    print_facts(
        &Facts {
            hash_path: &a.hash_device,
            uuid: (!c.no_superblock).then_some(uuid),
            geom: &plan.geom,
            root: Some(&done.root),
            hash_device_size: hash_device_size(c, &plan.geom, on_hash_blocks),
            fec: done
                .fec
                .map(|(l, on_hash)| fec::fact_lines(&l, &a.fec, on_hash)),
        },
        c.json,
    );
    Ok(())
}

/// Reads the superblock (or takes every parameter from the options with --no-superblock).
pub(super) fn load_geometry(
    c: &CommonArgs,
    hash: &FileSource,
    hash_path: &Path,
    data_size: Option<u64>,
) -> Result<(Geometry, Option<[u8; 16]>), CliError> {
    let (alg, dbs, hbs) = check_common(c)?;
    if c.no_superblock {
        let salt = match c.salt.as_deref() {
            None => Vec::new(),
            s => parse_salt(s)?,
        };
        let n = match (c.data_blocks, data_size) {
            (Some(n), _) => n,
            (None, Some(sz)) => sz / dbs as u64,
            (None, None) => return Err(op_err("--no-superblock needs --data-blocks")),
        };
        let params = Params {
            alg,
            data_block_size: dbs,
            hash_block_size: hbs,
            data_blocks: n,
            salt,
            hash_type: c.format,
        };
        let start = hash_start_block(c.hash_offset, hbs, false).map_err(op_err)?;
        let g = Geometry::new(params, start).map_err(|e| op_err(e.to_string()))?;
        return Ok((g, None));
    }
    let mut buf = [0u8; SUPERBLOCK_SIZE];
    if hash.size() < c.hash_offset.saturating_add(SUPERBLOCK_SIZE as u64) {
        return Err(failed(format!(
            "{}: superblock truncated: the file holds {} bytes, the superblock ends at byte {}",
            hash_path.display(),
            hash.size(),
            c.hash_offset.saturating_add(SUPERBLOCK_SIZE as u64)
        )));
    }
    hash.read_at(&mut buf, c.hash_offset).map_err(|e| {
        op_err(format!(
            "reading superblock of {}: {e}",
            hash_path.display()
        ))
    })?;
    let sb = Superblock::parse(&buf).map_err(|e| {
        failed(format!(
            "{} is not a valid verity hash device (superblock at byte {}): {e}",
            hash_path.display(),
            c.hash_offset
        ))
    })?;
    let mut params = sb.params();
    if let Some(n) = c.data_blocks {
        if n != params.data_blocks {
            return Err(op_err(format!(
                "--data-blocks {n} differs from the superblock's {}",
                params.data_blocks
            )));
        }
    }
    params.data_blocks = sb.data_blocks;
    let start = hash_start_block(c.hash_offset, params.hash_block_size, true).map_err(op_err)?;
    let g = Geometry::new(params, start)
        .map_err(|e| failed(format!("{}: {e}", hash_path.display())))?;
    Ok((g, Some(sb.uuid)))
}

pub(super) fn read_root(arg: Option<&str>, file: Option<&Path>) -> Result<Vec<u8>, CliError> {
    let text = match (arg, file) {
        (Some(_), Some(_)) => {
            return Err(op_err(
                "give the root hash either as an argument or with --root-hash-file, not both",
            ))
        }
        (Some(h), None) => h.to_string(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| op_err(format!("cannot read root hash file {}: {e}", f.display())))?
            .trim()
            .to_string(),
        (None, None) => {
            return Err(op_err(
                "a root hash is needed (argument or --root-hash-file)",
            ))
        }
    };
    hex::decode(&text).map_err(|e| op_err(format!("invalid root hash {text:?}: {e}")))
}

fn verify(a: VerifyArgs) -> CliResult {
    let c = &a.common;
    check_common(c)?;
    let root = read_root(a.root_hash.as_deref(), a.root_hash_file.as_deref())?;
    // The signature covers the lower-case hex string the kernel would see in the table; a tree is
    // not worth checking against a root hash nobody trusted.
    let signer = match &a.root_hash_signature {
        Some(sig) => Some(super::sign::check_signature(
            sig,
            &hex::encode(&root),
            &a.trust,
            None,
        )?),
        None => None,
    };
    let data = open_source(&a.data, "data device")?;
    let hash = open_source(&a.hash_device, "hash device")?;
    let (geom, _) = load_geometry(c, &hash, &a.hash_device, Some(data.size()))?;
    if let Some(fp) = &a.fec.fec_device {
        return fec::verify_with_fec(
            &a.fec,
            fp,
            &a.data,
            &a.hash_device,
            &geom,
            &data,
            &hash,
            &root,
            c.json,
        );
    }
    let bar = bytes_bar(geom.data_size(), c.json, "verifying");
    let report = verify_image(
        &geom,
        &data,
        &hash,
        &root,
        VerifyOptions {
            stop_at_first: !a.all,
        },
        &|n| bar.set_position(n),
    )
    .map_err(|e| {
        op_err(format!(
            "{} / {}: {e}",
            a.data.display(),
            a.hash_device.display()
        ))
    })?;
    bar.finish_and_clear();
    if c.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "verified": report.is_ok(),
                "root_hash": hex::encode(&root),
                "bad_blocks": report.bad,
                "unverifiable_blocks": report.unverifiable,
                "signer": signer.as_ref().map(|s| s.subject.clone()),
                "certificate_fingerprint": signer.as_ref().map(|s| s.fingerprint_hex()),
            }))
            .expect("json")
        );
    }
    if report.is_ok() {
        if c.verbose && !c.json {
            println!("Command successful.");
        }
        return Ok(());
    }
    if !c.json {
        for b in &report.bad {
            eprintln!("verity: {b}");
        }
    }
    let first = report
        .bad
        .first()
        .map(|b| b.to_string())
        .unwrap_or_default();
    Err(failed(format!(
        "verification of {} against root hash {} failed: {first}",
        a.data.display(),
        hex::encode(&root)
    )))
}

fn dump(a: DumpArgs) -> CliResult {
    let c = &a.common;
    let hash = open_source(&a.hash_device, "hash device")?;
    if c.no_superblock {
        return Err(op_err(
            "dump reads the superblock; it cannot be used with --no-superblock",
        ));
    }
    let (geom, uuid) = load_geometry(c, &hash, &a.hash_device, None)?;
    let fec_facts = match &a.fec.fec_device {
        Some(_) => Some(fec::layout(&a.fec, &a.hash_device, &geom, hash.size())?),
        None => None,
    };
    let on_hash_blocks = match &fec_facts {
        Some((l, true)) => l.parity_blocks(),
        _ => 0,
    };
    print_facts(
        &Facts {
            hash_path: &a.hash_device,
            uuid,
            geom: &geom,
            root: None,
            hash_device_size: hash_device_size(c, &geom, on_hash_blocks),
            fec: fec_facts.map(|(l, on_hash)| fec::fact_lines(&l, &a.fec, on_hash)),
        },
        c.json,
    );
    Ok(())
}

fn repair(a: RepairArgs) -> CliResult {
    let c = &a.common;
    check_common(c)?;
    let root = read_root(a.root_hash.as_deref(), a.root_hash_file.as_deref())?;
    if a.fec.fec_device.is_none() {
        return Err(op_err(
            "repair needs --fec-device (and --fec-roots if not 2)",
        ));
    }
    // Opened read-write once: the blocks that are verified are read and written through these.
    let data = open_rw(&a.data, "data device").map_err(op_err)?;
    let hash = open_rw(&a.hash_device, "hash device").map_err(op_err)?;
    let (geom, _) = load_geometry(c, &hash, &a.hash_device, Some(data.size()))?;
    fec::repair(
        &a.fec,
        a.rebuild_parity,
        &a.data,
        &a.hash_device,
        &geom,
        &data,
        &hash,
        &root,
        c.json,
    )
}

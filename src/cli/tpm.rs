//! `verity measure | pcr read | pcr replay | pcr predict | log show`: measuring into TPM PCRs with
//! systemd's event log, and reading, replaying and predicting PCR values. Every failure to reach
//! the TPM or write the log is exit 2; a log that does not replay is exit 1.

use super::{failed, op_err, CliResult};
use crate::digest::HashAlg;
use crate::hex;
use crate::measure::pcr::{self, ReplayReport};
use crate::measure::{
    default_pcr, measure_event_locked, open_tpm, EventLog, ImageEvent, LogRecord,
    DEFAULT_EVENT_LOG, DEFAULT_TPM,
};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Command {
    /// Measure one image event into a PCR and the event log (the pipeline's measuring step).
    #[command(disable_help_flag = true)]
    Measure(MeasureArgs),
    /// Read, replay or predict PCR values.
    #[command(subcommand)]
    Pcr(PcrCommand),
    /// Show the event log.
    #[command(subcommand)]
    Log(LogCommand),
}

#[derive(Subcommand)]
pub enum PcrCommand {
    /// Print PCR values of every active bank (default: all PCRs).
    #[command(disable_help_flag = true)]
    Read(ReadArgs),
    /// Recompute every PCR the event log touches and compare with the TPM.
    #[command(disable_help_flag = true)]
    Replay(ReplayArgs),
    /// The values a PCR will hold after measuring the given events.
    #[command(disable_help_flag = true)]
    Predict(Box<super::predict::PredictArgs>),
}

#[derive(Subcommand)]
pub enum LogCommand {
    /// Print every record of the event log.
    #[command(disable_help_flag = true)]
    Show(ShowArgs),
}

/// Where the TPM is.
#[derive(Args, Clone, Debug)]
pub struct TpmArg {
    /// TPM to use: device:/dev/tpmrm0 or swtpm:host=H,port=P.
    #[arg(long = "tpm", default_value = DEFAULT_TPM)]
    pub tpm: String,
}

/// Where the event log is.
#[derive(Args, Clone, Debug)]
pub struct LogArg {
    /// Event log (systemd's tpm2-measure.log format).
    #[arg(long = "event-log", default_value = DEFAULT_EVENT_LOG)]
    pub event_log: PathBuf,
}

/// One event given by its parts.
#[derive(Args, Clone, Debug)]
pub struct EventParts {
    /// sysext, confext or nextroot.
    #[arg(long)]
    pub class: Option<String>,
    /// Image name.
    #[arg(long)]
    pub name: Option<String>,
    /// dm-verity root hash (hex).
    #[arg(long = "root-hash")]
    pub root_hash: Option<String>,
    /// SHA-256 fingerprint of the signer certificate's DER (hex); omit or 'unsigned' if unsigned.
    #[arg(long)]
    pub signer: Option<String>,
}

#[derive(Args, Clone, Debug)]
pub struct MeasureArgs {
    #[command(flatten)]
    pub event: EventParts,
    /// PCR to extend (default: 13 sysext, 12 confext, 15 nextroot).
    #[arg(long)]
    pub pcr: Option<u32>,
    #[command(flatten)]
    pub tpm: TpmArg,
    #[command(flatten)]
    pub log: LogArg,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone, Debug)]
pub struct ReadArgs {
    /// PCR numbers (default: 0-23).
    pub pcrs: Vec<u32>,
    /// Only these banks (repeatable; default: every active bank).
    #[arg(long = "bank", value_parser = parse_bank)]
    pub banks: Vec<HashAlg>,
    #[command(flatten)]
    pub tpm: TpmArg,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub log: LogArg,
    #[command(flatten)]
    pub tpm: TpmArg,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub log: LogArg,
    /// Machine-readable output (the records, with `recnum` added).
    #[arg(long)]
    pub json: bool,
}

/// A bank name for clap.
pub(crate) fn parse_bank(s: &str) -> Result<HashAlg, String> {
    HashAlg::from_name(s).map_err(|e| e.to_string())
}

/// Every bank this crate computes.
pub(crate) const ALL_BANKS: [HashAlg; 4] = [
    HashAlg::Sha1,
    HashAlg::Sha256,
    HashAlg::Sha384,
    HashAlg::Sha512,
];

/// Runs one command of this group.
pub fn run(cmd: Command) -> CliResult {
    // libtss2 prints its own ERROR/WARNING lines for every failed connection; our errors say
    // what failed and where, so keep stderr to those unless the user asked for TSS logging.
    // Still single-threaded here, so changing the environment is safe.
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+NONE");
    }
    match cmd {
        Command::Measure(a) => measure(a),
        Command::Pcr(PcrCommand::Read(a)) => read(a),
        Command::Pcr(PcrCommand::Replay(a)) => replay(a),
        Command::Pcr(PcrCommand::Predict(a)) => super::predict::run(*a),
        Command::Log(LogCommand::Show(a)) => show(a),
    }
}

/// Builds the event from `--class/--name/--root-hash/--signer`; None when none of them is given.
pub(super) fn event_from_parts(p: &EventParts) -> Result<Option<ImageEvent>, super::CliError> {
    if p.class.is_none() && p.name.is_none() && p.root_hash.is_none() && p.signer.is_none() {
        return Ok(None);
    }
    let (Some(class), Some(name), Some(root)) = (&p.class, &p.name, &p.root_hash) else {
        return Err(op_err(
            "an event needs all of --class, --name and --root-hash (--signer is optional)",
        ));
    };
    let signer = match p.signer.as_deref() {
        None | Some("unsigned") => None,
        Some(s) => Some(s.to_ascii_lowercase()),
    };
    let ev = ImageEvent {
        class: class.clone(),
        name: name.clone(),
        root_hash_hex: root.to_ascii_lowercase(),
        signer,
    };
    ev.validate().map_err(op_err)?;
    Ok(Some(ev))
}

fn measure(a: MeasureArgs) -> CliResult {
    let ev = event_from_parts(&a.event)?
        .ok_or_else(|| op_err("measure needs --class, --name and --root-hash"))?;
    let pcr = a
        .pcr
        .or_else(|| default_pcr(&ev.class))
        .expect("a validated class has a default PCR");
    let log = EventLog::new(&a.log.event_log);
    let what = format!("measuring {} into PCR {pcr}", ev.event_string());
    // The log lock comes before the TPM connection: swtpm serves one client at a time, so two
    // measurers that each held a connection while waiting for the other's lock would deadlock.
    let mut writer = log
        .lock_for_append()
        .map_err(|e| op_err(format!("{what}: {e}")))?;
    let mut tpm = open_tpm(&a.tpm.tpm).map_err(|e| op_err(format!("{what}: {e}")))?;
    let rec = measure_event_locked(tpm.as_mut(), &mut writer, pcr, &ev)
        .map_err(|e| op_err(format!("{what}: {e}")))?;
    if a.json {
        let digests: Map<String, Value> = rec
            .digests
            .iter()
            .map(|(b, d)| (b.clone(), Value::String(d.clone())))
            .collect();
        println!(
            "{}",
            json!({"pcr": rec.pcr, "event": rec.event, "eventType": ev.class,
                   "digests": digests, "eventLog": log.path()})
        );
    } else {
        println!("Measured {} into PCR {}", rec.event, rec.pcr);
        for (b, d) in &rec.digests {
            println!("  {b}: {d}");
        }
    }
    Ok(())
}

/// PCR values of one bank: (PCR, value) pairs.
type BankValues = (HashAlg, Vec<(u32, Vec<u8>)>);

/// Prints values grouped by bank, as tpm2_pcrread does.
pub(super) fn print_values(values: &[BankValues], json_out: bool) {
    if json_out {
        let mut top = Map::new();
        for (bank, pcrs) in values {
            let m: Map<String, Value> = pcrs
                .iter()
                .map(|(p, v)| (p.to_string(), Value::String(hex::encode(v))))
                .collect();
            top.insert(bank.name().into(), Value::Object(m));
        }
        println!("{}", Value::Object(top));
    } else {
        for (bank, pcrs) in values {
            println!("{bank}:");
            for (p, v) in pcrs {
                println!("  {p:>2}: {}", hex::encode(v));
            }
        }
    }
}

fn read(a: ReadArgs) -> CliResult {
    let pcrs: Vec<u32> = if a.pcrs.is_empty() {
        (0..pcr::PCR_COUNT).collect()
    } else {
        a.pcrs.clone()
    };
    for &p in &pcrs {
        pcr::check_pcr(p).map_err(op_err)?;
    }
    let mut tpm = open_tpm(&a.tpm.tpm).map_err(op_err)?;
    let active = tpm.active_banks().map_err(op_err)?;
    let banks = if a.banks.is_empty() {
        active.clone()
    } else {
        a.banks.clone()
    };
    let mut out = Vec::new();
    for bank in banks {
        if !active.contains(&bank) {
            return Err(op_err(format!(
                "the {bank} bank is not active on this TPM (active: {})",
                names(&active)
            )));
        }
        let mut vals = Vec::new();
        for &p in &pcrs {
            let v = tpm
                .pcr_read(p, bank)
                .map_err(|e| op_err(format!("reading PCR {p} ({bank}): {e}")))?;
            vals.push((p, v));
        }
        out.push((bank, vals));
    }
    print_values(&out, a.json);
    Ok(())
}

fn names(banks: &[HashAlg]) -> String {
    banks
        .iter()
        .map(|b| b.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn replay(a: ReplayArgs) -> CliResult {
    let log = EventLog::new(&a.log.event_log);
    // Shared lock first, held while the TPM is read, so no measurement slips in between.
    let reader = log.lock_shared().map_err(op_err)?;
    let records = reader.records();
    let mut tpm = open_tpm(&a.tpm.tpm).map_err(op_err)?;
    let active = tpm.active_banks().map_err(op_err)?;
    let mut actual = HashMap::new();
    for p in pcr::touched_pcrs(records) {
        for &b in &active {
            let v = tpm
                .pcr_read(p, b)
                .map_err(|e| op_err(format!("reading PCR {p} ({b}): {e}")))?;
            actual.insert((p, b), v);
        }
    }
    drop(tpm);
    let report = pcr::replay(records, &active, &actual);
    print_replay(&report, records, a.json);
    if report.ok() {
        Ok(())
    } else {
        let m = report
            .first_misfit()
            .expect("a failed replay names a record");
        Err(failed(format!(
            "event log {} does not replay: first record that does not fit: {}: {}",
            log.path().display(),
            describe(m.record, &records[m.record]),
            m.reason
        )))
    }
}

fn describe(i: usize, r: &LogRecord) -> String {
    format!(
        "#{i} (PCR {}, {:?})",
        r.pcr.map_or("-".into(), |p| p.to_string()),
        r.string().unwrap_or("")
    )
}

fn print_replay(r: &ReplayReport, records: &[LogRecord], json_out: bool) {
    let misfit_json = |m: &pcr::Misfit| json!({"record": m.record, "reason": m.reason});
    if json_out {
        let pcrs: Vec<Value> = r
            .banks
            .iter()
            .map(|b| {
                json!({"pcr": b.pcr, "bank": b.bank.name(), "records": b.records, "ok": b.ok(),
                       "expected": b.expected.as_deref().map(hex::encode),
                       "actual": b.actual.as_deref().map(hex::encode),
                       "misfit": b.misfit.as_ref().map(misfit_json)})
            })
            .collect();
        let v = json!({
            "ok": r.ok(),
            "records": records.len(),
            "skipped": r.skipped,
            "pcrs": pcrs,
            "inconsistent": r.inconsistent.iter().map(misfit_json).collect::<Vec<_>>(),
            "firstMisfit": r.first_misfit().map(misfit_json),
        });
        println!("{v}");
        return;
    }
    if records.is_empty() {
        println!("The event log has no records; nothing to replay.");
    }
    for b in &r.banks {
        match (&b.misfit, &b.actual) {
            (None, Some(v)) => println!(
                "PCR {:>2} {:<6} ok ({} records): {}",
                b.pcr,
                b.bank.name(),
                b.records,
                hex::encode(v)
            ),
            (Some(m), _) => println!(
                "PCR {:>2} {:<6} MISMATCH: {}: {}",
                b.pcr,
                b.bank.name(),
                describe(m.record, &records[m.record]),
                m.reason
            ),
            (None, None) => {}
        }
    }
    for m in &r.inconsistent {
        println!(
            "record {} is inconsistent: {}",
            describe(m.record, &records[m.record]),
            m.reason
        );
    }
    if r.skipped > 0 {
        println!(
            "{} record(s) without a PCR (NvPCR, or --dangerous-no-tpm bypasses) not replayed",
            r.skipped
        );
    }
}

fn show(a: ShowArgs) -> CliResult {
    let log = EventLog::new(&a.log.event_log);
    let records = log.read().map_err(op_err)?;
    if a.json {
        let arr: Vec<Value> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut v = json!({"recnum": i, "pcr": r.pcr,
                    "digests": r.digests.iter().map(|d| json!({"hashAlg": d.hash_alg,
                        "digest": hex::encode(&d.digest)})).collect::<Vec<_>>()});
                if let Some(c) = &r.content_type {
                    v["content_type"] = c.clone().into();
                }
                if !r.content.is_null() {
                    v["content"] = r.content.clone();
                }
                v
            })
            .collect();
        println!("{}", Value::Array(arr));
        return Ok(());
    }
    for (i, r) in records.iter().enumerate() {
        println!(
            "#{i} PCR {} {} {}",
            r.pcr.map_or("-".into(), |p| p.to_string()),
            r.event_type().unwrap_or("-"),
            r.string().unwrap_or("")
        );
        // Recorded beside an admitted image's event, not measured.
        if let Some(v) = r.content.get("imageVersion").and_then(Value::as_str) {
            println!("    version: {v}");
        }
        for d in &r.digests {
            println!("    {}: {}", d.hash_alg, hex::encode(&d.digest));
        }
    }
    Ok(())
}

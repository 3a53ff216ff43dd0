//! `verity measure | pcr read | pcr replay | pcr predict | log show`: measuring into TPM PCRs with
//! systemd's event log, and reading, replaying and predicting PCR values. Every failure to reach
//! the TPM or write the log is exit 2; a log that does not replay is exit 1.

use super::{failed, op_err, CliResult};
use crate::digest::HashAlg;
use crate::gate::{admission_events, Bypass};
use crate::hex;
use crate::image::release::Scope;
use crate::image::verify::{verify, DataCheck, VerifyOptions};
use crate::image::{DissectOptions, Dissected};
use crate::measure::pcr::{self, ReplayReport};
use crate::measure::{
    default_pcr, measure_event_locked, open_tpm, EventLog, ImageEvent, LogRecord, Subject,
    DEFAULT_EVENT_LOG, DEFAULT_TPM,
};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
    Predict(Box<PredictArgs>),
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
pub struct PredictArgs {
    /// The PCR the events go into (text/json: required; keylime/pcrlock: default per class,
    /// 13 sysext, 12 confext, 15 nextroot).
    #[arg(long)]
    pub pcr: Option<u32>,
    /// Output: text (or --json), a Keylime tpm_policy (`keylime`), or systemd-pcrlock
    /// components (`pcrlock`). For keylime/pcrlock, several --image of the same name are allowed
    /// versions of that image, and every combination is predicted.
    #[arg(long, value_enum, default_value = "text")]
    pub format: super::predict_export::Format,
    /// Write the keylime policy or pcrlock file here (a directory for pcrlock components with
    /// several versions) instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Starting value (hex; its length picks the bank; repeatable, one per bank; default zero).
    #[arg(long = "base")]
    pub bases: Vec<String>,
    /// Banks to predict (repeatable; default sha1, sha256, sha384, sha512).
    #[arg(long = "bank", value_parser = parse_bank)]
    pub banks: Vec<HashAlg>,
    /// A literal event string (repeatable, measured in order, before the --class event).
    #[arg(long = "event")]
    pub events: Vec<String>,
    #[command(flatten)]
    pub event: EventParts,
    /// An image to measure (repeatable, in order, after the other events). It is verified first:
    /// the class, name, root hash and signer come from the verified image, as the merge gets them.
    #[arg(long = "image")]
    pub images: Vec<PathBuf>,
    /// A directory extension to measure (repeatable, after the --image events): its event carries
    /// the `verity-tree-v1` digest of the tree, as the merge measures it (`unprotected-tree-HEX`).
    #[arg(long = "dir")]
    pub dirs: Vec<PathBuf>,
    /// The class of the --dir extensions: sysext or confext.
    #[arg(long = "dir-class", default_value = "sysext")]
    pub dir_class: String,
    /// Certificate directory for --image (repeatable; replaces the default verity.d search path).
    #[arg(long)]
    pub trust: Vec<PathBuf>,
    /// Root for the default verity.d dirs.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Image policy for --image (systemd syntax). Default: root=signed+absent:usr=signed+absent.
    #[arg(long = "image-policy")]
    pub image_policy: Option<String>,
    /// Accept --image partitions of this architecture instead of the native one.
    #[arg(long)]
    pub arch: Option<String>,
    /// A bypass the admission of the --class/--image events will record before each of them, as
    /// the merge does (repeatable, in order: tpm-simulator, skip-release-check, unprotected,
    /// no-tpm, premounted).
    #[arg(long = "with-bypass", value_parser = parse_bypass)]
    pub with_bypass: Vec<Bypass>,
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

fn parse_bypass(s: &str) -> Result<Bypass, String> {
    Bypass::from_name(s).ok_or_else(|| {
        format!(
            "unknown bypass {s:?} (one of {})",
            Bypass::ALL.map(|b| b.name()).join(", ")
        )
    })
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
        Command::Pcr(PcrCommand::Predict(a)) => predict(*a),
        Command::Log(LogCommand::Show(a)) => show(a),
    }
}

/// Builds the event from `--class/--name/--root-hash/--signer`; None when none of them is given.
fn event_from_parts(p: &EventParts) -> Result<Option<ImageEvent>, super::CliError> {
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
fn print_values(values: &[BankValues], json_out: bool) {
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

fn predict(a: PredictArgs) -> CliResult {
    if a.format != super::predict_export::Format::Text {
        let mut images = Vec::new();
        if let Some(ev) = event_from_parts(&a.event)? {
            images.push(ev);
        }
        if !a.images.is_empty() {
            let opts = image_verify_options(&a)?;
            for img in &a.images {
                images.push(image_admission(img, a.arch.clone(), &opts, &[])?.0);
            }
        }
        if !a.dirs.is_empty() {
            // A directory's admission measures its `dangerous:unprotected` record first, which the
            // keylime/pcrlock export (one event per image) does not model: no wrong policy.
            return Err(op_err(
                "--dir works with --format text|json only: a directory extension is admitted \
                 with an unprotected bypass record the keylime/pcrlock export does not model",
            ));
        }
        return super::predict_export::run(&a, &images);
    }
    let pcr_n = a
        .pcr
        .ok_or_else(|| op_err("--pcr is required (except with --format keylime|pcrlock)"))?;
    let banks = if a.banks.is_empty() {
        ALL_BANKS.to_vec()
    } else {
        a.banks.clone()
    };
    let mut bases = Vec::new();
    for b in &a.bases {
        let v = hex::decode(b.trim_start_matches("0x"))
            .map_err(|e| op_err(format!("--base {b}: {e}")))?;
        let bank = pcr::bank_for_length(v.len()).map_err(|e| op_err(format!("--base {b}: {e}")))?;
        bases.push((bank, v));
    }
    let mut events = a.events.clone();
    // Each admission measures its bypass records first, exactly as the measuring step does.
    let mut admit = |ev: ImageEvent, bypasses: &[Bypass]| {
        let s = ev.event_string();
        events.extend(
            admission_events(&s, &ev.class, bypasses)
                .into_iter()
                .map(|(string, _)| string),
        );
    };
    if let Some(ev) = event_from_parts(&a.event)? {
        admit(ev, &a.with_bypass);
    }
    if !a.images.is_empty() {
        let opts = image_verify_options(&a)?;
        for img in &a.images {
            let (ev, bypasses) = image_admission(img, a.arch.clone(), &opts, &a.with_bypass)?;
            admit(ev, &bypasses);
        }
    }
    for d in &a.dirs {
        let (ev, bypasses) = super::predict_dir::dir_admission(d, &a.dir_class, &a.with_bypass)?;
        admit(ev, &bypasses);
    }
    if events.is_empty() {
        return Err(op_err(
            "nothing to predict: give --image IMG, --dir DIR, --event STRING or --class/--name/--root-hash",
        ));
    }
    let values = pcr::predict(pcr_n, &banks, &bases, &events).map_err(op_err)?;
    if a.json {
        let m: Map<String, Value> = values
            .iter()
            .map(|(b, v)| (b.name().to_string(), Value::String(hex::encode(v))))
            .collect();
        println!("{}", json!({"pcr": pcr_n, "events": events, "banks": m}));
    } else {
        let grouped: Vec<_> = values
            .into_iter()
            .map(|(b, v)| (b, vec![(pcr_n, v)]))
            .collect();
        print_values(&grouped, false);
    }
    Ok(())
}

fn image_verify_options(a: &PredictArgs) -> Result<VerifyOptions, super::CliError> {
    let trust =
        crate::host::trust_store(&a.root, &a.trust).map_err(|e| op_err(format!("--trust: {e}")))?;
    let policy = crate::host::image_policy(a.image_policy.as_deref())
        .map_err(|e| op_err(format!("--image-policy: {e}")))?;
    let host_arch = a.arch.clone().unwrap_or_else(super::image::host_arch);
    Ok(VerifyOptions {
        trust,
        policy,
        class: None,
        // Release tooling predicts for hosts it is not running on: extension-release must be
        // present, but is not matched against this machine.
        host: None,
        host_arch,
        scope: Scope::System,
        read_release: true,
        data: DataCheck::Here,
    })
}

/// Verifies an image and returns what admitting it would measure: its event and its bypasses, in
/// the measuring step's order. It goes through the same token derivation as the merge, so the
/// trust facts and bypasses cannot disagree. An image that does not verify is never measured,
/// so predicting for it is a failed check (exit 1).
fn image_admission(
    path: &Path,
    arch: Option<String>,
    opts: &VerifyOptions,
    with_bypass: &[Bypass],
) -> Result<(ImageEvent, Vec<Bypass>), super::CliError> {
    let f = std::fs::File::open(path).map_err(|e| op_err(format!("{}: {e}", path.display())))?;
    let d = Dissected::open(f, path, &DissectOptions { arch })
        .map_err(|e| op_err(format!("{}: {e}", path.display())))?;
    let (_, res) = verify(d, opts);
    let v = res.map_err(|e| {
        failed(format!(
            "{}: {e}; an image that does not verify is never measured",
            path.display()
        ))
    })?;
    let class = v.get().class;
    // The image's own name (release name, version cut off), as predictions always used.
    let name = v.get().name.clone();
    // What the pipeline adds to the token itself; the rest belongs to the measuring context.
    let (own, context): (Vec<Bypass>, Vec<Bypass>) = with_bypass
        .iter()
        .partition(|b| **b == Bypass::SkipReleaseCheck);
    let info = crate::image::verify::activated(
        v,
        crate::image::AdmitAs {
            name,
            kind: crate::image::ImageKind::Raw,
            path: path.to_path_buf(),
            class,
            nextroot: false,
            bypasses: own,
        },
    );
    let ev = info.get().event();
    ev.validate()
        .map_err(|e| op_err(format!("{}: cannot be measured: {e}", path.display())))?;
    Ok((
        ev,
        crate::measure::step::all_bypasses(info.get().bypasses(), &context),
    ))
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

//! `verity attest ak create | quote | check`: the attestation key, TPM quotes in Keylime's form,
//! and the offline check of a quote against a policy. A failed check is exit 1 and names the
//! check (signature, nonce, pcr-digest, pcr-policy, event-log-replay); anything that stops the
//! command from checking (missing file, bad AK or policy, TPM unreachable) is exit 2.

use super::tpm::{parse_bank, TpmArg};
use super::{failed, op_err, CliResult};
use crate::attest::check::CheckReport;
use crate::attest::files::{check_files, CheckInput};
use crate::attest::{ak_create, take_quote};
use crate::digest::HashAlg;
use crate::hex;
use crate::measure::TpmSpec;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Command {
    /// Attestation key, TPM quotes for a remote verifier (Keylime), and their offline check.
    #[command(subcommand)]
    Attest(AttestCommand),
}

#[derive(Subcommand)]
pub enum AttestCommand {
    /// The attestation key (AK).
    #[command(subcommand)]
    Ak(AkCommand),
    /// TPM2_Quote over PCRs with the AK, written as files and as a Keylime quote line.
    #[command(disable_help_flag = true)]
    Quote(QuoteArgs),
    /// Check a quote offline: signature, nonce, PCR digest, PCR policy, event-log replay.
    #[command(disable_help_flag = true)]
    Check(CheckArgs),
}

#[derive(Subcommand)]
pub enum AkCommand {
    /// Create an AK under the endorsement key (RSA 2048, RSASSA-SHA256, restricted signing, as
    /// tpm2_createak), or check that the one in --out loads on this TPM.
    #[command(disable_help_flag = true)]
    Create(AkCreateArgs),
}

#[derive(Args, Debug)]
pub struct AkCreateArgs {
    #[command(flatten)]
    pub tpm: TpmArg,
    /// Directory for ak.pub (TPM2B_PUBLIC), ak.priv, ak.name and ek.pub.
    #[arg(long)]
    pub out: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct QuoteArgs {
    /// The AK directory made by `verity attest ak create`.
    #[arg(long)]
    pub ak: PathBuf,
    /// The verifier's nonce (text, as Keylime sends it; 1-64 bytes).
    #[arg(long)]
    pub nonce: String,
    /// PCRs to quote, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub pcrs: Vec<u32>,
    /// PCR bank.
    #[arg(long, default_value = "sha256", value_parser = parse_bank)]
    pub bank: HashAlg,
    #[command(flatten)]
    pub tpm: TpmArg,
    /// Event log to send along (read under its lock, so it matches the quoted PCRs).
    #[arg(long = "event-log")]
    pub event_log: Option<PathBuf>,
    /// Directory for quote.msg, quote.sig, quote.pcrs, keylime-quote.txt (and the log).
    #[arg(long)]
    pub out: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The registered AK's public area (ak.pub, TPM2B_PUBLIC).
    #[arg(long)]
    pub ak: PathBuf,
    /// The nonce the verifier sent.
    #[arg(long)]
    pub nonce: String,
    /// The quote directory (or a file holding one Keylime quote line).
    #[arg(long)]
    pub quote: PathBuf,
    /// The policy: a Keylime tpm_policy JSON (`verity pcr predict --format keylime`).
    #[arg(long)]
    pub policy: PathBuf,
    /// PCR bank the policy's values are in.
    #[arg(long, default_value = "sha256", value_parser = parse_bank)]
    pub bank: HashAlg,
    /// Hash the quote must be signed with (Keylime's hash_alg).
    #[arg(long = "hash-alg", default_value = "sha256", value_parser = parse_bank)]
    pub hash_alg: HashAlg,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

fn spec(t: &TpmArg) -> Result<TpmSpec, super::CliError> {
    TpmSpec::parse(&t.tpm).map_err(op_err)
}

/// Runs one command of this group.
pub fn run(cmd: Command) -> CliResult {
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+NONE");
    }
    let Command::Attest(c) = cmd;
    match c {
        AttestCommand::Ak(AkCommand::Create(a)) => create(a),
        AttestCommand::Quote(a) => quote(a),
        AttestCommand::Check(a) => check(a),
    }
}

fn create(a: AkCreateArgs) -> CliResult {
    let info = ak_create(&spec(&a.tpm)?, &a.out).map_err(op_err)?;
    if a.json {
        println!(
            "{}",
            json!({"created": info.created, "name": info.name, "key": info.key,
                   "dir": a.out, "files": info.files})
        );
    } else {
        println!(
            "{} attestation key {} ({}) in {}",
            if info.created { "Created" } else { "Loaded" },
            info.name,
            info.key,
            a.out.display()
        );
    }
    Ok(())
}

fn quote(a: QuoteArgs) -> CliResult {
    let out = take_quote(
        &spec(&a.tpm)?,
        &a.ak,
        a.nonce.as_bytes(),
        a.bank,
        &a.pcrs,
        a.event_log.as_deref(),
        &a.out,
    )
    .map_err(op_err)?;
    let pcrs: serde_json::Map<String, Value> = out
        .values
        .values
        .iter()
        .map(|(_, p, v)| (p.to_string(), Value::String(hex::encode(v))))
        .collect();
    if a.json {
        println!(
            "{}",
            json!({"quote": out.line, "bank": a.bank.name(), "pcrs": pcrs, "dir": a.out,
                   "eventLogRecords": out.log_records, "resetCount": out.reset_count})
        );
    } else {
        println!("{}", out.line);
        for (p, v) in &pcrs {
            eprintln!(
                "  PCR {p:>2} {}: {}",
                a.bank.name(),
                v.as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

fn check(a: CheckArgs) -> CliResult {
    let report = check_files(&CheckInput {
        ak: &a.ak,
        nonce: a.nonce.as_bytes(),
        quote: &a.quote,
        policy: &a.policy,
        hash: a.hash_alg,
        bank: a.bank,
    })
    .map_err(op_err)?;
    print_report(&report, a.json);
    match report.first_failure() {
        None => Ok(()),
        Some((c, why)) => Err(failed(format!(
            "{}: quote check '{}' failed: {why}",
            a.quote.display(),
            c.name()
        ))),
    }
}

fn print_report(r: &CheckReport, json_out: bool) {
    if json_out {
        let checks: Vec<Value> = r
            .results
            .iter()
            .map(|(c, o)| json!({"check": c.name(), "result": o.word(), "detail": o.detail()}))
            .collect();
        println!(
            "{}",
            json!({"valid": r.ok(), "failed": r.first_failure().map(|(c, _)| c.name()),
                   "checks": checks})
        );
        return;
    }
    for (c, o) in &r.results {
        println!("{:<17} {:<7} {}", c.name(), o.word(), o.detail());
    }
    println!(
        "{}",
        match r.first_failure() {
            None => "quote valid".to_string(),
            Some((c, _)) => format!("quote INVALID: {}", c.name()),
        }
    );
}

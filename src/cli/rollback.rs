//! `verity rollback raise | lower | show | epoch init|advance|show`: the version floors kept in
//! `/var/lib/verity/rollback.json` and the TPM epoch (see [`crate::rollback`]). Every failure
//! here is exit 2: these commands change or show state, they do not check an image.

use super::{op_err, CliResult};
use crate::measure::{open_tpm, EventLog, DEFAULT_EVENT_LOG, DEFAULT_TPM};
use crate::rollback::epoch::{self, Epoch};
use crate::rollback::{ops, Change, Class, FloorStore};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Command {
    /// Rollback protection: version floors and the TPM epoch.
    Rollback {
        #[command(subcommand)]
        cmd: RollbackCmd,
    },
}

#[derive(Subcommand)]
pub enum RollbackCmd {
    /// Raise the floor of NAME to VERSION: older images of that name are refused from now on.
    Raise(FloorArgs),
    /// Lower a floor (a bypass: measured into the class's PCR and the event log first).
    Lower(LowerArgs),
    /// List the floors.
    Show(ShowArgs),
    /// The TPM epoch (an NV counter): init, advance, show.
    Epoch {
        #[command(subcommand)]
        cmd: EpochCmd,
    },
}

#[derive(Subcommand)]
pub enum EpochCmd {
    /// Define the counter and its base (epoch 0); finishes a half-done init, keeps an existing one.
    Init(EpochArgs),
    /// Add one to the epoch: images with a lower VERITY_EPOCH= are refused from now on, for good.
    Advance(EpochArgs),
    /// Print the epoch, the counter and its base.
    Show(EpochArgs),
}

#[derive(Args)]
pub struct FloorArgs {
    /// Image name (the extension's name, without version: foo for foo_1.2.raw).
    pub name: String,
    /// The version (as in IMAGE_VERSION=), compared with systemd's version ordering.
    pub version: String,
    /// sysext, confext or root.
    #[arg(long, default_value = "sysext")]
    pub class: String,
    /// Operate on the system under DIR (its var/lib/verity/rollback.json).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
}

#[derive(Args)]
pub struct LowerArgs {
    #[command(flatten)]
    pub floor: FloorArgs,
    /// Required: lowering a floor lets older images back in.
    #[arg(long)]
    pub dangerous_lower_floor: bool,
    /// TPM to measure the lowering into: device:/dev/tpmrm0 or swtpm:host=H,port=P.
    #[arg(long, default_value = DEFAULT_TPM)]
    pub tpm: String,
    /// Event log the lowering is recorded in.
    #[arg(long = "event-log", default_value = DEFAULT_EVENT_LOG)]
    pub event_log: PathBuf,
    /// PCR to extend (default: the class's, 13 sysext, 12 confext, 15 root).
    #[arg(long)]
    pub pcr: Option<u32>,
}

#[derive(Args)]
pub struct ShowArgs {
    /// Operate on the system under DIR.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct EpochArgs {
    /// TPM: device:/dev/tpmrm0 or swtpm:host=H,port=P.
    #[arg(long, default_value = DEFAULT_TPM)]
    pub tpm: String,
    /// The counter's NV index (owner range; its base is the next index).
    #[arg(long = "nv-index", default_value = "0x01900000", value_parser = parse_index)]
    pub nv_index: u32,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

fn parse_index(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?} is not an NV index (0x01900000): {e}"))
}

/// Runs a rollback command.
pub fn run(cmd: Command) -> CliResult {
    // As for the measuring commands: libtss2's own error lines say less than ours.
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+NONE");
    }
    let Command::Rollback { cmd } = cmd;
    match cmd {
        RollbackCmd::Raise(a) => raise(a),
        RollbackCmd::Lower(a) => lower(a),
        RollbackCmd::Show(a) => show(a),
        RollbackCmd::Epoch { cmd } => epoch_cmd(cmd),
    }
}

fn class_arg(s: &str) -> Result<Class, super::CliError> {
    Class::from_name(s)
        .ok_or_else(|| op_err(format!("--class: '{s}' is not sysext, confext or root")))
}

fn raise(a: FloorArgs) -> CliResult {
    let class = class_arg(&a.class)?;
    let store = FloorStore::under_root(&a.root);
    let change = ops::raise(&store, class, &a.name, &a.version).map_err(op_err)?;
    let what = format!("floor of {class} {}", a.name);
    let line = match &change {
        Change::Set { to } => format!("set the {what} to {to}"),
        Change::Raised { from, to } => format!("raised the {what} from {from} to {to}"),
        Change::Unchanged { floor } => format!("the {what} already is {floor}"),
        Change::Lowered { .. } => unreachable!("raise never lowers"),
    };
    // One line per change, on stderr, so a unit's journal keeps it.
    eprintln!("verity: rollback: {line} ({})", store.path().display());
    Ok(())
}

fn lower(a: LowerArgs) -> CliResult {
    let class = class_arg(&a.floor.class)?;
    if !a.dangerous_lower_floor {
        return Err(op_err(
            "lowering a floor lets older, possibly vulnerable images back in; say so with \
             --dangerous-lower-floor (the lowering is measured and written to the event log)",
        ));
    }
    let store = FloorStore::under_root(&a.floor.root);
    let pcr = a.pcr.unwrap_or(class.default_pcr());
    let log = EventLog::new(&a.event_log);
    let done = ops::lower(
        &store,
        class,
        &a.floor.name,
        &a.floor.version,
        &log,
        pcr,
        || open_tpm(&a.tpm),
    )
    .map_err(op_err)?;
    let Change::Lowered { from, to } = &done.change else {
        unreachable!("a lowering that succeeded lowered");
    };
    eprintln!(
        "verity: rollback: LOWERED the floor of {class} {} from {from} to {to} (--dangerous-lower-floor; \
         measured into PCR {} as {:?}, recorded in {}) ({})",
        a.floor.name,
        done.record.pcr,
        done.record.event,
        log.path().display(),
        store.path().display()
    );
    Ok(())
}

fn show(a: ShowArgs) -> CliResult {
    let store = FloorStore::under_root(&a.root);
    let floors = store.load().map_err(op_err)?;
    if a.json {
        let list: Vec<_> = floors
            .iter()
            .map(|(c, n, v)| json!({"class": c.name(), "name": n, "version": v}))
            .collect();
        println!(
            "{}",
            json!({"file": store.path().display().to_string(), "floors": list})
        );
        return Ok(());
    }
    if floors.is_empty() {
        println!("No floors ({}).", store.path().display());
        return Ok(());
    }
    let w = floors
        .iter()
        .map(|(_, n, _)| n.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:<8} {:<w$} FLOOR", "CLASS", "NAME");
    for (c, n, v) in floors.iter() {
        println!("{:<8} {n:<w$} {v}", c.name());
    }
    Ok(())
}

fn print_epoch(e: Option<&Epoch>, index: u32, json_out: bool) {
    if json_out {
        let v = match e {
            Some(e) => json!({"index": format!("{index:#010x}"), "epoch": e.epoch,
                              "counter": e.counter, "base": e.base,
                              "baseIndex": format!("{:#010x}", index + 1)}),
            None => json!({"index": format!("{index:#010x}"), "epoch": null}),
        };
        println!("{v}");
        return;
    }
    match e {
        Some(e) => {
            println!("Epoch:\t{}", e.epoch);
            println!("Counter:\t{} (NV index {index:#010x})", e.counter);
            println!("Base:\t{} (NV index {:#010x})", e.base, index + 1);
        }
        None => println!(
            "No epoch: NV index {index:#010x} is not defined (`verity rollback epoch init` creates it)."
        ),
    }
}

fn epoch_cmd(cmd: EpochCmd) -> CliResult {
    let (a, verb) = match &cmd {
        EpochCmd::Init(a) => (a, "init"),
        EpochCmd::Advance(a) => (a, "advance"),
        EpochCmd::Show(a) => (a, "show"),
    };
    let index = a.nv_index;
    let mut nv = epoch::open_nv(&a.tpm).map_err(|e| op_err(format!("epoch {verb}: {e}")))?;
    let err = |e: epoch::EpochError| op_err(format!("epoch {verb}: {e}"));
    match &cmd {
        EpochCmd::Init(_) => {
            let (e, changed) = epoch::init(nv.as_mut(), index).map_err(err)?;
            if !changed {
                eprintln!("verity: rollback: the epoch at NV index {index:#010x} already exists; unchanged");
            }
            print_epoch(Some(&e), index, a.json);
        }
        EpochCmd::Advance(_) => {
            let e = epoch::advance(nv.as_mut(), index).map_err(err)?;
            eprintln!(
                "verity: rollback: advanced the TPM epoch to {} (NV index {index:#010x}); images with a lower VERITY_EPOCH= are refused from now on",
                e.epoch
            );
            print_epoch(Some(&e), index, a.json);
        }
        EpochCmd::Show(_) => {
            let e = epoch::read(nv.as_mut(), index).map_err(err)?;
            print_epoch(e.as_ref(), index, a.json);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nv_index_argument() {
        assert_eq!(
            parse_index("0x01900000"),
            Ok(crate::rollback::epoch::DEFAULT_EPOCH_INDEX)
        );
        assert_eq!(parse_index("26214400"), Ok(0x0190_0000));
        assert!(parse_index("0xzz").is_err());
    }
}

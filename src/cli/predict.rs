//! `verity pcr predict`: parses what to predict for (literal events, an event by its parts,
//! images, directory extensions, bypasses) and prints the values; what each admission measures
//! is `measure::predict`, the bank math `measure::pcr::predict`, the keylime/pcrlock export
//! `predict_export`.

use super::tpm::{event_from_parts, parse_bank, print_values, EventParts, ALL_BANKS};
use super::{failed, op_err, CliError, CliResult};
use crate::digest::HashAlg;
use crate::gate::{Bypass, ImageEvent};
use crate::hex;
use crate::image::release::Scope;
use crate::image::verify::{DataCheck, VerifyOptions};
use crate::image::Class;
use crate::measure::pcr;
use crate::measure::predict::{admission_strings, dir_admission, image_admission, PredictError};
use clap::Args;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// A prediction error as the CLI reports it: an image that does not verify is a failed check.
fn cli_err(e: PredictError) -> CliError {
    match e {
        PredictError::NotVerified(m) => failed(m),
        PredictError::Unusable(m) => op_err(m),
    }
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

fn parse_bypass(s: &str) -> Result<Bypass, String> {
    Bypass::from_name(s).ok_or_else(|| {
        format!(
            "unknown bypass {s:?} (one of {})",
            Bypass::ALL.map(|b| b.name()).join(", ")
        )
    })
}

/// `pcr predict`: text/json here, keylime/pcrlock through `predict_export`.
pub fn run(a: PredictArgs) -> CliResult {
    if a.format != super::predict_export::Format::Text {
        let mut images = Vec::new();
        if let Some(ev) = event_from_parts(&a.event)? {
            images.push(ev);
        }
        if !a.images.is_empty() {
            let opts = image_verify_options(&a)?;
            for img in &a.images {
                images.push(
                    image_admission(img, a.arch.clone(), &opts, &[])
                        .map_err(cli_err)?
                        .0,
                );
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
        events.extend(admission_strings(&ev, bypasses));
    };
    if let Some(ev) = event_from_parts(&a.event)? {
        admit(ev, &a.with_bypass);
    }
    if !a.images.is_empty() {
        let opts = image_verify_options(&a)?;
        for img in &a.images {
            let (ev, bypasses) =
                image_admission(img, a.arch.clone(), &opts, &a.with_bypass).map_err(cli_err)?;
            admit(ev, &bypasses);
        }
    }
    let dir_class = Class::from_name(&a.dir_class)
        .filter(|c| matches!(c, Class::Sysext | Class::Confext))
        .ok_or_else(|| op_err(format!("--dir-class {}: sysext or confext", a.dir_class)))?;
    for d in &a.dirs {
        let (ev, bypasses) = dir_admission(d, dir_class, &a.with_bypass)
            .map_err(|e| op_err(format!("--dir {e}")))?;
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

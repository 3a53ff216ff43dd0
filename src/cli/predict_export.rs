//! `verity pcr predict --format keylime|pcrlock`: prints or writes the policy the library
//! computes from the allowed images (Keylime `tpm_policy` JSON, or systemd-pcrlock component
//! files). Parsing and output only; the prediction is `attest::export`.

use super::predict::PredictArgs;
use super::tpm::ALL_BANKS;
use super::{op_err, CliError, CliResult};
use crate::attest::export::{keylime_policy, pcrlock_components, plans};
use crate::attest::files;
use crate::attest::pcrlock::Variant;
use crate::digest::HashAlg;
use crate::hex;
use crate::measure::pcr;
use crate::measure::ImageEvent;
use std::path::Path;

/// What `pcr predict` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Values per bank (with --json: a JSON object).
    Text,
    /// A Keylime tpm_policy: {"13": ["<hex>", ...]}.
    Keylime,
    /// systemd-pcrlock component files (uapi .pcrlock JSON).
    Pcrlock,
}

/// Runs the keylime/pcrlock forms; `images` are the verified images' events (and the
/// --class/--name/--root-hash event), in command-line order.
pub fn run(a: &PredictArgs, images: &[ImageEvent]) -> CliResult {
    let ps = plans(a.pcr, &a.events, images).map_err(op_err)?;
    if ps.is_empty() {
        return Err(op_err(
            "nothing to predict: give --image IMG (repeat it for each allowed version), \
             --event STRING with --pcr, or --class/--name/--root-hash",
        ));
    }
    match a.format {
        Format::Keylime => keylime(a, &ps),
        Format::Pcrlock => pcrlock(a, &ps),
        Format::Text => unreachable!("text is printed by pcr predict itself"),
    }
}

fn keylime(a: &PredictArgs, ps: &[crate::attest::policy::PcrPlan]) -> CliResult {
    let bank = match a.banks.as_slice() {
        [] => HashAlg::Sha256,
        [b] => *b,
        _ => {
            return Err(op_err(
                "a Keylime policy holds one bank (its hash_alg): give at most one --bank",
            ))
        }
    };
    let base = match a.bases.as_slice() {
        [] => None,
        [b] if ps.len() == 1 => {
            let v = hex::decode(b.trim_start_matches("0x"))
                .map_err(|e| op_err(format!("--base {b}: {e}")))?;
            if pcr::bank_for_length(v.len()) != Ok(bank) {
                return Err(op_err(format!("--base {b} is not a {bank} value")));
            }
            Some(v)
        }
        _ => {
            return Err(op_err(
                "--base applies to one PCR: give one --base of the policy's bank and --pcr",
            ))
        }
    };
    let pol = keylime_policy(ps, bank, base.as_deref()).map_err(op_err)?;
    let text = pol.to_json();
    match &a.output {
        Some(p) => {
            write_file(p, format!("{text}\n").as_bytes())?;
        }
        None => println!("{text}"),
    }
    Ok(())
}

fn write_file(p: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
    let name = p
        .file_name()
        .ok_or_else(|| op_err(format!("{}: not a file name", p.display())))?;
    files::write(
        dir.unwrap_or(Path::new(".")),
        &name.to_string_lossy(),
        bytes,
    )
    .map_err(op_err)?;
    Ok(())
}

fn pcrlock(a: &PredictArgs, ps: &[crate::attest::policy::PcrPlan]) -> CliResult {
    if !a.bases.is_empty() {
        return Err(op_err(
            "--base does not apply to pcrlock files: they hold the records, and systemd-pcrlock \
             replays them after the components before them",
        ));
    }
    let banks = if a.banks.is_empty() {
        ALL_BANKS.to_vec()
    } else {
        a.banks.clone()
    };
    let comps = pcrlock_components(ps, &banks);
    let single = comps.iter().all(|c| c.variants.len() == 1);
    let to_dir = match &a.output {
        None => false,
        Some(p) => !p.to_string_lossy().ends_with(".pcrlock"),
    };
    if !to_dir {
        if !single {
            return Err(op_err(
                "several allowed versions of an image need one pcrlock component per image with \
                 one variant per version: give --output DIR",
            ));
        }
        let all = Variant {
            records: comps
                .iter()
                .flat_map(|c| c.variants[0].1.records.clone())
                .collect(),
        };
        match &a.output {
            Some(p) => write_file(p, all.to_json().as_bytes())?,
            None => print!("{}", all.to_json()),
        }
        return Ok(());
    }
    let dir = a.output.as_ref().expect("to_dir has an output");
    std::fs::create_dir_all(dir).map_err(|e| op_err(format!("{}: {e}", dir.display())))?;
    for c in &comps {
        if c.variants.len() == 1 {
            files::write(
                dir,
                &format!("{}.pcrlock", c.name),
                c.variants[0].1.to_json().as_bytes(),
            )
            .map_err(op_err)?;
        } else {
            let d = dir.join(format!("{}.pcrlock.d", c.name));
            for (f, v) in &c.variants {
                std::fs::create_dir_all(&d).map_err(|e| op_err(format!("{}: {e}", d.display())))?;
                files::write(&d, f, v.to_json().as_bytes()).map_err(op_err)?;
            }
        }
        println!("{}", dir.join(&c.name).display());
    }
    Ok(())
}

//! Whether an existing dm-verity device may stand in for the one a call is about to create (issue
//! 12 point 3). Devices are named after the root hash, so a second activation finds the first; the
//! name proves nothing by itself. Pure core: the caller (`sys::dm`) reads the existing device's
//! table and flags, this module decides, and the decision is the whole of the trust logic.
//!
//! A device is reused only if its live table is the one this call would load (one `verity` target
//! from sector 0 over the same length; the same data and hash devices, block sizes, block count,
//! hash start, algorithm, root hash, salt and options), it is read-only and not suspended, and its
//! signature state covers what this call verified:
//!
//! | this call | existing device loaded | decision |
//! |---|---|---|
//! | no signature | with or without a signature | reuse |
//! | signature verified in userspace (trust store) | with or without a signature | reuse: the table's root hash is the one just verified |
//! | signature for the kernel to check, not verified in userspace | either | refuse: nothing has checked this signature, and reusing a device would skip the kernel's check |
//!
//! The last row is what `verity open --root-hash-signature GARBAGE` hits when a device for the
//! same root hash exists: exit 1, never a silent success.

use std::fmt;

/// What the calling activation has established about the root hash's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureState {
    /// No signature was given: the caller takes the root hash as it is.
    None,
    /// A signature was checked in userspace against the host's trust store in this call.
    UserspaceVerified,
    /// A signature is to be checked by the kernel when the table is loaded; nothing has checked it.
    KernelToCheck,
}

/// One target of a live table, as `DM_TABLE_STATUS` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// First sector.
    pub start: u64,
    /// Length in sectors.
    pub length: u64,
    /// Target type (`verity`).
    pub kind: String,
    /// The parameters after the type.
    pub params: String,
}

/// The existing device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    /// Its live table.
    pub targets: Vec<Target>,
    /// `DM_READONLY` is set.
    pub read_only: bool,
    /// `DM_SUSPEND` is set (reads would block).
    pub suspended: bool,
}

/// The device this call would create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// Table length in sectors.
    pub length: u64,
    /// The verity parameters without a signature key (see [`super::table::params`]).
    pub params: &'a str,
    /// What this call verified.
    pub signature: SignatureState,
}

/// Why an existing device is not reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its table is not the one this call would load.
    Table { have: String, want: String },
    /// It is writable.
    Writable,
    /// It is suspended.
    Suspended,
    /// This call carries a signature that nobody has checked; the existing device was loaded
    /// with (`existing_signed`) or without a signature of its own.
    SignatureUnchecked { existing_signed: bool },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Table { have, want } => {
                write!(f, "it has a different table (have `{have}`, want `{want}`)")
            }
            Refusal::Writable => write!(f, "it is not read-only"),
            Refusal::Suspended => write!(f, "it is suspended"),
            Refusal::SignatureUnchecked { existing_signed } => write!(
                f,
                "it was loaded {}, and the signature given now has not been checked by anyone: \
                 reusing it would skip the kernel's check (verify the signature in userspace \
                 with --trust DIR, or close the device first)",
                if *existing_signed {
                    "with a signature of its own"
                } else {
                    "without a signature"
                }
            ),
        }
    }
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Share the device. `kernel_signature`: the kernel checked a signature when it loaded it.
    Reuse { kernel_signature: bool },
    /// Do not use it.
    Refuse(Refusal),
}

/// The positional fields and options of a verity table, for comparing an existing device with a
/// request: hex in lower case, options sorted (the kernel may reorder them), and the signature key
/// left out (the kernel always prints it back; whether it is there is the signature state).
pub fn table_identity(params: &str) -> Vec<String> {
    let words: Vec<String> = params
        .split_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let mut id: Vec<String> = words.iter().take(10).cloned().collect();
    let mut opts: Vec<String> = Vec::new();
    let mut i = 11;
    while i < words.len() {
        match words[i].as_str() {
            "root_hash_sig_key_desc" => i += 2,
            w @ ("use_fec_from_device" | "fec_start" | "fec_blocks" | "fec_roots") => {
                opts.push(format!(
                    "{w}={}",
                    words.get(i + 1).cloned().unwrap_or_default()
                ));
                i += 2;
            }
            w => {
                opts.push(w.to_string());
                i += 1;
            }
        }
    }
    opts.sort();
    id.extend(opts);
    id
}

/// Whether a table was loaded with a root-hash signature (the kernel checked it at load time).
pub fn has_signature(params: &str) -> bool {
    params
        .split_whitespace()
        .skip(10)
        .any(|w| w == "root_hash_sig_key_desc")
}

/// Decides whether `existing` may stand in for `wanted` (see the module docs).
pub fn decide(existing: &Existing, wanted: &Wanted<'_>) -> Decision {
    let same_table = match existing.targets.as_slice() {
        [t] => {
            t.start == 0
                && t.length == wanted.length
                && t.kind == "verity"
                && table_identity(&t.params) == table_identity(wanted.params)
        }
        _ => false,
    };
    if !same_table {
        let have = existing
            .targets
            .iter()
            .map(|t| format!("{} {} {} {}", t.start, t.length, t.kind, t.params))
            .collect::<Vec<_>>()
            .join("; ");
        return Decision::Refuse(Refusal::Table {
            have,
            want: format!("0 {} verity {}", wanted.length, wanted.params),
        });
    }
    if !existing.read_only {
        return Decision::Refuse(Refusal::Writable);
    }
    if existing.suspended {
        return Decision::Refuse(Refusal::Suspended);
    }
    let existing_signed = has_signature(&existing.targets[0].params);
    match wanted.signature {
        SignatureState::None | SignatureState::UserspaceVerified => Decision::Reuse {
            kernel_signature: existing_signed,
        },
        SignatureState::KernelToCheck => {
            Decision::Refuse(Refusal::SignatureUnchecked { existing_signed })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "f58e1da6a50fd0093382375ae01c9a03d9aa4d13e9651e046f18b93571973adf";
    const SALT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A table line for data `d`, hash `h`, hash start `hs` and root `root`, plus `opts`.
    fn line(d: &str, h: &str, hs: u64, root: &str, opts: &str) -> String {
        format!("1 {d} {h} 4096 4096 300 {hs} sha256 {root} {SALT}{opts}")
    }

    fn want() -> String {
        line("7:0", "7:1", 1, ROOT, "")
    }

    fn dev(params: &str) -> Existing {
        Existing {
            targets: vec![Target {
                start: 0,
                length: 2400,
                kind: "verity".into(),
                params: params.into(),
            }],
            read_only: true,
            suspended: false,
        }
    }

    fn decide_for(e: &Existing, sig: SignatureState) -> Decision {
        decide(
            e,
            &Wanted {
                length: 2400,
                params: &want(),
                signature: sig,
            },
        )
    }

    const SIGNED: &str = " 2 root_hash_sig_key_desc verity:x";

    #[test]
    fn point3_signature_state_decides_reuse() {
        use SignatureState::*;
        let unsigned = dev(&want());
        let signed = dev(&line("7:0", "7:1", 1, ROOT, SIGNED));
        let reuse = |k| Decision::Reuse {
            kernel_signature: k,
        };
        let unchecked = |s| Decision::Refuse(Refusal::SignatureUnchecked { existing_signed: s });
        // (existing device, this call, decision)
        let rows: [(&Existing, SignatureState, Decision); 6] = [
            (&unsigned, None, reuse(false)),
            (&signed, None, reuse(true)),
            (&unsigned, UserspaceVerified, reuse(false)),
            (&signed, UserspaceVerified, reuse(true)),
            // The case: an identical unsigned device, a garbage signature for the kernel.
            (&unsigned, KernelToCheck, unchecked(false)),
            (&signed, KernelToCheck, unchecked(true)),
        ];
        for (i, (e, s, d)) in rows.into_iter().enumerate() {
            assert_eq!(decide_for(e, s), d, "row {i}");
        }
    }

    #[test]
    fn point3_any_table_difference_refuses() {
        let other_root = "00".repeat(32);
        let differing: Vec<(&str, String)> = vec![
            ("data device", line("7:9", "7:1", 1, ROOT, "")),
            ("hash device", line("7:0", "7:9", 1, ROOT, "")),
            ("hash start (offset)", line("7:0", "7:1", 2, ROOT, "")),
            ("root hash", line("7:0", "7:1", 1, &other_root, "")),
            (
                "block size",
                want().replacen(" 4096 4096 ", " 4096 512 ", 1),
            ),
            ("blocks", want().replacen(" 300 ", " 299 ", 1)),
            ("algorithm", want().replacen("sha256", "sha512", 1)),
            ("salt", want().replacen(SALT, "-", 1)),
            ("hash type", want().replacen("1 ", "0 ", 1)),
            (
                "an option",
                line("7:0", "7:1", 1, ROOT, " 1 ignore_corruption"),
            ),
            (
                "FEC",
                line(
                    "7:0",
                    "7:1",
                    1,
                    ROOT,
                    " 8 use_fec_from_device 7:2 fec_start 0 fec_blocks 304 fec_roots 2",
                ),
            ),
        ];
        for (what, params) in &differing {
            for sig in [
                SignatureState::None,
                SignatureState::UserspaceVerified,
                SignatureState::KernelToCheck,
            ] {
                assert!(
                    matches!(
                        decide_for(&dev(params), sig),
                        Decision::Refuse(Refusal::Table { .. })
                    ),
                    "{what} ({sig:?})"
                );
            }
        }
        // Target layout: length, start, type, more than one target, none.
        let base = dev(&want());
        let mut cases = Vec::new();
        let mut e = base.clone();
        e.targets[0].length = 2392;
        cases.push(("length", e));
        let mut e = base.clone();
        e.targets[0].start = 8;
        cases.push(("start", e));
        let mut e = base.clone();
        e.targets[0].kind = "linear".into();
        cases.push(("type", e));
        let mut e = base.clone();
        e.targets.push(e.targets[0].clone());
        cases.push(("two targets", e));
        let mut e = base.clone();
        e.targets.clear();
        cases.push(("no target", e));
        for (what, e) in cases {
            assert!(
                matches!(
                    decide_for(&e, SignatureState::None),
                    Decision::Refuse(Refusal::Table { .. })
                ),
                "{what}"
            );
        }
    }

    #[test]
    fn flags_refuse_and_the_kernels_spelling_matches() {
        let mut w = dev(&want());
        w.read_only = false;
        assert_eq!(
            decide_for(&w, SignatureState::UserspaceVerified),
            Decision::Refuse(Refusal::Writable)
        );
        let mut s = dev(&want());
        s.suspended = true;
        assert_eq!(
            decide_for(&s, SignatureState::None),
            Decision::Refuse(Refusal::Suspended)
        );
        // The kernel prints hex in lower case and options in its own order, with the key.
        let kernel = format!(
            "1 7:0 7:1 4096 4096 300 1 sha256 {} {SALT} 2 root_hash_sig_key_desc verity:abc",
            ROOT.to_ascii_uppercase()
        );
        assert_eq!(
            decide_for(&dev(&kernel), SignatureState::None),
            Decision::Reuse {
                kernel_signature: true
            }
        );
    }

    #[test]
    fn identity_ignores_option_order_case_and_signature_key() {
        let ours = "1 7:0 7:1 4096 4096 300 1 sha256 F58E 0123 10 use_fec_from_device 7:2 fec_start 0 fec_blocks 304 fec_roots 2 root_hash_sig_key_desc verity:x";
        let kernel = "1 7:0 7:1 4096 4096 300 1 sha256 f58e 0123 8 fec_roots 2 use_fec_from_device 7:2 fec_blocks 304 fec_start 0";
        assert_eq!(table_identity(ours), table_identity(kernel));
        assert!(has_signature(ours) && !has_signature(kernel));
        let other_dev = "1 7:3 7:1 4096 4096 300 1 sha256 f58e 0123";
        assert_ne!(table_identity(other_dev), table_identity(kernel));
        // A salt literally named like the option is a positional field, not the option.
        assert!(!has_signature(
            "1 7:0 7:1 4096 4096 300 1 sha256 f58e root_hash_sig_key_desc"
        ));
    }

    #[test]
    fn refusals_say_why() {
        let e = decide_for(&dev(&want()), SignatureState::KernelToCheck);
        let Decision::Refuse(r) = e else {
            panic!("{e:?}")
        };
        let m = r.to_string();
        assert!(
            m.contains("without a signature") && m.contains("--trust"),
            "{m}"
        );
    }
}

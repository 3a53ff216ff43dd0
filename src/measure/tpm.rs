//! The `Tpm` trait (the three operations measurement needs), the `--tpm` spec syntax, and
//! [`SoftTpm`], a software model computing the real `H(PCR || digest)` for tests of everything above
//! the TPM. The tss-esapi implementation is in [`super::esapi`].

use super::pcr::{check_pcr, extend, initial_value};
use crate::digest::HashAlg;
use std::collections::HashMap;
use thiserror::Error;

/// Default `--tpm`: the kernel's resource manager, shared safely between processes.
pub const DEFAULT_TPM: &str = "device:/dev/tpmrm0";

/// What went wrong talking to a TPM.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TpmError {
    #[error("bad TPM spec {spec:?}: {reason} (use device:/dev/tpmrm0 or swtpm:host=H,port=P)")]
    BadSpec { spec: String, reason: String },
    #[error(
        "cannot use TPM {spec}: this verity was built without the `tpm` feature (tss-esapi); \
         rebuild with --features tpm"
    )]
    NotBuilt { spec: String },
    #[error(
        "TPM {spec} is a simulator, not a TPM device: merges, the boot hook and soft-reboot \
         prepare measure only into a real TPM unless asked; {how} to use it anyway (tests and \
         demos only; every measurement then records the bypass)"
    )]
    Simulator { spec: String, how: String },
    #[error("cannot reach the TPM at {spec}: {reason}")]
    Unreachable { spec: String, reason: String },
    #[error("PCR {0} does not exist on this TPM (0-23)")]
    NoSuchPcr(u32),
    #[error("the {0} PCR bank is not active on this TPM")]
    BankNotActive(HashAlg),
    #[error("{bank} digest is {got} bytes, the bank needs {want}")]
    DigestLength {
        bank: HashAlg,
        got: usize,
        want: usize,
    },
    /// A request could not even be built; nothing was sent.
    #[error("cannot {op}: {reason}")]
    Invalid { op: &'static str, reason: String },
    /// The TPM answered with an error: the command was not executed and no PCR changed.
    #[error("the TPM refused {op}: {reason}")]
    Refused { op: &'static str, reason: String },
    /// The command may or may not have reached the TPM (connection lost, resource manager error).
    #[error("TPM {op} failed: {reason}")]
    Transport { op: &'static str, reason: String },
}

impl TpmError {
    /// True when the TPM certainly did not change state, so a measurement that failed with this
    /// error leaves the event log consistent.
    pub fn tpm_unchanged(&self) -> bool {
        !matches!(self, TpmError::Transport { .. })
    }
}

/// A TPM as measurement sees it. Object safe: the pipeline holds a `&mut dyn Tpm`.
pub trait Tpm {
    /// The PCR banks that have PCRs allocated, weakest first.
    fn active_banks(&mut self) -> Result<Vec<HashAlg>, TpmError>;
    /// The current value of `pcr` in `bank`.
    fn pcr_read(&mut self, pcr: u32, bank: HashAlg) -> Result<Vec<u8>, TpmError>;
    /// One TPM2_PCR_Extend with one digest per listed bank (banks not listed do not change).
    fn pcr_extend(&mut self, pcr: u32, digests: &[(HashAlg, Vec<u8>)]) -> Result<(), TpmError>;
}

/// Where the TPM is, parsed from `--tpm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmSpec {
    /// A character device (`/dev/tpmrm0`, `/dev/tpm0`).
    Device(String),
    /// A swtpm (MS-simulator protocol) over TCP; the control channel is `port + 1`.
    Swtpm { host: String, port: u16 },
}

impl TpmSpec {
    /// Parses `device:PATH` or `swtpm:host=H,port=P`. tss-esapi 7's own parser silently ignores
    /// keys it does not know (`path=` then connects to localhost:2321, a different TPM), so this
    /// one refuses anything but `host` and `port`.
    pub fn parse(spec: &str) -> Result<Self, TpmError> {
        let bad = |reason: &str| TpmError::BadSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
        match kind {
            "device" => {
                if rest.is_empty() {
                    Ok(Self::Device("/dev/tpmrm0".into()))
                } else if rest.starts_with('/') {
                    Ok(Self::Device(rest.into()))
                } else {
                    Err(bad("the device path must be absolute"))
                }
            }
            "swtpm" => {
                let (mut host, mut port) = (None, None);
                for kv in rest.split(',').filter(|s| !s.is_empty()) {
                    match kv.split_once('=') {
                        Some(("host", h)) if !h.is_empty() && host.is_none() => {
                            host = Some(h.to_string())
                        }
                        Some(("port", p)) if port.is_none() => {
                            port = Some(p.parse::<u16>().map_err(|_| bad("port is not 1-65534"))?)
                        }
                        Some(("path", _)) => {
                            return Err(bad(
                                "unix sockets are not supported by tss-esapi 7; run swtpm on \
                                 TCP and give host= and port=",
                            ))
                        }
                        _ => return Err(bad(&format!("unknown or repeated option {kv:?}"))),
                    }
                }
                let port = port.ok_or_else(|| bad("port= is required"))?;
                if port == 0 || port == u16::MAX {
                    return Err(bad("port is not 1-65534 (the control port is port+1)"));
                }
                Ok(Self::Swtpm {
                    host: host.unwrap_or_else(|| "127.0.0.1".into()),
                    port,
                })
            }
            _ => Err(bad("unknown kind")),
        }
    }
}

impl TpmSpec {
    /// A software simulator (swtpm), as opposed to a TPM device.
    pub fn is_simulator(&self) -> bool {
        matches!(self, Self::Swtpm { .. })
    }
}

/// Whether a `--tpm`/config string names a simulator (also the `mssim:` spelling, which
/// [`TpmSpec::parse`] refuses but a config may carry).
pub fn is_simulator_spec(spec: &str) -> bool {
    spec.starts_with("swtpm:") || spec.starts_with("mssim:") || spec == "swtpm"
}

/// Opens the TPM a production path (merge, refresh, the boot hook, soft-reboot prepare) measures
/// into. A simulator is refused unless `simulator_allowed` (`--dangerous-tpm-simulator`); then the
/// returned bypass is recorded with every measurement. `how` tells the user how to allow it.
pub fn open_production_tpm(
    spec: &str,
    simulator_allowed: bool,
    how: &str,
) -> Result<(Box<dyn Tpm>, Vec<crate::gate::Bypass>), TpmError> {
    let simulator = is_simulator_spec(spec) || TpmSpec::parse(spec)?.is_simulator();
    if simulator && !simulator_allowed {
        return Err(TpmError::Simulator {
            spec: spec.to_string(),
            how: how.to_string(),
        });
    }
    let tpm = open_tpm(spec)?;
    let bypasses = if simulator {
        vec![crate::gate::Bypass::TpmSimulator]
    } else {
        Vec::new()
    };
    Ok((tpm, bypasses))
}

impl std::fmt::Display for TpmSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Device(p) => write!(f, "device:{p}"),
            Self::Swtpm { host, port } => write!(f, "swtpm:host={host},port={port}"),
        }
    }
}

/// Opens the TPM named by `spec` (see [`TpmSpec::parse`]).
pub fn open_tpm(spec: &str) -> Result<Box<dyn Tpm>, TpmError> {
    let parsed = TpmSpec::parse(spec)?;
    #[cfg(feature = "tpm")]
    {
        Ok(Box::new(super::esapi::EsapiTpm::open(&parsed)?))
    }
    #[cfg(not(feature = "tpm"))]
    {
        Err(TpmError::NotBuilt {
            spec: parsed.to_string(),
        })
    }
}

/// A software TPM: the same values a real one computes, kept in memory, plus switches to make it
/// fail the way real ones do.
#[derive(Debug, Clone)]
pub struct SoftTpm {
    banks: Vec<HashAlg>,
    pcrs: HashMap<(u32, HashAlg), Vec<u8>>,
    /// Fail the next extend with this error (then behave again).
    pub fail_next_extend: Option<TpmError>,
    /// Fail every operation as an unreachable TPM.
    pub unreachable: bool,
    extends: usize,
}

impl SoftTpm {
    /// A freshly reset TPM with these banks active.
    pub fn new(banks: impl AsRef<[HashAlg]>) -> Self {
        let mut banks = banks.as_ref().to_vec();
        banks.sort_by_key(|b| b.digest_size());
        banks.dedup();
        Self {
            banks,
            pcrs: HashMap::new(),
            fail_next_extend: None,
            unreachable: false,
            extends: 0,
        }
    }

    /// How many extends succeeded.
    pub fn extend_count(&self) -> usize {
        self.extends
    }

    fn reachable(&self) -> Result<(), TpmError> {
        if self.unreachable {
            Err(TpmError::Unreachable {
                spec: "soft".into(),
                reason: "switched off".into(),
            })
        } else {
            Ok(())
        }
    }

    fn check(&self, pcr: u32, bank: HashAlg) -> Result<(), TpmError> {
        check_pcr(pcr).map_err(|_| TpmError::NoSuchPcr(pcr))?;
        if !self.banks.contains(&bank) {
            return Err(TpmError::BankNotActive(bank));
        }
        Ok(())
    }
}

impl Tpm for SoftTpm {
    fn active_banks(&mut self) -> Result<Vec<HashAlg>, TpmError> {
        self.reachable()?;
        Ok(self.banks.clone())
    }

    fn pcr_read(&mut self, pcr: u32, bank: HashAlg) -> Result<Vec<u8>, TpmError> {
        self.reachable()?;
        self.check(pcr, bank)?;
        Ok(self
            .pcrs
            .get(&(pcr, bank))
            .cloned()
            .unwrap_or_else(|| initial_value(pcr, bank)))
    }

    fn pcr_extend(&mut self, pcr: u32, digests: &[(HashAlg, Vec<u8>)]) -> Result<(), TpmError> {
        self.reachable()?;
        if let Some(e) = self.fail_next_extend.take() {
            return Err(e);
        }
        // Validate everything first: a real TPM applies a command entirely or not at all.
        for (bank, d) in digests {
            self.check(pcr, *bank)?;
            if d.len() != bank.digest_size() {
                return Err(TpmError::DigestLength {
                    bank: *bank,
                    got: d.len(),
                    want: bank.digest_size(),
                });
            }
        }
        for (bank, d) in digests {
            let old = self.pcr_read(pcr, *bank)?;
            self.pcrs.insert((pcr, *bank), extend(*bank, &old, d));
        }
        self.extends += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex;

    #[test]
    fn soft_tpm_known_values() {
        let mut t = SoftTpm::new([HashAlg::Sha256, HashAlg::Sha1]);
        assert_eq!(
            t.active_banks().unwrap(),
            vec![HashAlg::Sha1, HashAlg::Sha256]
        );
        assert_eq!(t.pcr_read(11, HashAlg::Sha256).unwrap(), vec![0; 32]);
        t.pcr_extend(11, &[(HashAlg::Sha256, HashAlg::Sha256.digest(b"foobar"))])
            .unwrap();
        assert_eq!(
            hex::encode(&t.pcr_read(11, HashAlg::Sha256).unwrap()),
            "b6d90fdfddb4df16198e2b8ede9bdd47413b4c5dbb100ea0287b45bde42e4e41"
        );
        // Banks not listed in the extend stay put.
        assert_eq!(t.pcr_read(11, HashAlg::Sha1).unwrap(), vec![0; 20]);
        assert_eq!(t.pcr_read(17, HashAlg::Sha1).unwrap(), vec![0xff; 20]);
        assert_eq!(t.extend_count(), 1);
    }

    #[test]
    fn soft_tpm_refuses_like_a_tpm() {
        let mut t = SoftTpm::new([HashAlg::Sha1]);
        assert_eq!(
            t.pcr_read(13, HashAlg::Sha256),
            Err(TpmError::BankNotActive(HashAlg::Sha256))
        );
        assert_eq!(t.pcr_read(24, HashAlg::Sha1), Err(TpmError::NoSuchPcr(24)));
        // All or nothing: a bad second digest leaves the first bank unchanged.
        let r = t.pcr_extend(
            13,
            &[(HashAlg::Sha1, vec![1; 20]), (HashAlg::Sha1, vec![1; 19])],
        );
        assert!(matches!(r, Err(TpmError::DigestLength { got: 19, .. })));
        assert_eq!(t.pcr_read(13, HashAlg::Sha1).unwrap(), vec![0; 20]);
        t.unreachable = true;
        assert!(matches!(
            t.active_banks(),
            Err(TpmError::Unreachable { .. })
        ));
    }

    #[test]
    fn spec_parsing() {
        let ok: &[(&str, TpmSpec)] = &[
            ("device:/dev/tpmrm0", TpmSpec::Device("/dev/tpmrm0".into())),
            ("device", TpmSpec::Device("/dev/tpmrm0".into())),
            (
                "swtpm:host=127.0.0.1,port=2321",
                TpmSpec::Swtpm {
                    host: "127.0.0.1".into(),
                    port: 2321,
                },
            ),
            (
                "swtpm:port=4000",
                TpmSpec::Swtpm {
                    host: "127.0.0.1".into(),
                    port: 4000,
                },
            ),
        ];
        for (s, want) in ok {
            assert_eq!(&TpmSpec::parse(s).unwrap(), want, "{s}");
        }
        for (s, why) in [
            ("swtpm:path=/tmp/sock", "unix sockets"),
            ("swtpm:host=x", "port= is required"),
            ("swtpm:port=2321,port=2322", "repeated"),
            ("swtpm:port=65535", "not 1-65534"),
            ("swtpm:port=x", "not 1-65534"),
            ("swtpm:port=1,frob=2", "unknown"),
            ("device:tpm0", "absolute"),
            ("mssim:port=1", "unknown kind"),
        ] {
            let e = TpmSpec::parse(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
        assert_eq!(
            TpmSpec::parse("swtpm:host=h,port=5").unwrap().to_string(),
            "swtpm:host=h,port=5"
        );
    }

    #[cfg(not(feature = "tpm"))]
    #[test]
    fn without_the_feature_open_says_so() {
        let e = open_tpm("swtpm:port=2321").err().unwrap();
        assert!(matches!(e, TpmError::NotBuilt { .. }));
        assert!(e.to_string().contains("without the `tpm` feature"), "{e}");
    }

    #[test]
    fn point7_a_simulator_needs_the_dangerous_flag_before_anything_is_opened() {
        // Nothing listens on this port: the refusal comes before any connection attempt.
        for spec in ["swtpm:port=2321", "swtpm:host=127.0.0.1,port=9"] {
            let e = open_production_tpm(spec, false, "pass --dangerous-tpm-simulator")
                .err()
                .unwrap();
            assert!(matches!(e, TpmError::Simulator { .. }), "{e}");
            assert!(
                e.to_string().contains("pass --dangerous-tpm-simulator"),
                "{e}"
            );
        }
        assert!(is_simulator_spec("mssim:host=x") && !is_simulator_spec("device:/dev/tpm0"));
        // A device spec is not a simulator; a bad spec is still a spec error.
        assert!(!TpmSpec::parse("device:/dev/tpm0").unwrap().is_simulator());
        assert!(matches!(
            open_production_tpm("swtpm:path=/x", true, "-")
                .err()
                .unwrap(),
            TpmError::BadSpec { .. }
        ));
    }

    #[test]
    fn trait_is_object_safe() {
        let mut t: Box<dyn Tpm> = Box::new(SoftTpm::new([HashAlg::Sha256]));
        assert_eq!(t.active_banks().unwrap(), vec![HashAlg::Sha256]);
    }
}

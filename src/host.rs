//! The host context: everything about the machine an admission runs on, resolved once, before any
//! image is looked at. Root directory, trust store (the verity.d certificate directories), image
//! policy and PCR per class, TPM (with the dangerous-simulator acknowledgement), event log,
//! integrity mode, strictness, ratchet.
//!
//! A [`Host`] is built by one function per source: `cli::ext` (and `cli::reboot`) turn parsed
//! command-line options into one, `boot::host_from_config` turns a `boot.toml`, and a program
//! that embeds the library fills the fields itself. Everything downstream (merge, refresh,
//! unmerge, soft-reboot prepare, the boot hook) takes `&Host`, so the trust store, the policy, the
//! TPM and the event log are set up the same way whoever asks: [`trust_store`], [`image_policy`],
//! [`Host::open_tpm`] / [`Host::measurer`], [`Host::rollback_guard`] and [`Host::admit_config`]
//! (the per-image pipeline's settings) are the only places that do it.
//!
//! Layering: above `admit`, `rollback`, `measure`, `image` and `sign`, below `merge`, `reboot`,
//! `boot` and `cli`; it imports none of those.

use crate::admit;
use crate::gate::Bypass;
use crate::image::policy::{Policy, PolicyError};
use crate::image::release::OsRelease;
use crate::image::{Class, Integrity};
use crate::measure::{EventLog, Tpm};
use crate::rollback::admit::Guard;
use crate::sign::{TrustError, TrustStore};
use std::path::{Path, PathBuf};

/// Where the private workspace tmpfs of a merge or a prepare is mounted by default.
pub const DEFAULT_WORKSPACE: &str = "/run/verity";

/// Settings of one kind of image (sysext, confext, or a soft-reboot root).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassSettings {
    /// systemd image-policy string; `None` = signed images only.
    pub image_policy: Option<String>,
    /// PCR to extend; `None` = the kind's default (13 sysext, 12 confext, 15 root).
    pub pcr: Option<u32>,
    /// Mount the merged hierarchy noexec; `None` = yes for confext, no for sysext.
    pub noexec: Option<bool>,
}

/// Which TPM measurements go to, and which bypasses of it were asked for by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TpmSetup {
    /// `device:/dev/tpmrm0` or `swtpm:host=H,port=P`; `None` = [`crate::measure::DEFAULT_TPM`].
    pub spec: Option<String>,
    /// `--dangerous-tpm-simulator`: a simulator may be measured into (recorded with every
    /// measurement).
    pub dangerous_simulator: bool,
    /// `--dangerous-no-tpm`: measure into no TPM; every admission is recorded as that bypass.
    pub dangerous_no_tpm: bool,
}

impl TpmSetup {
    /// The TPM named, or the default device.
    pub fn spec_or_default(&self) -> &str {
        self.spec.as_deref().unwrap_or(crate::measure::DEFAULT_TPM)
    }
}

/// Where measurements go: an opened TPM (with the bypasses of the measuring context), or no TPM
/// at all (`--dangerous-no-tpm`), and always the event log.
pub struct Measuring {
    /// The TPM and the bypasses recorded with every measurement into it; `None` = no TPM.
    pub tpm: Option<(Box<dyn Tpm>, Vec<Bypass>)>,
    /// The event log.
    pub log: EventLog,
}

/// The host context (see the module docs). Fields are public: an embedder fills them directly,
/// starting from [`Host::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The tree operated on: search paths, hierarchies, os-release, verity.d and the rollback
    /// state live under it.
    pub root: PathBuf,
    /// Certificate directories; empty = the default verity.d directories under `root`.
    pub trust: Vec<PathBuf>,
    /// System extensions.
    pub sysext: ClassSettings,
    /// Configuration extensions.
    pub confext: ClassSettings,
    /// A root image staged for a soft reboot.
    pub nextroot: ClassSettings,
    /// The TPM.
    pub tpm: TpmSetup,
    /// The event log (default `/run/log/systemd/tpm2-measure.log`).
    pub event_log: PathBuf,
    /// How verified images are activated.
    pub integrity: Integrity,
    /// Any failing image stops the whole operation with nothing changed.
    pub strict: bool,
    /// After a successful admission, raise each admitted image's rollback floor to its version.
    pub ratchet: bool,
    /// Skip the extension-release compatibility check (a bypass, recorded with each image).
    pub skip_release_check: bool,
    /// Where the private workspace tmpfs is mounted.
    pub workspace: PathBuf,
}

impl Host {
    /// The defaults of the command line for `root`: default trust dirs, signed images only,
    /// default TPM and event log, `auto` integrity, nothing dangerous.
    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host {
            root: root.into(),
            trust: Vec::new(),
            sysext: ClassSettings::default(),
            confext: ClassSettings::default(),
            nextroot: ClassSettings::default(),
            tpm: TpmSetup::default(),
            event_log: crate::measure::DEFAULT_EVENT_LOG.into(),
            integrity: Integrity::Auto,
            strict: false,
            ratchet: false,
            skip_release_check: false,
            workspace: DEFAULT_WORKSPACE.into(),
        }
    }

    /// The settings of one extension class.
    pub fn class(&self, c: Class) -> &ClassSettings {
        match c {
            Class::Sysext => &self.sysext,
            Class::Confext => &self.confext,
        }
    }

    /// The settings of one extension class, to change.
    pub fn class_mut(&mut self, c: Class) -> &mut ClassSettings {
        match c {
            Class::Sysext => &mut self.sysext,
            Class::Confext => &mut self.confext,
        }
    }

    /// The PCR images of `c` are measured into.
    pub fn pcr(&self, c: Class) -> u32 {
        self.class(c).pcr.unwrap_or(match c {
            Class::Sysext => 13,
            Class::Confext => 12,
        })
    }

    /// The PCR a soft-reboot root is measured into.
    pub fn nextroot_pcr(&self) -> u32 {
        self.nextroot.pcr.unwrap_or(crate::measure::PCR_NEXTROOT)
    }

    /// The certificate directories in force.
    pub fn trust_dirs(&self) -> Vec<PathBuf> {
        trust_dirs(&self.root, &self.trust)
    }

    /// Loads the trust store from [`Host::trust_dirs`].
    pub fn trust_store(&self) -> Result<TrustStore, TrustError> {
        trust_store(&self.root, &self.trust)
    }

    /// The image policy of class `c`.
    pub fn image_policy(&self, c: Class) -> Result<Policy, PolicyError> {
        image_policy(self.class(c).image_policy.as_deref())
    }

    /// The host's os-release (`etc/os-release`, else `usr/lib/os-release`, under `root`). An
    /// unparsable file has no usable ID, which a merge refuses as such.
    pub fn os_release(&self) -> OsRelease {
        for p in ["etc/os-release", "usr/lib/os-release"] {
            if let Ok(t) = std::fs::read(self.root.join(p)) {
                return OsRelease::parse(&t).unwrap_or_default();
            }
        }
        Default::default()
    }

    /// The host's os-release when it has an `ID=` (every extension is matched against it), or
    /// the error a merge stops with. `skip_release_check` needs none.
    pub fn checked_os_release(&self) -> Result<OsRelease, String> {
        let os = self.os_release();
        if os.get("ID").map(|s| s.is_empty()).unwrap_or(true) && !self.skip_release_check {
            return Err(format!(
                "{}: host os-release has no ID (looked in etc/os-release and usr/lib/os-release)",
                self.root.display()
            ));
        }
        Ok(os)
    }

    /// Whether this host activates images with the kernel, given whether a kernel activator is
    /// available (what the report calls the integrity used).
    pub fn uses_kernel(&self, activator: bool) -> bool {
        self.integrity.uses_kernel(activator)
    }

    /// The rollback floors under `root` and the TPM's epoch, read before anything is opened or
    /// mounted: a corrupt state file or an unreadable epoch stops the operation (exit 2).
    pub fn rollback_guard(&self) -> Result<Guard, String> {
        let epoch = crate::rollback::admit::epoch_for(
            self.tpm.spec.as_deref(),
            self.tpm.dangerous_no_tpm,
            self.tpm.dangerous_simulator,
        )?;
        Guard::load(&self.root, epoch)
    }

    /// The event log.
    pub fn event_log(&self) -> EventLog {
        EventLog::new(self.event_log.clone())
    }

    /// Whether the tree is an initrd (`etc/initrd-release` under `root`): extensions then need
    /// the `initrd` scope, and the initrd's search paths apply.
    pub fn in_initrd(&self) -> bool {
        in_initrd(&self.root)
    }

    /// The admission settings of extension class `c` on this host, with `rollback` (from
    /// [`Host::rollback_guard`]) as the floors: the one place a host becomes an
    /// [`admit::Config`]. Fails when the host os-release has no ID and the release check is not
    /// skipped, since extensions cannot be matched against it.
    pub fn admit_config(&self, c: Class, rollback: Guard) -> Result<admit::Config, String> {
        Ok(admit::Config {
            class: c,
            in_initrd: self.in_initrd(),
            host: self.checked_os_release()?,
            arch: running_arch(),
            root: self.root.clone(),
            image_policy: self.class(c).image_policy.clone(),
            trust: self.trust.clone(),
            integrity: self.integrity,
            pcr: self.pcr(c),
            force: self.skip_release_check,
            nextroot: false,
            workspace: PathBuf::new(),
            rollback,
        })
    }

    /// The admission settings of a soft-reboot root on this host, mounted under `workspace`: it
    /// is measured as `nextroot` into [`Host::nextroot_pcr`], under the `nextroot` policy, and is
    /// checked as an OS tree rather than against extension-release (no host release, no scope).
    pub fn nextroot_admit_config(&self, rollback: Guard, workspace: PathBuf) -> admit::Config {
        admit::Config {
            // The class only names the overlay kind; `nextroot` makes the token measure as a root.
            class: Class::Sysext,
            root: self.root.clone(),
            image_policy: self.nextroot.image_policy.clone(),
            trust: self.trust.clone(),
            integrity: self.integrity,
            pcr: self.nextroot_pcr(),
            force: false,
            nextroot: true,
            in_initrd: false,
            host: Default::default(),
            arch: String::new(),
            workspace,
            rollback,
        }
    }

    /// The measurer of this host: [`Host::open_tpm`] as an admission [`admit::Measurer`] (the TPM
    /// one, or the `dangerous_no_tpm` one that records the bypass in the event log instead).
    pub fn measurer(&self) -> Result<Box<dyn admit::Measurer>, String> {
        let m = self.open_tpm()?;
        Ok(match m.tpm {
            Some((tpm, bypasses)) => Box::new(admit::measure::TpmMeasurer {
                tpm,
                log: m.log,
                bypasses,
            }),
            None => Box::new(admit::measure::NoTpm { log: m.log }),
        })
    }

    /// As [`Host::open_tpm`], for a record that goes to the event log whether or not there is a
    /// TPM (`soft-reboot prepare --dangerous-premounted`): with no TPM named and no default device
    /// on this machine, no TPM.
    pub fn open_tpm_if_present(&self) -> Result<Measuring, String> {
        let dev = crate::measure::DEFAULT_TPM.trim_start_matches("device:");
        if self.tpm.spec.is_none() && !Path::new(dev).exists() {
            return Ok(Measuring {
                tpm: None,
                log: self.event_log(),
            });
        }
        self.open_tpm()
    }

    /// Opens what measurements go to: no TPM with `dangerous_no_tpm`, else the TPM named (a
    /// simulator only with `dangerous_simulator`). The error names the TPM.
    pub fn open_tpm(&self) -> Result<Measuring, String> {
        let log = self.event_log();
        if self.tpm.dangerous_no_tpm {
            return Ok(Measuring { tpm: None, log });
        }
        let spec = self.tpm.spec_or_default();
        let opened = crate::measure::tpm::open_production_tpm(
            spec,
            self.tpm.dangerous_simulator,
            "pass --dangerous-tpm-simulator",
        )
        .map_err(|e| format!("TPM {spec}: {e}"))?;
        Ok(Measuring {
            tpm: Some(opened),
            log,
        })
    }
}

/// systemd's architecture id of the running kernel (`uname -m`), else of this build: what
/// extension-release's `ARCHITECTURE=` is matched against.
pub fn running_arch() -> String {
    rustix::system::uname()
        .machine()
        .to_str()
        .ok()
        .and_then(crate::image::arch::from_uname)
        .unwrap_or_else(crate::image::arch::native)
        .to_string()
}

/// Whether the tree under `root` is an initrd (it has `etc/initrd-release`).
pub fn in_initrd(root: &Path) -> bool {
    root.join("etc/initrd-release").exists()
}

/// The certificate directories: `given`, or the default verity.d directories under `root`.
pub fn trust_dirs(root: &Path, given: &[PathBuf]) -> Vec<PathBuf> {
    if given.is_empty() {
        TrustStore::default_dirs(root)
    } else {
        given.to_vec()
    }
}

/// The trust store of [`trust_dirs`]: the one way every verb loads it.
pub fn trust_store(root: &Path, given: &[PathBuf]) -> Result<TrustStore, TrustError> {
    TrustStore::load(&trust_dirs(root, given))
}

/// An image-policy string, or the default (signed images only) when there is none.
pub fn image_policy(s: Option<&str>) -> Result<Policy, PolicyError> {
    match s {
        Some(p) => Policy::parse(p),
        None => Ok(Policy::signed_only()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::policy::State;

    #[test]
    fn defaults_are_the_command_lines() {
        let h = Host::new("/");
        assert_eq!((h.pcr(Class::Sysext), h.pcr(Class::Confext)), (13, 12));
        assert_eq!(h.nextroot_pcr(), 15);
        assert_eq!(h.tpm.spec_or_default(), "device:/dev/tpmrm0");
        assert_eq!(
            h.event_log,
            PathBuf::from("/run/log/systemd/tpm2-measure.log")
        );
        assert_eq!(h.workspace, PathBuf::from("/run/verity"));
        assert_eq!(h.integrity, Integrity::Auto);
        // The default policy admits signed images only.
        let p = h.image_policy(Class::Sysext).unwrap();
        assert!(p.check("root", State::Signed, None, None).is_ok());
        assert!(p.check("root", State::Verity, None, None).is_err());
    }

    #[test]
    fn class_settings_are_per_class() {
        let mut h = Host::new("/");
        h.class_mut(Class::Confext).pcr = Some(9);
        h.class_mut(Class::Confext).image_policy = Some("=unprotected".into());
        assert_eq!((h.pcr(Class::Sysext), h.pcr(Class::Confext)), (13, 9));
        let p = h.image_policy(Class::Confext).unwrap();
        assert!(p.check("root", State::Unprotected, None, None).is_ok());
        assert!(h.image_policy(Class::Sysext).is_ok());
        h.sysext.image_policy = Some("root=bogus".into());
        assert!(h.image_policy(Class::Sysext).is_err());
    }

    #[test]
    fn trust_dirs_default_under_root_and_are_replaced_by_given_ones() {
        let d = trust_dirs(Path::new("/sysroot"), &[]);
        assert!(!d.is_empty());
        assert!(d.iter().all(|p| p.starts_with("/sysroot")), "{d:?}");
        let given = vec![PathBuf::from("/etc/keys")];
        assert_eq!(trust_dirs(Path::new("/sysroot"), &given), given);
    }

    #[test]
    fn os_release_needs_an_id_unless_the_check_is_skipped() {
        let t = tempfile::tempdir().unwrap();
        let mut h = Host::new(t.path());
        let e = h.checked_os_release().unwrap_err();
        assert!(e.contains("host os-release has no ID"), "{e}");
        h.skip_release_check = true;
        assert!(h.checked_os_release().is_ok());
        h.skip_release_check = false;
        std::fs::create_dir_all(t.path().join("usr/lib")).unwrap();
        std::fs::write(t.path().join("usr/lib/os-release"), "ID=debian\n").unwrap();
        assert_eq!(h.checked_os_release().unwrap().get("ID"), Some("debian"));
    }

    #[test]
    fn a_simulator_needs_its_acknowledgement() {
        let mut h = Host::new("/");
        h.tpm.spec = Some("swtpm:host=127.0.0.1,port=1".into());
        let e = h.open_tpm().err().expect("refused");
        assert!(e.starts_with("TPM swtpm:host=127.0.0.1,port=1: "), "{e}");
        assert!(e.contains("--dangerous-tpm-simulator"), "{e}");
        // A TPM named must work even where a missing one would be tolerated.
        let e = h.open_tpm_if_present().err().expect("refused");
        assert!(e.contains("--dangerous-tpm-simulator"), "{e}");
        if !Path::new("/dev/tpmrm0").exists() {
            assert!(Host::new("/").open_tpm_if_present().unwrap().tpm.is_none());
        }
        h.tpm.dangerous_no_tpm = true;
        assert!(h.open_tpm().unwrap().tpm.is_none());
    }
}

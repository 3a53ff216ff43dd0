//! `/etc/verity/boot.toml`: what the boot hook verifies, measures and merges, and what a failure means.
//!
//! Parsed strictly: an unknown key or a bad value is refused with the file, line and reason, because a
//! typo in a security policy must not silently fall back to a default. Pure: takes the text, never
//! reads files itself.

use serde::Deserialize;
use std::path::PathBuf;
use thiserror::Error;

/// Default location of the config.
pub const DEFAULT_PATH: &str = "/etc/verity/boot.toml";
/// Default location of the JSON report.
pub const DEFAULT_REPORT: &str = "/run/verity/boot.json";

/// An extension class the hook can merge: the image module's one [`crate::image::Class`] (the
/// same `sysext`/`confext` names in boot.toml and the report).
pub use crate::image::Class;

/// How verified images are activated (the same values as `--integrity`).
pub use crate::image::Integrity;

/// What a failure of a required image means for the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Log and report, exit 0: the system boots with whatever was accepted.
    Continue,
    /// Exit 1: the unit fails (units ordered after it see that).
    #[default]
    Fail,
    /// Exit 1 and ask the service manager for emergency mode.
    Emergency,
}

/// Per-class settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ClassConfig {
    /// systemd image-policy string for this class (default: the pipeline's own).
    pub image_policy: Option<String>,
    /// PCR to extend (default 13 for sysext, 12 for confext).
    pub pcr: Option<u32>,
    /// Mount with noexec (default: yes for confext, no for sysext).
    pub noexec: Option<bool>,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// Classes to merge, in this order.
    #[serde(default = "default_classes")]
    pub classes: Vec<Class>,
    /// Certificate directories (replace the default verity.d search path).
    #[serde(default)]
    pub trust: Vec<PathBuf>,
    /// TPM to measure into: `device:/dev/tpmrm0` or `swtpm:host=H,port=P` (a simulator needs
    /// `dangerous-tpm-simulator = true`).
    #[serde(default = "default_tpm")]
    pub tpm: String,
    /// Allow `tpm` to name a simulator (swtpm): tests and demos only; recorded with every
    /// measurement.
    #[serde(default)]
    pub dangerous_tpm_simulator: bool,
    /// Event log path.
    #[serde(default = "default_event_log")]
    pub event_log: PathBuf,
    /// How images are activated.
    #[serde(default)]
    pub integrity: Integrity,
    /// Image names that must be found and accepted.
    #[serde(default)]
    pub required: Vec<String>,
    /// What a rejected or missing required image means.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// After each class's successful merge, raise every merged image's rollback floor to its
    /// `IMAGE_VERSION=` (`--ratchet` of merge).
    #[serde(default)]
    pub ratchet: bool,
    /// Operate on another tree (search paths, hierarchies, os-release under it).
    #[serde(default = "default_root")]
    pub root: PathBuf,
    /// Where the JSON report goes.
    #[serde(default = "default_report")]
    pub report: PathBuf,
    /// sysext settings.
    #[serde(default)]
    pub sysext: ClassConfig,
    /// confext settings.
    #[serde(default)]
    pub confext: ClassConfig,
}

fn default_classes() -> Vec<Class> {
    vec![Class::Sysext, Class::Confext]
}
fn default_tpm() -> String {
    "device:/dev/tpmrm0".into()
}
fn default_event_log() -> PathBuf {
    "/run/log/systemd/tpm2-measure.log".into()
}
fn default_root() -> PathBuf {
    "/".into()
}
fn default_report() -> PathBuf {
    DEFAULT_REPORT.into()
}

impl Default for Config {
    fn default() -> Self {
        parse("").expect("the empty config is valid")
    }
}

/// A refused config: the 1-based line (when known) and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}{reason}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ConfigError {
    /// 1-based line of the offending key or value.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

impl Config {
    /// Refuses a simulator as `tpm` unless `dangerous-tpm-simulator = true` or `flag` (the
    /// command line's `--dangerous-tpm-simulator`) allows it. `text` is the config, for the line.
    pub fn check_tpm(&self, text: &str, flag: bool) -> Result<(), ConfigError> {
        if crate::measure::tpm::is_simulator_spec(&self.tpm)
            && !self.dangerous_tpm_simulator
            && !flag
        {
            return Err(ConfigError {
                line: line_of_key(text, "tpm"),
                reason: format!(
                    "tpm = {:?} is a TPM simulator, not a TPM device: set \
                     dangerous-tpm-simulator = true (or pass --dangerous-tpm-simulator) to measure \
                     into it, for tests and demos only",
                    self.tpm
                ),
            });
        }
        Ok(())
    }

    /// Settings of one class.
    pub fn class(&self, c: Class) -> &ClassConfig {
        match c {
            Class::Sysext => &self.sysext,
            Class::Confext => &self.confext,
        }
    }

    /// The PCR one class is measured into.
    pub fn pcr(&self, c: Class) -> u32 {
        self.class(c).pcr.unwrap_or(c.default_pcr())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line on which `key = ` is set (top level or within a table), for semantic errors.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// What each key holds, for type errors that name the key instead of serde's type names.
fn expected(key: &str) -> Option<&'static str> {
    Some(match key {
        "classes" => "a list of classes (\"sysext\", \"confext\")",
        "trust" => "a list of directories",
        "tpm" => "a TPM (\"device:/dev/tpmrm0\" or \"swtpm:host=H,port=P\")",
        "event-log" | "root" | "report" => "a path",
        "integrity" => "one of \"auto\", \"kernel\", \"userspace\"",
        "required" => "a list of image names",
        "on-failure" => "one of \"continue\", \"fail\", \"emergency\"",
        "sysext" | "confext" => "a table",
        "image-policy" => "an image-policy string",
        "pcr" => "a PCR number 0..=23",
        "noexec" => "true or false",
        _ => return None,
    })
}

/// The dotted key (`sysext.pcr`) set on 1-based `line`: the key on that line, inside the table
/// whose header comes last before it.
fn key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let key_of = |l: &str| -> Option<String> {
        let (k, _) = l.split_once('=')?;
        let k = k.trim().trim_matches('"');
        (!k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .then(|| k.to_string())
    };
    let here = lines.get(line.checked_sub(1)?)?.trim();
    if let Some(t) = here.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return Some(t.trim().to_string());
    }
    let key = key_of(here)?;
    let table = lines[..line - 1].iter().rev().find_map(|l| {
        let t = l.trim();
        t.strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .map(|n| n.trim().to_string())
    });
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key,
    })
}

/// serde's wording (`invalid type: map, expected a sequence`) turned into one that names the key
/// and what it holds (`trust: expected a list of directories, got a map`).
fn explain(text: &str, line: Option<usize>, msg: &str) -> String {
    let Some(key) = line.and_then(|l| key_at(text, l)) else {
        return msg.to_string();
    };
    let leaf = key.rsplit('.').next().unwrap_or(&key);
    for prefix in ["invalid type: ", "invalid value: "] {
        if let (Some(rest), Some(want)) = (msg.strip_prefix(prefix), expected(leaf)) {
            let got = rest.split(", expected").next().unwrap_or(rest);
            return format!("{key}: expected {want}, got {got}");
        }
    }
    if let (true, Some(want)) = (msg.starts_with("wanted "), expected(leaf)) {
        return format!("{key}: expected {want}");
    }
    if msg.starts_with("unknown variant") {
        return format!("{key}: {msg}");
    }
    msg.to_string()
}

/// Parses and checks a config.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let cfg: Config = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        ConfigError {
            line,
            reason: explain(text, line, e.message().trim()),
        }
    })?;
    let bad = |key: &str, reason: String| ConfigError {
        line: line_of_key(text, key),
        reason,
    };
    for c in [Class::Sysext, Class::Confext] {
        if let Some(p) = cfg.class(c).pcr {
            if p > 23 {
                return Err(bad(
                    "pcr",
                    format!("{}.pcr = {p}: PCRs are 0..=23", c.name()),
                ));
            }
        }
        if let Some(pol) = &cfg.class(c).image_policy {
            if pol.trim().is_empty() {
                return Err(bad(
                    "image-policy",
                    format!(
                        "{}.image-policy is empty (omit it for the default)",
                        c.name()
                    ),
                ));
            }
        }
    }
    if cfg.classes.is_empty() {
        return Err(bad("classes", "classes is empty: nothing to merge".into()));
    }
    let mut seen = cfg.classes.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != cfg.classes.len() {
        return Err(bad("classes", "classes lists a class twice".into()));
    }
    let tpm_ok = cfg
        .tpm
        .strip_prefix("device:")
        .is_some_and(|p| p.starts_with('/'))
        || cfg.tpm.starts_with("swtpm:")
        || cfg.tpm.starts_with("mssim:");
    if !tpm_ok {
        return Err(bad(
            "tpm",
            format!(
                "tpm = {:?}: expected device:/dev/tpmrm0 or swtpm:host=H,port=P",
                cfg.tpm
            ),
        ));
    }
    for (key, p) in [
        ("event-log", &cfg.event_log),
        ("root", &cfg.root),
        ("report", &cfg.report),
    ] {
        if !p.is_absolute() {
            return Err(bad(
                key,
                format!("{key} = {:?} must be an absolute path", p),
            ));
        }
    }
    for t in &cfg.trust {
        if !t.is_absolute() {
            return Err(bad(
                "trust",
                format!("trust dir {:?} must be an absolute path", t),
            ));
        }
    }
    for r in &cfg.required {
        if r.is_empty() || r.contains('/') || r.starts_with('.') {
            return Err(bad(
                "required",
                format!("required image name {r:?} is not a valid name"),
            ));
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
# the example from src/boot/units/boot.toml
classes = ["sysext", "confext"]
trust = ["/etc/verity.d"]
tpm = "swtpm:host=127.0.0.1,port=2321"
dangerous-tpm-simulator = true
event-log = "/run/log/systemd/tpm2-measure.log"
integrity = "kernel"
required = ["base"]
on-failure = "emergency"
root = "/sysroot"

[sysext]
image-policy = "root=verity+signed:usr=verity+signed"
pcr = 13

[confext]
pcr = 12
"#;

    #[test]
    fn empty_config_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.classes, vec![Class::Sysext, Class::Confext]);
        assert_eq!(c.tpm, "device:/dev/tpmrm0");
        assert_eq!(c.integrity, Integrity::Auto);
        assert_eq!(c.on_failure, OnFailure::Fail);
        assert_eq!(c.report, PathBuf::from(DEFAULT_REPORT));
        assert_eq!((c.pcr(Class::Sysext), c.pcr(Class::Confext)), (13, 12));
        assert_eq!(c, Config::default());
    }

    #[test]
    fn full_config_parses() {
        let c = parse(FULL).unwrap();
        assert_eq!(c.integrity, Integrity::Kernel);
        assert_eq!(c.on_failure, OnFailure::Emergency);
        assert_eq!(c.required, vec!["base".to_string()]);
        assert_eq!(c.root, PathBuf::from("/sysroot"));
        assert_eq!(
            c.sysext.image_policy.as_deref(),
            Some("root=verity+signed:usr=verity+signed")
        );
        assert_eq!(c.trust, vec![PathBuf::from("/etc/verity.d")]);
    }

    #[test]
    fn point7_a_simulator_needs_the_dangerous_key_or_flag() {
        let text = "classes = [\"sysext\"]\ntpm = \"swtpm:host=127.0.0.1,port=2321\"\n";
        let c = parse(text).unwrap();
        let e = c.check_tpm(text, false).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.reason.contains("dangerous-tpm-simulator = true"), "{e}");
        c.check_tpm(text, true).unwrap();
        let allowed = format!("{text}dangerous-tpm-simulator = true\n");
        parse(&allowed).unwrap().check_tpm(&allowed, false).unwrap();
        // A device needs nothing; the shipped configs name the device.
        Config::default().check_tpm("", false).unwrap();
        for t in [
            include_str!("units/boot.toml"),
            include_str!("units/boot-initrd.toml"),
        ] {
            parse(t).unwrap().check_tpm(t, false).unwrap();
        }
    }

    #[test]
    fn point2_shipped_configs_admit_only_signed_images() {
        use crate::image::policy::{Policy, State};
        // The shipped configs and the empty one (whose classes fall back to the pipeline default).
        for (file, text) in [
            ("boot.toml", include_str!("units/boot.toml")),
            ("boot-initrd.toml", include_str!("units/boot-initrd.toml")),
            ("(empty)", ""),
        ] {
            let c = parse(text).unwrap();
            for class in [Class::Sysext, Class::Confext] {
                let pol = match &c.class(class).image_policy {
                    Some(p) => Policy::parse(p).unwrap(),
                    None => Policy::signed_only(),
                };
                for d in ["root", "usr"] {
                    let what = format!("{file} {} {d}", class.name());
                    assert!(pol.check(d, State::Signed, None, None).is_ok(), "{what}");
                    for weak in [State::Verity, State::Unprotected] {
                        assert!(
                            pol.check(d, weak, None, None).is_err(),
                            "{what} admits {}",
                            weak.word()
                        );
                    }
                }
            }
        }
        for weak in ["verity", "unprotected"] {
            assert!(!crate::admit::policy_allows(None, weak), "{weak}");
        }
    }

    #[test]
    fn refusals_name_line_and_reason() {
        // (config text, expected line, a word the reason must contain)
        let cases: &[(&str, usize, &str)] = &[
            (
                "classes = [\"sysext\"]\ntrsut = []\n",
                2,
                "unknown field `trsut`",
            ),
            (
                "\n\n[sysext]\npcr = 13\npolicy = \"x\"\n",
                5,
                "unknown field `policy`",
            ),
            (
                "integrity = \"fast\"\n",
                1,
                "integrity: unknown variant `fast`",
            ),
            ("on-failure = \"reboot\"\n", 1, "unknown variant `reboot`"),
            ("classes = [\"initrd\"]\n", 1, "unknown variant `initrd`"),
            ("\n[confext]\npcr = 24\n", 3, "PCRs are 0..=23"),
            (
                "\n[confext]\npcr = -1\n",
                3,
                "confext.pcr: expected a PCR number 0..=23",
            ),
            ("tpm = \"/dev/tpm0\"\n", 1, "expected device:"),
            ("\nroot = \"sysroot\"\n", 2, "absolute"),
            ("classes = []\n", 1, "nothing to merge"),
            ("classes = [\"sysext\", \"sysext\"]\n", 1, "twice"),
            ("required = [\"../x\"]\n", 1, "not a valid name"),
            (
                "trust = \"/etc/verity.d\"\n",
                1,
                "trust: expected a list of directories, got string",
            ),
            (
                "\n[trust]\nx = 1\n",
                2,
                "trust: expected a list of directories, got map",
            ),
            (
                "classes = \"sysext\"\n",
                1,
                "classes: expected a list of classes",
            ),
            (
                "[sysext]\nnoexec = \"yes\"\n",
                2,
                "sysext.noexec: expected true or false",
            ),
            ("sysext = 3\n", 1, "sysext: expected a table"),
            ("integrity = 1\n", 1, "integrity: expected one of"),
            ("[sysext]\nimage-policy = \" \"\n", 2, "empty"),
            ("classes = [\"sysext\"\n", 2, "invalid array"),
        ];
        for (text, line, word) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, Some(*line), "{text:?}: {e}");
            assert!(e.reason.contains(word), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
        }
    }
}

//! What the boot hook decided: the JSON report (`/run/verity/boot.json`) and one log line per
//! decision, with `<N>` syslog priority prefixes when stderr is the journal.
//!
//! Pure: builds values and strings; writing them is the caller's job.

use super::config::Class;
use crate::timing::Steps;
use serde::Serialize;

/// Whether an image made it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Verified, measured and merged.
    Accepted,
    /// Refused; `reason` says by which check.
    Rejected,
}

/// One image's fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReport {
    /// sysext or confext.
    pub class: Class,
    /// Image name (file name without `.raw` and class suffix).
    pub name: String,
    /// Where it was found.
    pub path: String,
    /// Accepted or rejected.
    pub status: Status,
    /// Why it was rejected (the failed check), absent when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Lower-case hex root hash, when it was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_hash: Option<String>,
    /// Lower-case hex SHA-256 of the signer certificate's DER, or `unsigned`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// PCR extended for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcr: Option<u32>,
    /// The digest extended (sha256 bank), lower-case hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// How integrity was enforced: `kernel` (dm-verity) or `userspace`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrity: Option<String>,
    /// The `IMAGE_VERSION=` of an accepted image (from its verified release file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where an accepted image's admission spent its time (open, dissect, signature, verity,
    /// mount, release, measure), in microseconds.
    #[serde(skip_serializing_if = "Steps::is_empty")]
    pub steps: Steps,
}

/// One class's wall time, and the part of it spent building and switching in the overlays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassTiming {
    /// sysext or confext.
    pub class: Class,
    /// The whole class: discovery, every image's admission, the overlays.
    pub micros: u64,
    /// The overlay step, when the class got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay_micros: Option<u64>,
}

/// The overall result, which also fixes the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Everything required is in (exit 0).
    Ok,
    /// A required image was rejected or missing, and on-failure = continue (exit 0).
    RequiredFailedContinued,
    /// A required image was rejected or missing (exit 1).
    RequiredFailed,
    /// The hook itself could not run (exit 2).
    Error,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Ok | Outcome::RequiredFailedContinued => 0,
            Outcome::RequiredFailed => 1,
            Outcome::Error => 2,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Format version of this report.
    pub version: u32,
    /// The config file used.
    pub config: String,
    /// Overall outcome.
    pub outcome: Outcome,
    /// The exit code that goes with it.
    pub exit_code: i32,
    /// Every image considered, in decision order.
    pub images: Vec<ImageReport>,
    /// Required names that were not accepted.
    pub missing_required: Vec<String>,
    /// Errors that stopped a whole class (e.g. TPM unreachable).
    pub errors: Vec<String>,
    /// Wall time per class, in the order they ran.
    pub timing: Vec<ClassTiming>,
    /// Wall time of every class's run together (first discovery to the last overlay), in
    /// microseconds.
    pub micros: u64,
}

impl Report {
    /// Builds the report and its outcome from the decisions.
    pub fn new(
        config: &str,
        images: Vec<ImageReport>,
        required: &[String],
        errors: Vec<String>,
        continue_on_failure: bool,
    ) -> Report {
        let missing_required: Vec<String> = required
            .iter()
            .filter(|r| {
                !images
                    .iter()
                    .any(|i| &i.name == *r && i.status == Status::Accepted)
            })
            .cloned()
            .collect();
        // Errors mean the hook could not do its job (TPM unreachable, config unusable): exit 2 even
        // with on-failure = continue, since the report cannot vouch for anything then.
        let outcome = if !errors.is_empty() {
            Outcome::Error
        } else if missing_required.is_empty() {
            Outcome::Ok
        } else if continue_on_failure {
            Outcome::RequiredFailedContinued
        } else {
            Outcome::RequiredFailed
        };
        Report {
            version: 1,
            config: config.to_string(),
            outcome,
            exit_code: outcome.exit_code(),
            images,
            missing_required,
            errors,
            timing: Vec::new(),
            micros: 0,
        }
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("report serializes");
        s.push('\n');
        s
    }
}

/// syslog priorities used for the `<N>` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// 3: a required image failed or the hook cannot run.
    Err = 3,
    /// 4: an image was rejected.
    Warning = 4,
    /// 6: an image was accepted.
    Info = 6,
}

/// Whether stderr is connected to the journal: `JOURNAL_STREAM` is `DEV:INO` of that stream
/// (systemd.exec(5)); compare it with stderr's own device and inode.
pub fn is_journal_stream(journal_stream: Option<&str>, dev: u64, ino: u64) -> bool {
    let Some(v) = journal_stream else {
        return false;
    };
    let mut it = v.split(':');
    match (it.next(), it.next(), it.next()) {
        (Some(d), Some(i), None) => d.parse() == Ok(dev) && i.parse() == Ok(ino),
        _ => false,
    }
}

/// One log line for one decision.
pub fn log_line(img: &ImageReport, journal: bool) -> String {
    let (prio, text) = match img.status {
        Status::Accepted => (
            Priority::Info,
            format!(
                "{} {}: accepted (root {}, signer {}, PCR {}, {})",
                img.class.name(),
                img.name,
                img.root_hash.as_deref().unwrap_or("-"),
                img.signer.as_deref().unwrap_or("-"),
                img.pcr.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                img.integrity.as_deref().unwrap_or("-"),
            ),
        ),
        Status::Rejected => (
            Priority::Warning,
            format!(
                "{} {}: rejected: {}",
                img.class.name(),
                img.name,
                img.reason.as_deref().unwrap_or("no reason given")
            ),
        ),
    };
    prefixed(prio, &text, journal)
}

/// `text` with a `<N>` prefix when writing to the journal, else `verity boot: text`.
pub fn prefixed(prio: Priority, text: &str, journal: bool) -> String {
    if journal {
        format!("<{}>{text}", prio as u8)
    } else {
        format!("verity boot: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(name: &str, status: Status) -> ImageReport {
        ImageReport {
            class: Class::Sysext,
            name: name.into(),
            path: format!("/run/extensions/{name}.raw"),
            status,
            reason: (status == Status::Rejected).then(|| "signature: signer not trusted".into()),
            root_hash: Some("ab".repeat(32)),
            signer: (status == Status::Accepted).then(|| "cd".repeat(32)),
            pcr: (status == Status::Accepted).then_some(13),
            digest: (status == Status::Accepted).then(|| "ef".repeat(32)),
            integrity: (status == Status::Accepted).then(|| "kernel".into()),
            version: None,
            steps: Steps::default(),
        }
    }

    #[test]
    fn report_json_shape() {
        let r = Report::new(
            "/etc/verity/boot.toml",
            vec![img("good", Status::Accepted), img("evil", Status::Rejected)],
            &["good".into()],
            vec![],
            false,
        );
        assert_eq!(r.outcome, Outcome::Ok);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["outcome"], "ok");
        assert_eq!(v["exitCode"], 0);
        assert_eq!(v["images"][0]["class"], "sysext");
        assert_eq!(v["images"][0]["status"], "accepted");
        assert_eq!(v["images"][0]["rootHash"], "ab".repeat(32));
        assert_eq!(v["images"][0]["signer"], "cd".repeat(32));
        assert_eq!(v["images"][0]["pcr"], 13);
        assert_eq!(v["images"][0]["digest"], "ef".repeat(32));
        assert_eq!(v["images"][0]["integrity"], "kernel");
        assert!(v["images"][0].get("reason").is_none());
        assert_eq!(v["images"][1]["status"], "rejected");
        assert_eq!(v["images"][1]["reason"], "signature: signer not trusted");
        assert!(v["images"][1].get("pcr").is_none());
    }

    #[test]
    fn outcomes_and_exit_codes() {
        let acc = || vec![img("a", Status::Accepted)];
        let rej = || vec![img("a", Status::Rejected)];
        let req = ["a".to_string()];
        // (images, required, errors, continue, outcome, exit)
        type Case<'a> = (
            Vec<ImageReport>,
            &'a [String],
            Vec<String>,
            bool,
            Outcome,
            i32,
        );
        let cases: Vec<Case> = vec![
            (acc(), &req, vec![], false, Outcome::Ok, 0),
            (rej(), &[], vec![], false, Outcome::Ok, 0),
            (rej(), &req, vec![], false, Outcome::RequiredFailed, 1),
            (
                rej(),
                &req,
                vec![],
                true,
                Outcome::RequiredFailedContinued,
                0,
            ),
            (vec![], &req, vec![], false, Outcome::RequiredFailed, 1),
            (
                vec![],
                &[],
                vec!["tpm unreachable".into()],
                false,
                Outcome::Error,
                2,
            ),
            (
                acc(),
                &[],
                vec!["confext: tpm unreachable".into()],
                false,
                Outcome::Error,
                2,
            ),
        ];
        for (i, (imgs, required, errors, cont, outcome, code)) in cases.into_iter().enumerate() {
            let r = Report::new("c", imgs, required, errors, cont);
            assert_eq!((r.outcome, r.exit_code), (outcome, code), "case {i}");
        }
    }

    #[test]
    fn journal_detection_and_prefixes() {
        assert!(is_journal_stream(Some("8:12345"), 8, 12345));
        assert!(!is_journal_stream(Some("8:12345"), 8, 1));
        assert!(!is_journal_stream(Some("8:12345:1"), 8, 12345));
        assert!(!is_journal_stream(Some("junk"), 8, 12345));
        assert!(!is_journal_stream(None, 8, 12345));
        let a = img("good", Status::Accepted);
        assert!(log_line(&a, true).starts_with("<6>sysext good: accepted (root abab"));
        assert!(log_line(&a, false).starts_with("verity boot: sysext good: accepted"));
        let r = img("evil", Status::Rejected);
        assert_eq!(
            log_line(&r, true),
            "<4>sysext evil: rejected: signature: signer not trusted"
        );
        assert_eq!(prefixed(Priority::Err, "x", true), "<3>x");
    }
}

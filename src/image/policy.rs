//! Image policies in systemd's syntax (`systemd.image-policy(7)`, spec/systemd.md section 3.7):
//! parsing `designator=flag+flag:...`, the `=flags` default form, the whole-policy shortcuts `*`,
//! `-` and `~`, and deciding whether a partition in a given state is allowed. Pure core.

use std::collections::BTreeMap;
use std::fmt;

/// Protection and use flags of one designator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// Used without verity or encryption.
    pub const UNPROTECTED: Flags = Flags(1);
    /// Used with dm-verity.
    pub const VERITY: Flags = Flags(2);
    /// Used with dm-verity and a valid root-hash signature.
    pub const SIGNED: Flags = Flags(4);
    /// Used with dm-crypt (never true for our images).
    pub const ENCRYPTED: Flags = Flags(8);
    /// Present but not used.
    pub const UNUSED: Flags = Flags(16);
    /// Not present.
    pub const ABSENT: Flags = Flags(32);
    /// All six protection/use flags.
    pub const OPEN: Flags = Flags(63);
    /// GPT read-only flag must be set.
    pub const READ_ONLY_ON: Flags = Flags(64);
    /// GPT read-only flag must be clear.
    pub const READ_ONLY_OFF: Flags = Flags(128);
    /// GPT growfs flag must be set.
    pub const GROWFS_ON: Flags = Flags(256);
    /// GPT growfs flag must be clear.
    pub const GROWFS_OFF: Flags = Flags(512);

    const NAMES: [(&'static str, Flags); 10] = [
        ("unprotected", Flags::UNPROTECTED),
        ("verity", Flags::VERITY),
        ("signed", Flags::SIGNED),
        ("encrypted", Flags::ENCRYPTED),
        ("unused", Flags::UNUSED),
        ("absent", Flags::ABSENT),
        ("read-only-on", Flags::READ_ONLY_ON),
        ("read-only-off", Flags::READ_ONLY_OFF),
        ("growfs-on", Flags::GROWFS_ON),
        ("growfs-off", Flags::GROWFS_OFF),
    ];

    /// True if any bit of `o` is set.
    pub fn any(self, o: Flags) -> bool {
        self.0 & o.0 != 0
    }

    fn parse(s: &str) -> Result<Flags, PolicyError> {
        match s {
            "*" | "open" => return Ok(Flags::OPEN),
            "-" | "ignore" => return Ok(Flags(Flags::UNUSED.0 | Flags::ABSENT.0)),
            "~" => return Ok(Flags::ABSENT),
            _ => {}
        }
        let mut f = 0u16;
        for w in s.split('+') {
            let bit = match w {
                "open" => Flags::OPEN,
                "ignore" => Flags(Flags::UNUSED.0 | Flags::ABSENT.0),
                _ => Flags::NAMES
                    .iter()
                    .find(|(n, _)| *n == w)
                    .map(|(_, b)| *b)
                    .ok_or_else(|| PolicyError::UnknownFlag(w.to_string()))?,
            };
            f |= bit.0;
        }
        let both = |a: Flags, b: Flags| f & a.0 != 0 && f & b.0 != 0;
        if both(Flags::READ_ONLY_ON, Flags::READ_ONLY_OFF)
            || both(Flags::GROWFS_ON, Flags::GROWFS_OFF)
        {
            return Err(PolicyError::Contradiction(s.to_string()));
        }
        Ok(Flags(f))
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<&str> = Flags::NAMES
            .iter()
            .filter(|(_, b)| self.any(*b))
            .map(|(n, _)| *n)
            .collect();
        if words.is_empty() {
            write!(f, "-")
        } else {
            write!(f, "{}", words.join("+"))
        }
    }
}

/// Designators systemd knows.
pub const DESIGNATORS: &[&str] = &[
    "root",
    "usr",
    "home",
    "srv",
    "esp",
    "xbootldr",
    "swap",
    "root-verity",
    "root-verity-sig",
    "usr-verity",
    "usr-verity-sig",
    "tmp",
    "var",
];

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Per-designator flags.
    pub entries: BTreeMap<String, Flags>,
    /// Flags for designators not listed.
    pub default: Flags,
}

/// Why a policy string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not a systemd designator.
    #[error("unknown partition designator '{0}'")]
    UnknownDesignator(String),
    /// Not a known flag.
    #[error("unknown policy flag '{0}'")]
    UnknownFlag(String),
    /// A designator (or the default) appears twice.
    #[error("designator '{0}' is listed twice")]
    Duplicate(String),
    /// An element lacks `=`.
    #[error("policy element '{0}' lacks '='")]
    NoEquals(String),
    /// Both -on and -off of one GPT flag.
    #[error("flags '{0}' require a GPT flag both on and off")]
    Contradiction(String),
}

/// The state a designator is in for a given image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No such partition.
    Absent,
    /// Present but not used.
    Unused,
    /// Used without any protection.
    Unprotected,
    /// Used with verity, no (valid) signature.
    Verity,
    /// Used with verity and a signature that verified against the trust store.
    Signed,
}

impl State {
    /// The policy word for it.
    pub fn word(self) -> &'static str {
        match self {
            State::Absent => "absent",
            State::Unused => "unused",
            State::Unprotected => "unprotected",
            State::Verity => "verity",
            State::Signed => "signed",
        }
    }
}

/// Why a partition is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The state is not among the allowed flags.
    #[error("image policy allows {designator}={allowed}, but the partition is {state}")]
    State {
        /// Designator.
        designator: String,
        /// Allowed flags.
        allowed: String,
        /// The actual state.
        state: &'static str,
    },
    /// The GPT read-only or growfs flag does not match.
    #[error("image policy requires {designator} {flag}")]
    GptFlag {
        /// Designator.
        designator: String,
        /// The failed requirement.
        flag: &'static str,
    },
}

impl Policy {
    /// systemd's "allow everything" (`*`).
    pub fn allow_all() -> Self {
        Policy {
            entries: BTreeMap::new(),
            default: Flags::OPEN,
        }
    }

    /// Our fail-closed default for `image verify`: root or usr must be signed (or absent).
    pub fn signed_only() -> Self {
        Self::parse("root=signed+absent:usr=signed+absent").expect("constant policy")
    }

    /// Parses a policy string.
    pub fn parse(s: &str) -> Result<Self, PolicyError> {
        match s {
            "*" => return Ok(Self::allow_all()),
            "-" => return Self::parse("=unused+absent"),
            "~" => return Self::parse("=absent"),
            _ => {}
        }
        let mut entries = BTreeMap::new();
        let mut default = None;
        for el in s.split(':').filter(|e| !e.is_empty()) {
            let (d, f) = el
                .split_once('=')
                .ok_or_else(|| PolicyError::NoEquals(el.to_string()))?;
            let flags = Flags::parse(f)?;
            if d.is_empty() {
                if default.replace(flags).is_some() {
                    return Err(PolicyError::Duplicate("(default)".into()));
                }
                continue;
            }
            if !DESIGNATORS.contains(&d) {
                return Err(PolicyError::UnknownDesignator(d.to_string()));
            }
            if entries.insert(d.to_string(), flags).is_some() {
                return Err(PolicyError::Duplicate(d.to_string()));
            }
        }
        Ok(Policy {
            entries,
            default: default.unwrap_or(Flags(Flags::UNUSED.0 | Flags::ABSENT.0)),
        })
    }

    /// The flags that apply to a designator.
    pub fn flags(&self, designator: &str) -> Flags {
        self.entries
            .get(designator)
            .copied()
            .unwrap_or(self.default)
    }

    /// Decides one designator. `gpt_ro`/`gpt_growfs` are the partition's GPT attribute bits (None for
    /// images without a partition table).
    pub fn check(
        &self,
        designator: &str,
        state: State,
        gpt_ro: Option<bool>,
        gpt_growfs: Option<bool>,
    ) -> Result<(), Denied> {
        let f = self.flags(designator);
        let need = match state {
            State::Absent => Flags::ABSENT.0,
            State::Unused => Flags::UNUSED.0,
            State::Unprotected => Flags::UNPROTECTED.0,
            // A signed partition qualifies as verity and unprotected too.
            State::Verity => Flags::VERITY.0 | Flags::UNPROTECTED.0,
            State::Signed => Flags::SIGNED.0 | Flags::VERITY.0 | Flags::UNPROTECTED.0,
        };
        if f.0 & need == 0 {
            return Err(Denied::State {
                designator: designator.to_string(),
                allowed: f.to_string(),
                state: state.word(),
            });
        }
        let gate = |v: Option<bool>, on: Flags, off: Flags, on_s, off_s| match v {
            Some(false) if f.any(on) => Err(Denied::GptFlag {
                designator: designator.to_string(),
                flag: on_s,
            }),
            Some(true) if f.any(off) => Err(Denied::GptFlag {
                designator: designator.to_string(),
                flag: off_s,
            }),
            _ => Ok(()),
        };
        if matches!(state, State::Absent | State::Unused) {
            return Ok(());
        }
        gate(
            gpt_ro,
            Flags::READ_ONLY_ON,
            Flags::READ_ONLY_OFF,
            "read-only-on",
            "read-only-off",
        )?;
        gate(
            gpt_growfs,
            Flags::GROWFS_ON,
            Flags::GROWFS_OFF,
            "growfs-on",
            "growfs-off",
        )
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .entries
            .iter()
            .map(|(d, fl)| format!("{d}={fl}"))
            .collect();
        parts.push(format!("={}", self.default));
        write!(f, "{}", parts.join(":"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let p = Policy::parse("root=verity+signed:usr=absent:=unused+absent").unwrap();
        assert_eq!(p.flags("root"), Flags(Flags::VERITY.0 | Flags::SIGNED.0));
        assert_eq!(p.flags("usr"), Flags::ABSENT);
        assert_eq!(p.flags("home"), Flags(48));
        assert_eq!(Policy::parse("*").unwrap().flags("root"), Flags::OPEN);
        assert_eq!(Policy::parse("-").unwrap().flags("root"), Flags(48));
        assert_eq!(Policy::parse("~").unwrap().flags("usr"), Flags::ABSENT);
        assert_eq!(
            Policy::parse("root=open").unwrap().flags("root"),
            Flags::OPEN
        );
        assert_eq!(
            Policy::parse("root=*:usr=-:home=~").unwrap().flags("home"),
            Flags::ABSENT
        );
        assert_eq!(
            Policy::parse("rot=verity"),
            Err(PolicyError::UnknownDesignator("rot".into()))
        );
        assert_eq!(
            Policy::parse("root=verty"),
            Err(PolicyError::UnknownFlag("verty".into()))
        );
        assert_eq!(
            Policy::parse("root=verity:root=signed"),
            Err(PolicyError::Duplicate("root".into()))
        );
        assert_eq!(
            Policy::parse("root"),
            Err(PolicyError::NoEquals("root".into()))
        );
        assert!(matches!(
            Policy::parse("root=verity+read-only-on+read-only-off"),
            Err(PolicyError::Contradiction(_))
        ));
        let s = Policy::parse("root=signed+absent:usr=absent")
            .unwrap()
            .to_string();
        assert_eq!(s, "root=signed+absent:usr=absent:=unused+absent");
        assert_eq!(Policy::parse(&s).unwrap().to_string(), s);
    }

    #[test]
    fn decisions() {
        use State::*;
        let signed = Policy::signed_only();
        assert!(signed.check("root", Signed, None, None).is_ok());
        assert!(signed.check("root", Verity, None, None).is_err());
        assert!(signed.check("root", Unprotected, None, None).is_err());
        assert!(signed.check("usr", Absent, None, None).is_ok());
        let verity = Policy::parse("root=verity").unwrap();
        assert!(verity.check("root", Signed, None, None).is_ok());
        assert!(verity.check("root", Verity, None, None).is_ok());
        assert!(verity.check("root", Unprotected, None, None).is_err());
        assert!(verity.check("root", Absent, None, None).is_err());
        assert!(verity.check("home", Unused, None, None).is_ok());
        assert!(verity.check("home", Unprotected, None, None).is_err());
        let unprot = Policy::parse("root=unprotected").unwrap();
        assert!(unprot.check("root", Signed, None, None).is_ok());
        let ro = Policy::parse("root=verity+read-only-on").unwrap();
        assert!(ro.check("root", Verity, Some(true), None).is_ok());
        assert_eq!(
            ro.check("root", Verity, Some(false), None),
            Err(Denied::GptFlag {
                designator: "root".into(),
                flag: "read-only-on"
            })
        );
        let gf = Policy::parse("root=verity+growfs-off").unwrap();
        assert!(gf.check("root", Verity, None, Some(true)).is_err());
        assert!(Policy::parse("-")
            .unwrap()
            .check("root", Verity, None, None)
            .is_err());
        assert!(Policy::parse("*")
            .unwrap()
            .check("root", Unprotected, None, None)
            .is_ok());
    }
}

//! os-release and extension-release files: the parser (systemd's env-file syntax) and systemd's
//! `extension_release_validate` decision order, step by step as spec/systemd.md section 2.3 gives it.
//! Pure core.

use super::Class;
use std::collections::BTreeMap;

/// Largest release file we parse ([`crate::limits::RELEASE_FILE`]).
pub const MAX_SIZE: usize = crate::limits::RELEASE_FILE;

/// Parsed `KEY=value` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// The assignments, last one wins.
    pub fields: BTreeMap<String, String>,
}

/// Why a release file could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseParseError {
    /// Larger than [`MAX_SIZE`].
    #[error("release file is larger than 64 KiB")]
    TooLarge,
    /// Not UTF-8.
    #[error("release file is not UTF-8")]
    NotUtf8,
    /// A quoted value is not closed.
    #[error("line {0}: unterminated quoted value")]
    Unterminated(usize),
}

impl OsRelease {
    /// Parses os-release syntax: `#` comments, `KEY=value` with optional single or double quotes,
    /// backslash escapes in double quotes and unquoted values; lines without a valid key are
    /// skipped (systemd warns and ignores them).
    pub fn parse(buf: &[u8]) -> Result<Self, ReleaseParseError> {
        if buf.len() > MAX_SIZE {
            return Err(ReleaseParseError::TooLarge);
        }
        let text = std::str::from_utf8(buf).map_err(|_| ReleaseParseError::NotUtf8)?;
        let mut fields = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let k = k.trim();
            if k.is_empty()
                || k.starts_with(|c: char| c.is_ascii_digit())
                || !k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
            {
                continue;
            }
            let v = unquote(v.trim()).ok_or(ReleaseParseError::Unterminated(n + 1))?;
            fields.insert(k.to_string(), v);
        }
        Ok(Self { fields })
    }

    /// A field, treating an empty value as absent (as systemd's `isempty()` does).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .get(key)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// True when there are no fields at all.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Unquotes a value in one pass (no recursion: a value of 64 KiB of `a a a ...` is one loop, not
/// 32768 nested calls). Output is never longer than the input.
fn unquote(v: &str) -> Option<String> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '"') | (None, '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => out.push(c),
            (_, '\\') => out.push(chars.next()?),
            (None, c) if c.is_whitespace() => {
                // Unquoted whitespace: a run of it stands as its first character, and at the end
                // of the value it is dropped (systemd strips trailing blanks).
                while chars.next_if(|n| n.is_whitespace()).is_some() {}
                if chars.peek().is_none() {
                    break;
                }
                out.push(c);
            }
            (_, c) => out.push(c),
        }
    }
    if quote.is_some() {
        return None;
    }
    Some(out)
}

/// The scope the host requires of an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Running as a booted system.
    System,
    /// Running in the initrd.
    Initrd,
    /// portabled.
    Portable,
}

impl Scope {
    /// The word used in SYSEXT_SCOPE=.
    pub fn word(self) -> &'static str {
        match self {
            Scope::System => "system",
            Scope::Initrd => "initrd",
            Scope::Portable => "portable",
        }
    }
}

/// What the host side of the check needs.
#[derive(Debug, Clone)]
pub struct Host<'a> {
    /// The host's os-release.
    pub os_release: &'a OsRelease,
    /// systemd's id of the running kernel's architecture (`x86-64`).
    pub arch: &'a str,
    /// Required scope.
    pub scope: Scope,
    /// Which class the image is merged as (chooses SYSEXT_* or CONFEXT_* fields).
    pub class: Class,
}

/// Why an extension is accepted (which branch of the algorithm decided).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// ID=_any.
    AnyId,
    /// Host has neither VERSION_ID nor the level field (rolling release).
    Rolling,
    /// Both define the level field and they are equal.
    LevelMatch,
    /// VERSION_ID equal.
    VersionMatch,
    /// Nothing left to compare (host has a level, image has none, host has no VERSION_ID).
    Fallthrough,
}

/// Why an extension is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// The host os-release has no ID (systemd refuses to match anything against such a host).
    #[error("host os-release has no ID")]
    HostNoId,
    /// No extension-release data.
    #[error("no extension-release data")]
    NoData,
    /// The scope list does not contain the required scope.
    #[error("scope '{scope}' is not in the extension's scope list '{list}'")]
    Scope {
        /// Required scope.
        scope: &'static str,
        /// The image's list.
        list: String,
    },
    /// ARCHITECTURE differs from the host kernel's.
    #[error("ARCHITECTURE={image} does not match the host architecture {host}")]
    Architecture {
        /// Image value.
        image: String,
        /// Host value.
        host: String,
    },
    /// ID missing or empty.
    #[error("extension-release has no ID=")]
    NoId,
    /// ID not the host's ID nor in ID_LIKE.
    #[error("ID={image} matches neither host ID={host} nor ID_LIKE={like}")]
    Id {
        /// Image value.
        image: String,
        /// Host ID.
        host: String,
        /// Host ID_LIKE.
        like: String,
    },
    /// Level fields differ.
    #[error("{field}={image} does not match host {field}={host}")]
    Level {
        /// SYSEXT_LEVEL or CONFEXT_LEVEL.
        field: &'static str,
        /// Image value.
        image: String,
        /// Host value.
        host: String,
    },
    /// Host has VERSION_ID, image none.
    #[error("host has VERSION_ID={0} but the extension has no VERSION_ID= (nor a matching level)")]
    NoVersionId(String),
    /// VERSION_ID differs.
    #[error("VERSION_ID={image} does not match host VERSION_ID={host}")]
    VersionId {
        /// Image value.
        image: String,
        /// Host value.
        host: String,
    },
}

fn prefix(class: Class) -> &'static str {
    match class {
        Class::Sysext => "SYSEXT",
        Class::Confext => "CONFEXT",
    }
}

/// systemd's `extension_release_validate` (v257, with ID_LIKE from v258), in its order.
pub fn validate(host: &Host<'_>, ext: &OsRelease) -> Result<Accept, Reject> {
    let h = host.os_release;
    let host_id = h.get("ID").ok_or(Reject::HostNoId)?;
    if ext.is_empty() {
        return Err(Reject::NoData);
    }
    let p = prefix(host.class);
    let scope_key = format!("{p}_SCOPE");
    let list = ext.get(&scope_key).unwrap_or("system portable");
    if !list.split_whitespace().any(|w| w == host.scope.word()) {
        return Err(Reject::Scope {
            scope: host.scope.word(),
            list: list.to_string(),
        });
    }
    if let Some(a) = ext.get("ARCHITECTURE") {
        if a != "_any" && a != host.arch {
            return Err(Reject::Architecture {
                image: a.into(),
                host: host.arch.into(),
            });
        }
    }
    let id = ext.get("ID").ok_or(Reject::NoId)?;
    if id == "_any" {
        return Ok(Accept::AnyId);
    }
    let like = h.get("ID_LIKE").unwrap_or("");
    if id != host_id && !like.split_whitespace().any(|w| w == id) {
        return Err(Reject::Id {
            image: id.into(),
            host: host_id.into(),
            like: like.into(),
        });
    }
    let level_key: &'static str = match host.class {
        Class::Sysext => "SYSEXT_LEVEL",
        Class::Confext => "CONFEXT_LEVEL",
    };
    let host_version = h.get("VERSION_ID");
    let host_level = h.get(level_key);
    if host_version.is_none() && host_level.is_none() {
        return Ok(Accept::Rolling);
    }
    if let (Some(hl), Some(el)) = (host_level, ext.get(level_key)) {
        return if hl == el {
            Ok(Accept::LevelMatch)
        } else {
            Err(Reject::Level {
                field: level_key,
                image: el.into(),
                host: hl.into(),
            })
        };
    }
    if let Some(hv) = host_version {
        let ev = ext
            .get("VERSION_ID")
            .ok_or_else(|| Reject::NoVersionId(hv.into()))?;
        return if ev == hv {
            Ok(Accept::VersionMatch)
        } else {
            Err(Reject::VersionId {
                image: ev.into(),
                host: hv.into(),
            })
        };
    }
    Ok(Accept::Fallthrough)
}

/// The name an extension-release file must carry for an image file name: `.raw`, then
/// `.sysext`/`.confext` stripped, then cut at the first `_` or `+` (`foo_1.2.raw` -> `foo`).
pub fn image_name(file_name: &str) -> &str {
    let n = file_name.strip_suffix(".raw").unwrap_or(file_name);
    let n = n
        .strip_suffix(".sysext")
        .or_else(|| n.strip_suffix(".confext"))
        .unwrap_or(n);
    match n.find(['_', '+']) {
        Some(i) => &n[..i],
        None => n,
    }
}

/// The name an extension-release file must carry: the image name cut at the first `_` or `+`
/// (version and boot-counter suffixes).
pub fn release_name(image_name: &str) -> &str {
    let end = image_name.find(['_', '+']).unwrap_or(image_name.len());
    &image_name[..end]
}

/// Where the extension-release file of `name` lives inside the image for a class.
pub fn release_path(class: Class, name: &str) -> String {
    match class {
        Class::Sysext => format!("usr/lib/extension-release.d/extension-release.{name}"),
        Class::Confext => format!("etc/extension-release.d/extension-release.{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> OsRelease {
        OsRelease::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn parser() {
        let r = rel("# c\nID=debian\nNAME=\"Debian GNU/Linux\"\nX='a \"b\"'\nY=a\\ b\n bad line\n1A=x\nE=\nZ=\"q\\\"q\"\n");
        assert_eq!(r.get("ID"), Some("debian"));
        assert_eq!(r.get("NAME"), Some("Debian GNU/Linux"));
        assert_eq!(r.get("X"), Some("a \"b\""));
        assert_eq!(r.get("Y"), Some("a b"));
        assert_eq!(r.get("Z"), Some("q\"q"));
        assert_eq!(r.get("E"), None);
        assert_eq!(r.get("1A"), None);
        assert_eq!(
            OsRelease::parse(b"A=\"open\n"),
            Err(ReleaseParseError::Unterminated(1))
        );
    }

    #[test]
    fn point5_long_unquoted_values_parse_iteratively() {
        // 64 KiB of "a " used to recurse once per word and overflow the stack.
        let mut text = String::from("ID=debian\nX=");
        while text.len() < MAX_SIZE - 8 {
            text.push_str("a  ");
        }
        text.push_str("b  \n");
        let r = rel(&text);
        let x = r.get("X").unwrap();
        assert!(
            x.starts_with("a a a ") && x.ends_with(" a b"),
            "{}",
            &x[x.len() - 10..]
        );
        assert!(!x.contains("  "));
        assert_eq!(r.get("ID"), Some("debian"));
        // Whitespace runs collapse to their first character; quotes span words.
        assert_eq!(rel("X=a \t b \"c  d\"  \n").get("X"), Some("a b c  d"));
        assert_eq!(rel("X=a\t\tb").get("X"), Some("a\tb"));
        assert_eq!(
            OsRelease::parse(b"X=a b 'c\n"),
            Err(ReleaseParseError::Unterminated(1))
        );
        let mut big = text.into_bytes();
        big.resize(MAX_SIZE + 1, b'a');
        assert_eq!(OsRelease::parse(&big), Err(ReleaseParseError::TooLarge));
    }

    #[test]
    fn names() {
        assert_eq!(image_name("foo.raw"), "foo");
        assert_eq!(image_name("foo_1.2.raw"), "foo");
        assert_eq!(image_name("foo+3-1.sysext.raw"), "foo");
        assert_eq!(image_name("bar.confext.raw"), "bar");
        assert_eq!(
            release_path(Class::Confext, "bar"),
            "etc/extension-release.d/extension-release.bar"
        );
    }

    /// host, extension, class, scope, host arch, expected outcome (Err: the Reject variant's name).
    type Case = (
        &'static str,
        &'static str,
        Class,
        Scope,
        &'static str,
        Result<Accept, &'static str>,
    );

    /// Every branch of spec/systemd.md 2.3, as host/extension pairs.
    #[test]
    fn decision_table() {
        use Accept::*;
        let debian12 = "ID=debian\nVERSION_ID=12\n";
        let leveled = "ID=fedora\nVERSION_ID=40\nSYSEXT_LEVEL=1.0\nCONFEXT_LEVEL=2\n";
        let rolling = "ID=arch\nID_LIKE=archlinux\n";
        let level_only = "ID=debian\nSYSEXT_LEVEL=7\n";
        let like = "ID=ubuntu\nID_LIKE=debian\nVERSION_ID=24.04\n";
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            // 1. no data
            (debian12, "", Class::Sysext, Scope::System, "x86-64", Err("NoData")),
            // 2. scope: default list lacks initrd; explicit list with initrd; list without system
            (debian12, "ID=debian\nVERSION_ID=12\n", Class::Sysext, Scope::Initrd, "x86-64", Err("Scope")),
            (debian12, "ID=debian\nVERSION_ID=12\nSYSEXT_SCOPE=initrd\n", Class::Sysext, Scope::Initrd, "x86-64", Ok(VersionMatch)),
            (debian12, "ID=debian\nVERSION_ID=12\nSYSEXT_SCOPE=initrd portable\n", Class::Sysext, Scope::System, "x86-64", Err("Scope")),
            (debian12, "ID=debian\nVERSION_ID=12\nSYSEXT_SCOPE=initrd\n", Class::Confext, Scope::System, "x86-64", Ok(VersionMatch)),
            (debian12, "ID=debian\nVERSION_ID=12\nCONFEXT_SCOPE=initrd\n", Class::Confext, Scope::System, "x86-64", Err("Scope")),
            (debian12, "ID=debian\nVERSION_ID=12\n", Class::Sysext, Scope::Portable, "x86-64", Ok(VersionMatch)),
            // 3. architecture
            (debian12, "ID=debian\nVERSION_ID=12\nARCHITECTURE=arm64\n", Class::Sysext, Scope::System, "x86-64", Err("Architecture")),
            (debian12, "ID=debian\nVERSION_ID=12\nARCHITECTURE=x86-64\n", Class::Sysext, Scope::System, "x86-64", Ok(VersionMatch)),
            (debian12, "ID=debian\nVERSION_ID=12\nARCHITECTURE=_any\n", Class::Sysext, Scope::System, "x86-64", Ok(VersionMatch)),
            // 4. ID missing / empty / _any (accepted before versions are looked at)
            (debian12, "VERSION_ID=12\n", Class::Sysext, Scope::System, "x86-64", Err("NoId")),
            (debian12, "ID=\nVERSION_ID=12\n", Class::Sysext, Scope::System, "x86-64", Err("NoId")),
            (debian12, "ID=_any\nVERSION_ID=99\n", Class::Sysext, Scope::System, "x86-64", Ok(AnyId)),
            // 5. ID and ID_LIKE
            (debian12, "ID=fedora\nVERSION_ID=12\n", Class::Sysext, Scope::System, "x86-64", Err("Id")),
            (like, "ID=debian\nVERSION_ID=24.04\n", Class::Sysext, Scope::System, "x86-64", Ok(VersionMatch)),
            (like, "ID=deb\nVERSION_ID=24.04\n", Class::Sysext, Scope::System, "x86-64", Err("Id")),
            // 6. rolling host
            (rolling, "ID=arch\n", Class::Sysext, Scope::System, "x86-64", Ok(Rolling)),
            (rolling, "ID=archlinux\nVERSION_ID=1\nSYSEXT_LEVEL=3\n", Class::Sysext, Scope::System, "x86-64", Ok(Rolling)),
            // 7. both levels: equal, different (VERSION_ID then not consulted), class picks the field
            (leveled, "ID=fedora\nSYSEXT_LEVEL=1.0\nVERSION_ID=39\n", Class::Sysext, Scope::System, "x86-64", Ok(LevelMatch)),
            (leveled, "ID=fedora\nSYSEXT_LEVEL=1.1\nVERSION_ID=40\n", Class::Sysext, Scope::System, "x86-64", Err("Level")),
            (leveled, "ID=fedora\nCONFEXT_LEVEL=2\n", Class::Confext, Scope::System, "x86-64", Ok(LevelMatch)),
            (leveled, "ID=fedora\nSYSEXT_LEVEL=2\nVERSION_ID=40\n", Class::Confext, Scope::System, "x86-64", Ok(VersionMatch)),
            // 8. VERSION_ID: missing, different, equal
            (debian12, "ID=debian\n", Class::Sysext, Scope::System, "x86-64", Err("NoVersionId")),
            (debian12, "ID=debian\nVERSION_ID=11\n", Class::Sysext, Scope::System, "x86-64", Err("VersionId")),
            (leveled, "ID=fedora\nVERSION_ID=40\n", Class::Sysext, Scope::System, "x86-64", Ok(VersionMatch)),
            // 9. host has a level but no VERSION_ID, image has no level
            (level_only, "ID=debian\n", Class::Sysext, Scope::System, "x86-64", Ok(Fallthrough)),
            (level_only, "ID=debian\nSYSEXT_LEVEL=8\n", Class::Sysext, Scope::System, "x86-64", Err("Level")),
        ];
        for (i, (h, e, class, scope, arch, want)) in cases.into_iter().enumerate() {
            let hr = rel(h);
            let host = Host {
                os_release: &hr,
                arch,
                scope,
                class,
            };
            let got = validate(&host, &rel(e));
            match (got, want) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "case {i}"),
                (Err(r), Err(name)) => {
                    let dbg = format!("{r:?}");
                    assert!(dbg.starts_with(name), "case {i}: {dbg} is not {name}");
                }
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn validate_sysext(host: &str, ext: &str, class: Class) -> Result<Accept, Reject> {
        let hr = rel(host);
        let host = Host {
            os_release: &hr,
            arch: "x86-64",
            scope: Scope::System,
            class,
        };
        validate(&host, &rel(ext))
    }

    /// The merge module's table (moved here with its release matching): a host with both
    /// VERSION_ID and SYSEXT_LEVEL and ID_LIKE.
    #[test]
    fn decision_order_table() {
        let host = "ID=debian\nID_LIKE=\"ubuntu foo\"\nVERSION_ID=\"12\"\nSYSEXT_LEVEL=1.0\n";
        let t: &[(&str, Result<(), &str>)] = &[
            ("ID=debian\nSYSEXT_LEVEL=1.0", Ok(())),
            ("ID=debian\nSYSEXT_LEVEL=2.0", Err("level")),
            ("ID=debian\nVERSION_ID=12", Ok(())),
            ("ID=debian\nVERSION_ID=11", Err("version")),
            ("ID=debian", Err("version")),
            ("ID=ubuntu\nVERSION_ID=12", Ok(())),
            ("ID=fedora\nVERSION_ID=12", Err("id")),
            ("ID=_any\nVERSION_ID=1", Ok(())),
            ("VERSION_ID=12", Err("noid")),
            ("ID=_any\nARCHITECTURE=arm64", Err("arch")),
            ("ID=_any\nARCHITECTURE=x86-64", Ok(())),
            ("ID=_any\nSYSEXT_SCOPE=initrd", Err("scope")),
            ("ID=_any\nSYSEXT_SCOPE=initrd system", Ok(())),
        ];
        for (img, want) in t {
            let got = validate_sysext(host, img, Class::Sysext)
                .map(|_| ())
                .map_err(|e| match e {
                    Reject::Level { .. } => "level",
                    Reject::VersionId { .. } | Reject::NoVersionId(_) => "version",
                    Reject::Id { .. } => "id",
                    Reject::NoId => "noid",
                    Reject::Architecture { .. } => "arch",
                    Reject::Scope { .. } => "scope",
                    Reject::HostNoId => "hostnoid",
                    Reject::NoData => "nodata",
                });
            assert_eq!(&got, want, "{img}");
        }
    }

    #[test]
    fn rolling_host_accepts_and_host_without_id_is_an_error() {
        assert!(validate_sysext("ID=arch", "ID=arch\nVERSION_ID=9", Class::Confext).is_ok());
        assert_eq!(
            validate_sysext("VERSION_ID=1", "ID=_any", Class::Sysext),
            Err(Reject::HostNoId)
        );
        // Host level but no VERSION_ID, image without level: accepted (systemd's edge case).
        assert!(validate_sysext("ID=x\nSYSEXT_LEVEL=2", "ID=x", Class::Sysext).is_ok());
    }
}

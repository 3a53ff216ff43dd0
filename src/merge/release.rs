//! extension-release compatibility (spec/systemd.md section 2.3, systemd 257's
//! `extension_release_validate`), pure: os-release parsing and the decision. Kept here until the
//! image module's release matching lands; the decision order is systemd's.

use super::plan::Class;
use std::collections::BTreeMap;

/// Parsed os-release style key/value pairs.
pub type Fields = BTreeMap<String, String>;

/// Parses os-release syntax: `KEY=value`, optional single or double quotes, `#` comments.
pub fn parse_os_release(text: &str) -> Fields {
    let mut m = Fields::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            v[1..v.len() - 1]
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
        } else {
            v.to_string()
        };
        m.insert(k.trim().to_string(), v);
    }
    m
}

/// Why an image was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incompatible {
    /// The host os-release has no ID (a hard error in systemd).
    #[error("host os-release has no ID")]
    HostNoId,
    /// The image's scope list does not include the required scope.
    #[error("scope {required} not in the image's {field} ({have})")]
    Scope {
        /// `system` or `initrd`.
        required: &'static str,
        /// `SYSEXT_SCOPE` / `CONFEXT_SCOPE`.
        field: &'static str,
        /// The image's list.
        have: String,
    },
    /// Architecture mismatch.
    #[error("ARCHITECTURE={image} does not match the host's {host}")]
    Architecture {
        /// Image value.
        image: String,
        /// Host value.
        host: String,
    },
    /// No ID in the extension-release file.
    #[error("extension-release has no ID")]
    NoId,
    /// ID differs from the host's ID and ID_LIKE.
    #[error("ID={image} is neither the host's ID={host} nor in its ID_LIKE")]
    Id {
        /// Image value.
        image: String,
        /// Host value.
        host: String,
    },
    /// Level fields differ.
    #[error("{field}={image} does not match the host's {field}={host}")]
    Level {
        /// `SYSEXT_LEVEL` / `CONFEXT_LEVEL`.
        field: &'static str,
        /// Image value.
        image: String,
        /// Host value.
        host: String,
    },
    /// VERSION_ID differs or is missing.
    #[error("VERSION_ID={image} does not match the host's VERSION_ID={host}")]
    VersionId {
        /// Image value (empty = missing).
        image: String,
        /// Host value.
        host: String,
    },
}

/// The running kernel architecture as a systemd architecture id (`uname -m` mapped).
pub fn systemd_arch(uname_machine: &str) -> &str {
    match uname_machine {
        "x86_64" => "x86-64",
        "i386" | "i486" | "i586" | "i686" => "x86",
        "aarch64" => "arm64",
        "aarch64_be" => "arm64-be",
        "riscv64" => "riscv64",
        "ppc64le" => "ppc64-le",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        other => other,
    }
}

fn get<'a>(m: &'a Fields, k: &str) -> Option<&'a str> {
    m.get(k).map(String::as_str).filter(|v| !v.is_empty())
}

/// systemd's decision, in its order. `in_initrd` selects the required scope.
pub fn validate(
    class: Class,
    host: &Fields,
    image: &Fields,
    arch: &str,
    in_initrd: bool,
) -> Result<(), Incompatible> {
    let host_id = get(host, "ID").ok_or(Incompatible::HostNoId)?;
    let (scope_field, level_field) = match class {
        Class::Sysext => ("SYSEXT_SCOPE", "SYSEXT_LEVEL"),
        Class::Confext => ("CONFEXT_SCOPE", "CONFEXT_LEVEL"),
    };
    let required = if in_initrd { "initrd" } else { "system" };
    let scope = get(image, scope_field).unwrap_or("system portable");
    if !scope.split_whitespace().any(|s| s == required) {
        return Err(Incompatible::Scope {
            required,
            field: scope_field,
            have: scope.into(),
        });
    }
    if let Some(a) = get(image, "ARCHITECTURE") {
        if a != "_any" && a != arch {
            return Err(Incompatible::Architecture {
                image: a.into(),
                host: arch.into(),
            });
        }
    }
    let id = get(image, "ID").ok_or(Incompatible::NoId)?;
    if id == "_any" {
        return Ok(());
    }
    let like = get(host, "ID_LIKE").unwrap_or("");
    if id != host_id && !like.split_whitespace().any(|w| w == id) {
        return Err(Incompatible::Id {
            image: id.into(),
            host: host_id.into(),
        });
    }
    let host_version = get(host, "VERSION_ID");
    let host_level = get(host, level_field);
    if host_version.is_none() && host_level.is_none() {
        return Ok(());
    }
    if let (Some(h), Some(i)) = (host_level, get(image, level_field)) {
        return if h == i {
            Ok(())
        } else {
            Err(Incompatible::Level {
                field: level_field,
                image: i.into(),
                host: h.into(),
            })
        };
    }
    if let Some(h) = host_version {
        let i = get(image, "VERSION_ID").unwrap_or("");
        if i != h {
            return Err(Incompatible::VersionId {
                image: i.into(),
                host: h.into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Fields {
        parse_os_release(s)
    }

    #[test]
    fn decision_order_table() {
        let host = f("ID=debian\nID_LIKE=\"ubuntu foo\"\nVERSION_ID=\"12\"\nSYSEXT_LEVEL=1.0\n");
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
            let got =
                validate(Class::Sysext, &host, &f(img), "x86-64", false).map_err(|e| match e {
                    Incompatible::Level { .. } => "level",
                    Incompatible::VersionId { .. } => "version",
                    Incompatible::Id { .. } => "id",
                    Incompatible::NoId => "noid",
                    Incompatible::Architecture { .. } => "arch",
                    Incompatible::Scope { .. } => "scope",
                    Incompatible::HostNoId => "hostnoid",
                });
            assert_eq!(&got, want, "{img}");
        }
    }

    #[test]
    fn rolling_host_accepts_and_host_without_id_is_an_error() {
        let rolling = f("ID=arch");
        assert_eq!(
            validate(
                Class::Confext,
                &rolling,
                &f("ID=arch\nVERSION_ID=9"),
                "x86-64",
                false
            ),
            Ok(())
        );
        assert_eq!(
            validate(
                Class::Sysext,
                &f("VERSION_ID=1"),
                &f("ID=_any"),
                "x86-64",
                false
            ),
            Err(Incompatible::HostNoId)
        );
        // Host level but no VERSION_ID, image without level: accepted (systemd's edge case).
        assert_eq!(
            validate(
                Class::Sysext,
                &f("ID=x\nSYSEXT_LEVEL=2"),
                &f("ID=x"),
                "x86-64",
                false
            ),
            Ok(())
        );
    }
}

//! systemd's versioned directories (`systemd.v(7)`, vpick, systemd 256+): `foo.raw.v/` holding
//! `foo_VERSION[_ARCH][+LEFT[-DONE]].raw`, of which the newest that fits the host is used.
//!
//! [`pick`] is the pure choice from a directory listing, with the rules of systemd's
//! `make_choice()` (src/shared/vpick.c), in its order:
//! 1. the entry must be `BASENAME_` + variable part + suffix;
//! 2. a trailing `+LEFT` or `+LEFT-DONE` (boot-assessment counters) is cut off the variable part
//!    when it parses, else it stays part of the version;
//! 3. after the last `_`, an architecture id: with no architecture asked for, the host's native
//!    one, its secondary one (x86 on x86-64), or none/an unknown word ("any") are accepted, in that
//!    order of preference; anything else (`_sparc`) drops the entry. The last `_` is cut off even
//!    when the word after it is not an architecture, as systemd does;
//! 4. the rest must be a valid version (letters, digits, `.,_-+`);
//! 5. the best entry: tries left over none left, then the newer version (`strverscmp_improved`),
//!    then the preferred architecture, then more tries left, then fewer tries done, then the
//!    greater file name.
//!
//! Only then is the winner's file type checked; a wrong type makes the whole directory unusable
//! ([`PickError`]), it does not fall back to the next entry. The same holds for rollback
//! protection: the pick is one image, and if its verified version is below its floor the image is
//! refused; nothing here offers an older entry in its place.
//!
//! tests/vpick_oracle.rs checks this against systemd 257's own `systemd-vpick` on generated
//! directories.
//!
//! In discovery (`discover-image.c`), `NAME.raw.v/` (or `NAME.sysext.raw.v/`) picks raw images or
//! block devices `NAME_*.raw`; `NAME.v/` picks directory trees `NAME_*` ([`filter_for_dir`]).

use super::plan::Class;
use crate::image::version::strverscmp_improved;
use std::cmp::Ordering;
use std::path::Path;

/// systemd's architecture ids (`architecture_table` in src/basic/architecture.c).
pub const ARCHITECTURES: &[&str] = &[
    "arm64",
    "arm64-be",
    "arm",
    "arm-be",
    "alpha",
    "arc",
    "arc-be",
    "cris",
    "x86-64",
    "x86",
    "ia64",
    "loongarch64",
    "m68k",
    "mips64-le",
    "mips64",
    "mips-le",
    "mips",
    "nios2",
    "parisc64",
    "parisc",
    "ppc64-le",
    "ppc64",
    "ppc",
    "ppc-le",
    "riscv32",
    "riscv64",
    "s390x",
    "s390",
    "sh64",
    "sh",
    "sparc64",
    "sparc",
    "tilegx",
];

/// The architectures a host runs natively, preferred first: its own and, where systemd has one,
/// the secondary (`ARCHITECTURE_SECONDARY` in architecture.h).
pub fn host_architectures(native: &'static str) -> Vec<&'static str> {
    let secondary = match native {
        "x86-64" => Some("x86"),
        "arm64" => Some("arm"),
        "ppc64" => Some("ppc"),
        "ppc64-le" => Some("ppc-le"),
        "s390x" => Some("s390"),
        _ => None,
    };
    std::iter::once(native).chain(secondary).collect()
}

/// The type of a directory entry (after following symlinks, as systemd opens the winner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A block device.
    Block,
    /// A directory.
    Directory,
    /// Anything else (socket, fifo, dangling symlink).
    Other,
}

/// One entry of a `.v/` directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File name.
    pub name: String,
    /// Its type.
    pub kind: EntryKind,
}

/// What to look for.
#[derive(Debug, Clone, Copy)]
pub struct Filter<'a> {
    /// Entries are `BASENAME_...`.
    pub basename: &'a str,
    /// And end in this (`.raw`, or empty for directory trees).
    pub suffix: &'a str,
    /// The winner must be one of these.
    pub kinds: &'a [EntryKind],
    /// Only this architecture; None accepts the host's (and untagged entries).
    pub architecture: Option<&'a str>,
    /// Only this version.
    pub version: Option<&'a str>,
}

/// The chosen entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    /// Its file name in the directory.
    pub file_name: String,
    /// The version part of the name. For ordering only: rollback protection never trusts it.
    pub version: String,
    /// The architecture in the name, None when it has none.
    pub architecture: Option<&'static str>,
    /// `+LEFT`, if the name carries counters.
    pub tries_left: Option<u32>,
    /// `-DONE` (0 when only `+LEFT` is given).
    pub tries_done: Option<u32>,
}

/// Why a directory yields nothing usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    #[error("{name}, the newest entry, is a {found:?}, not a {wanted}")]
    WrongType {
        name: String,
        found: EntryKind,
        wanted: String,
    },
}

fn architecture_id(s: &str) -> Option<&'static str> {
    ARCHITECTURES.iter().copied().find(|a| *a == s)
}

/// `+LEFT` or `+LEFT-DONE`, each 1+ decimal digits fitting in 32 bits (systemd's `parse_tries`).
fn parse_tries(s: &str) -> Option<(u32, u32)> {
    let rest = s.strip_prefix('+')?;
    let digits = |t: &str| {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<u32>().ok())
            .flatten()
    };
    match rest.split_once('-') {
        None => Some((digits(rest)?, 0)),
        Some((l, d)) => Some((digits(l)?, digits(d)?)),
    }
}

/// systemd's `version_is_valid`: a file-name part of letters, digits and `.,_-+`.
fn version_is_valid(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".,_-+".contains(&b))
}

/// One entry that passed the filter, with what the ranking needs.
struct Candidate<'e> {
    entry: &'e Entry,
    version: String,
    arch_index: usize,
    arch: Option<&'static str>,
    tries: Option<(u32, u32)>,
}

fn parse_entry<'e>(
    e: &'e Entry,
    f: &Filter<'_>,
    archs: &[Option<&'static str>],
) -> Option<Candidate<'e>> {
    let mut v: &str = &e.name;
    if !f.basename.is_empty() {
        v = v.strip_prefix(f.basename)?.strip_prefix('_')?;
    }
    v = v.strip_suffix(f.suffix)?;
    let mut tries = None;
    if let Some(plus) = v.rfind('+') {
        if let Some(t) = parse_tries(&v[plus..]) {
            tries = Some(t);
            v = &v[..plus];
        }
    }
    let underscore = v.rfind('_');
    let arch = underscore.and_then(|u| architecture_id(&v[u + 1..]));
    let arch_index = archs.iter().position(|a| *a == arch)?;
    if let Some(u) = underscore {
        v = &v[..u];
    }
    if !version_is_valid(v) || f.version.is_some_and(|want| want != v) {
        return None;
    }
    Some(Candidate {
        entry: e,
        version: v.to_string(),
        arch_index,
        arch,
        tries,
    })
}

/// How `a` ranks against `b`: Greater when `a` is the better choice.
fn rank(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    let left = |c: &Candidate<'_>| c.tries.map_or(u32::MAX, |t| t.0);
    let done = |c: &Candidate<'_>| c.tries.map_or(u32::MAX, |t| t.1);
    (left(a) != 0)
        .cmp(&(left(b) != 0))
        .then_with(|| strverscmp_improved(&a.version, &b.version))
        .then_with(|| b.arch_index.cmp(&a.arch_index))
        .then_with(|| left(a).cmp(&left(b)))
        .then_with(|| done(b).cmp(&done(a)))
        .then_with(|| a.entry.name.as_bytes().cmp(b.entry.name.as_bytes()))
}

/// Chooses from a directory listing as systemd's vpick does (see the module docs); `host` is the
/// host's architectures, preferred first ([`host_architectures`]). None when nothing fits.
pub fn pick(
    entries: &[Entry],
    f: &Filter<'_>,
    host: &[&'static str],
) -> Result<Option<Pick>, PickError> {
    let archs: Vec<Option<&'static str>> = match f.architecture {
        // An id systemd does not know matches nothing (not "untagged").
        Some(a) => match architecture_id(a) {
            Some(id) => vec![Some(id)],
            None => return Ok(None),
        },
        None => host.iter().map(|a| Some(*a)).chain([None]).collect(),
    };
    let Some(best) = entries
        .iter()
        .filter_map(|e| parse_entry(e, f, &archs))
        .max_by(rank)
    else {
        return Ok(None);
    };
    if !f.kinds.is_empty() && !f.kinds.contains(&best.entry.kind) {
        return Err(PickError::WrongType {
            name: best.entry.name.clone(),
            found: best.entry.kind,
            wanted: f
                .kinds
                .iter()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(" or "),
        });
    }
    Ok(Some(Pick {
        file_name: best.entry.name.clone(),
        version: best.version,
        architecture: best.arch,
        tries_left: best.tries.map(|t| t.0),
        tries_done: best.tries.map(|t| t.1),
    }))
}

/// For a search-path entry named `*.v` (a directory), the image name and what to pick inside, as
/// systemd's image discovery derives them: `NAME[.CLASS].raw.v` picks files or block devices
/// `NAME_*.raw`; `NAME[.CLASS].v` picks directories `NAME_*`. None when the name does not qualify.
pub fn filter_for_dir(
    dir_name: &str,
    class: Class,
) -> Option<(String, &'static str, &'static [EntryKind])> {
    let stem = dir_name.strip_suffix(".v")?;
    let (base, suffix, kinds): (&str, &'static str, &'static [EntryKind]) =
        match stem.strip_suffix(".raw") {
            Some(b) => (b, ".raw", &[EntryKind::File, EntryKind::Block]),
            None => (stem, "", &[EntryKind::Directory]),
        };
    let base = base
        .strip_suffix(&format!(".{}", class.name()))
        .unwrap_or(base);
    if base.is_empty()
        || base.starts_with('.')
        || base.contains('/')
        || base.chars().any(char::is_control)
    {
        return None;
    }
    Some((base.to_string(), suffix, kinds))
}

/// Lists a directory for [`pick`] (I/O edge): symlinks are followed, as systemd opens the winner
/// through them; an entry that cannot be stat'ed is `Other`.
pub fn list_dir(dir: &Path) -> std::io::Result<Vec<Entry>> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let kind = match std::fs::metadata(e.path()) {
            Ok(m) if m.is_file() => EntryKind::File,
            Ok(m) if m.is_dir() => EntryKind::Directory,
            Ok(m) if m.file_type().is_block_device() => EntryKind::Block,
            _ => EntryKind::Other,
        };
        out.push(Entry { name, kind });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

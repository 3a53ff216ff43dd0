//! Dissecting an image opened once by file descriptor: a GPT Discoverable Disk Image (data, verity
//! and verity-signature partitions chosen by type UUID and architecture, spec/systemd.md 3.1) or a
//! bare file system with sidecar files (3.5, see [`super::sidecar`]). Nothing is verified here; the
//! result says where everything is and [`super::verify()`] checks it.

use super::arch::{self, Role};
use super::gpt::{self, Gpt, GptError, Guid};
use super::sigpart::{self, SigPart, SigPartError};
use super::Class;
use crate::io::FileSource;
use crate::verity::BlockSource;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A byte range of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Extent {
    /// Start in bytes.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

/// Where the hash tree lives: a partition of the image itself or a sidecar `.verity` file.
pub struct HashDevice {
    /// The descriptor (a duplicate of the image's for a DDI, the sidecar's otherwise).
    pub source: FileSource,
    /// Where the superblock starts.
    pub extent: Extent,
    /// The verity partition's UUID (DDI only).
    pub uuid: Option<Guid>,
}

/// What carries the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// A verity-signature partition (parsed, or why it could not be).
    Json(Result<SigPart, SigPartError>),
    /// A sidecar `.roothash.p7s` / `.usrhash.p7s` (DER PKCS#7).
    P7s(Vec<u8>),
}

/// How the image is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// A GPT disk image.
    Gpt(Gpt),
    /// A bare file system, possibly with sidecar files.
    Bare,
}

/// Options for dissection.
#[derive(Debug, Clone, Default)]
pub struct DissectOptions {
    /// The architecture to accept (systemd id); default: the native one, then its secondary.
    pub arch: Option<String>,
}

/// An image, opened once, with its parts located but not yet verified.
pub struct Dissected {
    /// The image descriptor.
    pub source: FileSource,
    /// Image name (file name without `.raw`, class suffix and version).
    pub name: String,
    /// Class asked for by the file name (`.sysext.raw` / `.confext.raw`).
    pub class_hint: Option<Class>,
    /// GPT or bare.
    pub layout: Layout,
    /// Architecture of the partitions used (DDI only).
    pub arch: Option<&'static str>,
    /// `root` or `usr`.
    pub designator: &'static str,
    /// The file-system partition (the whole file for a bare image).
    pub data: Extent,
    /// The data partition's UUID (DDI only).
    pub data_uuid: Option<Guid>,
    /// GPT attribute bits of the data partition.
    pub data_attrs: Option<u64>,
    /// Hash tree, if any.
    pub verity: Option<HashDevice>,
    /// Signature, if any.
    pub signature: Option<Signature>,
    /// Root hash from a sidecar `.roothash`/`.usrhash` file.
    pub sidecar_root_hash: Option<Vec<u8>>,
}

/// Why an image could not be dissected. [`DissectError::check`] names the verify check it fails.
#[derive(Debug, thiserror::Error)]
pub enum DissectError {
    /// Reading the image or a sidecar failed.
    #[error("{path}: {msg}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        msg: String,
    },
    /// The partition table is invalid.
    #[error("{path}: {err}")]
    Gpt {
        /// The image.
        path: PathBuf,
        /// Which GPT check failed.
        err: GptError,
    },
    /// The partitions do not form exactly one usable set.
    #[error("{path}: {msg}")]
    Partitions {
        /// The image.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Partitions exist only for another architecture.
    #[error("{path}: partitions are for architecture {found}, not {want}")]
    ForeignArch {
        /// The image.
        path: PathBuf,
        /// What the image has.
        found: String,
        /// What was accepted.
        want: String,
    },
    /// A sidecar file is malformed.
    #[error("{path}: {msg}")]
    Sidecar {
        /// The sidecar.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

impl DissectError {
    /// The name of the verify check this failure belongs to.
    pub fn check(&self) -> &'static str {
        match self {
            DissectError::Io { .. } => "open",
            DissectError::Gpt { .. } => "gpt",
            DissectError::Partitions { .. } | DissectError::ForeignArch { .. } => "partitions",
            DissectError::Sidecar { .. } => "sidecar",
        }
    }
}

fn secondary(arch: &str) -> Option<&'static str> {
    match arch {
        "x86-64" => Some("x86"),
        "arm64" => Some("arm"),
        _ => None,
    }
}

impl Dissected {
    /// Dissects the image open as `file` (`path` names it in messages and locates sidecars).
    pub fn open(file: File, path: &Path, opts: &DissectOptions) -> Result<Self, DissectError> {
        let io = |e: std::io::Error| DissectError::Io {
            path: path.to_path_buf(),
            msg: e.to_string(),
        };
        let source = FileSource::from_file(file, path).map_err(io)?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = super::release::image_name(&file_name).to_string();
        let class_hint = Class::from_file_name(&file_name);
        let gpt_err = |err| DissectError::Gpt {
            path: path.to_path_buf(),
            err,
        };
        match gpt::detect_sector(&source) {
            Err(GptError::NoTable) => super::sidecar::dissect_bare(source, path, name, class_hint),
            Err(err) => Err(gpt_err(err)),
            Ok(_) => {
                let table = gpt::read_gpt(&source).map_err(gpt_err)?;
                dissect_gpt(source, path, name, class_hint, table, opts)
            }
        }
    }
}

/// A GPT partition with the architecture and role its type UUID names.
type Classified<'a> = (&'a gpt::Partition, &'static str, Role);

fn dissect_gpt(
    source: FileSource,
    path: &Path,
    name: String,
    class_hint: Option<Class>,
    table: Gpt,
    opts: &DissectOptions,
) -> Result<Dissected, DissectError> {
    let sector = table.sector;
    let usable: Vec<&gpt::Partition> = table
        .partitions
        .iter()
        .filter(|p| p.attrs & gpt::ATTR_NO_AUTO == 0)
        .collect();
    let classified: Vec<Classified> = usable
        .iter()
        .filter_map(|p| arch::classify(p.type_guid).map(|(a, r)| (*p, a, r)))
        .collect();
    let want = opts
        .arch
        .clone()
        .unwrap_or_else(|| arch::native().to_string());
    let mut candidates = vec![want.clone()];
    if opts.arch.is_none() {
        candidates.extend(secondary(&want).map(String::from));
    }
    let has_data = |a: &str| {
        classified
            .iter()
            .any(|(_, pa, r)| *pa == a && matches!(r, Role::Root | Role::Usr))
    };
    let Some(chosen) = candidates.iter().find(|a| has_data(a)).cloned() else {
        let generic = generic_data(path, &usable, &classified, &candidates, want)?;
        return Ok(Dissected {
            source,
            name,
            class_hint,
            layout: Layout::Gpt(table.clone()),
            arch: None,
            designator: "root",
            data: Extent {
                offset: generic.offset(sector),
                size: generic.size(sector),
            },
            data_uuid: Some(generic.uuid),
            data_attrs: Some(generic.attrs),
            verity: None,
            signature: None,
            sidecar_root_hash: None,
        });
    };
    let (designator, data, verity, sig) = partition_set(path, &classified, &chosen)?;
    let io = |e: std::io::Error| DissectError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    let verity = match verity {
        Some(v) => {
            let dup = source.file().try_clone().map_err(io)?;
            Some(HashDevice {
                source: FileSource::from_file(dup, path).map_err(io)?,
                extent: Extent {
                    offset: v.offset(sector),
                    size: v.size(sector),
                },
                uuid: Some(v.uuid),
            })
        }
        None => None,
    };
    let signature = match sig {
        Some(s) => Some(read_signature(&source, path, s, sector)?),
        None => None,
    };
    Ok(Dissected {
        source,
        name,
        class_hint,
        layout: Layout::Gpt(table.clone()),
        arch: arch::by_name(&chosen).map(|a| a.arch),
        designator,
        data: Extent {
            offset: data.offset(sector),
            size: data.size(sector),
        },
        data_uuid: Some(data.uuid),
        data_attrs: Some(data.attrs),
        verity,
        signature,
        sidecar_root_hash: None,
    })
}

fn partitions_error(path: &Path, msg: String) -> DissectError {
    DissectError::Partitions {
        path: path.to_path_buf(),
        msg,
    }
}

/// No root or usr partition for any acceptable architecture: the one generic Linux data
/// partition, or why there is none to use (a foreign architecture, an orphaned verity partition,
/// none at all, or several generic ones).
fn generic_data<'a>(
    path: &Path,
    usable: &[&'a gpt::Partition],
    classified: &[Classified],
    candidates: &[String],
    want: String,
) -> Result<&'a gpt::Partition, DissectError> {
    let perr = |msg: String| partitions_error(path, msg);
    let foreign: Vec<&str> = classified
        .iter()
        .filter(|(_, _, r)| matches!(r, Role::Root | Role::Usr))
        .map(|(_, a, _)| *a)
        .collect();
    if let Some(f) = foreign.first() {
        return Err(DissectError::ForeignArch {
            path: path.to_path_buf(),
            found: f.to_string(),
            want,
        });
    }
    if classified
        .iter()
        .any(|(_, a, _)| candidates.iter().any(|c| c == a))
    {
        return Err(perr(
            "a verity or verity-signature partition has no data partition".into(),
        ));
    }
    let generic: Vec<&gpt::Partition> = usable
        .iter()
        .filter(|p| p.type_guid == arch::LINUX_GENERIC)
        .copied()
        .collect();
    match generic.as_slice() {
        [] => Err(perr("no root, usr or generic Linux data partition".into())),
        [g] => Ok(g),
        _ => Err(perr(format!(
            "{} generic Linux data partitions and no root: which one is meant is ambiguous",
            generic.len()
        ))),
    }
}

/// The one data/verity/signature set of architecture `chosen`: (designator, data, verity,
/// signature). Refuses both designators, several of a kind, and orphaned verity partitions.
#[allow(clippy::type_complexity)]
fn partition_set<'a>(
    path: &Path,
    classified: &[Classified<'a>],
    chosen: &str,
) -> Result<
    (
        &'static str,
        &'a gpt::Partition,
        Option<&'a gpt::Partition>,
        Option<&'a gpt::Partition>,
    ),
    DissectError,
> {
    let perr = |msg: String| partitions_error(path, msg);
    let of = |role: Role| -> Vec<&gpt::Partition> {
        classified
            .iter()
            .filter(|(_, a, r)| *a == chosen && *r == role)
            .map(|(p, _, _)| *p)
            .collect()
    };
    let roots = of(Role::Root);
    let usrs = of(Role::Usr);
    let (designator, data, vrole, srole) = match (roots.as_slice(), usrs.as_slice()) {
        ([r], []) => ("root", *r, Role::RootVerity, Role::RootVeritySig),
        ([], [u]) => ("usr", *u, Role::UsrVerity, Role::UsrVeritySig),
        ([_], [_]) => {
            return Err(perr(
                "both a root and a usr partition: an extension carries exactly one".into(),
            ))
        }
        (r, u) => {
            let (d, n) = if r.len() > 1 {
                ("root", r.len())
            } else {
                ("usr", u.len())
            };
            return Err(perr(format!(
                "{n} {d} partitions for {chosen}: exactly one data/verity/signature set is required"
            )));
        }
    };
    // The other designator's verity partitions must not exist without their data partition.
    let other = if designator == "root" {
        [Role::UsrVerity, Role::UsrVeritySig]
    } else {
        [Role::RootVerity, Role::RootVeritySig]
    };
    if other.iter().any(|r| !of(*r).is_empty()) {
        return Err(perr(
            "a verity or verity-signature partition has no data partition".into(),
        ));
    }
    let veritys = of(vrole);
    let sigs = of(srole);
    if veritys.len() > 1 || sigs.len() > 1 {
        return Err(perr(format!(
            "{} {designator}-verity and {} {designator}-verity-sig partitions: at most one of each",
            veritys.len(),
            sigs.len()
        )));
    }
    if veritys.is_empty() && !sigs.is_empty() {
        return Err(perr(format!(
            "a {designator}-verity-sig partition without a {designator}-verity partition"
        )));
    }
    Ok((
        designator,
        data,
        veritys.first().copied(),
        sigs.first().copied(),
    ))
}

/// Reads and parses the signature partition `s` (an oversized one is a parse error, kept for the
/// report, not a read).
fn read_signature(
    source: &FileSource,
    path: &Path,
    s: &gpt::Partition,
    sector: u64,
) -> Result<Signature, DissectError> {
    let size = s.size(sector);
    Ok(Signature::Json(if size > sigpart::MAX_SIZE {
        Err(SigPartError::TooLarge(size))
    } else {
        let mut buf = vec![0u8; size as usize];
        source
            .read_at(&mut buf, s.offset(sector))
            .map_err(|e| DissectError::Io {
                path: path.to_path_buf(),
                msg: format!(
                    "reading the signature partition at byte {}: {e}",
                    s.offset(sector)
                ),
            })?;
        sigpart::parse(&buf)
    }))
}

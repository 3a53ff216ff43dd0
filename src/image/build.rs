//! Building extension images: the file system with the real tool (mkfs.erofs or mksquashfs as a
//! child process), the verity tree, the signature, and either a DDI (GPT with data, verity and
//! verity-signature partitions, UUIDs from the root hash, systemd-repart's labels) or a bare image
//! with sidecar files. With a seed, salt, UUIDs and file-system timestamps are derived from it, so
//! the same input and seed give the same bytes. I/O edge.

use super::arch::{self, Role};
use super::fsread::FsType;
use super::gpt::{self, Guid, NewPartition};
use super::release;
use super::sidecar::sidecar_path;
use super::sigpart::{self, SigPart};
use super::stamp;
use super::Class;
use crate::digest::HashAlg;
use crate::io::output::{write_atomic, PendingFile};
use crate::io::{FileSink, FileSource};
use crate::verity::{
    build::build_tree, geometry::hash_start_block, BlockSink, Geometry, Params, Superblock,
};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Block size of data and tree (the file systems' block size).
pub const BLOCK: u64 = 4096;
const SECTOR: u64 = 512;
/// Partitions start at 1 MiB, as sfdisk and systemd-repart place them.
const FIRST_LBA: u64 = 2048;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Source tree.
    pub src: PathBuf,
    /// Output image (`NAME.raw`).
    pub output: PathBuf,
    /// sysext or confext.
    pub class: Class,
    /// File system.
    pub fs: FsType,
    /// Signing key and certificate (PEM).
    pub key: Option<(PathBuf, PathBuf)>,
    /// Architecture (systemd id) of the partition types.
    pub arch: String,
    /// Seed for deterministic output.
    pub seed: Option<Vec<u8>>,
    /// Write sidecar files instead of a DDI.
    pub sidecar: bool,
    /// A whole OS tree for a soft reboot (`--class root`): an os-release and an executable init
    /// are required instead of forbidden; `class` is then not used.
    pub root: bool,
    /// `IMAGE_VERSION=` to write into the extension-release (os-release for a root).
    pub version: Option<String>,
    /// `VERITY_EPOCH=` to write likewise.
    pub epoch: Option<u64>,
}

/// What was built.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Built {
    /// Root hash, hex.
    pub root_hash: String,
    /// Files written.
    pub outputs: Vec<PathBuf>,
    /// Signer certificate fingerprint, if signed.
    pub fingerprint: Option<String>,
}

/// Why a build failed; each names the file or tool.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The source tree is not an extension of this class.
    #[error("{0}")]
    Source(String),
    /// An argument is invalid.
    #[error("{0}")]
    Usage(String),
    /// A tool or file operation failed.
    #[error("{0}")]
    Io(String),
}

fn io_err(what: impl std::fmt::Display) -> impl Fn(std::io::Error) -> BuildError {
    move |e| BuildError::Io(format!("{what}: {e}"))
}

/// Derives `n` bytes for `label` from the seed (SHA-256 of seed, label), or takes them from the
/// system random generator.
fn material(seed: Option<&[u8]>, label: &str, n: usize) -> Result<Vec<u8>, BuildError> {
    match seed {
        Some(s) => {
            let mut out = Vec::new();
            let mut i = 0u32;
            while out.len() < n {
                let mut h = HashAlg::Sha256.hasher();
                h.update(b"verity-image-build\0");
                h.update(s);
                h.update(label.as_bytes());
                h.update(&i.to_le_bytes());
                out.extend(h.finish_vec());
                i += 1;
            }
            out.truncate(n);
            Ok(out)
        }
        None => {
            let mut b = vec![0u8; n];
            getrandom::fill(&mut b)
                .map_err(|e| BuildError::Io(format!("the system random generator: {e}")))?;
            Ok(b)
        }
    }
}

/// A version-4 (random) UUID from the first 16 bytes of `b`.
fn v4(b: &[u8]) -> Guid {
    let mut g = [0u8; 16];
    g.copy_from_slice(&b[..16]);
    Guid(uuid::Builder::from_random_bytes(g).into_uuid().into_bytes())
}

/// Refuses a source tree without the extension-release file or with usr/lib/os-release.
pub fn check_source(src: &Path, class: Class, name: &str) -> Result<(), BuildError> {
    if !src.is_dir() {
        return Err(BuildError::Source(format!(
            "{}: not a directory",
            src.display()
        )));
    }
    if std::fs::symlink_metadata(src.join("usr/lib/os-release")).is_ok() {
        return Err(BuildError::Source(format!(
            "{}: contains usr/lib/os-release; an extension must not replace the host's identity",
            src.display()
        )));
    }
    let rel = release::release_path(class, name);
    let p = src.join(&rel);
    if !p.is_file() {
        return Err(BuildError::Source(format!(
            "{}: missing {rel}, which a {class} named '{name}' must carry (ID=, and VERSION_ID= or {}_LEVEL=)",
            src.display(),
            class.name().to_uppercase()
        )));
    }
    let text = std::fs::read(&p).map_err(io_err(p.display()))?;
    let r = release::OsRelease::parse(&text)
        .map_err(|e| BuildError::Source(format!("{}: {e}", p.display())))?;
    if r.get("ID").is_none() {
        return Err(BuildError::Source(format!("{}: no ID= line", p.display())));
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<(), BuildError> {
    let out = cmd
        .output()
        .map_err(|e| BuildError::Io(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        return Err(BuildError::Io(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn make_fs(o: &BuildOptions, src: &Path, img: &Path) -> Result<(), BuildError> {
    match o.fs {
        FsType::Erofs => {
            let mut c = Command::new("mkfs.erofs");
            c.arg("--all-root");
            if let Some(s) = &o.seed {
                let u = v4(&material(Some(s), "erofs-uuid", 16)?);
                c.arg("-T0").arg(format!("-U{u}"));
            }
            run(c.arg(img).arg(src))
        }
        FsType::Squashfs => {
            let mut c = Command::new("mksquashfs");
            c.arg(src)
                .arg(img)
                .args(["-noappend", "-all-root", "-no-progress", "-quiet"]);
            if o.seed.is_some() {
                c.args(["-mkfs-time", "0", "-all-time", "0"]);
            }
            run(&mut c)
        }
    }
}

/// The `KEY=value` pairs `--version`/`--epoch` ask to write into the release file.
fn release_fields(o: &BuildOptions) -> Result<Vec<(&'static str, String)>, BuildError> {
    let mut fields = Vec::new();
    if let Some(v) = &o.version {
        if let Some(why) = super::version::version_problem(v) {
            return Err(BuildError::Usage(format!("--version {v:?} {why}")));
        }
        fields.push(("IMAGE_VERSION", v.clone()));
    }
    if let Some(e) = o.epoch {
        fields.push(("VERITY_EPOCH", e.to_string()));
    }
    Ok(fields)
}

/// With release fields to write, a copy of the source with them in its release file(s).
fn stage_release(
    o: &BuildOptions,
    name: &str,
    fields: &[(&'static str, String)],
) -> Result<Option<stamp::Staged>, BuildError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let files = if o.root {
        vec![
            "usr/lib/os-release".to_string(),
            "etc/os-release".to_string(),
        ]
    } else {
        vec![release::release_path(o.class, name)]
    };
    stamp::stage(&o.src, &o.output, &files, fields).map(Some)
}

/// Builds the image described by `o`.
pub fn build(o: &BuildOptions) -> Result<Built, BuildError> {
    let file_name = o
        .output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| BuildError::Usage("the output has no file name".into()))?;
    if !file_name.ends_with(".raw") {
        return Err(BuildError::Usage(format!(
            "{file_name}: extension images are named NAME.raw (or NAME.{}.raw)",
            o.class
        )));
    }
    let name = release::image_name(&file_name).to_string();
    let fields = release_fields(o)?;
    if o.root {
        super::ostree::check_tree(&o.src, None)
            .map_err(|e| BuildError::Source(format!("--class root: {e}")))?;
    } else {
        check_source(&o.src, o.class, &name)?;
    }
    let types = arch::by_name(&o.arch)
        .ok_or_else(|| BuildError::Usage(format!("unknown architecture '{}'", o.arch)))?;
    let seed = o.seed.as_deref();
    let staged = stage_release(o, &name, &fields)?;
    let src = staged.as_ref().map_or(o.src.as_path(), |s| s.path());

    let tmp = tempfile::Builder::new()
        .prefix("verity-image-")
        .tempdir()
        .map_err(io_err("temporary directory"))?;
    let fs_img = tmp.path().join("fs.img");
    make_fs(o, src, &fs_img)?;
    drop(staged);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fs_img)
        .map_err(io_err(fs_img.display()))?;
    let size = f.metadata().map_err(io_err(fs_img.display()))?.len();
    let padded = size.div_ceil(BLOCK) * BLOCK;
    f.set_len(padded).map_err(io_err(fs_img.display()))?;
    let data = FileSource::from_file(f, &fs_img).map_err(io_err(fs_img.display()))?;

    let (tree, root) = verity_tree(&data, padded, seed)?;
    let root_hex = crate::hex::encode(&root);

    let signed = sign(o, &root)?;
    let fingerprint = signed
        .as_ref()
        .and_then(|s| s.cert_fingerprint.map(|f| crate::hex::encode(&f)));

    if o.sidecar {
        let outputs = write_sidecars(o, &data, padded, &tree, &root_hex, signed.as_ref())?;
        return Ok(Built {
            root_hash: root_hex,
            outputs,
            fingerprint,
        });
    }

    // DDI layout: data, verity, signature, each 4 KiB aligned, from 1 MiB.
    let align = |lba: u64| lba.div_ceil(BLOCK / SECTOR) * (BLOCK / SECTOR);
    let data_lba = FIRST_LBA;
    let data_sectors = padded / SECTOR;
    let verity_lba = align(data_lba + data_sectors);
    let verity_sectors = tree.len() as u64 / SECTOR;
    let sig_bytes = signed
        .as_ref()
        .map(|s| sigpart::to_partition(s, sigpart::DEFAULT_SIZE));
    let sig_lba = align(verity_lba + verity_sectors);
    let end = sig_lba + sig_bytes.as_ref().map_or(0, |b| b.len() as u64 / SECTOR);
    let total = (end + gpt::first_usable_lba(SECTOR)).div_ceil(FIRST_LBA) * FIRST_LBA;
    let mut parts = data_and_verity(
        types,
        &root,
        data_lba,
        data_sectors,
        verity_lba,
        verity_sectors,
    );
    if let Some(b) = &sig_bytes {
        parts.push(NewPartition {
            type_guid: types.type_for(Role::RootVeritySig),
            uuid: v4(&material(seed, "signature-partition-uuid", 16)?),
            first_lba: sig_lba,
            sectors: b.len() as u64 / SECTOR,
            attrs: gpt::ATTR_READ_ONLY,
            name: types.label(Role::RootVeritySig),
        });
    }
    let disk = v4(&material(seed, "disk-guid", 16)?);
    let out = PendingFile::create(&o.output).map_err(io_err(o.output.display()))?;
    out.file()
        .set_len(total * SECTOR)
        .map_err(io_err(o.output.display()))?;
    copy_into(&data, out.file(), data_lba * SECTOR, padded)?;
    let dup = out.file().try_clone().map_err(io_err(o.output.display()))?;
    let mut sink = FileSink::new(dup);
    sink.write_at(&tree, verity_lba * SECTOR)
        .map_err(io_err(o.output.display()))?;
    if let Some(b) = &sig_bytes {
        sink.write_at(b, sig_lba * SECTOR)
            .map_err(io_err(o.output.display()))?;
    }
    gpt::write_gpt(&mut sink, SECTOR, total, disk, &parts).map_err(io_err(o.output.display()))?;
    drop(sink);
    out.commit().map_err(io_err(o.output.display()))?;
    Ok(Built {
        root_hash: root_hex,
        outputs: vec![o.output.clone()],
        fingerprint,
    })
}

/// The superblock and hash tree of the padded file system (`padded` bytes), and the root hash.
/// Salt and UUID come from `seed` when given, so a build can be reproduced.
fn verity_tree(
    data: &FileSource,
    padded: u64,
    seed: Option<&[u8]>,
) -> Result<(Vec<u8>, Vec<u8>), BuildError> {
    let params = Params {
        alg: HashAlg::Sha256,
        data_block_size: BLOCK as u32,
        hash_block_size: BLOCK as u32,
        data_blocks: padded / BLOCK,
        salt: material(seed, "verity-salt", 32)?,
        hash_type: 1,
    };
    let mut sb_uuid = [0u8; 16];
    sb_uuid.copy_from_slice(&v4(&material(seed, "verity-uuid", 16)?).0);
    let hs =
        hash_start_block(0, BLOCK as u32, true).map_err(|e| BuildError::Usage(e.to_string()))?;
    let geom = Geometry::new(params.clone(), hs).map_err(|e| BuildError::Usage(e.to_string()))?;
    let mut tree: Vec<u8> = Vec::new();
    tree.write_at(&Superblock::from_params(&params, sb_uuid).to_bytes(), 0)
        .map_err(io_err("tree"))?;
    let root = build_tree(&geom, data, &mut tree, &|_| {})
        .map_err(|e| BuildError::Io(format!("building the verity tree: {e}")))?;
    tree.resize(
        (geom.hash_end().max(tree.len() as u64)).div_ceil(BLOCK) as usize * BLOCK as usize,
        0,
    );
    Ok((tree, root))
}

/// The signature partition's content for `root`, if a key was given.
fn sign(o: &BuildOptions, root: &[u8]) -> Result<Option<SigPart>, BuildError> {
    Ok(match &o.key {
        Some((key, cert)) => {
            let (sig, cert_der) =
                super::trust::sign_root_hash(key, cert, root, false).map_err(BuildError::Io)?;
            let mut fp = [0u8; 32];
            fp.copy_from_slice(&HashAlg::Sha256.digest(&cert_der));
            Some(SigPart {
                root_hash: root.to_vec(),
                signature: sig,
                cert_fingerprint: Some(fp),
            })
        }
        None => None,
    })
}

/// The sidecar layout: the file system as NAME.raw beside NAME.verity, NAME.roothash and (signed)
/// NAME.roothash.p7s; a stale .p7s of an earlier signed build is removed. Returns the files.
fn write_sidecars(
    o: &BuildOptions,
    data: &FileSource,
    padded: u64,
    tree: &[u8],
    root_hex: &str,
    signed: Option<&SigPart>,
) -> Result<Vec<PathBuf>, BuildError> {
    let mut outputs = Vec::new();
    let raw = PendingFile::create(&o.output).map_err(io_err(o.output.display()))?;
    copy_into(data, raw.file(), 0, padded)?;
    let vp = sidecar_path(&o.output, ".verity");
    write_atomic(&vp, tree).map_err(io_err(vp.display()))?;
    let rp = sidecar_path(&o.output, ".roothash");
    write_atomic(&rp, format!("{root_hex}\n").as_bytes()).map_err(io_err(rp.display()))?;
    outputs.extend([vp, rp]);
    if let Some(s) = signed {
        let sp = sidecar_path(&o.output, ".roothash.p7s");
        write_atomic(&sp, &s.signature).map_err(io_err(sp.display()))?;
        outputs.push(sp);
    } else {
        let sp = sidecar_path(&o.output, ".roothash.p7s");
        let _ = std::fs::remove_file(&sp);
    }
    raw.commit().map_err(io_err(o.output.display()))?;
    outputs.insert(0, o.output.clone());
    Ok(outputs)
}

/// The data and verity partitions of a DDI; their UUIDs are the halves of the root hash, as
/// systemd-repart sets them.
fn data_and_verity(
    types: &arch::ArchTypes,
    root: &[u8],
    data_lba: u64,
    data_sectors: u64,
    verity_lba: u64,
    verity_sectors: u64,
) -> Vec<NewPartition> {
    let half = |r: &[u8]| {
        let mut g = [0u8; 16];
        g.copy_from_slice(r);
        Guid(g)
    };
    vec![
        NewPartition {
            type_guid: types.type_for(Role::Root),
            uuid: half(&root[..16]),
            first_lba: data_lba,
            sectors: data_sectors,
            attrs: gpt::ATTR_READ_ONLY,
            name: types.label(Role::Root),
        },
        NewPartition {
            type_guid: types.type_for(Role::RootVerity),
            uuid: half(&root[root.len() - 16..]),
            first_lba: verity_lba,
            sectors: verity_sectors,
            attrs: gpt::ATTR_READ_ONLY,
            name: types.label(Role::RootVerity),
        },
    ]
}

fn copy_into(src: &FileSource, dst: &std::fs::File, at: u64, len: u64) -> Result<(), BuildError> {
    use crate::io::copy::{copy_range, CopyError};
    // The output is a new file (or a new one set to its full length): it reads as zeros where
    // the source's holes are skipped.
    copy_range(src, 0, len, dst, at).map_err(|e| match e {
        CopyError::Read(e) => io_err(src.path().display())(e),
        CopyError::Write(e) => io_err("output")(e),
    })?;
    if at == 0 {
        dst.set_len(len).map_err(io_err("output"))?;
    }
    Ok(())
}

//! The content checks of [`super::verify()`]: the data against the verity tree (the upper levels
//! authenticated once, then the data in place or as a sealed memfd copy, streamed with level 0),
//! and the extension-release file read by the bounded Rust file-system readers through the
//! authenticated blocks only. I/O edge (reads the image, creates the memfd).

use super::ddi::Dissected;
use super::fs::Reader as FsReader;
use super::fsread::{self, FsType};
use super::release::{self, Host, OsRelease};
use super::verify::{DataCheck, VerifyOptions};
use super::Class;
use crate::sys::memfd::{MemfdWriter, SealedMemfd};
use crate::verity::authtree::AuthTree;
use crate::verity::source::Slice;
use crate::verity::verify::VerifyOptions as TreeOptions;
use crate::verity::{BlockSource, Geometry};

/// What the tree check found: a good tree (and the sealed copy, if one was made) or the first bad
/// block.
pub(super) enum TreeOutcome {
    Good(Box<AuthTree>, Option<SealedMemfd>),
    Bad(crate::verity::verify::BadBlock),
}

/// Authenticates the upper levels once, then checks the data (in place or as a sealed copy)
/// against them, reading each data and level-0 block once.
pub(super) fn check_tree(
    d: &Dissected,
    g: &Geometry,
    hash: &dyn BlockSource,
    root: &[u8],
    how: DataCheck,
) -> Result<TreeOutcome, String> {
    let tree = match AuthTree::load(g, hash, root).map_err(|e| e.to_string())? {
        Ok(t) => t,
        Err(b) => return Ok(TreeOutcome::Bad(b)),
    };
    let opts = TreeOptions {
        stop_at_first: true,
    };
    let (rep, sealed) = if how == DataCheck::Sealed {
        let s = seal_copy(d, g.data_size())?;
        let rep = tree
            .verify_data(&s, hash, opts, &|_| {})
            .map_err(|e| e.to_string())?;
        (rep, Some(s))
    } else {
        let data = Slice::new(&d.source, d.data.offset, d.data.size);
        let rep = tree
            .verify_data(&data, hash, opts, &|_| {})
            .map_err(|e| e.to_string())?;
        (rep, None)
    };
    if let Some(b) = rep.bad.first() {
        return Ok(TreeOutcome::Bad(*b));
    }
    if !rep.is_ok() {
        return Err("hash tree could not be verified".into());
    }
    Ok(TreeOutcome::Good(Box::new(tree), sealed))
}

/// Copies the first `size` bytes of the data partition into a new memfd (holes stay holes) and
/// seals it: from here on nobody can change those bytes.
pub(super) fn seal_copy(d: &Dissected, size: u64) -> Result<SealedMemfd, String> {
    let data = Slice::new(&d.source, d.data.offset, d.data.size);
    let mut w = MemfdWriter::new(&d.name, size).map_err(|e| format!("memfd: {e}"))?;
    w.copy_from(&data, 0, size)
        .map_err(|e| format!("copying the data partition at byte {}: {e}", d.data.offset))?;
    w.seal().map_err(|e| format!("memfd seal: {e}"))
}

/// Finds and checks the extension-release file, reading the file system through `data` (the
/// verifying reader of the authenticated tree for a verity image) with the bounded Rust
/// readers. Sets the file-system type from the bytes read.
pub(super) fn check_release(
    d: &Dissected,
    opts: &VerifyOptions,
    data: &dyn BlockSource,
    fs_out: &mut Option<FsType>,
) -> Result<(Class, OsRelease, String), String> {
    let mut head = vec![0u8; data.size().min(2048) as usize];
    data.read_at(&mut head, 0)
        .map_err(|e| format!("reading the file-system superblock: {e}"))?;
    let fs = fsread::detect(&head).ok_or("the data partition is neither erofs nor squashfs")?;
    *fs_out = Some(fs);
    let u = FsReader::open(data, fs).map_err(|e| e.to_string())?;
    if u.kind("usr/lib/os-release")
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Err("the image ships usr/lib/os-release, which an extension must not".into());
    }
    let classes: Vec<Class> = match opts.class.or(d.class_hint) {
        Some(c) => vec![c],
        None => vec![Class::Sysext, Class::Confext],
    };
    for class in classes.iter().copied() {
        let path = release::release_path(class, &d.name);
        let Some(bytes) = u
            .read_file(&path, crate::limits::RELEASE_FILE as u64)
            .map_err(|e| format!("{path}: {e}"))?
        else {
            continue;
        };
        let rel = OsRelease::parse(&bytes).map_err(|e| format!("{path}: {e}"))?;
        let Some(host) = &opts.host else {
            return Ok((
                class,
                rel,
                format!("{path} present (no host os-release to match)"),
            ));
        };
        let h = Host {
            os_release: host,
            arch: &opts.host_arch,
            scope: opts.scope,
            class,
        };
        return match release::validate(&h, &rel) {
            Ok(a) => Ok((
                class,
                rel,
                format!("{path} compatible with the host ({a:?})"),
            )),
            Err(e) => Err(format!("{path}: {e}")),
        };
    }
    Err(format!(
        "no {} in the image",
        classes
            .iter()
            .map(|c| release::release_path(*c, &d.name))
            .collect::<Vec<_>>()
            .join(" or ")
    ))
}

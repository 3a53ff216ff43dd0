//! What makes a mounted tree a bootable OS: an os-release file ([`OS_RELEASE_PATHS`]) and an init
//! the kernel can execute (ELF, or a `#!` script whose interpreter is one, [`check_init`]).
//! `image build --class root` checks a source tree with it, `soft-reboot prepare` the verified
//! image it is about to stage and `soft-reboot exec` the staged root before it switches; the merge
//! pipeline's release check reads the same os-release paths. It lives in `image` (layer L8), not in
//! `reboot`, so that `image` and `merge` need nothing from the soft-reboot layer above them.

use crate::sys::pivot;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::OFlags;
use std::io::Read;
use std::path::Path;
use thiserror::Error;

/// Where an OS tree keeps its identity, in systemd's order (spec/systemd.md 5.1 step 5).
pub const OS_RELEASE_PATHS: &[&str] = &["etc/os-release", "usr/lib/os-release"];

/// The init programs tried when `--init` is not given, in systemd's order.
pub const DEFAULT_INITS: &[&str] = &[
    "/usr/lib/systemd/systemd",
    "/lib/systemd/systemd",
    "/sbin/init",
];

/// What kind of program an init file is, from its first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitKind {
    /// An ELF executable.
    Elf,
    /// A script; the interpreter path as written after `#!`.
    Script(String),
}

/// The init cannot be executed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InitError {
    #[error("{0} is not an executable regular file")]
    NotExecutable(String),
    #[error("{0} is neither an ELF binary nor a #! script")]
    Format(String),
    #[error("{0}: #! line names no interpreter")]
    NoInterpreter(String),
}

/// Classifies an init program from its mode bits and first bytes, so that an exec that would fail
/// after the switch (when there is no way back) is refused before it.
pub fn check_init(path: &str, mode: u32, head: &[u8]) -> Result<InitKind, InitError> {
    const S_IFMT: u32 = 0o170000;
    const S_IFREG: u32 = 0o100000;
    if mode & S_IFMT != S_IFREG || mode & 0o111 == 0 {
        return Err(InitError::NotExecutable(path.into()));
    }
    if head.starts_with(b"\x7fELF") {
        return Ok(InitKind::Elf);
    }
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next().unwrap_or(&[]);
        let line = String::from_utf8_lossy(line);
        let interp = line.split_whitespace().next().unwrap_or("");
        if interp.is_empty() {
            return Err(InitError::NoInterpreter(path.into()));
        }
        return Ok(InitKind::Script(interp.to_string()));
    }
    Err(InitError::Format(path.into()))
}

/// What makes a mounted tree a bootable OS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsTree {
    /// The os-release file, relative to the tree's root.
    pub os_release: String,
    /// The init to execute, absolute inside the tree.
    pub init: String,
}

/// Checks that the tree at `dir` has an os-release and an init the kernel can execute (resolving
/// symlinks inside the tree, as it will see them after the switch).
pub fn check_tree(dir: &Path, init: Option<&str>) -> Result<OsTree, String> {
    let root = pivot::open_dir(dir).map_err(|e| e.to_string())?;
    let os_release = find_os_release(&root).map_err(|e| format!("{}: {e}", dir.display()))?;
    let init = find_init(&root, init).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(OsTree { os_release, init })
}

/// Reads the first bytes of an open file.
fn head_of(fd: &OwnedFd) -> Vec<u8> {
    let mut f = std::fs::File::from(fd.try_clone().expect("dup of an open descriptor"));
    let mut buf = vec![0u8; 256];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    buf.truncate(n);
    buf
}

/// Checks that `path` inside `root` is something the kernel will execute, following a `#!`
/// interpreter (which must be an executable too) as exec would.
pub fn check_executable(root: &OwnedFd, path: &str) -> Result<(), String> {
    let mut path = path.to_string();
    for _ in 0..4 {
        let fd = pivot::open_in_root(root.as_fd(), &path, OFlags::RDONLY)
            .map_err(|e| format!("init {path}: {e}"))?;
        let mode = pivot::mode_of(fd.as_fd(), &path).map_err(|e| e.to_string())?;
        match check_init(&path, mode, &head_of(&fd)).map_err(|e| format!("init: {e}"))? {
            InitKind::Elf => return Ok(()),
            InitKind::Script(interp) => path = interp,
        }
    }
    Err(format!(
        "init: too many levels of #! interpreters ending at {path}"
    ))
}

/// Finds the os-release file of the tree under `root` (relative path).
pub fn find_os_release(root: &OwnedFd) -> Result<String, String> {
    for p in OS_RELEASE_PATHS {
        if let Ok(fd) = pivot::open_in_root(root.as_fd(), p, OFlags::RDONLY) {
            let mode = pivot::mode_of(fd.as_fd(), p).map_err(|e| e.to_string())?;
            if mode & libc::S_IFMT == libc::S_IFREG {
                return Ok(p.to_string());
            }
        }
    }
    Err(format!(
        "no os-release ({}): not an OS tree",
        OS_RELEASE_PATHS.join(" or ")
    ))
}

/// Finds the init to run: `wanted`, or the first of systemd's defaults that is executable.
pub fn find_init(root: &OwnedFd, wanted: Option<&str>) -> Result<String, String> {
    if let Some(w) = wanted {
        if !w.starts_with('/') {
            return Err(format!(
                "init {w}: must be an absolute path inside the new root"
            ));
        }
        check_executable(root, w)?;
        return Ok(w.to_string());
    }
    let mut why = Vec::new();
    for cand in DEFAULT_INITS {
        match check_executable(root, cand) {
            Ok(()) => return Ok(cand.to_string()),
            Err(e) => why.push(e),
        }
    }
    Err(format!("no usable init ({})", why.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_checks() {
        let reg_x = 0o100755;
        let cases: Vec<(u32, &[u8], Result<InitKind, InitError>)> = vec![
            (reg_x, b"\x7fELF\x02\x01", Ok(InitKind::Elf)),
            (
                reg_x,
                b"#!/bin/sh\necho",
                Ok(InitKind::Script("/bin/sh".into())),
            ),
            (
                reg_x,
                b"#! /bin/busybox sh -e\n",
                Ok(InitKind::Script("/bin/busybox".into())),
            ),
            (reg_x, b"#!\n", Err(InitError::NoInterpreter("/i".into()))),
            (reg_x, b"echo hi\n", Err(InitError::Format("/i".into()))),
            (
                0o100644,
                b"\x7fELF",
                Err(InitError::NotExecutable("/i".into())),
            ),
            (0o040755, b"", Err(InitError::NotExecutable("/i".into()))),
        ];
        for (mode, head, want) in cases {
            assert_eq!(check_init("/i", mode, head), want, "{mode:o} {head:?}");
        }
    }
}

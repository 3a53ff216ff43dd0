//! Carrying out a [`Plan`] with real mounts: a private tmpfs workspace for the meta layers and the
//! image mounts, one detached overlay per hierarchy built with fsopen/fsconfig/fsmount, the marker
//! `dev` written from the new overlay's own st_dev, and then the switch: attach (merge), or attach
//! beneath the old overlay and detach the old one (refresh, no window without an overlay).
//! Unrelated submounts of a hierarchy are moved aside and put back on top.

use super::mutable::{self, Layout, MutableError, MutableMode};
use super::plan::{lowerdir, Class, HierarchyPlan, Layer, Plan};
use super::status::{host_path, is_ours, mount_points, submounts_below};
use crate::admit::Admitted;
use crate::sys::mount::{self, Attrs, DetachedMount, FsOption, MountError};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why applying a plan failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A mount syscall failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// A workspace file or directory could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The plan names an extension that was not admitted.
    #[error("extension {0} is in the plan but was not admitted")]
    Missing(String),
    /// `--mutable` cannot be applied to a hierarchy.
    #[error("--mutable={mode}: {hierarchy}: {source}")]
    Mutable {
        /// The mode.
        mode: &'static str,
        /// The hierarchy.
        hierarchy: String,
        /// Why.
        source: MutableError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ApplyError + '_ {
    move |source| ApplyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A private tmpfs for one merge: meta layers, image mounts, moved-aside submounts. Detached and
/// removed on drop; overlays built from it keep their own references to the layers.
#[derive(Debug)]
pub struct Workspace {
    dir: PathBuf,
}

impl Workspace {
    /// Mounts a fresh tmpfs (mode 0700) at `<base>/merge-<pid>` and makes it private.
    pub fn create(base: &Path) -> Result<Self, ApplyError> {
        let dir = base.join(format!("merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let m = mount::new_fs(
            "tmpfs",
            &[FsOption::Str("mode", "0700")],
            Attrs {
                nodev: true,
                nosuid: true,
                ..Attrs::default()
            },
        )?;
        mount::attach(m, &dir)?;
        let ws = Self { dir };
        mount::make_private(&ws.dir)?;
        for sub in ["ext", "meta", "hostview", "aside"] {
            let p = ws.dir.join(sub);
            std::fs::create_dir(&p).map_err(io(&p))?;
        }
        Ok(ws)
    }

    /// Where the pipeline mounts admitted images.
    pub fn images(&self) -> PathBuf {
        self.dir.join("ext")
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = mount::detach(&self.dir);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplyReport {
    /// Hierarchies now carrying our overlay.
    pub merged: Vec<String>,
    /// Hierarchies whose old overlay was removed because no extension provides them any more.
    pub unmerged: Vec<String>,
    /// Whether the refresh swapped overlays atomically (MOVE_MOUNT_BENEATH).
    pub atomic: bool,
    /// Hierarchies merged writable or with imported mutable data: none of that content is
    /// verified or measured.
    pub mutable: Vec<MutableHierarchy>,
    /// Warnings worth telling the user.
    pub warnings: Vec<String>,
}

/// A hierarchy whose overlay has unverified, unmeasured layers (`--mutable`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MutableHierarchy {
    /// The hierarchy.
    pub hierarchy: String,
    /// The mode.
    pub mode: MutableMode,
    /// The writable upper dir (`None` for `import`).
    pub upper: Option<PathBuf>,
    /// The upper dir is on the merge's tmpfs and is discarded at unmerge.
    pub ephemeral: bool,
    /// Mutable data imported as a read-only layer.
    pub import: Option<PathBuf>,
}

/// Moves the top-level submounts below `h` into the workspace; returns (original, aside) pairs.
/// Our own read-only bind of the marker dir (mutable merges) belongs to the overlay, not to the
/// host, and stays.
fn move_aside(ws: &Workspace, h: &Path, class: Class, tag: usize) -> Vec<(PathBuf, PathBuf)> {
    let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let marker = h.join(class.marker_dir()).to_string_lossy().into_owned();
    let mut subs = submounts_below(&mount_points(&mi), &h.to_string_lossy());
    subs.retain(|s| *s != marker);
    let mut out = Vec::new();
    for (i, s) in subs.iter().enumerate() {
        let aside = ws.dir.join("aside").join(format!("{tag}-{i}"));
        if std::fs::create_dir(&aside).is_err() {
            continue;
        }
        let src = PathBuf::from(s);
        if rustix::mount::move_mount(
            rustix::fs::CWD,
            &src,
            rustix::fs::CWD,
            &aside,
            rustix::mount::MoveMountFlags::empty(),
        )
        .is_ok()
        {
            out.push((src, aside));
        }
    }
    out
}

fn move_back(moved: Vec<(PathBuf, PathBuf)>, warnings: &mut Vec<String>) {
    for (orig, aside) in moved {
        if let Err(e) = rustix::mount::move_mount(
            rustix::fs::CWD,
            &aside,
            rustix::fs::CWD,
            &orig,
            rustix::mount::MoveMountFlags::empty(),
        ) {
            warnings.push(format!(
                "could not put submount {} back: {e}",
                orig.display()
            ));
        }
    }
}

/// The host's own hierarchy as the bottom layer while our old overlay still covers it: a
/// recursive copy of its parent with our overlays peeled off the copy.
fn host_view(ws: &Workspace, h: &Path, class: Class, tag: usize) -> Result<PathBuf, ApplyError> {
    let parent = h.parent().unwrap_or(Path::new("/"));
    let base = h.file_name().map(PathBuf::from).unwrap_or_default();
    let view = ws.dir.join("hostview").join(tag.to_string());
    std::fs::create_dir(&view).map_err(io(&view))?;
    let m = mount::clone_tree(parent, true)?;
    mount::attach(m, &view)?;
    let inner = view.join(base);
    while is_ours(&inner, class) {
        mount::detach(&inner)?;
    }
    Ok(inner)
}

#[allow(clippy::too_many_arguments)]
fn build_overlay(
    ws: &Workspace,
    root: &Path,
    class: Class,
    hp: &HierarchyPlan,
    list: &str,
    admitted: &[Admitted],
    host: Option<PathBuf>,
    layout: &Layout,
    tag: usize,
) -> Result<DetachedMount, ApplyError> {
    let h = host_path(root, &hp.hierarchy);
    let meta = ws.dir.join("meta").join(tag.to_string());
    let marker = meta.join(class.marker_dir());
    std::fs::create_dir_all(&marker).map_err(io(&marker))?;
    let lp = marker.join(class.marker_list());
    std::fs::write(&lp, list).map_err(io(&lp))?;
    // The overlay root takes mode and owner from its top layer (the upper dir when writable):
    // give it the host hierarchy's, so merging does not change the hierarchy's permissions.
    let top = layout
        .upper
        .as_ref()
        .map(|u| u.dir.clone())
        .unwrap_or(meta.clone());
    if let Ok(md) = std::fs::metadata(&h) {
        let _ =
            std::fs::set_permissions(&meta, std::fs::Permissions::from_mode(md.mode() & 0o7777));
        let _ = std::os::unix::fs::chown(&meta, Some(md.uid()), Some(md.gid()));
    } else {
        let _ = std::fs::set_permissions(&meta, std::fs::Permissions::from_mode(0o755));
    }
    if let Some(u) = &layout.upper {
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(layout.top_mode))
            .map_err(io(&top))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&u.work)
            .map_err(io(&u.work))?;
        if !u.ephemeral {
            // As systemd: the work dir relative to the root, C-escaped, so unmerge (ours or
            // systemd's) removes it.
            let rel = u.work.strip_prefix(root).unwrap_or(&u.work);
            let wp = marker.join("work_dir");
            std::fs::write(&wp, mutable::cescape(&rel.to_string_lossy())).map_err(io(&wp))?;
        }
    }
    let rel = hp.hierarchy.trim_start_matches('/');
    let mut lowers = Vec::new();
    for l in &hp.layers {
        match l {
            Layer::Meta => {
                lowers.push(meta.to_string_lossy().into_owned());
                if let Some(i) = &layout.import {
                    lowers.push(i.to_string_lossy().into_owned());
                }
            }
            Layer::Extension(n) => {
                let a = admitted
                    .iter()
                    .find(|a| &a.info().name == n)
                    .ok_or_else(|| ApplyError::Missing(n.clone()))?;
                lowers.push(a.mount_path().join(rel).to_string_lossy().into_owned());
            }
            Layer::Host => {
                if let Some(p) = host.as_ref().filter(|_| layout.host_lower) {
                    lowers.push(p.to_string_lossy().into_owned());
                }
            }
        }
    }
    // A read-only overlayfs needs two layers at least; a lone extension over an empty host gets
    // an empty one.
    if lowers.len() < 2 && layout.upper.is_none() {
        let empty = ws.dir.join("meta").join(format!("{tag}-empty"));
        std::fs::create_dir_all(&empty).map_err(io(&empty))?;
        lowers.push(empty.to_string_lossy().into_owned());
    }
    let f = hp.flags;
    let attrs = Attrs {
        rdonly: f.rdonly && layout.upper.is_none(),
        nodev: f.nodev,
        nosuid: f.nosuid,
        noexec: f.noexec,
    };
    let m = overlay(ws, class, &lowers, layout.upper.as_ref(), attrs, tag)?;
    let st = rustix::fs::fstat(m.fd()).map_err(|e| ApplyError::Io {
        path: h.clone(),
        source: e.into(),
    })?;
    let dev = format!(
        "{}:{}\n",
        rustix::fs::major(st.st_dev),
        rustix::fs::minor(st.st_dev)
    );
    let dp = marker.join("dev");
    std::fs::write(&dp, dev).map_err(io(&dp))?;
    Ok(m)
}

/// A detached overlay over `lowers` (top first), writable into `upper` if given. Layers go in
/// one by one as descriptors (`lowerdir+`, Linux 6.13+: no path length limit, no re-lookup);
/// older kernels get the monolithic option string through mount(2), since fsconfig caps strings
/// at 256 bytes. Writable overlays get systemd's `redirect_dir=on,metacopy=off` (no partial
/// copy-ups left behind after unmerge).
fn overlay(
    ws: &Workspace,
    class: Class,
    lowers: &[String],
    upper: Option<&mutable::Upper>,
    attrs: Attrs,
    tag: usize,
) -> Result<DetachedMount, ApplyError> {
    let fds = lowers
        .iter()
        .map(|l| mount::open_path(Path::new(l)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut opts = vec![FsOption::Str("source", class.name())];
    opts.extend(
        fds.iter()
            .map(|fd| FsOption::Fd("lowerdir+", rustix::fd::AsFd::as_fd(fd))),
    );
    let (up, work) = upper
        .map(|u| {
            (
                u.dir.to_string_lossy().into_owned(),
                u.work.to_string_lossy().into_owned(),
            )
        })
        .unwrap_or_default();
    if upper.is_some() {
        opts.extend([
            FsOption::Str("upperdir", &up),
            FsOption::Str("workdir", &work),
            FsOption::Str("redirect_dir", "on"),
            FsOption::Str("metacopy", "off"),
        ]);
    }
    match mount::new_fs("overlay", &opts, attrs) {
        Ok(m) => Ok(m),
        // Kernels before lowerdir+ refuse the fd parameter with EINVAL, ENOPARAM (519) or, on 6.1,
        // EOPNOTSUPP.
        Err(e) if e.errno == rustix::io::Errno::INVAL || e.errno == rustix::io::Errno::OPNOTSUPP || e.errno.raw_os_error() == 519 /* ENOPARAM */ => {
            let at = ws.dir.join("meta").join(format!("{tag}-ovl"));
            std::fs::create_dir_all(&at).map_err(io(&at))?;
            let mut data = format!("lowerdir={}", lowerdir(lowers));
            if upper.is_some() {
                data.push_str(&format!(
                    ",upperdir={},workdir={},redirect_dir=on,metacopy=off",
                    super::plan::escape_lower(&up),
                    super::plan::escape_lower(&work)
                ));
            }
            Ok(mount::legacy_new_fs("overlay", class.name(), &data, &at, attrs)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes the marker dir of a writable overlay a read-only bind mount, so writes to the hierarchy
/// cannot alter what identifies the merge (as systemd does).
fn protect_marker(h: &Path, class: Class) -> Result<(), ApplyError> {
    let marker = h.join(class.marker_dir());
    let m = mount::clone_tree(&marker, false)?;
    mount::set_attrs(
        &m,
        Attrs {
            rdonly: true,
            nodev: true,
            nosuid: true,
            noexec: true,
        },
        false,
    )?;
    mount::attach(m, &marker)?;
    Ok(())
}

/// Merges (or, with `refresh`, replaces) the overlays of `plan`. Everything is built detached
/// first; if building any overlay fails, nothing has changed.
pub fn apply(
    root: &Path,
    plan: &Plan,
    admitted: &[Admitted],
    ws: &Workspace,
    refresh: bool,
) -> Result<ApplyReport, ApplyError> {
    let class = plan.class;
    let list = plan.marker_list_contents();
    let mut built = Vec::new();
    let mut report = ApplyReport {
        atomic: refresh,
        ..ApplyReport::default()
    };
    for (tag, hp) in plan.hierarchies.iter().enumerate() {
        let h = host_path(root, &hp.hierarchy);
        let layout = mutable::resolve(plan.mutable, root, &hp.hierarchy, &ws.dir).map_err(|e| {
            ApplyError::Mutable {
                mode: plan.mutable.name(),
                hierarchy: h.to_string_lossy().into_owned(),
                source: e,
            }
        })?;
        if refresh && layout.upper.as_ref().is_some_and(|u| !u.ephemeral) && is_ours(&h, class) {
            // Two overlays must not share an upper and work dir, even for a moment: the old one
            // goes first.
            unmerge_one(ws, root, &h, class, &mut report.warnings)?;
            report.atomic = false;
            report.warnings.push(format!(
                "{}: a persistent writable layer cannot be swapped atomically; briefly unmerged",
                h.display()
            ));
        }
        if !h.exists() {
            std::fs::create_dir_all(&h).map_err(io(&h))?;
        }
        // The bottom layer is the host's own hierarchy, left out when missing or empty; under an
        // old overlay (refresh) it is looked at through a copy with our overlays peeled off.
        let host = if !hp.layers.contains(&Layer::Host) {
            None
        } else if refresh && is_ours(&h, class) {
            Some(host_view(ws, &h, class, tag)?)
        } else {
            Some(h.clone())
        }
        .filter(|p| {
            std::fs::read_dir(p)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
        });
        let m = build_overlay(ws, root, class, hp, &list, admitted, host, &layout, tag)?;
        if layout.upper.is_some() || layout.import.is_some() {
            report.mutable.push(MutableHierarchy {
                hierarchy: h.to_string_lossy().into_owned(),
                mode: layout.mode,
                upper: layout.upper.as_ref().map(|u| u.dir.clone()),
                ephemeral: layout.upper.as_ref().is_some_and(|u| u.ephemeral),
                import: layout.import.clone(),
            });
        }
        built.push((h, m, layout.upper.is_some()));
    }
    let beneath = mount::beneath_supported();
    let mut attached: Vec<PathBuf> = Vec::new();
    for (tag, (h, m, writable)) in built.into_iter().enumerate() {
        let moved = move_aside(ws, &h, class, tag);
        let res = if refresh && is_ours(&h, class) {
            if beneath {
                // The new overlay goes under the old one, then the old one is detached: a reader
                // sees the old tree or the new one, never the bare host hierarchy.
                mount::attach_beneath(&m, &h).and_then(|()| mount::detach(&h))
            } else {
                report.atomic = false;
                report.warnings.push(format!(
                    "kernel lacks MOVE_MOUNT_BENEATH: {} briefly unmerged during refresh",
                    h.display()
                ));
                let mut r = Ok(());
                while is_ours(&h, class) {
                    if let Err(e) = mount::detach(&h) {
                        r = Err(e);
                        break;
                    }
                }
                r.and_then(|()| mount::attach(m, &h))
            }
        } else {
            mount::attach(m, &h)
        };
        let res = res.map_err(ApplyError::from).and_then(|()| {
            if writable {
                protect_marker(&h, class)
            } else {
                Ok(())
            }
        });
        move_back(moved, &mut report.warnings);
        if let Err(e) = res {
            if !refresh {
                for a in attached.iter().rev() {
                    let _ = mount::detach(a);
                }
            }
            return Err(e);
        }
        attached.push(h.clone());
        report.merged.push(h.to_string_lossy().into_owned());
    }
    if refresh {
        for hier in class.hierarchies() {
            let h = host_path(root, hier);
            if !attached.contains(&h) && is_ours(&h, class) {
                unmerge_one(ws, root, &h, class, &mut report.warnings)?;
                report.unmerged.push(h.to_string_lossy().into_owned());
            }
        }
    }
    Ok(report)
}

/// Unmounts our overlays stacked on `h` (each with its read-only marker bind, for writable
/// ones), keeping unrelated submounts, and removes the work dir a persistent writable merge
/// recorded in its marker (as systemd's unmerge does; the upper dir and its data stay).
fn unmerge_one(
    ws: &Workspace,
    root: &Path,
    h: &Path,
    class: Class,
    warnings: &mut Vec<String>,
) -> Result<(), ApplyError> {
    let marker = h.join(class.marker_dir());
    while is_ours(h, class) {
        let work = std::fs::read_to_string(marker.join("work_dir"))
            .ok()
            .and_then(|t| mutable::cunescape(t.trim_end_matches('\n')))
            .map(|b| root.join(std::ffi::OsStr::from_bytes(&b)));
        if mount::is_mount_root(&marker).unwrap_or(false) {
            mount::detach(&marker)?;
        }
        let moved = move_aside(ws, h, class, 1000);
        let res = mount::detach(h);
        move_back(moved, warnings);
        res?;
        if let Some(w) = work.filter(|w| {
            w.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with("-workdir"))
        }) {
            if let Err(e) = std::fs::remove_dir_all(&w) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warnings.push(format!("could not remove work dir {}: {e}", w.display()));
                }
            }
        }
    }
    Ok(())
}

/// Removes our overlays (all stacked ones) from every hierarchy of `class`, keeping unrelated
/// submounts. Returns the hierarchies that were unmerged; none is not an error.
pub fn unmerge(
    root: &Path,
    class: Class,
    ws: &Workspace,
) -> Result<(Vec<String>, Vec<String>), ApplyError> {
    let mut done = Vec::new();
    let mut warnings = Vec::new();
    for hier in class.hierarchies() {
        let h = host_path(root, hier);
        if is_ours(&h, class) {
            unmerge_one(ws, root, &h, class, &mut warnings)?;
            done.push(h.to_string_lossy().into_owned());
        }
    }
    Ok((done, warnings))
}

//! The pure merge planner: which hierarchies get an overlay, the layer order, the mount flags and
//! the marker contents, exactly as systemd-sysext/confext 257 build them (spec/systemd.md 1.6-1.8).
//! No file system access: the caller says which extensions carry which hierarchies.

use super::mutable::MutableMode;
use crate::image::version::strverscmp_improved;

/// sysext (`/usr`, `/opt`) or confext (`/etc`): the image module's class, with the merge-side
/// facts (hierarchies, search paths, markers) added here.
pub use crate::image::Class;

impl Class {
    /// Search directories, in priority order (first name found wins).
    pub fn search_paths(self, in_initrd: bool) -> Vec<&'static str> {
        match (self, in_initrd) {
            (Class::Sysext, false) => {
                vec!["/etc/extensions", "/run/extensions", "/var/lib/extensions"]
            }
            (Class::Sysext, true) => vec![
                "/etc/extensions",
                "/run/extensions",
                "/var/lib/extensions",
                "/.extra/sysext",
            ],
            (Class::Confext, false) => vec![
                "/run/confexts",
                "/var/lib/confexts",
                "/usr/local/lib/confexts",
                "/usr/lib/confexts",
            ],
            (Class::Confext, true) => vec![
                "/run/confexts",
                "/var/lib/confexts",
                "/usr/local/lib/confexts",
                "/.extra/confext",
            ],
        }
    }

    /// The marker directory inside a merged hierarchy.
    pub fn marker_dir(self) -> &'static str {
        match self {
            Class::Sysext => ".systemd-sysext",
            Class::Confext => ".systemd-confext",
        }
    }

    /// The marker file listing merged extensions.
    pub fn marker_list(self) -> &'static str {
        match self {
            Class::Sysext => "extensions",
            Class::Confext => "confexts",
        }
    }
}

/// The image name for a directory entry in a search path, or `None` when systemd would skip it:
/// `.raw` files lose the suffix and an optional `.sysext`/`.confext`; directories keep their name;
/// hidden names and `.#` temporaries are skipped.
pub fn image_name(file_name: &str, is_dir: bool, class: Class) -> Option<String> {
    if file_name.is_empty()
        || file_name.starts_with('.')
        || file_name.chars().any(|c| c.is_control())
    {
        return None;
    }
    let name = if is_dir {
        file_name
    } else {
        let base = file_name.strip_suffix(".raw")?;
        base.strip_suffix(&format!(".{}", class.name()))
            .unwrap_or(base)
    };
    if name.is_empty() || name.contains('/') || name.len() > 255 {
        return None;
    }
    Some(name.to_string())
}

/// Sorts names the way systemd orders layers: ascending by `strverscmp_improved`; the last one
/// is the top extension layer.
pub fn sort_names(names: &mut [String]) {
    names.sort_by(|a, b| strverscmp_improved(a, b).then_with(|| a.cmp(b)));
}

/// One extension as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionInput {
    /// Image name.
    pub name: String,
    /// Hierarchies (absolute, e.g. `/usr`) for which this image has a non-empty directory.
    pub provides: Vec<String>,
}

/// A layer of one overlay, top first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Layer {
    /// The marker layer (carries `.systemd-sysext/`).
    Meta,
    /// An extension, by image name.
    Extension(String),
    /// The host's own hierarchy.
    Host,
}

/// Mount flags of the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Flags {
    /// Always set in immutable mode.
    pub rdonly: bool,
    /// Always set.
    pub nodev: bool,
    /// confext only.
    pub nosuid: bool,
    /// confext unless `--noexec=no`.
    pub noexec: bool,
}

/// The overlay to build for one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HierarchyPlan {
    /// Absolute hierarchy, e.g. `/usr`.
    pub hierarchy: String,
    /// Lower layers, top first.
    pub layers: Vec<Layer>,
    /// Mount flags.
    pub flags: Flags,
}

/// The whole merge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// Which class.
    pub class: Class,
    /// All merged extension names, ascending (the marker list).
    pub extensions: Vec<String>,
    /// One entry per hierarchy that some extension provides; others are left alone.
    pub hierarchies: Vec<HierarchyPlan>,
    /// `--mutable=`: resolved per hierarchy when the plan is applied (it depends on the host's
    /// directories); a writable layer drops `rdonly` from that hierarchy's flags.
    pub mutable: MutableMode,
}

impl Plan {
    /// Contents of the marker's extension list: one name a line, newline-terminated, as systemd
    /// writes it.
    pub fn marker_list_contents(&self) -> String {
        let mut s = self.extensions.join("\n");
        s.push('\n');
        s
    }
}

/// Options that change flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--noexec`: `None` = the class default (confext yes, sysext no).
    pub noexec: Option<bool>,
    /// `--mutable`.
    pub mutable: MutableMode,
}

/// Plans the overlays. `host_has(h)` says whether the host hierarchy exists and is non-empty (an
/// empty or missing one is omitted as the bottom layer, like systemd).
pub fn plan(
    class: Class,
    exts: &[ExtensionInput],
    host_has: &dyn Fn(&str) -> bool,
    opts: PlanOptions,
) -> Plan {
    let mut sorted: Vec<&ExtensionInput> = exts.iter().collect();
    sorted.sort_by(|a, b| strverscmp_improved(&a.name, &b.name).then_with(|| a.name.cmp(&b.name)));
    let flags = match class {
        Class::Sysext => Flags {
            rdonly: true,
            nodev: true,
            nosuid: false,
            noexec: opts.noexec.unwrap_or(false),
        },
        Class::Confext => Flags {
            rdonly: true,
            nodev: true,
            nosuid: true,
            noexec: opts.noexec.unwrap_or(true),
        },
    };
    let mut hierarchies = Vec::new();
    for h in class.hierarchies() {
        let users: Vec<&ExtensionInput> = sorted
            .iter()
            .rev()
            .filter(|e| e.provides.iter().any(|p| p == h))
            .copied()
            .collect();
        if users.is_empty() {
            continue;
        }
        let mut layers = vec![Layer::Meta];
        layers.extend(users.iter().map(|e| Layer::Extension(e.name.clone())));
        if host_has(h) {
            layers.push(Layer::Host);
        }
        hierarchies.push(HierarchyPlan {
            hierarchy: h.to_string(),
            layers,
            flags,
        });
    }
    Plan {
        class,
        extensions: sorted.iter().map(|e| e.name.clone()).collect(),
        hierarchies,
        mutable: opts.mutable,
    }
}

/// Escapes one overlayfs `lowerdir` path element (`\`, `,` and `:` are special).
pub fn escape_lower(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '\\' | ',' | ':') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// Joins escaped lower layers, top first, into a `lowerdir=` value.
pub fn lowerdir(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| escape_lower(p))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses the marker's `dev` file (`major:minor`, optional trailing newline).
pub fn parse_dev(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim_end_matches('\n').split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Splits the marker's extension list.
pub fn parse_list(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(name: &str, provides: &[&str]) -> ExtensionInput {
        ExtensionInput {
            name: name.into(),
            provides: provides.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn e(n: &str) -> Layer {
        Layer::Extension(n.into())
    }

    #[test]
    fn layers_newest_name_on_top_host_at_bottom() {
        let p = plan(
            Class::Sysext,
            &[
                ext("foo_10", &["/usr"]),
                ext("foo_9", &["/usr"]),
                ext("bar", &["/usr", "/opt"]),
            ],
            &|_| true,
            PlanOptions {
                noexec: None,
                mutable: MutableMode::No,
            },
        );
        assert_eq!(p.extensions, vec!["bar", "foo_9", "foo_10"]);
        assert_eq!(p.hierarchies.len(), 2);
        assert_eq!(p.hierarchies[0].hierarchy, "/usr");
        assert_eq!(
            p.hierarchies[0].layers,
            vec![Layer::Meta, e("foo_10"), e("foo_9"), e("bar"), Layer::Host]
        );
        assert_eq!(
            p.hierarchies[1].layers,
            vec![Layer::Meta, e("bar"), Layer::Host]
        );
        assert_eq!(p.marker_list_contents(), "bar\nfoo_9\nfoo_10\n");
    }

    #[test]
    fn hierarchy_nobody_provides_is_left_alone_and_empty_host_omitted() {
        let p = plan(
            Class::Sysext,
            &[ext("a", &["/opt"])],
            &|h| h != "/opt",
            PlanOptions {
                noexec: None,
                mutable: MutableMode::No,
            },
        );
        assert_eq!(p.hierarchies.len(), 1);
        assert_eq!(p.hierarchies[0].hierarchy, "/opt");
        assert_eq!(p.hierarchies[0].layers, vec![Layer::Meta, e("a")]);
        let none = plan(
            Class::Sysext,
            &[ext("a", &[])],
            &|_| true,
            PlanOptions {
                noexec: None,
                mutable: MutableMode::No,
            },
        );
        assert!(none.hierarchies.is_empty());
    }

    #[test]
    fn flags_per_class_and_noexec_override() {
        let table = [
            (Class::Sysext, None, (true, true, false, false)),
            (Class::Sysext, Some(true), (true, true, false, true)),
            (Class::Confext, None, (true, true, true, true)),
            (Class::Confext, Some(false), (true, true, true, false)),
        ];
        for (class, noexec, (r, d, s, x)) in table {
            let h = class.hierarchies()[0];
            let p = plan(
                class,
                &[ext("a", &[h])],
                &|_| true,
                PlanOptions {
                    noexec,
                    mutable: MutableMode::No,
                },
            );
            let f = p.hierarchies[0].flags;
            assert_eq!(
                (f.rdonly, f.nodev, f.nosuid, f.noexec),
                (r, d, s, x),
                "{class:?} {noexec:?}"
            );
        }
    }

    #[test]
    fn names_and_release_names() {
        let t = [
            ("foo.raw", false, Class::Sysext, Some("foo")),
            ("foo.sysext.raw", false, Class::Sysext, Some("foo")),
            ("foo.confext.raw", false, Class::Sysext, Some("foo.confext")),
            ("foo.confext.raw", false, Class::Confext, Some("foo")),
            ("foo.img", false, Class::Sysext, None),
            ("foo", true, Class::Sysext, Some("foo")),
            (".hidden", true, Class::Sysext, None),
            (".#foo.raw", false, Class::Sysext, None),
            (".raw", false, Class::Sysext, None),
        ];
        for (f, d, c, want) in t {
            assert_eq!(image_name(f, d, c).as_deref(), want, "{f}");
        }
        assert_eq!(crate::image::release::release_name("foo_1.2"), "foo");
        assert_eq!(crate::image::release::release_name("foo+3-1"), "foo");
        assert_eq!(crate::image::release::release_name("foo"), "foo");
    }

    #[test]
    fn search_paths_have_no_usr_lib_extensions() {
        for initrd in [false, true] {
            assert!(!Class::Sysext
                .search_paths(initrd)
                .contains(&"/usr/lib/extensions"));
            assert!(!Class::Confext
                .search_paths(initrd)
                .contains(&"/etc/confexts"));
        }
        assert_eq!(Class::Sysext.search_paths(false)[0], "/etc/extensions");
        assert!(!Class::Confext
            .search_paths(true)
            .contains(&"/usr/lib/confexts"));
    }

    #[test]
    fn lowerdir_escaping_and_marker_parsing() {
        assert_eq!(
            lowerdir(&["/a,b".into(), "/c:d".into(), "/e\\f".into()]),
            "/a\\,b:/c\\:d:/e\\\\f"
        );
        assert_eq!(parse_dev("0:52\n"), Some((0, 52)));
        assert_eq!(parse_dev("x:1"), None);
        assert_eq!(parse_list("a\nb\n"), vec!["a", "b"]);
    }
}

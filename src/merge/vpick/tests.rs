//! vpick's cases: systemd's own (src/test/test-vpick.c, on an x86-64 host; the listing is the
//! one that test writes), the example of systemd.v(7), and the corners of the name grammar.

use super::*;
use crate::rollback::decide::{decide, Evidence};

const X86_64_HOST: &[&str] = &["x86-64", "x86"];
const FILES: &[EntryKind] = &[EntryKind::File, EntryKind::Block];

fn files(names: &[&str]) -> Vec<Entry> {
    names
        .iter()
        .map(|n| Entry {
            name: n.to_string(),
            kind: EntryKind::File,
        })
        .collect()
}

fn raw<'a>(
    basename: &'a str,
    architecture: Option<&'a str>,
    version: Option<&'a str>,
) -> Filter<'a> {
    Filter {
        basename,
        suffix: ".raw",
        kinds: FILES,
        architecture,
        version,
    }
}

/// The directory systemd's test-vpick.c builds.
fn systemd_listing() -> Vec<Entry> {
    files(&[
        "foo_5.5.raw",
        "foo_55.raw",
        "foo_5.raw",
        "foo_5_ia64.raw",
        "foo_7.raw",
        "foo_7_x86-64.raw",
        "foo_55_x86-64.raw",
        "foo_55_x86.raw",
        "foo_99_x86.raw",
        "foo_100_sparc.raw",
        "quux_1_s390.raw",
        "quux_2_s390+4-6.raw",
        "quux_3_s390+0-10.raw",
    ])
}

fn chosen(p: Option<Pick>) -> (String, String, Option<&'static str>) {
    let p = p.expect("a pick");
    (p.file_name, p.version, p.architecture)
}

#[test]
fn systemd_test_vpick_cases() {
    let mut l = systemd_listing();
    // Any host architecture: the newest version wins even on the secondary architecture.
    assert_eq!(
        chosen(pick(&l, &raw("foo", None, None), X86_64_HOST).unwrap()),
        ("foo_99_x86.raw".into(), "99".into(), Some("x86"))
    );
    // Only x86-64: untagged entries do not count either.
    assert_eq!(
        chosen(pick(&l, &raw("foo", Some("x86-64"), None), X86_64_HOST).unwrap()),
        ("foo_55_x86-64.raw".into(), "55".into(), Some("x86-64"))
    );
    assert_eq!(
        chosen(pick(&l, &raw("foo", Some("ia64"), None), X86_64_HOST).unwrap()),
        ("foo_5_ia64.raw".into(), "5".into(), Some("ia64"))
    );
    // A fixed version on the host: the untagged file (ia64 is not the host's).
    assert_eq!(
        chosen(pick(&l, &raw("foo", None, Some("5")), X86_64_HOST).unwrap()),
        ("foo_5.raw".into(), "5".into(), None)
    );
    assert_eq!(
        chosen(pick(&l, &raw("foo", Some("ia64"), Some("5")), X86_64_HOST).unwrap()),
        ("foo_5_ia64.raw".into(), "5".into(), Some("ia64"))
    );
    assert_eq!(
        pick(&l, &raw("foo", Some("cris"), None), X86_64_HOST),
        Ok(None)
    );
    // Without 99: at the same version the native architecture beats the secondary one.
    l.retain(|e| e.name != "foo_99_x86.raw");
    assert_eq!(
        chosen(pick(&l, &raw("foo", None, None), X86_64_HOST).unwrap()),
        ("foo_55_x86-64.raw".into(), "55".into(), Some("x86-64"))
    );
    // Tries: 3 has none left, so 2 (with 4 left, 6 done) wins over it.
    let p = pick(&l, &raw("quux", Some("s390"), None), X86_64_HOST)
        .unwrap()
        .unwrap();
    assert_eq!(p.file_name, "quux_2_s390+4-6.raw");
    assert_eq!(
        (p.version.as_str(), p.tries_left, p.tries_done),
        ("2", Some(4), Some(6))
    );
    // The winner has the wrong type: an error, not the next entry.
    let dirs_only = Filter {
        kinds: &[EntryKind::Directory],
        ..raw("foo", None, None)
    };
    assert!(matches!(
        pick(&l, &dirs_only, X86_64_HOST),
        Err(PickError::WrongType { .. })
    ));
}

#[test]
fn systemd_v_man_page_example() {
    let l = files(&[
        "mymachine_7.5.13.raw",
        "mymachine_7.5.14_x86-64.raw",
        "mymachine_7.6.0_arm64.raw",
        "mymachine_7.7.0_x86-64+0-5.raw",
    ]);
    assert_eq!(
        chosen(pick(&l, &raw("mymachine", None, None), X86_64_HOST).unwrap()),
        (
            "mymachine_7.5.14_x86-64.raw".into(),
            "7.5.14".into(),
            Some("x86-64")
        )
    );
    // The same directory on an arm64 host.
    assert_eq!(
        chosen(
            pick(
                &l,
                &raw("mymachine", None, None),
                &host_architectures("arm64")
            )
            .unwrap()
        ),
        (
            "mymachine_7.6.0_arm64.raw".into(),
            "7.6.0".into(),
            Some("arm64")
        )
    );
}

#[test]
fn name_grammar_corners() {
    let h = X86_64_HOST;
    let one = |names: &[&str]| pick(&files(names), &raw("foo", None, None), h).unwrap();
    // strverscmp, not string order.
    assert_eq!(
        one(&["foo_1.9.raw", "foo_1.10.raw"]).unwrap().version,
        "1.10"
    );
    // Counters: more tries left, then fewer done, at the same version.
    assert_eq!(
        one(&["foo_1+1.raw", "foo_1+3.raw"]).unwrap().file_name,
        "foo_1+3.raw"
    );
    assert_eq!(
        one(&["foo_1+2-5.raw", "foo_1+2-1.raw"]).unwrap().file_name,
        "foo_1+2-1.raw"
    );
    // An entry without counters ranks as more tries left than any counted one.
    assert_eq!(
        one(&["foo_1+9.raw", "foo_1.raw"]).unwrap().file_name,
        "foo_1.raw"
    );
    // Every candidate exhausted: still the newest of them.
    assert_eq!(one(&["foo_1+0.raw", "foo_2+0-3.raw"]).unwrap().version, "2");
    // A '+' that is no counter stays in the version.
    let p = one(&["foo_1.0+git.raw"]).unwrap();
    assert_eq!((p.version.as_str(), p.tries_left), ("1.0+git", None));
    assert_eq!(one(&["foo_1+4-.raw"]).unwrap().version, "1+4-");
    // The last '_' is cut even when no architecture follows (systemd does the same).
    let p = one(&["foo_1_2.raw"]).unwrap();
    assert_eq!((p.version.as_str(), p.architecture), ("1", None));
    // Other names, other suffixes, empty or invalid versions: ignored.
    assert_eq!(
        one(&[
            "foobar_9.raw",
            "foo-9.raw",
            "foo_9.img",
            "foo_.raw",
            "foo_9 9.raw",
            "foo.raw"
        ]),
        None
    );
    assert_eq!(
        pick(&files(&["foo_9.raw"]), &raw("foo", Some("x86_64"), None), h),
        Ok(None)
    );
    assert_eq!(pick(&[], &raw("foo", None, None), h), Ok(None));
    // Directory trees: no suffix.
    let trees = vec![
        Entry {
            name: "foo_1".into(),
            kind: EntryKind::Directory,
        },
        Entry {
            name: "foo_2".into(),
            kind: EntryKind::Directory,
        },
    ];
    let f = Filter {
        suffix: "",
        kinds: &[EntryKind::Directory],
        ..raw("foo", None, None)
    };
    assert_eq!(pick(&trees, &f, h).unwrap().unwrap().file_name, "foo_2");
}

#[test]
fn host_architectures_and_directory_names() {
    assert_eq!(host_architectures("x86-64"), ["x86-64", "x86"]);
    assert_eq!(host_architectures("riscv64"), ["riscv64"]);
    assert_eq!(ARCHITECTURES.len(), 33);
    assert_eq!(
        filter_for_dir("foo.raw.v", Class::Sysext),
        Some(("foo".into(), ".raw", FILES))
    );
    assert_eq!(
        filter_for_dir("foo.sysext.raw.v", Class::Sysext),
        Some(("foo".into(), ".raw", FILES))
    );
    assert_eq!(
        filter_for_dir("foo.v", Class::Confext),
        Some(("foo".into(), "", &[EntryKind::Directory][..]))
    );
    assert_eq!(filter_for_dir("foo.raw", Class::Sysext), None);
    assert_eq!(filter_for_dir(".v", Class::Sysext), None);
    assert_eq!(filter_for_dir(".x.raw.v", Class::Sysext), None);
}

#[test]
fn a_pick_below_its_floor_is_refused_not_replaced() {
    // The directory offers 1.0 and 2.0; the pick is 2.0. Its verified release says 2.0 (the file
    // name is not trusted), the floor is 3.0: the answer is a refusal, and the pick API has no
    // "next best" to fall back to.
    let l = files(&["foo_1.0.raw", "foo_2.0.raw"]);
    let p = pick(&l, &raw("foo", None, None), X86_64_HOST)
        .unwrap()
        .unwrap();
    assert_eq!(p.file_name, "foo_2.0.raw");
    let verified = Evidence {
        version: Some("2.0"),
        epoch: None,
    };
    let r = decide(&verified, Some("3.0"), None).unwrap_err();
    assert!(r
        .to_string()
        .starts_with("rollback: IMAGE_VERSION=2.0 is below the floor 3.0"));
}

#[test]
fn lists_a_real_directory_following_symlinks() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(d.join("foo_1.raw"), b"x").unwrap();
    std::fs::create_dir(d.join("foo_2.raw")).unwrap();
    std::os::unix::fs::symlink("foo_1.raw", d.join("foo_3.raw")).unwrap();
    std::os::unix::fs::symlink("missing", d.join("foo_4.raw")).unwrap();
    let mut l = list_dir(d).unwrap();
    l.sort_by(|a, b| a.name.cmp(&b.name));
    let kinds: Vec<_> = l.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EntryKind::File,
            EntryKind::Directory,
            EntryKind::File,
            EntryKind::Other
        ]
    );
    // The newest (4) is a dangling link: the directory is unusable, 3 is not taken instead.
    assert!(matches!(
        pick(&l, &raw("foo", None, None), X86_64_HOST),
        Err(PickError::WrongType { .. })
    ));
}

//! Fuzz target: systemd's `.v/` directory choice over attacker-named files (anyone who can write
//! an extension directory picks the names) must never panic, and a pick is always one of the
//! entries it was given, with a non-empty version.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::merge::vpick::{pick, Entry, EntryKind, Filter};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let entries: Vec<Entry> = text
        .lines()
        .enumerate()
        .map(|(i, n)| Entry {
            name: n.to_string(),
            kind: if i % 5 == 4 {
                EntryKind::Directory
            } else {
                EntryKind::File
            },
        })
        .collect();
    for (basename, architecture) in [("foo", None), ("", None), ("foo", Some("s390")), ("foo", Some("?"))] {
        let f = Filter {
            basename,
            suffix: ".raw",
            kinds: &[EntryKind::File],
            architecture,
            version: None,
        };
        if let Ok(Some(p)) = pick(&entries, &f, &["x86-64", "x86"]) {
            assert!(entries.iter().any(|e| e.name == p.file_name));
            assert!(!p.version.is_empty());
        }
    }
});

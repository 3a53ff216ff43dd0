//! Fuzz target: the os-release parser and the extension-release decision must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::image::release::{validate, Host, OsRelease, Scope};
use verity::image::Class;

fuzz_target!(|data: &[u8]| {
    let mid = data.len() / 2;
    let (a, b) = data.split_at(mid);
    if let (Ok(host), Ok(ext)) = (OsRelease::parse(a), OsRelease::parse(b)) {
        for class in [Class::Sysext, Class::Confext] {
            let h = Host { os_release: &host, arch: "x86-64", scope: Scope::System, class };
            let _ = validate(&h, &ext);
        }
    }
});

//! Fuzzes what the merge code reads from places an attacker may control: extension-release files
//! from images (os-release syntax, then systemd's compatibility decision), the marker files of a
//! merged hierarchy, and /proc/self/mountinfo lines. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::image::release::{validate, Host, OsRelease, Scope};
use verity::merge::plan::{image_name, parse_dev, parse_list, Class};
use verity::merge::status::{mount_points, submounts_below};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let host = OsRelease::parse(b"ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1\n").expect("constant");
    let img = OsRelease::parse(data).unwrap_or_default();
    for class in [Class::Sysext, Class::Confext] {
        let h = Host {
            os_release: &host,
            arch: "x86-64",
            scope: Scope::System,
            class,
        };
        let _ = validate(&h, &img);
        let _ = image_name(&s, false, class);
    }
    let _ = parse_dev(&s);
    let _ = parse_list(&s);
    let pts = mount_points(&s);
    let _ = submounts_below(&pts, "/usr");
});

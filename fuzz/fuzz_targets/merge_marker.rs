//! Fuzzes what the merge code reads from places an attacker may control: extension-release files
//! from images (os-release syntax, then systemd's compatibility decision), the marker files of a
//! merged hierarchy, and /proc/self/mountinfo lines. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::merge::plan::{image_name, parse_dev, parse_list, Class};
use verity::merge::release::{parse_os_release, validate};
use verity::merge::status::{mount_points, submounts_below};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let host = parse_os_release("ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1\n");
    let img = parse_os_release(&s);
    for class in [Class::Sysext, Class::Confext] {
        let _ = validate(class, &host, &img, "x86-64", false);
        let _ = image_name(&s, false, class);
    }
    let _ = parse_dev(&s);
    let _ = parse_list(&s);
    let pts = mount_points(&s);
    let _ = submounts_below(&pts, "/usr");
});

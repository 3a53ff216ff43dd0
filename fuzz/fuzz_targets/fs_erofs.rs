//! Fuzz target: the erofs reader (issue 12 point 4) must never panic, loop or over-allocate on any
//! image, whatever path it is asked for; everything it returns stays within the limits asked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::image::fs::Reader;
use verity::image::fsread::FsType;

fuzz_target!(|data: &[u8]| {
    let src = data.to_vec();
    let Ok(r) = Reader::open(&src, FsType::Erofs) else {
        return;
    };
    for p in [
        "usr/lib/extension-release.d/extension-release.ext",
        "etc/extension-release.d/extension-release.ext",
        "usr/lib/os-release",
        "etc/os-release",
    ] {
        if let Ok(Some(b)) = r.read_file(p, 65536) {
            assert!(b.len() <= 65536);
        }
        let _ = r.kind(p);
    }
    for d in ["usr/lib/extension-release.d", "etc/extension-release.d", ""] {
        if let Ok(Some(es)) = r.list_dir(d) {
            assert!(es.len() <= verity::limits::FS_DIRECTORY_ENTRIES);
        }
    }
});

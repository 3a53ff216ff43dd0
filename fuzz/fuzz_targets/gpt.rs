//! Fuzz target: the strict GPT reader must never panic or over-allocate on any image, and every
//! partition it accepts must lie inside the usable area without overlapping another.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::image::gpt::read_gpt;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = read_gpt(data) {
        for (i, p) in g.partitions.iter().enumerate() {
            assert!(p.first_lba >= g.first_usable && p.last_lba <= g.last_usable);
            for q in &g.partitions[i + 1..] {
                assert!(p.last_lba < q.first_lba || q.last_lba < p.first_lba);
            }
        }
    }
});

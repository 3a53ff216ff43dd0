//! The multi-buffer SHA-256 kernels against the `sha2` crate: every tier this CPU can run, many
//! block sizes, salt lengths around the 64-byte chunk boundary, both salt positions and block
//! counts that leave partial 16-lane passes; plus a property test and an in-process throughput
//! probe (ignored by default: `cargo test --release --test sha256_mb -- --ignored --nocapture`).

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use verity::digest::HashAlg;
use verity::sys::simd::sha256_mb::{
    available_tiers, best_tier, hash_salted_blocks, hash_salted_blocks_with, Tier,
};
use verity::verity::hasher::BlockHasher;

/// A small xorshift generator so failures reproduce without a seed file.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn reference(salt: &[u8], salt_first: bool, blocks: &[u8], bs: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for b in blocks.chunks(bs) {
        let mut h = Sha256::new();
        if salt_first {
            h.update(salt);
            h.update(b);
        } else {
            h.update(b);
            h.update(salt);
        }
        out.extend_from_slice(&h.finalize());
    }
    out
}

#[test]
fn portable_is_always_available_and_last() {
    let t = available_tiers();
    assert_eq!(t.last(), Some(&Tier::Portable));
    assert_eq!(best_tier(), t[0]);
}

#[test]
fn a_cpu_with_simd_sha_uses_a_fast_tier() {
    // Read independently of the crate's feature detection: if the CPU has SHA-NI or AVX-512BW,
    // the fast path must be in use (a failed self-test or lost detection would show here).
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .expect("a flags line")
        .split_whitespace()
        .collect();
    if flags.contains(&"avx512bw") {
        assert_eq!(best_tier(), Tier::Avx512);
    } else if flags.contains(&"sha_ni") {
        assert_eq!(best_tier(), Tier::ShaNi2);
    } else {
        assert_eq!(best_tier(), Tier::Portable);
    }
}

#[test]
fn every_tier_matches_sha2_over_sizes_salts_and_counts() {
    let salts = [0usize, 1, 31, 32, 33, 55, 56, 63, 64, 65, 100, 128, 256];
    let sizes = [512usize, 1024, 4096, 8192, 65536];
    let counts = [1usize, 2, 15, 16, 17, 33];
    let mut seed = 1;
    for &bs in &sizes {
        for &n in &counts {
            // Keep the large sizes from dominating the run time.
            if bs * n > (1 << 20) {
                continue;
            }
            let blocks = random_bytes(bs * n, seed);
            for &sl in &salts {
                let salt = random_bytes(sl, seed + 1000);
                seed += 1;
                for salt_first in [true, false] {
                    let want = reference(&salt, salt_first, &blocks, bs);
                    for tier in available_tiers() {
                        let mut got = vec![0u8; 32 * n];
                        assert!(hash_salted_blocks_with(
                            tier, &salt, salt_first, &blocks, bs, &mut got
                        ));
                        assert!(
                            got == want,
                            "{tier:?} bs {bs} n {n} salt {sl} first {salt_first}"
                        );
                    }
                    let mut got = vec![0u8; 32 * n];
                    hash_salted_blocks(&salt, salt_first, &blocks, bs, &mut got);
                    assert!(
                        got == want,
                        "auto bs {bs} n {n} salt {sl} first {salt_first}"
                    );
                }
            }
        }
    }
}

#[test]
fn odd_block_sizes_and_lane_positions_are_independent() {
    // Block sizes that are not multiples of 64 put the block/padding boundary mid-chunk, and a
    // change in one lane must change only that lane's digest.
    for bs in [1usize, 55, 56, 63, 64, 65, 119, 200] {
        let n = 19;
        let mut blocks = random_bytes(bs * n, bs as u64);
        for tier in available_tiers() {
            for (salt_len, first) in [(0, true), (33, true), (70, false), (3, false)] {
                let salt = random_bytes(salt_len, 7);
                let mut a = vec![0u8; 32 * n];
                hash_salted_blocks_with(tier, &salt, first, &blocks, bs, &mut a);
                assert_eq!(a, reference(&salt, first, &blocks, bs), "{tier:?} bs {bs}");
                blocks[5 * bs] ^= 1;
                let mut b = vec![0u8; 32 * n];
                hash_salted_blocks_with(tier, &salt, first, &blocks, bs, &mut b);
                blocks[5 * bs] ^= 1;
                for k in 0..n {
                    assert_eq!(a[32 * k..32 * k + 32] == b[32 * k..32 * k + 32], k != 5);
                }
            }
        }
    }
}

#[test]
fn empty_input_writes_nothing() {
    for tier in available_tiers() {
        assert!(hash_salted_blocks_with(
            tier,
            b"s",
            true,
            &[],
            4096,
            &mut []
        ));
    }
}

#[test]
#[should_panic(expected = "one 32-byte digest per block")]
fn a_short_output_buffer_is_refused() {
    hash_salted_blocks(b"", true, &[0; 8192], 4096, &mut [0; 32]);
}

#[test]
fn block_hasher_hash_many_matches_hash_for_every_algorithm_and_format() {
    for alg in [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ] {
        for hash_type in [0, 1] {
            let salt = random_bytes(32, 3);
            let h = BlockHasher::new(alg, &salt, hash_type);
            let blocks = random_bytes(4096 * 21, 4);
            let d = h.digest_size();
            let mut many = vec![0u8; d * 21];
            h.hash_many(&blocks, 4096, &mut many);
            for (b, got) in blocks.chunks(4096).zip(many.chunks(d)) {
                assert_eq!(got, &h.hash(b)[..], "{alg} format {hash_type}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn auto_tier_equals_sha2(
        salt in proptest::collection::vec(any::<u8>(), 0..=256),
        first in any::<bool>(),
        bs_log in 9u32..=13,
        n in 1usize..40,
        seed in any::<u64>(),
    ) {
        let bs = 1usize << bs_log;
        let blocks = random_bytes(bs * n, seed);
        let mut got = vec![0u8; 32 * n];
        hash_salted_blocks(&salt, first, &blocks, bs, &mut got);
        prop_assert_eq!(got, reference(&salt, first, &blocks, bs));
    }
}

/// CPU time of this thread in nanoseconds, so the figures hold on a loaded machine.
fn thread_cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    s.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
#[ignore = "throughput probe; run with --release --ignored --nocapture"]
fn throughput_per_tier() {
    let bs = 4096;
    let n = 16 * 1024; // 64 MiB, beyond L2 like a real image
    let blocks = random_bytes(bs * n, 9);
    let salt = random_bytes(32, 10);
    let mut out = vec![0u8; 32 * n];
    let mut tiers: Vec<Option<Tier>> = available_tiers().into_iter().map(Some).collect();
    tiers.push(None);
    for tier in tiers {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = thread_cpu_ns();
            match tier {
                Some(tier) => {
                    hash_salted_blocks_with(tier, &salt, true, &blocks, bs, &mut out);
                }
                None => {
                    let h = BlockHasher::new(HashAlg::Sha256, &salt, 1);
                    for (b, o) in blocks.chunks(bs).zip(out.chunks_mut(32)) {
                        h.hash_into(b, o);
                    }
                }
            }
            best = best.min((thread_cpu_ns() - t) as f64);
        }
        let name = tier.map_or("BlockHasher::hash_into".to_string(), |t| format!("{t:?}"));
        println!(
            "{name:>24}: {:.2} GB/s per core (CPU time)",
            (bs * n) as f64 / best
        );
    }
}

//! The SIMD kernels: multi-buffer SHA-256 ([`sha256_mb`]), the Reed-Solomon parity in AVX2
//! ([`rs_avx2`]) and GF(2^8) multiply-accumulate in GFNI or AVX2 ([`gf_mac`]), plus the switch that selects which code paths may run.
//!
//! This is computation, not syscalls: a bottom node of the layer graph (`tests/layering.rs`,
//! layer L2) that imports nothing but the standard library and `sha2`, and that `verity/` calls
//! for its hot loops. Issue 16 asks to move it out of `sys/`; it stays under `sys/` only because
//! the project rule is "no `unsafe` outside `src/sys/`", and both kernels need `unsafe` for
//! `#[target_feature]` calls and unaligned vector loads. The layering test treats `sys::simd` as
//! its own node, so the rest of `sys/` (syscalls, layer L7) is still forbidden to `verity/`.
//! Both kernels are hand-written on purpose (issue 16, point 5): no maintained crate offers a
//! multi-buffer SHA-256 over equal-length salted blocks or an RS(255, k) parity kernel with
//! dm-verity's interleaving, and each kernel is checked against the portable path in a self-test
//! before it is used.
//!
//! Which paths may run: `VERITY_SIMD=portable` in the environment forces the portable
//! code everywhere (SHA-256 through the `sha2` crate, Reed-Solomon parity with scalar tables),
//! as on a CPU without SHA-NI or AVX2, for benchmarks and for tests that compare the paths.
//! Unset, empty or `auto`: every kernel the CPU can run (each still passes a self-test first).
//! Read once per process.

pub mod gf_mac;
pub mod rs_avx2;
pub mod sha256_mb;

use std::sync::OnceLock;

/// The environment variable that selects the code paths.
pub const ENV: &str = "VERITY_SIMD";

/// True when `VERITY_SIMD=portable` (or `none`, `off`) asks for the portable code only.
pub fn portable_forced() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| std::env::var(ENV).map(|v| parse(&v)).unwrap_or(false))
}

fn parse(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "portable" | "none" | "off" | "0"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_that_force_the_portable_paths() {
        for v in ["portable", "PORTABLE", " off ", "none", "0"] {
            assert!(super::parse(v), "{v}");
        }
        for v in ["", "auto", "avx2", "1"] {
            assert!(!super::parse(v), "{v}");
        }
    }
}

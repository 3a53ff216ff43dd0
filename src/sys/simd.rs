//! Which SIMD code paths may run: `VERITY_SIMD=portable` in the environment forces the portable
//! code everywhere (SHA-256 through the `sha2` crate, Reed-Solomon parity with scalar tables),
//! as on a CPU without SHA-NI or AVX2, for benchmarks and for tests that compare the paths.
//! Unset, empty or `auto`: every kernel the CPU can run (each still passes a self-test first).
//! Read once per process.

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

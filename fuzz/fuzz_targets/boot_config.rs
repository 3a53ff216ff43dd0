//! Fuzz target: the boot hook's `boot.toml` parser. Any text either parses into a configuration
//! or is refused with a message; it never panics. A configuration that parses re-checks its TPM
//! setting without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match verity::boot::config::parse(text) {
        Ok(cfg) => {
            let _ = cfg.check_tpm(text, false);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});

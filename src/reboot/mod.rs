//! Verified soft reboot: staging /run/nextroot and switching into it.
//!
//! `soft-reboot prepare` ([`prepare`]) admits a root image like any other (verify -> measure as
//! class nextroot), checks that it is an OS (`crate::image::ostree`) and stages it ([`stage`]);
//! `soft-reboot exec` ([`exec`]) re-checks what was staged and switches into it with `execve`, so
//! the path has no child processes. [`plan`] holds the pure parts (the staging record, `--keep-fd`).
//!
//! Layer L14 (`tests/layering.rs`): above `merge`, below `boot`.

pub mod exec;
pub mod plan;
pub mod prepare;
pub mod stage;

//! sysext/confext merges: discovery, the pure planner, mutable modes, applying overlays through `sys`,
//! markers, status. [`run`] holds the library entry points (merge, refresh, unmerge on a
//! [`crate::host::Host`]) that the command line and the boot hook call.
//!
//! Layer L13 (`tests/layering.rs`): above the host context and the admission steps; below `reboot`,
//! `boot` and `cli`.
pub mod apply;
pub mod discover;
pub mod engine;
pub mod mutable;
pub mod plan;
pub mod run;
pub mod status;
pub mod vpick;

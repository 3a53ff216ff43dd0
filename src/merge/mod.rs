//! sysext/confext merges: discovery, the pure planner, mutable modes, applying overlays through `sys`,
//! markers, status.
pub mod apply;
pub mod discover;
pub mod engine;
pub mod mutable;
pub mod pipeline;
pub mod plan;
pub mod release_check;
pub mod status;
pub mod version;
pub mod vpick;

//! sysext/confext merges: discovery, the pure planner, applying overlays through `sys`, markers, status.
pub mod version;
pub mod plan;
pub mod release;
pub mod pipeline;
pub mod discover;
pub mod status;
pub mod apply;
pub mod engine;

//! sysext/confext merges: discovery, the pure planner, applying overlays through `sys`, markers, status.
pub mod apply;
pub mod discover;
pub mod engine;
pub mod pipeline;
pub mod plan;
pub mod status;
pub mod version;
pub mod vpick;

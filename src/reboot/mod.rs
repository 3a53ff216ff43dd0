//! Verified soft reboot: staging /run/nextroot and switching into it.

pub mod exec;
pub mod plan;
pub mod prepare;
pub mod stage;

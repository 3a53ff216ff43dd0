//! Verified soft reboot: staging /run/nextroot and switching into it.

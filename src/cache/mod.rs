//! The exact-match cache: key, directives, entries and tiers.

pub mod entry;
pub mod key;
pub mod memory;
pub mod policy;
pub mod ttl;

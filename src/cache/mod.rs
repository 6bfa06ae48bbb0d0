//! The exact-match cache: key, directives, entries, tiers and single-flight.

pub mod breaker;
pub mod bucket;
pub mod codec;
pub mod dump;
pub mod entry;
pub mod facts;
pub mod flight;
pub mod key;
pub mod live;
pub mod memory;
pub mod mode;
pub mod namespace;
pub mod outcome;
pub mod policy;
pub mod redis;
pub mod refresh;
pub mod seal;
pub mod tier;
pub mod ttl;

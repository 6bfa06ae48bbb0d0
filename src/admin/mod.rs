//! The operator surface: purge (watermarks shared through Redis, background
//! clean-up). Route handlers stay in `server/`; this is the logic.

pub mod cleanup;
pub mod fleet;
pub mod purge;
pub mod sync;
pub mod tally;
pub mod top;
pub mod watermarks;

//! The operator surface: purge (watermarks shared through Redis, background
//! clean-up). Route handlers stay in `server/`; this is the logic.

pub mod cleanup;
pub mod purge;
pub mod sync;
pub mod watermarks;

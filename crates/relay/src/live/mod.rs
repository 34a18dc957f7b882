//! Live state: the configuration in effect, swapped whole on reload (`SIGHUP`, `POST
//! /api/reload`: [`reload`]), and the bounds it sets that outlive a configuration
//! ([`bounds`]), resized in place.

pub mod bounds;
pub mod reload;

pub use bounds::Bounds;
pub use reload::{Current, Live, ReloadError, Reloaded};

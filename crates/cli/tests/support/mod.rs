pub mod cli;
pub mod examples;
#[cfg(feature = "relay")]
pub mod fake_github;
#[cfg(feature = "relay")]
pub mod load;
#[cfg(feature = "relay")]
pub mod relay;

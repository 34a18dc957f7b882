//! The relay's configuration: a YAML file (`hookflow relay --config FILE`) and flags that
//! override it. With no file at all the relay runs on the embedded default: the compatible route
//! on, SQLite in `--data`, `https://api.github.com`.

mod build;
mod destinations;
mod endpoint;
mod error;
mod overrides;
mod problems;
mod raw;
mod repo_pattern;
mod settings;
#[cfg(test)]
mod tests;

pub use destinations::glob;
pub use destinations::Batching;
pub use destinations::DestinationConfig;
pub use destinations::EndpointAuth;
pub use destinations::Target;
pub use destinations::Transform;
pub use destinations::TransformError;
pub use endpoint::MAX_BATCH_EVENTS;
pub use error::ConfigError;
pub use overrides::Overrides;
pub use problems::endpoint_line;
pub use repo_pattern::RepoPattern;
pub use settings::admin_tokens;
pub use settings::AdminConfig;
pub use settings::BodyRefConfig;
pub use settings::ConfigSource;
pub use settings::DeliveryConfig;
pub use settings::Endpoint;
pub use settings::EventTypeSource;
pub use settings::GithubApp;
pub use settings::KeySource;
pub use settings::Limits;
pub use settings::RelayConfig;
pub use settings::Setting;
pub use settings::StoreLocation;
pub use settings::BODY_REF_MAX_BODY_BYTES;
pub use settings::DEFAULT_RETENTION;

pub mod fake_github;
pub mod load;
pub mod relay;

//! Send: what leaves the relay. The GitHub API client ([`github`]: dispatches and their
//! answers), the relay's GitHub App ([`github_app`]: installation tokens), and plain HTTP
//! destinations ([`forward`]: Standard Webhooks signed).

pub mod forward;
pub mod github;
pub mod github_app;

use std::path::PathBuf;

/// Flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--data`.
    pub data: Option<PathBuf>,
    /// `--store` (a `postgres://` URL).
    pub store: Option<String>,
    /// `--api-url`.
    pub api_url: Option<String>,
    /// Where each override came from (`listen` → `flag --listen`, `environment HOOKFLOW_LISTEN`),
    /// for `--check-config`'s account of the effective values.
    pub sources: Vec<(String, String)>,
}

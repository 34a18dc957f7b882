/// A configuration problem, with where it is, and any further ones found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `flags`).
    pub file: String,
    /// 1-based line when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// Other problems found in the same pass.
    pub more: Vec<ConfigError>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.message)?,
            None => write!(f, "{}: {}", self.file, self.message)?,
        }
        for m in &self.more {
            write!(f, "\n{m}")?;
        }
        Ok(())
    }
}

/// Never built: [`combine`] is only called with problems.
pub(super) fn unreachable_error(name: &str) -> ConfigError {
    ConfigError {
        file: name.to_string(),
        line: None,
        message: "the configuration is invalid".into(),
        more: Vec::new(),
    }
}

/// One error carrying the rest, or `None` for none.
pub(super) fn combine(mut problems: Vec<ConfigError>) -> Option<ConfigError> {
    if problems.is_empty() {
        return None;
    }
    let rest = problems.split_off(1);
    let first = problems.remove(0);
    Some(ConfigError {
        more: rest,
        ..first
    })
}

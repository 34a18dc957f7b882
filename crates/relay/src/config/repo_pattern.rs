use hookflow_protocol::dispatch::Repo;

/// An entry of `compat_repos`: `owner/name`, or `owner/*` for every repository of an owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoPattern {
    /// One repository.
    Exact(Repo),
    /// Every repository of this owner.
    Owner(String),
}

impl RepoPattern {
    /// Reads `owner/name` or `owner/*`.
    pub fn parse(text: &str) -> Result<RepoPattern, hookflow_protocol::dispatch::RepoError> {
        match text.split_once('/') {
            Some((owner, "*")) => {
                Repo::parse(&format!("{owner}/x")).map(|r| RepoPattern::Owner(r.owner))
            }
            _ => Repo::parse(text).map(RepoPattern::Exact),
        }
    }

    /// Whether `repo` is one of the pattern's, ignoring case as GitHub does.
    pub fn matches(&self, repo: &Repo) -> bool {
        match self {
            RepoPattern::Owner(owner) => owner.eq_ignore_ascii_case(&repo.owner),
            RepoPattern::Exact(r) => {
                r.owner.eq_ignore_ascii_case(&repo.owner) && r.name.eq_ignore_ascii_case(&repo.name)
            }
        }
    }
}

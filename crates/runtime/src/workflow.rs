//! Workflow files and their webhook triggers (DESIGN §3): the actionsflow layout of a directory
//! of `*.yml`/`*.yaml` files, nested directories included, each with an `on:` map from trigger
//! name to options.
//!
//! Loading checks everything that can be checked without a request, and reports every problem
//! with its file and line, so `hookflow validate` and `hookflow run` say the same thing. Which
//! files a request can reach is [`crate::matching`]'s business; this module reads the ones it
//! is given.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::result::BUILTIN_OUTPUTS;
use crate::route::RoutePattern;
use crate::rules::Rules;
use hookflow_protocol::options::locate;

/// The trigger name that marks a webhook trigger.
pub const WEBHOOK_TRIGGER: &str = "webhook";
/// Options of a webhook trigger that hookflow reads.
const WEBHOOK_OPTIONS: [&str; 8] = [
    "path",
    "method",
    "deduplicationKey",
    "config",
    "event_types",
    "verify",
    "outputs",
    "headers",
];
/// actionsflow's general `config` options that mean nothing for a webhook and are accepted.
const IGNORED_CONFIG: [&str; 12] = [
    "every",
    "limit",
    "skipFirst",
    "force",
    "logLevel",
    "sleep",
    "debug",
    "shouldDeduplicate",
    "timeZone",
    "filterOutputs",
    "outputsMode",
    "isNeedToCheckDuplicate",
];

/// One problem found in a workflow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in one or more workflow files.
#[derive(Debug, Clone, thiserror::Error)]
pub struct WorkflowError {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
    /// The warnings found in the same file, so a file with errors still shows them.
    pub notices: Vec<Problem>,
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.problems.iter().map(Problem::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// A parsed workflow file.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// The file on disk.
    pub file: PathBuf,
    /// Its path relative to the workflows directory, `/`-separated (`team/ci/deploy.yml`).
    pub relative_path: String,
    /// Its triggers, in file order.
    pub triggers: Vec<Trigger>,
    /// Things worth saying that are not errors (ignored trigger kinds, unknown options).
    pub notices: Vec<Problem>,
}

/// One entry of `on:`.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The key under `on:` (`webhook`, `rss`, …).
    pub name: String,
    /// Line of the key, when found.
    pub line: Option<usize>,
    /// The webhook options, for a webhook trigger.
    pub webhook: Option<WebhookTrigger>,
}

/// The options of a webhook trigger.
#[derive(Debug, Clone)]
pub struct WebhookTrigger {
    /// `path`: the pattern the rest of the request path must match; `None` accepts any.
    pub path: Option<RoutePattern>,
    /// `method`: accepted methods, lowercase; `None` accepts any.
    pub methods: Option<Vec<String>>,
    /// `deduplicationKey`: where in the body `request_id` comes from.
    pub deduplication_key: Option<String>,
    /// `config.active` (default `true`).
    pub active: bool,
    /// `event_types`: accepted `repository_dispatch` types (default `[webhook]`).
    pub event_types: Vec<String>,
    /// `headers`, `verify`, `config.filter` and `outputs`, compiled.
    pub rules: Rules,
    /// Line of `verify.secret_env`, for setup errors found at run time.
    pub verify_line: Option<usize>,
    /// The options as written.
    pub options: Mapping,
}

impl Workflow {
    /// The URL base of a trigger: `/<relative path without extension>/<trigger>`.
    pub fn base_path(&self, trigger: &str) -> String {
        format!("/{}/{}", strip_extension(&self.relative_path), trigger)
    }
}

/// `team/ci/deploy.yml` → `team/ci/deploy` (actionsflow strips `\.+(yml|yaml)$`).
pub fn strip_extension(relative: &str) -> &str {
    for ext in ["yml", "yaml"] {
        if let Some(stem) = relative.strip_suffix(ext) {
            if stem.ends_with('.') {
                return stem.trim_end_matches('.');
            }
        }
    }
    relative
}

/// Reads and checks one workflow file. `relative_path` is its path below the workflows directory.
pub fn load_workflow(file: &Path, relative_path: &str) -> Result<Workflow, WorkflowError> {
    let text = std::fs::read_to_string(file).map_err(|e| WorkflowError {
        problems: vec![Problem {
            file: file.to_path_buf(),
            line: None,
            message: format!("cannot read workflow file: {e}"),
        }],
        notices: Vec::new(),
    })?;
    parse_workflow(&text, file, relative_path)
}

/// Parses workflow text; `file` is used in messages.
pub fn parse_workflow(
    text: &str,
    file: &Path,
    relative_path: &str,
) -> Result<Workflow, WorkflowError> {
    let mut ctx = Ctx {
        text,
        file,
        problems: Vec::new(),
        notices: Vec::new(),
    };
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let message = format!("invalid YAML: {}", strip_location(&e.to_string()));
            let line = e
                .location()
                .map(|l| duplicate_key_line(text, &message, l.line()));
            return Err(WorkflowError {
                problems: vec![Problem {
                    file: file.to_path_buf(),
                    line,
                    message,
                }],
                notices: Vec::new(),
            });
        }
    };
    let mut triggers = Vec::new();
    match &doc {
        Value::Mapping(map) => match map.get("on") {
            None => ctx.problem(
                &[],
                "no `on:` section; a workflow needs at least one trigger, e.g. `on: {webhook: {}}`",
            ),
            Some(on) => triggers = ctx.triggers(on),
        },
        Value::Null => ctx.problem(&[], "the file is empty; a workflow needs an `on:` section"),
        _ => ctx.problem(
            &[],
            "a workflow file must be a YAML mapping with an `on:` key",
        ),
    }
    if ctx.problems.is_empty() {
        Ok(Workflow {
            file: file.to_path_buf(),
            relative_path: relative_path.to_string(),
            triggers,
            notices: ctx.notices,
        })
    } else {
        Err(WorkflowError {
            problems: ctx.problems,
            notices: ctx.notices,
        })
    }
}

/// serde_yaml reports a duplicate key at the start of its mapping; point at the second copy.
fn duplicate_key_line(text: &str, message: &str, line: usize) -> usize {
    let Some(key) = message
        .split("duplicate entry with key ")
        .nth(1)
        .map(|k| k.trim_matches('"'))
    else {
        return line;
    };
    let lines: Vec<&str> = text.lines().collect();
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let Some(first) = lines.get(line.saturating_sub(1)) else {
        return line;
    };
    let indent = indent_of(first);
    let is_key = |l: &str| indent_of(l) == indent && l.trim_start().starts_with(&format!("{key}:"));
    let mut seen = 0;
    for (i, l) in lines.iter().enumerate().skip(line.saturating_sub(1)) {
        if is_key(l) {
            seen += 1;
            if seen == 2 {
                return i + 1;
            }
        }
    }
    line
}

/// serde_yaml appends " at line L column C"; the line is reported separately.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
    problems: Vec<Problem>,
    notices: Vec<Problem>,
}

impl Ctx<'_> {
    fn at(&self, keys: &[&str], message: String) -> Problem {
        let mut full = vec!["on"];
        full.extend_from_slice(keys);
        Problem {
            file: self.file.to_path_buf(),
            line: locate(self.text, if keys.is_empty() { &[] } else { &full }),
            message,
        }
    }

    fn problem(&mut self, keys: &[&str], message: &str) {
        let p = self.at(keys, message.to_string());
        self.problems.push(p);
    }

    fn notice(&mut self, keys: &[&str], message: String) {
        let p = self.at(keys, message);
        self.notices.push(p);
    }

    fn triggers(&mut self, on: &Value) -> Vec<Trigger> {
        // GitHub's short forms: `on: webhook` and `on: [webhook, rss]`.
        let entries: Vec<(String, Value)> = match on {
            Value::String(s) => vec![(s.clone(), Value::Null)],
            Value::Sequence(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(|s| (s.to_string(), Value::Null)))
                .collect(),
            Value::Mapping(map) => map
                .iter()
                .filter_map(|(k, v)| key_string(k).map(|k| (k, v.clone())))
                .collect(),
            _ => {
                self.problem(&[], "`on:` must map trigger names to their options, e.g. `on: {webhook: {path: /deploy}}`");
                return Vec::new();
            }
        };
        let mut triggers = Vec::new();
        for (name, options) in entries {
            let line = locate(self.text, &["on", &name]);
            let webhook = if name == WEBHOOK_TRIGGER {
                self.webhook(&name, &options)
            } else {
                self.notice(
                    &[&name],
                    format!("trigger `{name}` is not a webhook trigger; hookflow ignores it"),
                );
                None
            };
            triggers.push(Trigger {
                name,
                line,
                webhook,
            });
        }
        triggers
    }

    fn webhook(&mut self, name: &str, options: &Value) -> Option<WebhookTrigger> {
        let options = match options {
            Value::Null => Mapping::new(),
            Value::Mapping(m) => m.clone(),
            _ => {
                self.problem(&[name], "webhook options must be a mapping (or empty)");
                return None;
            }
        };
        let before = self.problems.len();
        for key in options.keys() {
            let Some(k) = key_string(key) else { continue };
            if WEBHOOK_OPTIONS.contains(&k.as_str()) || IGNORED_CONFIG.contains(&k.as_str()) {
                continue;
            }
            // A typo (`methd:`) silently dropped would widen the trigger (any method): an error.
            let hint = did_you_mean(&k, WEBHOOK_OPTIONS.iter().chain(IGNORED_CONFIG.iter()))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_else(|| format!("; webhook options: {}", WEBHOOK_OPTIONS.join(", ")));
            self.problem(&[name, &k], &format!("unknown webhook option `{k}`{hint}"));
        }

        let path = match options.get("path") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => match RoutePattern::compile(p) {
                Ok(r) => Some(r),
                Err(e) => {
                    self.problem(&[name, "path"], &format!("`path` does not compile: {e}"));
                    None
                }
            },
            Some(_) => {
                self.problem(
                    &[name, "path"],
                    "`path` must be a string such as `/users/:id`",
                );
                None
            }
        };
        let methods = match options.get("method") {
            None | Some(Value::Null) => None,
            Some(Value::String(m)) => Some(vec![m.to_lowercase()]),
            Some(Value::Sequence(items)) => {
                let list: Option<Vec<String>> = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_lowercase))
                    .collect();
                if list.is_none() {
                    self.problem(
                        &[name, "method"],
                        "`method` must be a string or a list of strings",
                    );
                }
                list.filter(|l| !l.is_empty())
            }
            Some(_) => {
                self.problem(
                    &[name, "method"],
                    "`method` must be a string or a list of strings, e.g. `[POST, PUT]`",
                );
                None
            }
        };
        let deduplication_key = match options.get("deduplicationKey") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.problem(
                    &[name, "deduplicationKey"],
                    "`deduplicationKey` must be a path into the body such as `data.id`",
                );
                None
            }
        };
        let event_types = match options.get("event_types") {
            None | Some(Value::Null) => vec![crate::event::WEBHOOK_EVENT_TYPE.to_string()],
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Sequence(items)) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(_) => {
                self.problem(
                    &[name, "event_types"],
                    "`event_types` must be a list of repository_dispatch types, e.g. `[webhook]`",
                );
                Vec::new()
            }
        };
        let mut active = true;
        match options.get("config") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(config)) => {
                for (key, value) in config {
                    let Some(k) = key_string(key) else { continue };
                    match k.as_str() {
                        "active" => match value {
                            Value::Bool(b) => active = *b,
                            _ => self.problem(&[name, "config", "active"], "`config.active` must be true or false"),
                        },
                        "format" | "filterScript" => self.problem(
                            &[name, "config", &k],
                            &format!("`config.{k}` is JavaScript, which hookflow does not run; map values with the trigger's `outputs:` (JSONPath, e.g. `outputs: {{number: $.body.pull_request.number}}`) instead"),
                        ),
                        "filter" => {}
                        other if IGNORED_CONFIG.contains(&other) => {}
                        other => {
                            let hint = did_you_mean(other, ["active", "filter", "format", "filterScript"].iter().chain(IGNORED_CONFIG.iter()))
                                .map(|s| format!("; did you mean `{s}`?"))
                                .unwrap_or_default();
                            self.notice(&[name, "config", other], format!("unknown config option `{other}` is ignored{hint}"))
                        }
                    }
                }
            }
            Some(_) => self.problem(
                &[name, "config"],
                "`config` must be a mapping, e.g. `config: {active: false}`",
            ),
        }
        let rules = match serde_json::to_value(&options) {
            Ok(serde_json::Value::Object(json)) => {
                let (rules, problems) = Rules::parse(&json, &BUILTIN_OUTPUTS);
                for p in problems {
                    let mut keys: Vec<&str> = vec![name];
                    keys.extend(p.keys.iter().map(String::as_str));
                    self.problem(&keys, &p.message);
                }
                rules
            }
            _ => {
                self.problem(&[name], "webhook options must use text keys");
                Rules::default()
            }
        };
        let verify_line = locate(self.text, &["on", name, "verify", "secret_env"]);
        if self.problems.len() > before {
            return None;
        }
        Some(WebhookTrigger {
            path,
            methods,
            deduplication_key,
            active,
            event_types,
            rules,
            verify_line,
            options,
        })
    }
}

/// The closest known name to `word` (at most two edits away, ignoring case), for a
/// did-you-mean hint.
fn did_you_mean<'a>(word: &str, known: impl Iterator<Item = &'a &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    known
        .map(|k| (edit_distance(&word, &k.to_ascii_lowercase()), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

fn key_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Lists every workflow file below `dir` (relative `/`-separated paths, sorted), skipping
/// hidden entries.
pub fn discover(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut visiting = Vec::new();
    walk(dir, "", &mut visiting, &mut out)?;
    out.sort();
    Ok(out)
}

/// Walks `dir`; `visiting` holds the real paths of the folders above it, so a symbolic link
/// back to one of them (a cycle) is skipped instead of followed for ever.
fn walk(
    dir: &Path,
    prefix: &str,
    visiting: &mut Vec<PathBuf>,
    out: &mut Vec<String>,
) -> std::io::Result<()> {
    let real = std::fs::canonicalize(dir)?;
    if visiting.contains(&real) {
        return Ok(());
    }
    visiting.push(real);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type()?;
        let is_dir = kind.is_dir() || (kind.is_symlink() && entry.path().is_dir());
        if is_dir {
            walk(&entry.path(), &rel, visiting, out)?;
        } else if name.ends_with(".yml") || name.ends_with(".yaml") {
            out.push(rel);
        }
    }
    visiting.pop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Workflow, WorkflowError> {
        parse_workflow(text, Path::new("wf.yml"), "wf.yml")
    }

    #[test]
    fn reads_webhook_options() {
        let wf = parse("on:\n  webhook:\n    path: /u/:id\n    method: [POST, put]\n    deduplicationKey: data.id\n  rss:\n    url: x\njobs: {}\n")
            .expect("parses");
        assert_eq!(wf.triggers.len(), 2);
        let hook = wf.triggers[0].webhook.as_ref().expect("webhook");
        assert_eq!(
            hook.methods,
            Some(vec!["post".to_string(), "put".to_string()])
        );
        assert_eq!(hook.path.as_ref().map(RoutePattern::as_str), Some("/u/:id"));
        assert_eq!(hook.deduplication_key.as_deref(), Some("data.id"));
        assert!(hook.active);
        assert_eq!(wf.triggers[0].line, Some(2));
        assert!(wf.triggers[1].webhook.is_none());
        assert_eq!(wf.notices.len(), 1);
        assert_eq!(wf.notices[0].line, Some(6));
        assert_eq!(wf.base_path("webhook"), "/wf/webhook");
    }

    #[test]
    fn short_forms_and_inactive() {
        let wf = parse("on: webhook\n").expect("parses");
        assert!(wf.triggers[0].webhook.is_some());
        let wf = parse("on:\n  webhook:\n    config:\n      active: false\n").expect("parses");
        assert!(!wf.triggers[0].webhook.as_ref().expect("webhook").active);
    }

    #[test]
    fn problems_carry_lines() {
        let err = parse("on:\n  webhook:\n    method: 3\n    path: \"/a/:\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("wf.yml:4: `path` does not compile"), "{text}");
        assert!(text.contains("wf.yml:3: `method` must be"), "{text}");
        let err = parse("on:\n  webhook: {\n").unwrap_err();
        assert!(err.problems[0].line.is_some());
        assert!(err.to_string().starts_with("wf.yml:"), "{err}");
        let err = parse("on:\n  webhook:\n    config:\n      format: 'x'\n").unwrap_err();
        assert!(
            err.to_string().contains("wf.yml:4:") && err.to_string().contains("outputs:"),
            "{err}"
        );
        let err = parse("jobs: {}\n").unwrap_err();
        assert!(err.to_string().contains("no `on:` section"), "{err}");
        let err = parse("on:\n  webhook:\n    path: /a\n    path: /b\n").unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{err}");
    }

    #[test]
    fn extension_stripping() {
        assert_eq!(strip_extension("a/b.yml"), "a/b");
        assert_eq!(strip_extension("a/b.yaml"), "a/b");
        assert_eq!(strip_extension("a/b..yml"), "a/b");
        assert_eq!(strip_extension("a/byml"), "a/byml");
    }

    #[cfg(unix)]
    #[test]
    fn symlink_cycles_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let team = dir.path().join("team");
        std::fs::create_dir_all(&team).expect("mkdir");
        std::fs::write(team.join("ci.yml"), "on: {webhook: {}}\n").expect("write");
        std::os::unix::fs::symlink(dir.path(), team.join("loop")).expect("symlink");
        std::os::unix::fs::symlink(&team, dir.path().join("alias")).expect("symlink");
        let found = discover(dir.path()).expect("ends");
        assert_eq!(found, ["alias/ci.yml", "team/ci.yml"]);
    }
}

//! Which webhook triggers a request reaches, and the outputs each match hands on (DESIGN §3–§4).
//!
//! The URL names the file: `/<workflow file without extension>/<trigger>[/rest]`. So instead of
//! reading every workflow, the request path is split at each `/` and only the files it could name
//! are looked up; the cost of a run does not grow with the number of workflow files. Each split
//! that names an existing file with a webhook trigger of that name is a candidate; a candidate
//! matches when the trigger is active, accepts the event type and method, and its `path` pattern
//! matches the rest of the path.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::event::{Batch, Event};
use crate::request::{Location, WebhookRequest};
use hookflow_protocol::Environment;

use crate::result::{BatchResult, BodyForm, Match, RunResult};
use crate::rules::Verdict;
use crate::workflow::{load_workflow, Problem, Workflow, WorkflowError};

/// Why a trigger did not take a request.
enum Rejection {
    /// It does not match; not an error.
    Skip(String),
    /// It is refused: the step should fail.
    Refuse(String),
    /// The setup is incomplete (a secret variable is unset).
    Setup(Problem),
}

/// Matches an event against the workflows in `dir`. Errors only for workflow files the request
/// reaches that are invalid, or a secret they need that is not set (the run cannot decide).
pub fn match_event(
    event: Event,
    dir: &Path,
    env: &Environment,
) -> Result<RunResult, WorkflowError> {
    let mut notices = Vec::new();
    if !event.is_dispatch() {
        return Ok(RunResult::no_match(
            None,
            format!(
                "event `{}` is not a repository_dispatch; nothing to match",
                event.name
            ),
            notices,
        ));
    }
    let event_type = event.event_type.clone().unwrap_or_default();
    if let Some(n) = &event.payload_notice {
        notices.push(format!(
            "client_payload of event type `{event_type}` is not a webhook request: {n}"
        ));
    }
    let mut workflows = Workflows::default();
    if let Some(batch) = event.batch {
        return match_batch(batch, event_type, dir, env, &mut workflows, notices);
    }
    let Some(request) = event.request else {
        return Ok(RunResult::no_match(
            Some(event_type),
            "the event carries no webhook request".into(),
            notices,
        ));
    };
    match_request(event_type, request, dir, env, &mut workflows, notices)
}

/// Workflow files read once per run, however many events of a batch reach them.
#[derive(Default)]
struct Workflows(HashMap<PathBuf, Rc<Result<Workflow, WorkflowError>>>);

impl Workflows {
    fn load(&mut self, candidate: &Candidate) -> Rc<Result<Workflow, WorkflowError>> {
        self.0
            .entry(candidate.file.clone())
            .or_insert_with(|| Rc::new(load_workflow(&candidate.file, &candidate.relative_path)))
            .clone()
    }
}

/// How many events' reasons a batch's summary names before "and N more".
const REASONS_SHOWN: usize = 5;

/// Matches each event of a batch on its own (its own type, route, rules and signature), so a
/// forged or malformed event is refused alone. The batch's result describes its first matched
/// event, as a single event's would.
fn match_batch(
    batch: Batch,
    dispatch_type: String,
    dir: &Path,
    env: &Environment,
    workflows: &mut Workflows,
    mut notices: Vec<String>,
) -> Result<RunResult, WorkflowError> {
    let total = batch.events.len();
    let mut events = Vec::with_capacity(total);
    let mut problems: Vec<Problem> = Vec::new();
    for event in batch.events {
        let result = match event.request {
            Ok(request) => {
                match match_request(event.event_type, request, dir, env, workflows, Vec::new()) {
                    Ok(r) => r,
                    Err(e) => {
                        for p in e.problems {
                            if !problems.contains(&p) {
                                problems.push(p);
                            }
                        }
                        continue;
                    }
                }
            }
            Err(message) => RunResult {
                refusal: Some(message.clone()),
                carried_request: true,
                relay_event_id: event.relay_event_id,
                ..RunResult::no_match(Some(event.event_type), message, Vec::new())
            },
        };
        events.push(result);
    }
    if !problems.is_empty() {
        return Err(WorkflowError {
            problems,
            notices: Vec::new(),
        });
    }
    let first = events.iter().position(RunResult::matched);
    let mut seen: HashSet<String> = notices.iter().cloned().collect();
    let mut reasons = Vec::new();
    let mut refusals = Vec::new();
    for (i, r) in events.iter().enumerate() {
        for n in &r.notices {
            if seen.insert(n.clone()) {
                notices.push(n.clone());
            }
        }
        if r.matched() {
            continue;
        }
        let name = match &r.relay_event_id {
            Some(id) => format!("batch[{i}] (event {id})"),
            None => format!("batch[{i}]"),
        };
        if let Some(refusal) = &r.refusal {
            if first.is_some() {
                // The others went on: say loudly that this one did not.
                notices.push(format!("{name} refused: {refusal}"));
            }
            refusals.push(format!("{name}: {refusal}"));
        }
        reasons.push(format!(
            "{name}: {}",
            r.reason.as_deref().unwrap_or("not matched")
        ));
    }
    let summary = |list: Vec<String>| {
        let more = list.len().saturating_sub(REASONS_SHOWN);
        let mut text = list
            .into_iter()
            .take(REASONS_SHOWN)
            .collect::<Vec<_>>()
            .join("; ");
        if more > 0 {
            text.push_str(&format!("; and {more} more"));
        }
        text
    };
    let (matches, relay_event_id, reason, refusal) = match first {
        Some(i) => (
            events[i].matches.clone(),
            events[i].relay_event_id.clone(),
            None,
            None,
        ),
        None if total == 0 => (
            Vec::new(),
            None,
            Some("the batch carries no events".into()),
            None,
        ),
        None => (
            Vec::new(),
            None,
            Some(format!(
                "none of the batch's {total} events matched: {}",
                summary(reasons)
            )),
            (!refusals.is_empty()).then(|| summary(refusals)),
        ),
    };
    Ok(RunResult {
        event_type: Some(dispatch_type),
        matches,
        reason,
        refusal,
        notices,
        carried_request: true,
        relay_event_id,
        batch: Some(BatchResult {
            id: batch.id,
            events,
        }),
    })
}

/// Matches one request: the run of a single dispatch, or of one event of a batch.
fn match_request(
    event_type: String,
    mut request: crate::request::WebhookRequest,
    dir: &Path,
    env: &Environment,
    workflows: &mut Workflows,
    mut notices: Vec<String>,
) -> Result<RunResult, WorkflowError> {
    let relay_event_id = request.relay_event_id.clone();
    let mut matches: Vec<Match> = Vec::new();
    let mut reasons = Vec::new();
    let mut refusals = Vec::new();
    let mut problems = Vec::new();
    // One decoded body for every candidate: moved into the item a trigger sees, and back out
    // when the trigger does not take it. It is copied only for a candidate after a match.
    let had_body = request.body.is_some();
    let mut body = request.body.take();
    // A large body is parsed per trigger, only as far as its rules read ([`crate::body`]).
    let deferred = request.body_deferred;
    for candidate in candidates(dir, &request.origin_path) {
        let loaded = workflows.load(&candidate);
        let workflow = match loaded.as_ref() {
            Ok(w) => w,
            Err(e) => {
                problems.extend(e.problems.iter().cloned());
                continue;
            }
        };
        notices.extend(workflow.notices.iter().map(ToString::to_string));
        if deferred {
            body = None;
        } else if had_body && body.is_none() {
            body = matches.last().and_then(|m| m.item.get("body").cloned());
        }
        match evaluate(
            workflow,
            &candidate.trigger,
            &event_type,
            &request,
            &mut body,
            env,
            &mut notices,
        ) {
            Ok(m) => matches.push(m),
            Err(Rejection::Skip(reason)) => reasons.push(reason),
            Err(Rejection::Refuse(reason)) => {
                reasons.push(reason.clone());
                refusals.push(reason);
            }
            Err(Rejection::Setup(p)) => problems.push(p),
        }
    }
    if !problems.is_empty() {
        return Err(WorkflowError {
            problems,
            notices: Vec::new(),
        });
    }
    if matches.is_empty() {
        let reason = if reasons.is_empty() && event_type != crate::event::WEBHOOK_EVENT_TYPE {
            format!(
                "event type `{event_type}` names no trigger: its path {} reaches no workflow file",
                request.origin_path
            )
        } else if reasons.is_empty() {
            format!(
                "no workflow file has a webhook trigger for path {} (expected /<workflow file>/<trigger>[/rest])",
                request.origin_path
            )
        } else {
            reasons.join("; ")
        };
        let mut result = RunResult::no_match(Some(event_type), reason, notices);
        if !refusals.is_empty() {
            result.refusal = Some(refusals.join("; "));
        }
        result.carried_request = true;
        result.relay_event_id = relay_event_id;
        return Ok(result);
    }
    if let (Some(first), Some(text)) = (matches.first_mut(), request.raw_body.as_deref()) {
        if first.body_form == BodyForm::Partial {
            compact_body(first, text);
        }
    }
    Ok(RunResult {
        event_type: Some(event_type),
        matches,
        reason: None,
        refusal: None,
        notices,
        carried_request: true,
        relay_event_id,
        batch: None,
    })
}

/// Gives a match whose body holds only the parts its rules read the body's whole compact JSON
/// text instead (for the `body` output), written from the text without parsing it.
fn compact_body(m: &mut Match, raw: &[u8]) {
    let Ok(text) = std::str::from_utf8(raw) else {
        return;
    };
    let Some(slot) = m.item.get_mut("body") else {
        return;
    };
    // The parts go first: the text takes their place.
    *slot = Value::Null;
    let mut out = Vec::with_capacity(text.len());
    if crate::body::compact(text, &mut out).is_some() {
        if let Ok(json) = String::from_utf8(out) {
            *slot = Value::String(json);
            m.body_form = BodyForm::JsonText;
            return;
        }
    }
    *slot = Value::String(text.to_string());
    m.body_form = BodyForm::Parsed;
}

/// A webhook trigger a request path reaches by its URL alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The workflow file, relative to the workflows directory.
    pub workflow: String,
    /// The trigger name.
    pub trigger: String,
    /// The event types it accepts.
    pub event_types: Vec<String>,
    /// Whether it is on (`config.active`).
    pub active: bool,
}

/// The webhook triggers `origin_path` reaches by its URL (`/<file>/<trigger>[/rest]`), whatever
/// the event type, method, `path` pattern and rules; files that do not load are left out. For
/// cross-checks such as `hookflow validate --relay-config`.
pub fn routes(dir: &Path, origin_path: &str) -> Vec<Route> {
    let mut out = Vec::new();
    for candidate in candidates(dir, origin_path) {
        let Ok(workflow) = load_workflow(&candidate.file, &candidate.relative_path) else {
            continue;
        };
        let Some(hook) = workflow
            .triggers
            .iter()
            .find(|t| t.name == candidate.trigger)
            .and_then(|t| t.webhook.as_ref())
        else {
            continue;
        };
        if below_base(origin_path, &workflow.base_path(&candidate.trigger)).is_some() {
            out.push(Route {
                workflow: workflow.relative_path.clone(),
                trigger: candidate.trigger.clone(),
                event_types: hook.event_types.clone(),
                active: hook.active,
            });
        }
    }
    out
}

/// What follows a trigger's URL base in a request path (with its query), when the path is under
/// that base: the base must end at a segment, so `/a/webhookx` is not under `/a/webhook`.
fn below_base<'p>(origin_path: &'p str, base: &str) -> Option<&'p str> {
    origin_path
        .strip_prefix(base)
        .filter(|rest| rest.is_empty() || rest.starts_with(['/', '?', '#']))
}

struct Candidate {
    file: PathBuf,
    relative_path: String,
    trigger: String,
}

/// The workflow files and trigger names a request path can name, most specific first.
fn candidates(dir: &Path, origin_path: &str) -> Vec<Candidate> {
    let path_only = origin_path.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path_only.trim_start_matches('/').split('/').collect();
    let mut out = Vec::new();
    for k in (1..segments.len()).rev() {
        let (file_segments, trigger) = (&segments[..k], segments[k]);
        let safe = |s: &&str| {
            !s.is_empty() && *s != "." && *s != ".." && !s.contains('\\') && !s.starts_with('.')
        };
        if !file_segments.iter().all(safe) || !safe(&trigger) {
            continue;
        }
        let stem = file_segments.join("/");
        for ext in ["yml", "yaml"] {
            let relative_path = format!("{stem}.{ext}");
            let file = dir.join(&relative_path);
            if file.is_file() {
                out.push(Candidate {
                    file,
                    relative_path,
                    trigger: trigger.to_string(),
                });
            }
        }
    }
    out
}

/// Decides whether one trigger of a workflow accepts the request. `body` is the request's
/// decoded body (`request.body` is not used): it moves into the match, or stays in place.
fn evaluate(
    workflow: &Workflow,
    trigger_name: &str,
    event_type: &str,
    request: &WebhookRequest,
    body: &mut Option<Value>,
    env: &Environment,
    notices: &mut Vec<String>,
) -> Result<Match, Rejection> {
    let who = format!("{} trigger `{trigger_name}`", workflow.relative_path);
    let skip = |reason: String| Err(Rejection::Skip(reason));
    let Some(trigger) = workflow.triggers.iter().find(|t| t.name == trigger_name) else {
        return skip(format!(
            "{} has no trigger `{trigger_name}`",
            workflow.relative_path
        ));
    };
    let Some(hook) = &trigger.webhook else {
        return skip(format!("{who} is not a webhook trigger"));
    };
    let base = workflow.base_path(trigger_name);
    let Some(rest_origin) = below_base(&request.origin_path, &base) else {
        return skip(format!("{who}: path does not start with {base}"));
    };
    if !hook.active {
        return skip(format!("{who} is disabled (config.active: false)"));
    }
    if !hook.event_types.iter().any(|t| t == event_type) {
        return skip(format!(
            "{who} does not accept event type `{event_type}` (event_types: [{}]); add it to the trigger's `event_types` (and to the GitHub workflow's `repository_dispatch: types`)",
            hook.event_types.join(", ")
        ));
    }
    if let Some(methods) = &hook.methods {
        if !methods.contains(&request.method) {
            return skip(format!(
                "{who} does not accept method {} (method: [{}])",
                request.method.to_uppercase(),
                methods
                    .iter()
                    .map(|m| m.to_uppercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let below = Location::parse(rest_origin);
    let rest_path = match request.path.strip_prefix(&base) {
        Some(r) if r.is_empty() || r.starts_with('/') => r.to_string(),
        _ => below.path,
    };
    let rest_path = if rest_path.is_empty() {
        "/".to_string()
    } else {
        rest_path
    };
    let params = match &hook.path {
        None => Map::new(),
        Some(pattern) => match pattern.match_path(&rest_path) {
            Some(p) => p,
            None => {
                return skip(format!(
                    "{who}: path {rest_path} does not match pattern {}",
                    pattern.as_str()
                ))
            }
        },
    };

    let mut body_form = BodyForm::Parsed;
    if let (true, Some(raw)) = (request.body_deferred, request.raw_body.as_deref()) {
        if let Ok(text) = std::str::from_utf8(raw) {
            let mut need = hook.rules.body_need();
            match hook.deduplication_key.as_deref() {
                Some(key) => need.add_path(&hookflow_protocol::dotpath::path_segments(key)),
                None => ["id", "key"].iter().for_each(|k| need.add_path(&[k])),
            }
            let (value, notice) = crate::request::deferred_body(text, &need);
            match notice {
                Some(n) => notices.push(format!("{who}: {n}")),
                None if !value.is_string() => body_form = BodyForm::Partial,
                None => {}
            }
            *body = Some(value);
        }
    }

    // The bytes a signature covers: exactly what was forwarded, or the JSON a sender put in.
    let signed_bytes: std::borrow::Cow<[u8]> = match (&request.raw_body, body.as_ref()) {
        (Some(raw), _) => raw.as_slice().into(),
        (None, Some(v)) => v.to_string().into_bytes().into(),
        (None, None) => (&[][..]).into(),
    };
    let mut item = Map::new();
    item.insert(
        "request_id".into(),
        request_id(
            request.raw_body.as_deref(),
            body.as_ref(),
            hook.deduplication_key.as_deref(),
        ),
    );
    item.insert("delivery_id".into(), Value::String(request.delivery_id()));
    if let Some(b) = body.take() {
        item.insert("body".into(), b);
    }
    item.insert("headers".into(), Value::Object(request.headers.clone()));
    item.insert("method".into(), Value::String(request.method.clone()));
    item.insert("query".into(), Value::Object(below.query));
    item.insert("querystring".into(), Value::String(below.querystring));
    item.insert("search".into(), Value::String(below.search));
    item.insert("params".into(), Value::Object(params));
    item.insert("path".into(), Value::String(rest_path));
    item.insert("verified".into(), Value::Bool(false));
    if let Some(enc) = request.body_encoding.and_then(|e| e.as_str()) {
        item.insert("body_encoding".into(), Value::String(enc.into()));
    }

    let mut item_value = Value::Object(item);
    let (verified, outputs, masked) = match hook.rules.apply(&mut item_value, &signed_bytes, env) {
        Verdict::Pass {
            verified,
            outputs,
            masked,
        } => (verified, outputs, masked),
        rejected => {
            // The body goes back for the next candidate.
            *body = item_value
                .as_object_mut()
                .and_then(|fields| fields.remove("body"));
            return Err(match rejected {
                Verdict::Refuse(reason) => Rejection::Refuse(format!("{who}: {reason}")),
                Verdict::Setup(message) => Rejection::Setup(Problem {
                    file: workflow.file.clone(),
                    line: hook.verify_line,
                    message,
                }),
                Verdict::Skip(reason) => Rejection::Skip(format!("{who}: {reason}")),
                // Matched above; here only to name every case.
                Verdict::Pass { .. } => Rejection::Skip(format!("{who}: not accepted")),
            });
        }
    };
    if let Some(fields) = item_value.as_object_mut() {
        fields.insert("verified".into(), Value::Bool(verified));
        fields.extend(outputs);
    }
    let item = match item_value {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    Ok(Match {
        workflow: workflow.relative_path.clone(),
        trigger: trigger_name.to_string(),
        item,
        masked,
        body_form,
    })
}

/// actionsflow's `request_id`: the body's `deduplicationKey` path, else `id`, else `key` (falsy
/// values skipped); else the SHA-256 (hex) of the body's exact bytes, of its compact JSON when it
/// was sent as JSON, or of `{}` when there is no body.
pub fn request_id(
    raw_body: Option<&[u8]>,
    body: Option<&Value>,
    deduplication_key: Option<&str>,
) -> Value {
    let keys: Vec<&str> = match deduplication_key {
        Some(k) => vec![k],
        None => vec!["id", "key"],
    };
    for key in keys {
        if let Some(v) = body.and_then(|b| hookflow_protocol::dotpath::lookup(b, key)) {
            if crate::js::truthy(v) {
                return v.clone();
            }
        }
    }
    let digest = match (raw_body, body) {
        (Some(raw), _) => Sha256::digest(raw),
        (None, Some(v)) => Sha256::digest(v.to_string().as_bytes()),
        (None, None) => Sha256::digest(b"{}"),
    };
    Value::String(hex::encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Option<Value>, raw: Option<&[u8]>) -> (Option<Vec<u8>>, Option<Value>) {
        (raw.map(<[u8]>::to_vec), body)
    }

    fn id_of(r: &(Option<Vec<u8>>, Option<Value>), key: Option<&str>) -> Value {
        request_id(r.0.as_deref(), r.1.as_ref(), key)
    }

    #[test]
    fn request_id_rules() {
        assert_eq!(
            id_of(&request(Some(json!({"id": 7, "key": "k"})), None), None),
            json!(7)
        );
        assert_eq!(
            id_of(&request(Some(json!({"id": 0, "key": "k"})), None), None),
            json!("k")
        );
        assert_eq!(
            id_of(
                &request(Some(json!({"data": {"id": "x"}, "id": 1})), None),
                Some("data.id")
            ),
            json!("x")
        );
        let none = request(None, None);
        assert_eq!(
            id_of(&none, None),
            json!(hex::encode(Sha256::digest(b"{}")))
        );
        let raw = request(Some(json!({"a": 1})), Some(b"{ \"a\": 1 }"));
        assert_eq!(
            id_of(&raw, None),
            json!(hex::encode(Sha256::digest(b"{ \"a\": 1 }")))
        );
        // a missing deduplicationKey falls back to the digest
        assert_eq!(
            id_of(&raw, Some("nope")),
            json!(hex::encode(Sha256::digest(b"{ \"a\": 1 }")))
        );
    }
}

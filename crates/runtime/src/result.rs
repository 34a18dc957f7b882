//! What a run decided: which triggers took the request and what each hands on, or why none did.
//! [`crate::matching`] produces it; [`crate::output`] renders it; [`crate::workflow`] reads
//! [`BUILTIN_OUTPUTS`] so trigger rules cannot shadow a built-in output.

use serde_json::{Map, Value};

/// The outputs every run writes, whatever matched; the names trigger rules may not reuse.
pub const BUILTIN_OUTPUTS: [&str; 22] = [
    "matched",
    "workflow",
    "trigger",
    "event_type",
    "request_id",
    "delivery_id",
    "body",
    "headers",
    "method",
    "query",
    "querystring",
    "search",
    "params",
    "path",
    "verified",
    "matches",
    "body_file",
    "body_encoding",
    "trigger_outputs",
    "batch_size",
    "batch_id",
    "events",
];

/// The outcome of matching one event against the workflows.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// The dispatch type (`action`), when the event is a `repository_dispatch`.
    pub event_type: Option<String>,
    /// The matching triggers, most specific (longest base path) first.
    pub matches: Vec<Match>,
    /// Why nothing matched, when nothing did.
    pub reason: Option<String>,
    /// Set when a trigger refused the request (a required signature failed, a required output
    /// is missing): the step should fail.
    pub refusal: Option<String>,
    /// Things worth saying that did not stop the run.
    pub notices: Vec<String>,
    /// Whether the event carried a webhook request (or a batch of them) at all.
    pub carried_request: bool,
    /// The hookflow relay's id of the event, when a hookflow relay sent it.
    pub relay_event_id: Option<String>,
    /// For a batched dispatch: every event's own result, in order. The fields above then
    /// describe the batch: `matches` are the first matched event's, `reason` and `refusal` are
    /// set only when no event matched.
    pub batch: Option<BatchResult>,
}

/// What a run decided for each event of a batched dispatch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResult {
    /// `client_payload.batch_id`.
    pub id: Option<String>,
    /// One result per event, in the batch's order; each has `batch: None`.
    pub events: Vec<RunResult>,
}

impl BatchResult {
    /// How many events matched, and how many were refused (matched nothing, and a trigger
    /// refused them).
    pub fn counts(&self) -> (usize, usize) {
        let matched = self.events.iter().filter(|r| r.matched()).count();
        let refused = self
            .events
            .iter()
            .filter(|r| !r.matched() && r.refusal.is_some())
            .count();
        (matched, refused)
    }
}

impl Match {
    /// The trigger's own `outputs:` (the item's fields that are not built-in outputs).
    pub fn own_outputs(&self) -> Map<String, Value> {
        self.item
            .iter()
            .filter(|(k, _)| !BUILTIN_OUTPUTS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// One trigger that accepted the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// The workflow file, relative to the workflows directory (`team/ci/deploy.yml`).
    pub workflow: String,
    /// The trigger name (`webhook`).
    pub trigger: String,
    /// The actionsflow webhook item plus hookflow's fields and the trigger's `outputs:`, in
    /// output order.
    pub item: Map<String, Value>,
    /// Values of outputs marked `mask: true`.
    pub masked: Vec<String>,
    /// How `item["body"]` holds the body.
    pub body_form: BodyForm,
}

/// How a match holds the request body in its `body` field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyForm {
    /// Decoded whole: a JSON value, a form, or the text.
    #[default]
    Parsed,
    /// Only the parts this trigger's rules read, of a JSON body of at least
    /// [`crate::body::LARGE_BODY_BYTES`] (a match after the first).
    Partial,
    /// The compact JSON text of such a body, as a string: what the `body` output holds (the
    /// first match).
    JsonText,
}

impl RunResult {
    /// Whether any trigger matched.
    pub fn matched(&self) -> bool {
        !self.matches.is_empty()
    }

    /// The results of the requests the event carried: a batch's, else this one (none when
    /// the event carried no request).
    pub fn events(&self) -> &[RunResult] {
        match &self.batch {
            Some(b) => &b.events,
            None if self.carried_request => std::slice::from_ref(self),
            None => &[],
        }
    }

    pub(crate) fn no_match(
        event_type: Option<String>,
        reason: String,
        notices: Vec<String>,
    ) -> Self {
        RunResult {
            event_type,
            matches: Vec::new(),
            reason: Some(reason),
            refusal: None,
            notices,
            carried_request: false,
            relay_event_id: None,
            batch: None,
        }
    }
}

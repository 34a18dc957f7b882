//! What a run decided: which triggers took the request and what each hands on, or why none did.
//! [`crate::matching`] produces it; [`crate::output`] renders it; [`crate::workflow`] reads
//! [`BUILTIN_OUTPUTS`] so trigger rules cannot shadow a built-in output.

use serde_json::{Map, Value};

/// The outputs every run writes, whatever matched; the names trigger rules may not reuse.
pub const BUILTIN_OUTPUTS: [&str; 19] = [
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
        }
    }
}

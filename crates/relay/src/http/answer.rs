//! Refusals: the JSON error answer every route gives.

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer: `{"success": false, "message": …}`, the one every listener gives (the
/// admin API's too).
pub(crate) fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    Refused(status, message.into()).into_response()
}

/// A refused request, before it is turned into an answer.
pub(super) struct Refused(pub(super) StatusCode, pub(super) String);

impl Refused {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refused(status, message.into())
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (
            self.0,
            axum::Json(json!({"success": false, "message": self.1})),
        )
            .into_response()
    }
}

/// Any other path: 404, naming the routes webhooks go to.
pub(super) async fn not_found(uri: Uri) -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {}; send webhooks to /<owner>/<repo>/<path> or /hooks/<slug>",
            uri.path()
        ),
    )
}

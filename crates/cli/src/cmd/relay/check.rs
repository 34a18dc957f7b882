//! `hookflow validate --relay-config`: a relay configuration checked against the trigger files
//! it sends to.

use std::path::Path;

/// What a relay configuration sends that no trigger takes: an endpoint whose path reaches no
/// webhook trigger (an error), or whose event types its trigger does not accept (an error for a
/// fixed type, a warning for types taken from the body).
pub(crate) fn cross_check_relay(
    file: &Path,
    workflows: &Path,
) -> anyhow::Result<(
    Vec<hookflow_runtime::Problem>,
    Vec<hookflow_runtime::Problem>,
)> {
    use hookflow_relay::config::{EventTypeSource, RelayConfig};
    use hookflow_runtime::Problem;
    let config = RelayConfig::load(file, &Default::default())?;
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let (mut problems, mut notices) = (Vec::new(), Vec::new());
    for ep in &config.endpoints {
        let at = |message: String| Problem {
            file: file.to_path_buf(),
            line: hookflow_relay::config::endpoint_line(&text, &ep.slug),
            message,
        };
        let routes = hookflow_runtime::matching::routes(workflows, &ep.path);
        if routes.is_empty() {
            problems.push(at(format!(
                "endpoint `{}` dispatches path {}, which reaches no webhook trigger in {}: add the trigger file (a path /<file>/<trigger> needs <file>.yml with `on: {{<trigger>: …}}`), or set the endpoint's `path`",
                ep.slug,
                ep.path,
                workflows.display()
            )));
            continue;
        }
        let names = |r: &hookflow_runtime::matching::Route| {
            format!("{} trigger `{}`", r.workflow, r.trigger)
        };
        match &ep.event_type {
            EventTypeSource::Fixed(t) => {
                if !routes.iter().any(|r| r.event_types.contains(t)) {
                    let r = &routes[0];
                    problems.push(at(format!(
                        "endpoint `{}` sends event type `{t}`, which {} does not accept (event_types: [{}]): add `event_types: [{t}]` to the trigger, and `{t}` to the GitHub workflow's `repository_dispatch: types`",
                        ep.slug,
                        names(r),
                        r.event_types.join(", ")
                    )));
                }
            }
            EventTypeSource::BodyPath(p) => {
                if routes
                    .iter()
                    .all(|r| r.event_types == [hookflow_protocol::dispatch::WEBHOOK_EVENT_TYPE])
                {
                    notices.push(at(format!(
                        "endpoint `{}` takes its event type from the body (`{p}`), but {} accepts only `webhook`: list the types it sends in the trigger's `event_types` and in the GitHub workflow's `repository_dispatch: types`",
                        ep.slug,
                        names(&routes[0])
                    )));
                }
            }
        }
    }
    Ok((problems, notices))
}

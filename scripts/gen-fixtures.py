#!/usr/bin/env python3
"""Writes fixtures/events/*.json: events as a webhook relay dispatches them.

Deterministic (fixed timestamps and ids), so the golden files in fixtures/expected stay valid.
Run from the repository root: python3 scripts/gen-fixtures.py
"""
import base64
import gzip
import hashlib
import hmac
import json
import os

OUT = "fixtures/events"
SECRET = b"hookflow-example-secret"
REPO = {"id": 700000001, "name": "hooks", "full_name": "octo-org/hooks", "private": True,
        "owner": {"login": "octo-org", "id": 9919, "type": "Organization"},
        "html_url": "https://github.com/octo-org/hooks", "default_branch": "main"}
SENDER = {"login": "octocat", "id": 583231, "type": "User"}


def stringify(obj):
    """JSON.stringify: compact, key order kept, non-ASCII kept."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def event(payload, action="webhook"):
    return {"action": action, "branch": "main", "client_payload": payload,
            "repository": REPO, "sender": SENDER,
            "installation": {"id": 1234567}}


def write(name, obj):
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def github_headers(event_name, body, delivery):
    sig = hmac.new(SECRET, body.encode(), hashlib.sha256).hexdigest()
    sig1 = hmac.new(SECRET, body.encode(), hashlib.sha1).hexdigest()
    return {"accept": "*/*", "content-length": str(len(body.encode())),
            "content-type": "application/json", "host": "relay.example.com",
            "user-agent": "GitHub-Hookshot/5e2a1b9", "x-github-delivery": delivery,
            "x-github-event": event_name, "x-github-hook-id": "412345678",
            "x-github-hook-installation-target-id": "700000001",
            "x-github-hook-installation-target-type": "repository",
            "x-hub-signature": "sha1=" + sig1, "x-hub-signature-256": "sha256=" + sig}


def commit(i, files=3):
    sha = hashlib.sha1(f"commit-{i}".encode()).hexdigest()
    return {"id": sha, "tree_id": hashlib.sha1(f"tree-{i}".encode()).hexdigest(), "distinct": True,
            "message": f"Change {i}: update the deployment scripts and tidy the configuration\n\n"
                       f"Longer description of change {i}, as commit messages often have.",
            "timestamp": f"2026-11-20T10:{i % 60:02d}:00+01:00",
            "url": f"https://github.com/octo-org/hooks/commit/{sha}",
            "author": {"name": "Mona Lisa", "email": "mona@example.com", "username": "monalisa"},
            "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
            "added": [f"src/module_{i}_{j}.rs" for j in range(files)],
            "removed": [], "modified": ["README.md", f"docs/change-{i}.md"]}


def push(n_commits, files=3):
    commits = [commit(i, files) for i in range(n_commits)]
    return {"ref": "refs/heads/main", "before": "0" * 40, "after": commits[-1]["id"],
            "repository": REPO, "pusher": {"name": "monalisa", "email": "mona@example.com"},
            "sender": SENDER, "created": False, "deleted": False, "forced": False,
            "base_ref": None, "compare": "https://github.com/octo-org/hooks/compare/abc...def",
            "commits": commits, "head_commit": commits[-1]}


def main():
    os.makedirs(OUT, exist_ok=True)

    body = stringify(push(2))
    write("github-push.json", event({"path": "/github/webhook", "method": "POST",
                                     "headers": github_headers("push", body, "6f1c2a00-a7b1-11ef-8e7e-1b2d3c4d5e6f"),
                                     "body": body}))

    pr = {"action": "opened", "number": 42,
          "pull_request": {"id": 2100000042, "number": 42, "state": "open", "title": "Add café menu ☕",
                           "user": SENDER, "head": {"ref": "feature/menu", "sha": "a" * 40},
                           "base": {"ref": "main", "sha": "b" * 40}, "draft": False},
          "repository": REPO, "sender": SENDER}
    body = stringify(pr)
    write("github-pull-request.json", event({"path": "/github/webhook?source=org-hook", "method": "POST",
                                             "headers": github_headers("pull_request", body, "7a2b3c00-a7b1-11ef-8e7e-1b2d3c4d5e6f"),
                                             "body": body}))

    stripe = {"id": "evt_1QAbCdEfGhIjKlMn", "object": "event", "api_version": "2024-06-20",
              "created": 1764000000, "type": "invoice.paid", "livemode": False,
              "data": {"object": {"id": "in_1QAbCd", "object": "invoice", "amount_paid": 4200,
                                  "currency": "eur", "customer": "cus_Q1w2e3"}},
              "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}}
    body = stringify(stripe)
    ts = "1764000000"
    v1 = hmac.new(SECRET, f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
    write("stripe-invoice-paid.json", event({"path": "/stripe/webhook/events", "method": "POST", "headers": {
        "accept": "*/*; q=0.5, application/xml", "cache-control": "no-cache",
        "content-length": str(len(body.encode())), "content-type": "application/json; charset=utf-8",
        "stripe-signature": f"t={ts},v1={v1}", "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
        "body": body}))

    form = ("token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T0001&team_domain=example&channel_id=C2147483705"
            "&channel_name=test&user_id=U2147483697&user_name=Steve&command=%2Fdeploy"
            "&text=api+production&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1234%2F5678"
            "&trigger_id=13345224609.738474920.8088930838d88f008e0")
    slack_ts = "1764000000"
    slack_sig = "v0=" + hmac.new(SECRET, f"v0:{slack_ts}:{form}".encode(), hashlib.sha256).hexdigest()
    write("slack-slash-command.json", event({"path": "/slack/webhook", "method": "POST", "headers": {
        "Content-Type": "application/x-www-form-urlencoded", "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        "X-Slack-Request-Timestamp": slack_ts, "X-Slack-Signature": slack_sig}, "body": form}))

    write("plain-text.json", event({"path": "/notes/webhook", "method": "POST", "headers": {
        "content-type": "text/plain; charset=utf-8", "content-length": "30"},
        "body": "Deploy finished: build 1234 ok"}))

    write("get-repeated-query.json", event({"path": "/search/webhook?tag=rust&tag=webhooks&q=hello+world&empty=",
                                            "method": "GET", "headers": {"accept": "application/json"}}))

    write("nested-workflow-params.json", event({"path": "/team/ci/deploy/webhook/production/api%20gateway?ref=main",
                                                "method": "PUT", "headers": {"content-type": "application/json"},
                                                "body": stringify({"version": "1.4.2", "requested_by": "mona"})}))

    raw = bytes([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0xFF, 0xFE])
    write("binary-body-base64.json", event({"path": "/uploads/webhook", "method": "POST", "headers": {
        "content-type": "application/octet-stream", "content-length": str(len(raw))},
        "body": base64.b64encode(raw).decode(), "body_encoding": "base64",
        "id": "01JDQ8T1ZX3Y4W5V6U7T8S9R0Q", "received_at": "2026-11-28T09:00:00Z", "source": "uploads"}))

    write("other-event-type.json", event({"ref": "main", "environment": "staging"}, action="deploy-staging"))

    write("bare-client-payload.json", {"path": "notes/webhook", "headers": {"Content-Type": "application/json"},
                                       "body": {"note": "sent as an object by a custom sender", "id": "note-7"}})

    big = stringify(push(340, files=12))
    packed = base64.b64encode(gzip.compress(big.encode(), mtime=0)).decode()
    headers = github_headers("push", big, "8b3c4d00-a7b1-11ef-8e7e-1b2d3c4d5e6f")
    payload = {"path": "/github/webhook", "method": "POST", "headers": headers,
               "body": packed, "body_encoding": "gzip+base64"}
    write("github-push-large-gzip.json", event(payload))
    size = len(stringify({"event_type": "webhook", "client_payload": payload}).encode())
    print(f"large push: body {len(big)} bytes, dispatch payload {size} bytes")

    other = dict(stripe, id="evt_1QZzYyXxWwVvUu", type="customer.created",
                 data={"object": {"id": "cus_Q1w2e3", "object": "customer", "email": "jenny@example.com"}})
    body = stringify(other)
    v1 = hmac.new(SECRET, f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
    write("stripe-unhandled-event.json", event({"path": "/stripe/webhook/events", "method": "POST", "headers": {
        "content-type": "application/json; charset=utf-8", "content-length": str(len(body.encode())),
        "stripe-signature": f"t={ts},v1={v1}", "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
        "body": body}))

    body = stringify(push(1))
    headers = github_headers("push", body, "9c4d5e00-a7b1-11ef-8e7e-1b2d3c4d5e6f")
    headers["x-hub-signature-256"] = "sha256=" + hmac.new(b"a-different-secret", body.encode(), hashlib.sha256).hexdigest()
    del headers["x-hub-signature"]
    write("github-bad-signature.json", event({"path": "/github/webhook", "method": "POST",
                                              "headers": headers, "body": body}))

    # A sender that pretty-prints its JSON, forwarded by a relay that re-serialises JSON bodies:
    # the signature covered the pretty bytes, the payload carries compact ones.
    ping = {"zen": "Keep it logically awesome.", "hook_id": 412345678, "hook": {"type": "Repository", "active": True}}
    sent = json.dumps(ping, indent=2)
    headers = github_headers("ping", sent, "0d5e6f00-a7b1-11ef-8e7e-1b2d3c4d5e6f")
    write("github-reserialised-by-relay.json", event({"path": "/github/webhook", "method": "POST",
                                                      "headers": headers, "body": stringify(ping)}))

    write("inactive-trigger.json", event({"path": "/paused/webhook", "method": "POST",
                                          "headers": {"content-type": "application/json"}, "body": "{\"a\":1}"}))


if __name__ == "__main__":
    main()

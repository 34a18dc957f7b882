//! The behaviour every engine must have. Times are real (a shared database keeps its own
//! clock), so waits are short sleeps.

use super::contract::Store;
use super::delivery::ClaimRef;
use super::delivery::Claimed;
use super::delivery::DeliveryStatus;
use super::delivery::Recorded;
use super::delivery::Tried;
use super::event::Destination;
use super::event::Event;
use super::event::Inserted;
use super::event::NewEvent;
use super::event::Payload;
use super::event::TokenSource;
use super::log::EventFilter;
use super::log::LogPart;
use hookflow_protocol::payload::Incoming as Request;
use std::time::Duration;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn request(body: &[u8]) -> Payload {
    let mut headers = serde_json::Map::new();
    headers.insert("content-type".into(), "application/json".into());
    headers.insert("x-github-event".into(), "push".into());
    Payload::Request(Request {
        method: "POST".into(),
        path: "/ci/webhook?x=1".into(),
        headers,
        body: body.to_vec(),
    })
}

pub fn repo(repo: &str, token: TokenSource) -> Destination {
    Destination::Repo {
        repo: repo.into(),
        token,
    }
}

pub fn event(id: &str) -> NewEvent {
    NewEvent {
        event: Event {
            id: id.into(),
            received_at: now_ms(),
            source: "compat".into(),
            event_type: "webhook".into(),
            payload: request(br#"{"ref":"refs/heads/main"}"#),
        },
        destinations: vec![repo("octo/hooks", TokenSource::Inline("ghp_secret".into()))],
        dedupe_key: None,
    }
}

pub(super) fn ids(claimed: &[Claimed]) -> Vec<&str> {
    claimed.iter().map(|c| c.event.id.as_str()).collect()
}

pub(super) fn dead(c: &Claimed, error: &str, status: Option<u16>) -> (ClaimRef, Recorded) {
    (
        c.into(),
        Recorded::Dead {
            error: error.into(),
            status,
            tried: None,
        },
    )
}

pub async fn lifecycle(store: &impl Store) {
    let lease = Duration::from_secs(60);
    // Made in order: an event's receive time is its first due time, so `c` made first
    // (in an earlier millisecond) would rightly be claimed first.
    let (a, b) = (event("a"), event("b"));
    let c_event = NewEvent {
        destinations: vec![repo("octo/hooks", TokenSource::Env("TOKEN".into()))],
        ..event("c")
    };
    for e in [a, b, c_event] {
        assert_eq!(store.insert(e).await.expect("insert"), Inserted::New);
    }
    assert_eq!(store.counts().await.expect("counts").pending, 3);
    assert_eq!(store.next_due().await.expect("next"), Some(Duration::ZERO));

    let due = store.claim(2, lease).await.expect("claim");
    assert_eq!(ids(&due), ["a", "b"], "oldest first");
    assert_eq!(
        due[0].destination,
        repo("octo/hooks", TokenSource::Inline("ghp_secret".into()))
    );
    assert_eq!(
        due[0].event.payload,
        request(br#"{"ref":"refs/heads/main"}"#)
    );
    assert_eq!(due[0].event.event_type, "webhook");
    let rest = store.claim(10, lease).await.expect("claim");
    assert_eq!(ids(&rest), ["c"], "claimed ones are not handed out twice");
    assert_eq!(
        rest[0].destination,
        repo("octo/hooks", TokenSource::Env("TOKEN".into()))
    );
    let c = store.counts().await.expect("counts");
    assert_eq!((c.pending, c.inflight), (0, 3));

    let n = store
        .record(vec![
            ((&due[0]).into(), Recorded::delivered()),
            (
                (&due[1]).into(),
                Recorded::RetryAfter {
                    // Long enough that a loaded machine cannot reach the checks below
                    // after it is due.
                    delay: Duration::from_millis(1500),
                    error: "503".into(),
                    tried: None,
                },
            ),
            dead(&rest[0], "404 not found", Some(404)),
        ])
        .await
        .expect("record");
    assert_eq!(n, 3);
    assert!(
        store.claim(10, lease).await.expect("claim").is_empty(),
        "b waits for its retry"
    );
    let wait = store.next_due().await.expect("next").expect("b is pending");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(1500),
        "{wait:?}"
    );
    tokio::time::sleep(Duration::from_millis(1550)).await;
    let b = store.claim(10, lease).await.expect("claim");
    assert_eq!(ids(&b), ["b"]);
    assert_eq!(b[0].attempts, 1);

    // A result for a claim that is not current changes nothing.
    let stale = ClaimRef {
        id: b[0].id.clone(),
        claim: "not-the-claim".into(),
    };
    assert_eq!(
        store
            .record(vec![(stale, Recorded::delivered())])
            .await
            .expect("record"),
        0
    );
    // A lease that runs out makes the delivery claimable again, and the first claim's
    // result is refused: it cannot overwrite the second's.
    let deferred = Recorded::Defer {
        delay: Duration::ZERO,
    };
    assert_eq!(
        store
            .record(vec![((&b[0]).into(), deferred)])
            .await
            .expect("record"),
        1
    );
    let first = store
        .claim(10, Duration::from_millis(1000))
        .await
        .expect("claim");
    assert_eq!(ids(&first), ["b"]);
    assert_eq!(first[0].attempts, 1, "a deferral is not an attempt");
    assert!(store.claim(10, lease).await.expect("claim").is_empty());
    // Expired leases are freed within a quarter second (PostgreSQL reaps them now and then).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = store.claim(10, lease).await.expect("claim");
    assert_eq!(ids(&second), ["b"], "the lease ran out");
    assert_ne!(first[0].claim, second[0].claim);
    assert_eq!(
        store
            .record(vec![((&first[0]).into(), Recorded::delivered())])
            .await
            .expect("record"),
        0
    );
    assert_eq!(
        store
            .record(vec![dead(&second[0], "422 unprocessable", Some(422))])
            .await
            .expect("record"),
        1
    );

    let letters = store.dead_letters(10).await.expect("dead");
    let summary: Vec<(&str, &str, u32)> = letters
        .iter()
        .map(|l| (l.event_id.as_str(), l.error.as_str(), l.attempts))
        .collect();
    assert_eq!(
        summary,
        [("b", "422 unprocessable", 2), ("c", "404 not found", 1)]
    );
    assert_eq!(letters[0].destination, "repo:octo/hooks");
    assert_eq!(letters[0].source, "compat");
    assert_eq!(
        store
            .replay_dead(vec!["c".into(), "zz".into()])
            .await
            .expect("replay"),
        1
    );
    let again = store.claim(10, lease).await.expect("claim");
    assert_eq!(ids(&again), ["c"]);
    assert_eq!(again[0].attempts, 0, "a replay starts over");
    store
        .record(vec![dead(&again[0], "x", None)])
        .await
        .expect("record");
    assert_eq!(store.replay_dead(Vec::new()).await.expect("replay"), 2);
    let both = store.claim(10, lease).await.expect("claim");
    assert_eq!(both.len(), 2);
    store
        .record(both.iter().map(|c| dead(c, "x", None)).collect())
        .await
        .expect("record");
    assert_eq!(
        store
            .purge_dead(Duration::from_secs(3600))
            .await
            .expect("purge"),
        0,
        "not an hour old"
    );
    assert_eq!(store.purge_dead(Duration::ZERO).await.expect("purge"), 2);
    let c = store.counts().await.expect("counts");
    assert_eq!((c.pending, c.inflight, c.dead), (0, 0, 0));
    assert_eq!(store.next_due().await.expect("next"), None);
    store.ping().await.expect("ping");
}

pub async fn dedupe(store: &impl Store) {
    let keyed = |id: &str, key: &str| NewEvent {
        dedupe_key: Some(key.into()),
        ..event(id)
    };
    let mut got = Vec::new();
    for e in [
        keyed("a", "gh:1"),
        keyed("b", "gh:2"),
        keyed("c", "gh:1"),
        keyed("d", "gh:2"),
        keyed("e", "gh:3"),
        event("f"),
    ] {
        got.push(store.insert(e).await.expect("insert"));
    }
    assert_eq!(
        got,
        [
            Inserted::New,
            Inserted::New,
            Inserted::Duplicate("a".into()),
            Inserted::Duplicate("b".into()),
            Inserted::New,
            Inserted::New
        ]
    );
    assert_eq!(store.counts().await.expect("counts").pending, 4);

    // A dead letter does not swallow its sender's retry; the retry then counts as the first.
    let due = store
        .claim(10, Duration::from_secs(60))
        .await
        .expect("claim");
    assert_eq!(due.len(), 4);
    store
        .record(due.iter().map(|c| dead(c, "422", Some(422))).collect())
        .await
        .expect("record");
    assert_eq!(
        store.insert(keyed("g", "gh:1")).await.expect("insert"),
        Inserted::New
    );
    assert_eq!(
        store.insert(keyed("h", "gh:1")).await.expect("insert"),
        Inserted::Duplicate("g".into())
    );
}

/// One event, three destinations: each delivery has its own attempts, result and dead
/// letter; the event stays until its last delivery is done, and is stored once.
pub async fn fan_out(store: &impl Store) {
    let lease = Duration::from_secs(60);
    let hook = Destination::Http {
        url: "https://hooks.example/in".into(),
    };
    let e = NewEvent {
        destinations: vec![
            repo("octo/billing", TokenSource::Env("T".into())),
            repo("octo/analytics", TokenSource::App),
            hook.clone(),
        ],
        ..event("f")
    };
    assert_eq!(store.insert(e).await.expect("insert"), Inserted::New);
    assert_eq!(store.counts().await.expect("counts").pending, 3);
    let due = store.claim(10, lease).await.expect("claim");
    let mut keys: Vec<String> = due.iter().map(|c| c.destination.key()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "http:https://hooks.example/in",
            "repo:octo/analytics",
            "repo:octo/billing"
        ]
    );
    assert!(due
        .iter()
        .all(|c| c.event.id == "f" && c.event.payload == request(br#"{"ref":"refs/heads/main"}"#)));
    let by = |k: &str| due.iter().find(|c| c.destination.key() == k).expect(k);
    let (billing, analytics, http) = (
        by("repo:octo/billing"),
        by("repo:octo/analytics"),
        by("http:https://hooks.example/in"),
    );
    assert_eq!(
        analytics.destination,
        repo("octo/analytics", TokenSource::App)
    );
    store
        .record(vec![
            (billing.into(), Recorded::delivered()),
            (
                analytics.into(),
                Recorded::RetryAfter {
                    delay: Duration::from_millis(200),
                    error: "500".into(),
                    tried: None,
                },
            ),
            dead(http, "404 not found", Some(404)),
        ])
        .await
        .expect("record");
    let c = store.counts().await.expect("counts");
    assert_eq!((c.pending, c.inflight, c.dead), (1, 0, 1));
    let letters = store.dead_letters(10).await.expect("dead");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event_id, "f");
    assert_eq!(letters[0].id, http.id);
    assert_eq!(letters[0].destination, "http:https://hooks.example/in");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let again = store.claim(10, lease).await.expect("claim");
    assert_eq!(again.len(), 1, "only the retried delivery comes back");
    assert_eq!(again[0].destination.key(), "repo:octo/analytics");
    assert_eq!(again[0].attempts, 1);
    store
        .record(vec![((&again[0]).into(), Recorded::delivered())])
        .await
        .expect("record");
    // The dead HTTP delivery keeps its event: replayed alone, by its delivery id, it
    // sends the same request.
    assert_eq!(
        store
            .replay_dead(vec![http.id.clone()])
            .await
            .expect("replay"),
        1
    );
    let replayed = store.claim(10, lease).await.expect("claim");
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].destination, hook);
    assert_eq!(replayed[0].attempts, 0);
    assert_eq!(
        replayed[0].event.payload,
        request(br#"{"ref":"refs/heads/main"}"#)
    );
    store
        .record(vec![((&replayed[0]).into(), Recorded::delivered())])
        .await
        .expect("record");
    let c = store.counts().await.expect("counts");
    assert_eq!((c.pending, c.inflight, c.dead), (0, 0, 0));
    assert!(store.claim(10, lease).await.expect("claim").is_empty());
}

/// Many concurrent inserts, several per key: each key is stored once, and every repeat
/// names the event stored for its key, even within one batch.
/// A batch's leader takes more of its endpoint's lane: due deliveries and those waiting only
/// for the rate limit, oldest first; never one in retry backoff, another lane's or another
/// endpoint's.
pub async fn lanes(store: &impl Store) {
    let lease = Duration::from_secs(60);
    let ci = |id: &str, repo_name: &str, source: &str| NewEvent {
        event: Event {
            source: source.into(),
            ..event(id).event
        },
        destinations: vec![repo(repo_name, TokenSource::Env("TOKEN".into()))],
        dedupe_key: None,
    };
    for e in [
        ci("a", "octo/hooks", "ci"),
        ci("b", "octo/hooks", "ci"),
        ci("c", "octo/hooks", "ci"),
        ci("d", "octo/hooks", "ci"),
        ci("e", "octo/other", "ci"),
        ci("f", "octo/hooks", "other"),
        ci("g", "octo/hooks", "ci"),
    ] {
        assert_eq!(store.insert(e).await.expect("insert"), Inserted::New);
    }
    let first = store.claim(3, lease).await.expect("claim");
    assert_eq!(ids(&first), ["a", "b", "c"]);
    let minute = Duration::from_secs(60);
    let results = vec![
        ((&first[1]).into(), Recorded::RateLimited { delay: minute }),
        (
            (&first[2]).into(),
            Recorded::RetryAfter {
                delay: minute,
                error: "503".into(),
                tried: None,
            },
        ),
    ];
    assert_eq!(store.record(results).await.expect("record"), 2);
    let leader = &first[0];
    let more = store
        .claim_lane(leader, vec![leader.into()], "batch-1".into(), 10, lease)
        .await
        .expect("claim lane");
    assert_eq!(
        ids(&more),
        ["b", "d", "g"],
        "due and rate-limited deliveries of the lane, in order; not c (backoff), e (another \
             repository) or f (another endpoint)"
    );
    let again = store
        .claim_lane(leader, Vec::new(), "batch-2".into(), 10, lease)
        .await
        .expect("claim lane again");
    assert!(ids(&again).is_empty(), "claimed ones are not claimed twice");
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.inflight, counts.pending), (4, 3));
    let done: Vec<(ClaimRef, Recorded)> = std::iter::once(leader)
        .chain(&more)
        .map(|c| (c.into(), Recorded::delivered()))
        .collect();
    assert_eq!(store.record(done).await.expect("record"), 4);
    let rest = store.claim(10, lease).await.expect("claim the rest");
    assert_eq!(ids(&rest), ["e", "f"], "c waits out its backoff");
    let none = store
        .claim_lane(&rest[0], Vec::new(), "batch-3".into(), 0, lease)
        .await
        .expect("claim nothing");
    assert!(none.is_empty());
}

/// The event log: delivered deliveries stay with their attempts, lists filter and page,
/// replays start new chains, retention prunes what is all delivered.
pub async fn event_log(store: &impl Store) {
    let base = now_ms();
    let id = |i: u64| ulid::Ulid::from_parts(base as u64 - 10_000 + i, 7).to_string();
    let tried = |ms: u64, status: Option<u16>| {
        Some(Tried {
            took: Duration::from_millis(ms),
            status,
            batch_id: None,
        })
    };
    // Event 0 goes to two repositories; 1 and 2 to one; 2 comes from another endpoint.
    let mut e0 = event(&id(0));
    e0.destinations
        .push(repo("octo/other", TokenSource::Env("T".into())));
    e0.dedupe_key = Some("hooks:gh:x-github-delivery:72d3162e-cc78-11e3".into());
    if let Payload::Request(r) = &mut e0.event.payload {
        r.path = "/github/webhook?ref=main".into();
    }
    let e1 = event(&id(1));
    let mut e2 = event(&id(2));
    e2.event.source = "stripe".into();
    for e in [e0, e1, e2] {
        store.insert(e).await.expect("stored");
    }
    let claimed = store
        .claim(10, Duration::from_secs(60))
        .await
        .expect("claims");
    assert_eq!(claimed.len(), 4);
    let results: Vec<(ClaimRef, Recorded)> = claimed
        .iter()
        .map(|c| {
            let r = if c.destination.key() == "repo:octo/other" {
                Recorded::RetryAfter {
                    delay: Duration::from_millis(1),
                    error: "GitHub answered 502".into(),
                    tried: tried(40, Some(502)),
                }
            } else {
                Recorded::Delivered {
                    tried: tried(25, None),
                }
            };
            (c.into(), r)
        })
        .collect();
    assert_eq!(store.record(results).await.expect("records"), 4);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let again = store
        .claim(10, Duration::from_secs(60))
        .await
        .expect("claims");
    assert_eq!(again.len(), 1, "the retry");
    store
        .record(vec![(
            (&again[0]).into(),
            Recorded::Dead {
                error: "GitHub answered 404".into(),
                status: Some(404),
                tried: tried(30, Some(404)),
            },
        )])
        .await
        .expect("records");
    // The queue figures leave delivered deliveries out.
    let c = store.counts().await.expect("counts");
    assert_eq!((c.pending, c.inflight, c.dead), (0, 0, 1));

    let all = store
        .list_events(EventFilter::default(), 50)
        .await
        .expect("lists");
    assert_eq!(
        all.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        vec![id(2), id(1), id(0)],
        "newest first"
    );
    assert_eq!(all[2].deliveries.len(), 2);
    assert_eq!(all[2].deliveries[0].status, DeliveryStatus::Delivered);
    assert_eq!(all[2].deliveries[1].status, DeliveryStatus::Dead);
    assert_eq!(all[2].deliveries[1].attempts, 2);
    assert_eq!(
        all[2].delivery_key.as_deref(),
        Some("72d3162e-cc78-11e3"),
        "the sender's delivery id"
    );
    let list = |f: EventFilter| async move {
        store
            .list_events(f, 50)
            .await
            .expect("lists")
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(EventFilter {
            status: Some(DeliveryStatus::Dead),
            ..Default::default()
        })
        .await,
        vec![id(0)]
    );
    assert_eq!(
        list(EventFilter {
            status: Some(DeliveryStatus::Delivered),
            ..Default::default()
        })
        .await,
        vec![id(2), id(1), id(0)]
    );
    assert_eq!(
        list(EventFilter {
            destination: Some("repo:octo/other".into()),
            ..Default::default()
        })
        .await,
        vec![id(0)]
    );
    assert_eq!(
        list(EventFilter {
            source: Some("stripe".into()),
            ..Default::default()
        })
        .await,
        vec![id(2)]
    );
    assert_eq!(
        list(EventFilter {
            delivery_key: Some("72d3162e-cc78-11e3".into()),
            ..Default::default()
        })
        .await,
        vec![id(0)]
    );
    assert_eq!(
        list(EventFilter {
            path_contains: Some("ref=main".into()),
            ..Default::default()
        })
        .await,
        vec![id(0)]
    );
    assert_eq!(
        list(EventFilter {
            since: Some(base - 10_000 + 1),
            until: Some(base - 10_000 + 2),
            ..Default::default()
        })
        .await,
        vec![id(1)],
        "a time range"
    );
    assert_eq!(
        list(EventFilter {
            before: Some(id(2)),
            ..Default::default()
        })
        .await,
        vec![id(1), id(0)],
        "the next page"
    );
    assert_eq!(
        store
            .list_events(EventFilter::default(), 2)
            .await
            .expect("lists")
            .len(),
        2
    );

    // One event whole: its request and every attempt.
    let whole = store
        .logged_event(id(0))
        .await
        .expect("reads")
        .expect("found");
    let Payload::Request(r) = &whole.payload else {
        panic!("a request")
    };
    assert_eq!(r.body, br#"{"ref":"refs/heads/main"}"#);
    let dead = &whole.summary.deliveries[1];
    assert_eq!(
        dead.tries
            .iter()
            .map(|t| (t.outcome.as_str(), t.status, t.took_ms))
            .collect::<Vec<_>>(),
        vec![
            ("retry", Some(502), Some(40)),
            ("dead", Some(404), Some(30))
        ]
    );
    assert_eq!(
        dead.tries[0].message.as_deref(),
        Some("GitHub answered 502")
    );
    assert_eq!(whole.summary.deliveries[0].tries.len(), 1);
    assert_eq!(whole.summary.deliveries[0].tries[0].outcome, "delivered");
    assert!(store
        .logged_event("01JNONE".into())
        .await
        .expect("reads")
        .is_none());

    // Replaying the dead ones (by filter) starts chain 1; delivered again, it says so.
    let n = store
        .replay(
            Vec::new(),
            EventFilter {
                status: Some(DeliveryStatus::Dead),
                ..Default::default()
            },
            100,
        )
        .await
        .expect("replays");
    assert_eq!(n, 2, "every finished delivery of the listed event");
    let replayed = store
        .claim(10, Duration::from_secs(60))
        .await
        .expect("claims");
    assert_eq!(replayed.len(), 2);
    // A token that came with the request was erased once it was used.
    assert!(
        replayed
            .iter()
            .any(|c| c.destination == repo("octo/hooks", TokenSource::Inline(String::new()))),
        "{:?}",
        replayed
            .iter()
            .map(|c| c.destination.key())
            .collect::<Vec<_>>()
    );
    let results = replayed
        .iter()
        .map(|c| {
            (
                c.into(),
                Recorded::Delivered {
                    tried: tried(5, Some(204)),
                },
            )
        })
        .collect();
    store.record(results).await.expect("records");
    let whole = store
        .logged_event(id(0))
        .await
        .expect("reads")
        .expect("found");
    let d = &whole.summary.deliveries[1];
    assert_eq!(
        (d.status, d.chain, d.attempts),
        (DeliveryStatus::Delivered, 1, 1)
    );
    assert_eq!(
        d.tries.iter().map(|t| t.chain).collect::<Vec<_>>(),
        vec![0, 0, 1]
    );
    // A replay by id of a delivered delivery works too.
    assert_eq!(
        store
            .replay(vec![d.id.clone()], EventFilter::default(), 1)
            .await
            .expect("replays"),
        1
    );
    let back = store
        .claim(10, Duration::from_secs(60))
        .await
        .expect("claims");
    store
        .record(vec![(
            (&back[0]).into(),
            Recorded::Dead {
                error: "gone".into(),
                status: Some(410),
                tried: tried(1, Some(410)),
            },
        )])
        .await
        .expect("records");

    // Body retention: the bodies of events all delivered go first, the rest of them stays;
    // such an event cannot be replayed (nothing to send); a dead letter keeps its body.
    let prune = |part: LogPart, age: Duration, limit: usize| async move {
        store.prune_events(part, age, limit).await.expect("prunes")
    };
    assert_eq!(
        prune(LogPart::Bodies, Duration::from_secs(3600), 100).await,
        0
    );
    assert_eq!(prune(LogPart::Bodies, Duration::ZERO, 1).await, 1);
    assert_eq!(prune(LogPart::Bodies, Duration::ZERO, 100).await, 1);
    assert_eq!(prune(LogPart::Bodies, Duration::ZERO, 100).await, 0, "once");
    for i in [1, 2] {
        let e = store
            .logged_event(id(i))
            .await
            .expect("reads")
            .expect("kept");
        assert!(e.body_pruned);
        let Payload::Request(r) = &e.payload else {
            panic!("a request")
        };
        assert!(r.body.is_empty(), "emptied");
        assert_eq!(e.summary.deliveries.len(), 1, "its delivery stays");
        assert_eq!(e.summary.deliveries[0].tries.len(), 1, "and its attempt");
    }
    let kept = store
        .logged_event(id(0))
        .await
        .expect("reads")
        .expect("kept");
    assert!(!kept.body_pruned);
    assert_eq!(
        store
            .replay(vec![id(1)], EventFilter::default(), 1)
            .await
            .expect("replays"),
        0,
        "no body to send again"
    );

    // Retention: events all delivered and old enough go, with their rows; a dead letter
    // stays.
    assert_eq!(
        prune(LogPart::Events, Duration::from_secs(3600), 100).await,
        0,
        "nothing is an hour old"
    );
    assert_eq!(
        prune(LogPart::Events, Duration::ZERO, 1).await,
        1,
        "a batch at a time"
    );
    assert_eq!(prune(LogPart::Events, Duration::ZERO, 100).await, 1);
    assert_eq!(list(EventFilter::default()).await, vec![id(0)]);
}

/// Bodies by reference: kept until their time, never shortened, pruned after.
pub async fn bodies(store: &impl Store) {
    let big: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let later = now_ms() + 60_000;
    store
        .keep_body("01JBIG".into(), big.clone(), later)
        .await
        .expect("kept");
    assert_eq!(
        store.body("01JBIG".into()).await.expect("reads"),
        Some(big.clone())
    );
    // Kept again with an earlier time (another destination's dispatch): the later stays.
    store
        .keep_body("01JBIG".into(), big.clone(), now_ms() + 1_000)
        .await
        .expect("kept again");
    store
        .keep_body("01JEMPTY".into(), Vec::new(), later)
        .await
        .expect("kept");
    assert_eq!(
        store.body("01JEMPTY".into()).await.expect("reads"),
        Some(Vec::new())
    );
    store
        .keep_body("01JOLD".into(), b"old".to_vec(), now_ms() + 300)
        .await
        .expect("kept");
    assert!(store.body("01JOLD".into()).await.expect("reads").is_some());
    assert_eq!(store.body("01JNEVER".into()).await.expect("reads"), None);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // Past its time: no longer served, then pruned; the others stay.
    assert_eq!(store.body("01JOLD".into()).await.expect("reads"), None);
    assert_eq!(store.prune_bodies(100).await.expect("prunes"), 1);
    assert_eq!(store.prune_bodies(100).await.expect("prunes"), 0);
    assert_eq!(store.body("01JBIG".into()).await.expect("reads"), Some(big));

    // A body kept for an event whose every delivery is dead goes at once (a stranger's
    // junk tokens cannot hold the store for a week); one whose delivery succeeded stays.
    let (dead_id, done_id) = (
        ulid::Ulid::generate().to_string(),
        ulid::Ulid::generate().to_string(),
    );
    for id in [&dead_id, &done_id] {
        store.insert(event(id)).await.expect("stored");
    }
    let claimed = store
        .claim(10, Duration::from_secs(60))
        .await
        .expect("claims");
    let results = claimed
        .iter()
        .map(|c| {
            let r = if c.event.id == dead_id {
                Recorded::Dead {
                    error: "401".into(),
                    status: Some(401),
                    tried: None,
                }
            } else {
                Recorded::delivered()
            };
            (c.into(), r)
        })
        .collect();
    store.record(results).await.expect("records");
    for id in [&dead_id, &done_id] {
        store
            .keep_body(id.clone(), b"kept".to_vec(), later)
            .await
            .expect("kept");
    }
    assert_eq!(store.prune_bodies(100).await.expect("prunes"), 1);
    assert_eq!(store.body(dead_id).await.expect("reads"), None);
    assert!(store.body(done_id).await.expect("reads").is_some());
}

pub async fn concurrent_inserts<S: Store + Clone + 'static>(store: &S) {
    let mut tasks = Vec::new();
    for i in 0..300 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("k{}", i % 50);
            let e = NewEvent {
                dedupe_key: Some(key.clone()),
                ..event(&format!("e{i:04}"))
            };
            (key, format!("e{i:04}"), s.insert(e).await.expect("insert"))
        }));
    }
    let mut stored = std::collections::HashMap::new();
    let mut repeats = Vec::new();
    for t in tasks {
        let (key, id, inserted) = t.await.expect("task");
        match inserted {
            Inserted::New => assert!(stored.insert(key, id).is_none(), "one per key"),
            Inserted::Duplicate(first) => repeats.push((key, first)),
        }
    }
    assert_eq!(stored.len(), 50);
    for (key, first) in repeats {
        assert_eq!(stored.get(&key), Some(&first));
    }
    assert_eq!(store.counts().await.expect("counts").pending, 50);
}

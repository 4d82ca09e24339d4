//! Delivery policy end to end: a real outbox file, the real sender threads, scripted receivers
//! on 127.0.0.1, millisecond schedules (`fast_webhook`). `webhook_outage.rs` runs the default
//! schedules.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use enocean_agent::outbox::{DeliveryState, HealthChange, Outcome, Phase, Store, Trigger};
use enocean_agent::webhook::health::{self, State};
use enocean_agent::webhook::{self, Sender, SenderOptions, WebhookConfig};

const DEV: &str = "0180A3F2";

fn spawn(
    hooks: &[WebhookConfig],
    s: &enocean_agent::outbox::StorageConfig,
    opts: SenderOptions,
) -> enocean_agent::webhook::SenderHandle {
    Sender::spawn(hooks, &s.path, opts, Arc::new(AtomicBool::new(false))).expect("spawn sender")
}

fn phase(store: &Store, name: &str) -> Phase {
    store.webhook(name).unwrap().unwrap().phase
}

#[test]
fn delivered_on_third_attempt_with_identical_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(|n, _| {
        if n < 2 {
            Reply::status(500).body("oops")
        } else {
            Reply::ok()
        }
    });
    let hooks = vec![fast_webhook("a", &rx.url)];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = spawn(&hooks, &s, fast_options());
    ob.set_waker(sender.waker());
    let ids = enqueue_n(&mut ob, DEV, 1);
    let store = Store::open(&s.path).unwrap();
    assert!(wait_for(WAIT, || {
        store
            .attempts(Some("a"), false, 10)
            .unwrap()
            .iter()
            .any(|l| l.outcome == Outcome::Delivered)
    }));
    sender.stop();
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.body == reqs[0].body));
    assert_eq!(record_ids(&reqs[2]), ids);
    let log = store.attempts(Some("a"), false, 10).unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[2].status, Some(500));
    assert_eq!(log[2].response, "oops");
    assert_eq!(log[0].status, Some(200));
    let d = store
        .delivery(log[0].delivery_row.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.attempts, 3);
    let w = store.webhook("a").unwrap().unwrap();
    assert_eq!((w.consecutive_failures, w.phase), (0, Phase::Active));
    assert_eq!(w.last_failure_reason.as_deref(), Some("http_500"));
}

/// Outcome 1: an outage deactivates the webhook, which is probed with backoff, survives a
/// restart of the sender, and resumes by itself; the reading that used up its retries during
/// the outage arrives first, every other one after it in seq order. No command is run.
#[test]
fn outage_deactivates_probes_survives_restart_and_drains_in_seq_order_without_commands() {
    let dir = tempfile::tempdir().unwrap();
    let ep = Endpoint::start(503);
    let mut hook = fast_webhook("a", &ep.rx.url);
    hook.deactivate_after = 3;
    let hooks = vec![hook];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = spawn(&hooks, &s, fast_options());
    ob.set_waker(sender.waker());
    let mut ids = enqueue_n(&mut ob, DEV, 5);
    let store = Store::open(&s.path).unwrap();
    assert!(wait_for(WAIT, || phase(&store, "a") == Phase::Probing));
    let w = store.webhook("a").unwrap().unwrap();
    assert_eq!(w.consecutive_failures, 3);
    assert!(w.deactivated_at.is_some());
    assert_eq!(
        w.deactivated_reason.as_deref(),
        Some("3 consecutive failed deliveries")
    );
    assert_eq!(w.last_failure_reason.as_deref(), Some("http_503"));
    assert!(
        store.failed(None, None).unwrap().is_empty(),
        "nothing is given up during an outage"
    );
    // 3 rounds of 3 attempts, all on the head of the queue: nothing behind it was sent.
    assert!(ep.count() >= 9);
    assert!(ep.rx.requests().iter().all(|r| record_ids(r) == ids[..1]));
    ids.extend(enqueue_n(&mut ob, DEV, 4));
    // Probes keep coming (with backoff) and carry the head.
    let before = ep.count();
    assert!(wait_for(WAIT, || ep.count() >= before + 3));
    assert!(ep.rx.requests().iter().all(|r| record_ids(r) == ids[..1]));
    let h = health::health(&store, &hooks, &s.path).unwrap().remove(0);
    assert_eq!(h.state, State::DeactivatedProbing);
    assert_eq!(h.backlog, 9);
    assert_eq!(h.consecutive_failures, 3);
    assert!(h.next_attempt_ms.is_some());
    assert!(h.oldest_undelivered_ms.is_some());
    assert_eq!(h.last_failure_reason.as_deref(), Some("http_503"));
    // A restart keeps the deactivation and the probing.
    sender.stop();
    let sender = spawn(&hooks, &s, fast_options());
    ob.set_waker(sender.waker());
    let before = ep.count();
    assert!(wait_for(WAIT, || ep.count() > before));
    assert_eq!(phase(&store, "a"), Phase::Probing);
    // The endpoint recovers: the next probe gets through and the backlog drains.
    ep.set(200);
    assert!(wait_for(WAIT, || ep.first_accepted().len() == ids.len()));
    assert_eq!(ep.first_accepted(), ids, "first deliveries in seq order");
    assert!(wait_for(WAIT, || {
        let w = store.webhook("a").unwrap().unwrap();
        w.phase == Phase::Active && w.consecutive_failures == 0 && w.deactivated_at.is_none()
    }));
    sender.stop();
    assert!(store.failed(None, None).unwrap().is_empty());
    let h = health::health(&store, &hooks, &s.path).unwrap().remove(0);
    assert_eq!(
        (h.state, h.backlog, h.next_attempt_ms),
        (State::Active, 0, None)
    );
    assert!(h.last_success.is_some());
}

/// Connection refused, connections reset and timeouts are outages like a 503: the webhook is
/// deactivated, probed, and drains in order by itself once the endpoint answers again.
#[test]
fn refused_reset_and_timeout_outages_recover_by_themselves() {
    let dir = tempfile::tempdir().unwrap();
    // Refused: nothing listens on a port that was just free on 127.0.0.2 (the other receivers
    // bind 127.0.0.1); the endpoint comes back on it later.
    let refused_port = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Reset: a listener that accepts and closes every connection without an answer.
    let reset_listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let reset_port = reset_listener.local_addr().unwrap().port();
    let closing = Arc::new(AtomicBool::new(true));
    let c = closing.clone();
    reset_listener.set_nonblocking(true).unwrap();
    let resetter = std::thread::spawn(move || {
        while c.load(Ordering::SeqCst) {
            match reset_listener.accept() {
                Ok((conn, _)) => drop(conn),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    // Timeout: answers only after the client gave up.
    let slow = Arc::new(AtomicBool::new(true));
    let sl = slow.clone();
    let timeout_rx = Receiver::start(move |_, _| {
        if sl.load(Ordering::SeqCst) {
            Reply::ok().delay(Duration::from_millis(400))
        } else {
            Reply::ok()
        }
    });
    let mut hooks = Vec::new();
    for (name, url) in [
        ("refused", format!("http://127.0.0.2:{refused_port}/hook")),
        ("reset", format!("http://127.0.0.2:{reset_port}/hook")),
        ("timeout", timeout_rx.url.clone()),
    ] {
        let mut h = fast_webhook(name, &url);
        h.deactivate_after = 2;
        h.max_retries = 1;
        h.timeout = Duration::from_millis(150);
        hooks.push(h);
    }
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = spawn(&hooks, &s, fast_options());
    ob.set_waker(sender.waker());
    let mut ids = enqueue_n(&mut ob, DEV, 3);
    let store = Store::open(&s.path).unwrap();
    assert!(wait_for(WAIT, || {
        ["refused", "reset", "timeout"]
            .iter()
            .all(|n| phase(&store, n) == Phase::Probing)
    }));
    for (name, why) in [
        ("refused", "connection_refused"),
        ("reset", "connection_reset"),
        ("timeout", "timeout"),
    ] {
        let w = store.webhook(name).unwrap().unwrap();
        assert_eq!(w.last_failure_reason.as_deref(), Some(why), "{name}");
    }
    assert!(store.failed(None, None).unwrap().is_empty());
    ids.extend(enqueue_n(&mut ob, DEV, 2));
    // The endpoints come back.
    closing.store(false, Ordering::SeqCst);
    resetter.join().unwrap();
    let refused_rx = Receiver::start_on(&format!("127.0.0.2:{refused_port}"), |_, _| Reply::ok());
    let reset_rx = Receiver::start_on(&format!("127.0.0.2:{reset_port}"), |_, _| Reply::ok());
    slow.store(false, Ordering::SeqCst);
    let firsts = |rx: &Receiver| {
        let mut seen = std::collections::HashSet::new();
        rx.requests()
            .iter()
            .flat_map(record_ids)
            .filter(|id| seen.insert(id.clone()))
            .collect::<Vec<_>>()
    };
    assert!(wait_for(WAIT, || firsts(&refused_rx) == ids));
    assert!(wait_for(WAIT, || firsts(&reset_rx) == ids));
    // The slow receiver got every reading, possibly some twice (answered after the timeout).
    assert!(wait_for(WAIT, || firsts(&timeout_rx) == ids));
    assert!(wait_for(WAIT, || {
        ["refused", "reset", "timeout"]
            .iter()
            .all(|n| phase(&store, n) == Phase::Active)
    }));
    sender.stop();
}

#[test]
fn retry_after_is_honoured_on_429() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(|n, _| {
        if n == 0 {
            Reply::status(429).header("Retry-After", "2")
        } else {
            Reply::ok()
        }
    });
    let hooks = vec![fast_webhook("a", &rx.url)];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = spawn(&hooks, &s, fast_options());
    ob.set_waker(sender.waker());
    enqueue_n(&mut ob, DEV, 1);
    assert!(wait_for(WAIT, || rx.count() == 2));
    sender.stop();
    // Backoff alone would retry after 5 ms; Retry-After asks for 2 s (a lower bound, whatever
    // the machine's speed).
    let store = Store::open(&s.path).unwrap();
    let log = store.attempts(Some("a"), false, 10).unwrap();
    let gap_ms = log[0].at.as_millis() - log[1].at.as_millis();
    assert!(gap_ms >= 1990, "{gap_ms} ms");
}

/// A 410 Gone and an operator's `webhook disable` are never probed; an automatic deactivation
/// is. Absence is checked while the probed webhook provably keeps getting probes.
#[test]
fn gone_and_disabled_are_not_probed_an_automatic_deactivation_is() {
    let dir = tempfile::tempdir().unwrap();
    let gone = Endpoint::start(410);
    let off = Endpoint::start(503);
    let probed = Endpoint::start(503);
    let mut hooks = Vec::new();
    for (name, ep) in [("gone", &gone), ("off", &off), ("probed", &probed)] {
        let mut h = fast_webhook(name, &ep.rx.url);
        h.deactivate_after = 1;
        h.max_retries = 0;
        hooks.push(h);
    }
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = spawn(&hooks, &s, fast_options());
    ob.set_waker(sender.waker());
    let ids = enqueue_n(&mut ob, DEV, 2);
    let mut store = Store::open(&s.path).unwrap();
    assert!(wait_for(WAIT, || {
        phase(&store, "gone") == Phase::Gone
            && phase(&store, "off") == Phase::Probing
            && phase(&store, "probed") == Phase::Probing
    }));
    assert!(store.disable("off").unwrap());
    // Let the sender notice the switch: the probed webhook gets three more probes meanwhile.
    let p = probed.count();
    assert!(wait_for(WAIT, || probed.count() >= p + 3));
    let (g, o, p) = (gone.count(), off.count(), probed.count());
    assert_eq!(g, 1, "one 410, then silence");
    assert!(wait_for(WAIT, || probed.count() >= p + 5));
    assert_eq!(
        (gone.count(), off.count()),
        (g, o),
        "gone and disabled are not probed"
    );
    let states: Vec<State> = health::health(&store, &hooks, &s.path)
        .unwrap()
        .iter()
        .map(|h| h.state)
        .collect();
    assert_eq!(
        states,
        vec![State::Gone, State::Disabled, State::DeactivatedProbing]
    );
    let w = store.webhook("gone").unwrap().unwrap();
    assert_eq!(w.deactivated_reason.as_deref(), Some("410 Gone"));
    let failed = store.failed(Some("gone"), None).unwrap();
    assert_eq!(
        failed.len(),
        1,
        "the delivery answered 410 is kept, resendable"
    );
    assert_eq!(failed[0].last_status, Some(410));
    // `webhook enable` resumes both; their backlogs drain in order.
    gone.set(200);
    off.set(200);
    assert!(store.enable("gone").unwrap());
    assert!(store.enable("off").unwrap());
    assert!(wait_for(WAIT, || gone.first_accepted() == ids[1..]));
    assert!(wait_for(WAIT, || off.first_accepted() == ids));
    sender.stop();
}

/// A 4xx for one body while others succeed: failed at once (no retries), listed, resendable,
/// and the queue moves on.
#[test]
fn a_rejected_body_is_failed_listed_resendable_and_never_blocks_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let accept_bad = Arc::new(AtomicBool::new(false));
    let a = accept_bad.clone();
    let ep = Endpoint::with_rule(200, move |r| {
        let bad = String::from_utf8_lossy(&r.body).contains("0BADBAD0");
        (bad && !a.load(Ordering::SeqCst)).then_some(422)
    });
    let hooks = vec![fast_webhook("a", &ep.rx.url)];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = spawn(&hooks, &s, fast_options());
    ob.set_waker(sender.waker());
    let mut ids = Vec::new();
    for (i, dev) in [DEV, "0BADBAD0", DEV, DEV].into_iter().enumerate() {
        let t = telemetry(dev, i as u32);
        ids.push(t.id.clone());
        ob.enqueue(t).unwrap();
        ob.flush().unwrap();
    }
    assert!(wait_for(WAIT, || ep.first_accepted().len() == 3));
    assert_eq!(
        ep.first_accepted(),
        vec![ids[0].clone(), ids[2].clone(), ids[3].clone()]
    );
    let store = Store::open(&s.path).unwrap();
    let failed = store.failed(Some("a"), None).unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].telemetry_ids, ids[1]);
    assert_eq!(failed[0].attempts, 1, "a rejected body is not retried");
    assert_eq!(failed[0].last_status, Some(422));
    let rejected: Vec<_> = store
        .attempts(Some("a"), true, 10)
        .unwrap()
        .into_iter()
        .filter(|l| l.outcome == Outcome::Rejected)
        .collect();
    assert_eq!(rejected.len(), 1);
    assert!(wait_for(WAIT, || {
        let w = store.webhook("a").unwrap().unwrap();
        w.consecutive_failures == 0 && w.phase == Phase::Active
    }));
    // The last acknowledgement is saved within the acknowledgement window.
    assert!(wait_for(WAIT, || {
        health::health(&store, &hooks, &s.path).unwrap()[0].backlog == 0
    }));
    let h = health::health(&store, &hooks, &s.path).unwrap().remove(0);
    assert_eq!((h.state, h.failed), (State::Active, 1));
    sender.stop();
    // Resendable once the receiver takes it.
    accept_bad.store(true, Ordering::SeqCst);
    let clock: enocean_agent::clock::ClockCheck = Arc::new(|| true);
    let r = webhook::resend(&hooks, &store, failed[0].row, &clock).unwrap();
    assert_eq!(r.outcome, webhook::Outcome::Delivered);
    assert!(store.failed(None, None).unwrap().is_empty());
}

/// A receiver that refuses everything (here 401, a revoked token) is not a refused body: the
/// webhook is deactivated and probed, and when the receiver takes deliveries again the ones it
/// refused meanwhile are delivered by themselves (once more each).
#[test]
fn everything_rejected_deactivates_and_the_refused_deliveries_return_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let ep = Endpoint::start(401);
    let mut hook = fast_webhook("a", &ep.rx.url);
    hook.deactivate_after = 3;
    let hooks = vec![hook];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = spawn(&hooks, &s, fast_options());
    ob.set_waker(sender.waker());
    let mut ids = enqueue_n(&mut ob, DEV, 3);
    let store = Store::open(&s.path).unwrap();
    assert!(wait_for(WAIT, || phase(&store, "a") == Phase::Probing));
    // One attempt per refused delivery, the queue moving on each time.
    let first: Vec<Vec<String>> = ep.rx.requests()[..3].iter().map(record_ids).collect();
    assert_eq!(
        first,
        vec![ids[..1].to_vec(), ids[1..2].to_vec(), ids[2..3].to_vec()]
    );
    assert_eq!(store.failed(Some("a"), None).unwrap().len(), 3);
    ids.extend(enqueue_n(&mut ob, DEV, 2));
    // A probe with the next reading is refused as well.
    assert!(wait_for(WAIT, || store
        .failed(Some("a"), None)
        .unwrap()
        .len()
        >= 4));
    ep.set(200);
    assert!(wait_for(WAIT, || {
        let mut got = ep.first_accepted();
        got.sort();
        let mut want = ids.clone();
        want.sort();
        got == want
    }));
    assert!(wait_for(WAIT, || phase(&store, "a") == Phase::Active));
    sender.stop();
    assert!(store.failed(None, None).unwrap().is_empty());
    // Each refused delivery was sent again exactly once after the recovery.
    let accepted = ep.answered().into_iter().filter(|(_, s)| *s == 200).count();
    assert_eq!(accepted, ids.len());
}

#[test]
fn redirect_is_a_failure_and_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(|_, r| {
        if r.path == "/hook" {
            Reply::status(301).header("Location", "/elsewhere")
        } else {
            Reply::ok()
        }
    });
    let hooks = vec![fast_webhook("a", &rx.url)];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = spawn(&hooks, &s, fast_options());
    ob.set_waker(sender.waker());
    enqueue_n(&mut ob, DEV, 1);
    let store = Store::open(&s.path).unwrap();
    assert!(wait_for(WAIT, || {
        store.webhook("a").unwrap().unwrap().consecutive_failures >= 1
    }));
    sender.stop();
    assert!(rx.requests().iter().all(|r| r.path == "/hook"));
    let log = store.attempts(None, true, 100).unwrap();
    assert!(log.len() >= 3);
    assert!(
        log.iter()
            .all(|l| l.status == Some(301) && l.error.as_deref() == Some("redirect"))
    );
    assert!(
        store.failed(None, None).unwrap().is_empty(),
        "retried, not given up"
    );
}

#[test]
fn slower_than_timeout_is_a_timeout_failure() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(|_, _| Reply::ok().delay(Duration::from_millis(400)));
    let mut hook = fast_webhook("a", &rx.url);
    hook.timeout = Duration::from_millis(100);
    hook.max_retries = 0;
    let hooks = vec![hook];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = spawn(&hooks, &s, fast_options());
    ob.set_waker(sender.waker());
    enqueue_n(&mut ob, DEV, 1);
    let store = Store::open(&s.path).unwrap();
    assert!(wait_for(WAIT, || {
        !store.attempts(None, true, 10).unwrap().is_empty()
    }));
    sender.stop();
    let log = store.attempts(None, true, 10).unwrap();
    assert!(log.iter().all(|l| l.error.as_deref() == Some("timeout")));
    let w = store.webhook("a").unwrap().unwrap();
    assert_eq!(w.last_failure_reason.as_deref(), Some("timeout"));
}

#[test]
fn connection_refused_counts_but_offline_does_not() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was just free on 127.0.0.2 (loopback; the other tests' receivers bind
    // 127.0.0.1 only, so nothing can take it over): nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut refused = fast_webhook("refused", &format!("http://127.0.0.2:{port}/hook"));
    refused.deactivate_after = 1;
    refused.max_retries = 0;
    // DNS failure of a `.invalid` name: the gateway's own network problem, never the endpoint's.
    let mut offline = fast_webhook("offline", "http://gateway-test.invalid/hook");
    offline.deactivate_after = 1;
    offline.max_retries = 0;
    let hooks = vec![refused, offline];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = spawn(&hooks, &s, fast_options());
    ob.set_waker(sender.waker());
    enqueue_n(&mut ob, DEV, 2);
    let store = Store::open(&s.path).unwrap();
    assert!(wait_for(WAIT, || phase(&store, "refused") == Phase::Probing));
    assert!(wait_for(WAIT, || {
        store
            .attempts(Some("offline"), true, 10)
            .unwrap()
            .iter()
            .filter(|l| l.outcome == Outcome::Offline)
            .count()
            >= 3
    }));
    sender.stop();
    let r = store.attempts(Some("refused"), true, 10).unwrap();
    assert_eq!(r[0].error.as_deref(), Some("connection_refused"));
    let w = store.webhook("offline").unwrap().unwrap();
    assert!(w.deactivated_at.is_none());
    assert_eq!(w.consecutive_failures, 0);
    assert_eq!(w.phase, Phase::Offline);
    assert_eq!(w.last_failure, None, "offline is not an endpoint failure");
    let head = store
        .pending_head("offline")
        .unwrap()
        .expect("held, not failed");
    assert_eq!(head.attempts, 0);
    let l = store.attempts(Some("offline"), true, 1).unwrap();
    assert_eq!(l[0].error.as_deref(), Some("dns"));
    let states: Vec<State> = health::health(&store, &hooks, &s.path)
        .unwrap()
        .iter()
        .map(|h| h.state)
        .collect();
    assert_eq!(states, vec![State::DeactivatedProbing, State::Offline]);
}

#[test]
fn test_delivery_while_deactivated_changes_no_health() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(|_, _| Reply::ok());
    let hooks = vec![fast_webhook("a", &rx.url)];
    let s = storage(dir.path());
    let ob = open_outbox(&s, &hooks);
    let mut store = Store::open(&s.path).unwrap();
    store
        .apply_health(
            "a",
            &HealthChange {
                phase: Phase::Probing,
                consecutive_failures: 2,
                failure: Some("http_503".into()),
                deactivate: Some("2 consecutive failed deliveries".into()),
                ..HealthChange::default()
            },
        )
        .unwrap();
    let before = store.webhook("a").unwrap().unwrap();
    assert!(before.deactivated_at.is_some());
    let clock: enocean_agent::clock::ClockCheck = Arc::new(|| true);
    let r = webhook::send_test(&hooks[0], &store, gateway(), &clock).unwrap();
    assert_eq!(r.outcome, webhook::Outcome::Delivered);
    let after = store.webhook("a").unwrap().unwrap();
    assert_eq!(after, before);
    let body = rx.requests()[0].json();
    assert_eq!(body["event"], "test");
    assert_eq!(body["version"], "1.0");
    assert_eq!(body["records"][0]["sensor"]["eep"], "A5-04-01");
    let log = store.attempts(Some("a"), false, 1).unwrap();
    assert_eq!(log[0].trigger, Trigger::Test);
    drop(ob);
}

#[test]
fn routes_batches_and_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let rx_all = Receiver::start(|_, _| Reply::ok());
    let rx_one = Receiver::start(|_, _| Reply::ok());
    let mut all = fast_webhook("all", &rx_all.url);
    all.batch_max = 3;
    let mut one = fast_webhook("one", &rx_one.url);
    one.devices = Some(vec!["0180a3f2".into()]);
    let mut hooks = vec![all, one];
    for h in &mut hooks {
        h.validate(dir.path()).unwrap();
    }
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let mut a_ids = Vec::new();
    let mut all_ids = Vec::new();
    for i in 0..10 {
        let dev = if i % 2 == 0 { DEV } else { "01999999" };
        let t = telemetry(dev, i);
        if i % 2 == 0 {
            a_ids.push(t.id.clone());
        }
        all_ids.push(t.id.clone());
        ob.enqueue(t).unwrap();
    }
    let committed = ob.flush().unwrap();
    assert!(committed.windows(2).all(|w| w[0].seq < w[1].seq));
    let st = Store::open(&s.path)
        .unwrap()
        .status_routed(&s.path, &[("one".into(), vec![DEV.into()])])
        .unwrap();
    let depth = |n: &str| st.webhooks.iter().find(|w| w.name == n).unwrap().depth;
    assert_eq!((depth("all"), depth("one")), (10, 5));
    let sender = spawn(&hooks, &s, fast_options());
    assert!(wait_for(WAIT, || {
        rx_all
            .requests()
            .iter()
            .map(|r| record_ids(r).len())
            .sum::<usize>()
            == 10
            && rx_one.count() == 5
    }));
    sender.stop();
    let got_all: Vec<String> = rx_all.requests().iter().flat_map(record_ids).collect();
    assert_eq!(got_all, all_ids);
    assert!(rx_all.requests().iter().all(|r| record_ids(r).len() <= 3));
    let got_one: Vec<String> = rx_one.requests().iter().flat_map(record_ids).collect();
    assert_eq!(got_one, a_ids);
    let seqs: Vec<u64> = rx_all
        .requests()
        .iter()
        .flat_map(|r| {
            r.json()["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["seq"].as_u64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    // The last batch (one record) was partial: its end was stored before the POST.
    let w = Store::open(&s.path)
        .unwrap()
        .webhook("all")
        .unwrap()
        .unwrap();
    assert_eq!(w.batch_end, committed.last().unwrap().seq);
}

#[test]
fn standard_webhooks_held_until_clock_is_plausible() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(|_, _| Reply::ok());
    let mut hook = fast_webhook("sw", &rx.url);
    hook.signing = Some(webhook::config::SigningConfig::StandardWebhooks {
        secret: Some(enocean_agent::secret::Secret::new(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )),
        secret_file: None,
        previous_secret: None,
        previous_secret_file: None,
    });
    let hooks = vec![hook];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let synced = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicUsize::new(0));
    let (flag, counter) = (synced.clone(), checks.clone());
    let mut opts = fast_options();
    opts.clock = Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        flag.load(Ordering::SeqCst)
    });
    let sender = spawn(&hooks, &s, opts);
    ob.set_waker(sender.waker());
    enqueue_n(&mut ob, DEV, 2);
    // The sender asks the clock at every step before it looks for readings; a step that asked
    // after the readings were committed would, without the hold, have sent them right after.
    // Two such questions with nothing received: they were held.
    let after_commit = checks.load(Ordering::SeqCst);
    assert!(wait_for(WAIT, || checks.load(Ordering::SeqCst) >= after_commit + 2));
    assert_eq!(rx.count(), 0, "held while the clock is not synchronised");
    synced.store(true, Ordering::SeqCst);
    assert!(wait_for(WAIT, || rx.count() == 2));
    sender.stop();
    let r = &rx.requests()[0];
    assert!(r.header("webhook-signature").unwrap().starts_with("v1,"));
    assert_eq!(
        r.header("webhook-id").unwrap(),
        r.json()["id"].as_str().unwrap()
    );
}

/// Acknowledgements wait up to `ack_window` before they are written, and each keeps up to 2 KiB
/// of the reply: a drain faster than the window (one POST per reading after an outage) must
/// write them by count, or memory grows with the rate. The window here is an hour, so every
/// entry on disk before the end was written by count.
#[test]
fn a_fast_drain_writes_its_acknowledgements_by_count_before_the_window_ends() {
    use enocean_agent::webhook::sender::MAX_HELD_ACKS;
    let dir = tempfile::tempdir().unwrap();
    let reply = "r".repeat(2048);
    let rx = Receiver::start(move |_, _| Reply::ok().body(&reply));
    let hooks = vec![fast_webhook("a", &rx.url)];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let mut opts = fast_options();
    opts.ack_window = Duration::from_secs(3600);
    let sender = spawn(&hooks, &s, opts);
    ob.set_waker(sender.waker());
    let n = 2 * MAX_HELD_ACKS + 100;
    enqueue_n(&mut ob, DEV, n as u32);
    // The sender holds a delivery's acknowledgement before it sends the next POST: once the
    // receiver has the n-th, n - 1 are held or written, and fewer than MAX_HELD_ACKS held.
    assert!(wait_for(WAIT, || rx.log.lock().unwrap().len() >= n));
    let store = Store::open(&s.path).unwrap();
    let written = store.attempts(Some("a"), false, 2 * n).unwrap();
    assert!(
        written.len() >= n - MAX_HELD_ACKS,
        "{} of {n} acknowledgements written within an hour's window",
        written.len()
    );
    assert!(
        written
            .iter()
            .all(|l| l.outcome == Outcome::Delivered && l.response.len() == 2048)
    );
    sender.stop();
    // At the stop the rest is written.
    let all = store.attempts(Some("a"), false, 2 * n).unwrap();
    assert_eq!(all.len(), n, "every delivery acknowledged at the stop");
}

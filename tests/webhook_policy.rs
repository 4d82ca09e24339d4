//! Delivery policy end to end: a real outbox file, the real sender threads, a scripted receiver
//! on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use enocean_agent::outbox::Store;
use enocean_agent::webhook::{self, Sender, SenderOptions};

fn spawn(
    hooks: &[enocean_agent::webhook::WebhookConfig],
    s: &enocean_agent::outbox::StorageConfig,
    opts: SenderOptions,
) -> enocean_agent::webhook::SenderHandle {
    Sender::spawn(hooks, &s.path, opts, Arc::new(AtomicBool::new(false))).expect("spawn sender")
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
    let ids = enqueue_n(&mut ob, "0180A3F2", 1);
    let store = Store::open(&s.path).unwrap();
    assert!(wait_for(WAIT, || {
        store
            .attempts(Some("a"), false, 10)
            .unwrap()
            .iter()
            .any(|l| l.outcome == "delivered")
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
    assert_eq!(d.state, "delivered");
    assert_eq!(d.attempts, 3);
    assert_eq!(store.webhook("a").unwrap().unwrap().consecutive_failures, 0);
}

#[test]
fn always_500_fails_deactivates_keeps_backlog_and_drains_in_order_after_enable() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    let rx = Receiver::start(move |_, _| {
        if f.load(Ordering::SeqCst) {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    });
    let hooks = vec![fast_webhook("a", &rx.url)];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = spawn(&hooks, &s, fast_options());
    ob.set_waker(sender.waker());
    let first = enqueue_n(&mut ob, "0180A3F2", 5);
    let store = Store::open(&s.path).unwrap();
    assert!(wait_for(WAIT, || {
        store
            .webhook("a")
            .unwrap()
            .unwrap()
            .deactivated_at
            .is_some()
    }));
    // 5 deliveries × 3 attempts.
    assert_eq!(rx.count(), 15);
    let failed = store.failed(Some("a"), None).unwrap();
    assert_eq!(failed.len(), 5);
    assert!(failed.iter().all(|d| d.attempts == 3));
    assert_eq!(store.webhook("a").unwrap().unwrap().consecutive_failures, 5);
    // Telemetry keeps queueing while deactivated. An observation window, not a wait: a slow
    // machine can only make it miss a wrong send, never fail a right build.
    let backlog = enqueue_n(&mut ob, "0180A3F2", 4);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rx.count(), 15, "nothing sent while deactivated");
    let st = store.status(&s.path).unwrap();
    assert_eq!(st.webhooks[0].depth, 4);
    assert_eq!(st.webhooks[0].failed, 5);
    // The endpoint recovers; enable → the backlog drains in order.
    failing.store(false, Ordering::SeqCst);
    assert!(store.enable("a").unwrap());
    sender.wake();
    assert!(wait_for(WAIT, || rx.count() == 19));
    let got: Vec<String> = rx.requests()[15..].iter().flat_map(record_ids).collect();
    assert_eq!(got, backlog);
    // Manual resend of the failed ones: one attempt each, no health change.
    let clock: webhook::ClockCheck = Arc::new(|| true);
    for d in &failed {
        let r = webhook::resend(&hooks, &store, d.row, &clock).unwrap();
        assert_eq!(r.outcome, webhook::Outcome::Delivered);
    }
    assert!(store.failed(Some("a"), None).unwrap().is_empty());
    let resent: Vec<String> = rx.requests()[19..].iter().flat_map(record_ids).collect();
    assert_eq!(resent, first);
    sender.stop();
    let manual = store
        .attempts(Some("a"), false, 100)
        .unwrap()
        .into_iter()
        .filter(|l| l.trigger == "manual")
        .count();
    assert_eq!(manual, 5);
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
    enqueue_n(&mut ob, "0180A3F2", 1);
    assert!(wait_for(WAIT, || rx.count() == 2));
    sender.stop();
    // Backoff alone would retry after 5 ms; Retry-After asks for 2 s, counted from the answer,
    // which came after the first request arrived. A lower bound: a slow machine only adds to it.
    let reqs = rx.requests();
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
}

#[test]
fn gone_deactivates_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(|_, _| Reply::status(410));
    let hooks = vec![fast_webhook("a", &rx.url)];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = spawn(&hooks, &s, fast_options());
    ob.set_waker(sender.waker());
    enqueue_n(&mut ob, "0180A3F2", 3);
    let store = Store::open(&s.path).unwrap();
    assert!(wait_for(WAIT, || {
        store
            .webhook("a")
            .unwrap()
            .unwrap()
            .deactivated_at
            .is_some()
    }));
    // An observation window for a wrong second send (cannot fail a right build).
    std::thread::sleep(Duration::from_millis(100));
    sender.stop();
    assert_eq!(rx.count(), 1);
    let w = store.webhook("a").unwrap().unwrap();
    assert_eq!(w.deactivated_reason.as_deref(), Some("410 Gone"));
    assert_eq!(store.failed(None, None).unwrap().len(), 1);
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
    enqueue_n(&mut ob, "0180A3F2", 1);
    let store = Store::open(&s.path).unwrap();
    assert!(wait_for(WAIT, || store.failed(None, None).unwrap().len() == 1));
    sender.stop();
    assert!(rx.requests().iter().all(|r| r.path == "/hook"));
    assert_eq!(rx.count(), 3);
    let log = store.attempts(None, true, 10).unwrap();
    assert!(
        log.iter()
            .all(|l| l.status == Some(301) && l.error.as_deref() == Some("redirect"))
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
    enqueue_n(&mut ob, "0180A3F2", 1);
    let store = Store::open(&s.path).unwrap();
    assert!(wait_for(WAIT, || store.failed(None, None).unwrap().len() == 1));
    sender.stop();
    let log = store.attempts(None, true, 10).unwrap();
    assert_eq!(log[0].error.as_deref(), Some("timeout"));
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
    enqueue_n(&mut ob, "0180A3F2", 2);
    let store = Store::open(&s.path).unwrap();
    assert!(wait_for(WAIT, || {
        store
            .webhook("refused")
            .unwrap()
            .unwrap()
            .deactivated_at
            .is_some()
    }));
    assert!(wait_for(WAIT, || {
        store
            .attempts(Some("offline"), true, 10)
            .unwrap()
            .iter()
            .filter(|l| l.outcome == "offline")
            .count()
            >= 3
    }));
    sender.stop();
    let r = store.attempts(Some("refused"), true, 10).unwrap();
    assert_eq!(r[0].error.as_deref(), Some("connection_refused"));
    let w = store.webhook("offline").unwrap().unwrap();
    assert!(w.deactivated_at.is_none());
    assert_eq!(w.consecutive_failures, 0);
    let head = store
        .pending_head("offline")
        .unwrap()
        .expect("held, not failed");
    assert_eq!(head.attempts, 0);
    let l = store.attempts(Some("offline"), true, 1).unwrap();
    assert_eq!(l[0].error.as_deref(), Some("dns"));
}

#[test]
fn test_delivery_while_deactivated_changes_no_health() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(|_, _| Reply::ok());
    let hooks = vec![fast_webhook("a", &rx.url)];
    let s = storage(dir.path());
    let ob = open_outbox(&s, &hooks);
    let store = Store::open(&s.path).unwrap();
    store.record_failed_delivery("a", 2).unwrap();
    store.record_failed_delivery("a", 2).unwrap();
    let before = store.webhook("a").unwrap().unwrap();
    assert!(before.deactivated_at.is_some());
    let clock: webhook::ClockCheck = Arc::new(|| true);
    let r = webhook::send_test(&hooks[0], &store, gateway(), &clock).unwrap();
    assert_eq!(r.outcome, webhook::Outcome::Delivered);
    let after = store.webhook("a").unwrap().unwrap();
    assert_eq!(after.consecutive_failures, 2);
    assert!(after.deactivated_at.is_some());
    let body = rx.requests()[0].json();
    assert_eq!(body["event"], "test");
    assert_eq!(body["version"], "1.0");
    assert_eq!(body["records"][0]["sensor"]["eep"], "A5-04-01");
    let log = store.attempts(Some("a"), false, 1).unwrap();
    assert_eq!(log[0].trigger, "test");
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
        let dev = if i % 2 == 0 { "0180A3F2" } else { "01999999" };
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
        .status_routed(&s.path, &[("one".into(), vec!["0180A3F2".into()])])
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
    enqueue_n(&mut ob, "0180A3F2", 2);
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

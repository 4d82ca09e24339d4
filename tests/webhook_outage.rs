//! Issue 10, outcome 1, with the default policy (backoff 2 s, three attempts a round, five failed
//! deliveries deactivate, probes from 30 s up to 3 min): a receiver answering 503 for 60 s while
//! readings keep coming. With nobody touching the gateway, every reading arrives, the first
//! deliveries in seq order, within three minutes of the receiver's recovery. About 75 s long.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::*;
use enocean_agent::outbox::{Phase, Store};
use enocean_agent::webhook::{Sender, WebhookConfig};

#[test]
fn sixty_second_503_outage_drains_within_three_minutes_without_commands() {
    let dir = tempfile::tempdir().unwrap();
    let ep = Endpoint::start(503);
    // Everything at its default but the URL.
    let hooks = vec![WebhookConfig::new("backend", &ep.rx.url)];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = Sender::spawn(
        &hooks,
        &s.path,
        fast_options(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    ob.set_waker(sender.waker());
    let store = Store::open(&s.path).unwrap();
    let start = Instant::now();
    let mut ids = Vec::new();
    let mut deactivated_after = None;
    let mut n = 0;
    // Five readings a second for the 60 s of the outage (the pause paces the producer; it
    // synchronises nothing).
    while start.elapsed() < Duration::from_secs(60) {
        let t = telemetry("0180A3F2", n);
        n += 1;
        ids.push(t.id.clone());
        ob.enqueue(t).unwrap();
        ob.flush().unwrap();
        if deactivated_after.is_none()
            && store.webhook("backend").unwrap().unwrap().phase == Phase::Probing
        {
            deactivated_after = Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    ep.set(200);
    let recovered = Instant::now();
    let outage_requests = ep.count();
    assert!(
        wait_for(Duration::from_secs(180), || ep.first_accepted().len()
            == ids.len()),
        "{} of {} readings delivered three minutes after the recovery",
        ep.first_accepted().len(),
        ids.len()
    );
    let drained = recovered.elapsed();
    sender.stop();
    assert_eq!(ep.first_accepted(), ids, "first deliveries in seq order");
    let deactivated_after = deactivated_after.expect("deactivated during the outage");
    // During the outage only the head of the queue was tried: 5 rounds of 3, then probes.
    let during: Vec<_> = ep.answered().into_iter().take(outage_requests).collect();
    assert!(
        during
            .iter()
            .all(|(r, s)| *s == 503 && record_ids(r) == ids[..1])
    );
    assert!(outage_requests >= 15);
    let w = store.webhook("backend").unwrap().unwrap();
    assert_eq!((w.phase, w.consecutive_failures), (Phase::Active, 0));
    assert!(w.deactivated_at.is_none());
    assert!(store.failed(None, None).unwrap().is_empty());
    eprintln!(
        "{} readings; deactivated {:.1} s into the outage after {outage_requests} requests; \
         drained {:.1} s after the recovery",
        ids.len(),
        deactivated_after.as_secs_f64(),
        drained.as_secs_f64()
    );
}

//! The outbox on a real SQLite file: group commit, sequence numbers, persistence, bounds, a full
//! database, a corrupt file, pruning.

mod common;

use std::time::{Duration, Instant};

use common::*;
use enocean_agent::outbox::{Outbox, Overflow, Store};

#[test]
fn group_commit_reports_committed_records_and_seq_grows() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = storage(dir.path());
    s.commit_batch = 4;
    s.commit_window = Duration::from_secs(3600);
    let mut ob = Outbox::open(&s, &[]).unwrap();
    // Idle: nothing was committed within the window, so the first record goes at once.
    let first = telemetry("0180A3F2", 100);
    assert!(ob.enqueue(first.clone()).unwrap().is_empty());
    let c0 = ob.poll(Instant::now()).unwrap();
    assert_eq!(c0.len(), 1, "an idle outbox commits without waiting");
    assert_eq!(c0[0].id, first.id);
    // Busy: the next records wait for the window after that commit (or the batch size).
    let mut ids = Vec::new();
    for i in 0..3 {
        let t = telemetry("0180A3F2", i);
        ids.push(t.id.clone());
        assert!(ob.enqueue(t).unwrap().is_empty(), "group still open");
    }
    assert!(ob.commit_due().is_some());
    assert!(
        ob.poll(Instant::now()).unwrap().is_empty(),
        "window not over"
    );
    let t = telemetry("0180A3F2", 3);
    ids.push(t.id.clone());
    let c = ob.enqueue(t).unwrap();
    assert_eq!(c.len(), 4, "batch size reached: committed at once");
    assert_eq!(c.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), ids);
    assert!(c.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert!(ob.commit_due().is_none());
    // Window expiry commits a partial group.
    ob.enqueue(telemetry("0180A3F2", 9)).unwrap();
    let due = ob.commit_due().unwrap();
    let c2 = ob.poll(due).unwrap();
    assert_eq!(c2.len(), 1);
    assert!(c2[0].seq > c[3].seq);
    drop(ob);
    // Everything committed survives a reopen; seq continues.
    let store = Store::open(&s.path).unwrap();
    for id in &ids {
        assert!(store.has_telemetry(id).unwrap());
    }
    let mut ob = Outbox::open(&s, &[]).unwrap();
    ob.enqueue(telemetry("0180A3F2", 10)).unwrap();
    let c3 = ob.flush().unwrap();
    assert!(c3[0].seq > c2[0].seq);
}

#[test]
fn max_rows_drops_oldest_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = storage(dir.path());
    s.max_rows = 10;
    let hook = fast_webhook("w", "http://127.0.0.1:9/");
    let mut ob = open_outbox(&s, &[hook]);
    let ids = enqueue_n(&mut ob, "0180A3F2", 25);
    assert_eq!(ob.size().0, 10);
    let store = Store::open(&s.path).unwrap();
    assert!(!store.has_telemetry(&ids[0]).unwrap());
    assert!(store.has_telemetry(&ids[24]).unwrap());
    assert_eq!(store.counter("dropped").unwrap(), 15);
    let st = store.status(&s.path).unwrap();
    assert_eq!(st.rows, 10);
    assert_eq!(st.webhooks[0].depth, 10);
}

#[test]
fn drop_newest_policy_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = storage(dir.path());
    s.max_rows = 5;
    s.overflow = Overflow::DropNewest;
    s.commit_batch = 5;
    let mut ob = Outbox::open(&s, &["w"]).unwrap();
    let first = enqueue_n(&mut ob, "0180A3F2", 5);
    let err = ob
        .enqueue(telemetry("0180A3F2", 1))
        .and_then(|_| ob.flush());
    assert!(err.is_err());
    let store = Store::open(&s.path).unwrap();
    assert!(store.has_telemetry(&first[0]).unwrap());
    assert_eq!(ob.size().0, 5);
}

#[test]
fn full_database_is_survived_by_dropping_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let mut ob = Outbox::open(&s, &["w"]).unwrap();
    // Enough pages for the schema and a little telemetry.
    let pages: i64 = {
        let store = Store::open(&s.path).unwrap();
        drop(store);
        40
    };
    ob.set_page_limit(pages as u64).unwrap();
    let mut committed = Vec::new();
    let mut errors = 0;
    for round in 0..40 {
        for i in 0..20 {
            ob.enqueue(telemetry("0180A3F2", round * 20 + i))
                .unwrap_or_default();
        }
        match ob.flush() {
            Ok(c) => committed.extend(c),
            Err(e) => {
                assert!(e.is_disk_full(), "{e}");
                errors += 1;
            }
        }
    }
    let store = Store::open(&s.path).unwrap();
    assert!(store.counter("disk_full").unwrap() > 0, "the limit was hit");
    assert!(store.counter("dropped").unwrap() > 0, "oldest dropped");
    // The newest committed records are there; the agent kept running.
    let last = committed
        .last()
        .expect("commits went on after the disk filled");
    assert!(store.has_telemetry(&last.id).unwrap());
    assert!(errors < 40);
}

#[test]
fn corrupt_file_is_moved_aside_and_a_fresh_one_created() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    std::fs::write(&s.path, vec![0x42u8; 8192]).unwrap();
    let mut ob = Outbox::open(&s, &["w"]).unwrap();
    let moved = ob.recovered_from().expect("moved aside").to_path_buf();
    assert!(
        moved
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("outbox.db.corrupt-")
    );
    assert_eq!(std::fs::read(&moved).unwrap(), vec![0x42u8; 8192]);
    let c = enqueue_n(&mut ob, "0180A3F2", 3);
    drop(ob);
    let store = Store::open(&s.path).unwrap();
    assert!(store.has_telemetry(&c[2]).unwrap());
    assert_eq!(store.counter("corrupt_recovered").unwrap(), 1);
}

#[test]
fn damaged_pages_are_detected_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    {
        let mut ob = Outbox::open(&s, &["w"]).unwrap();
        enqueue_n(&mut ob, "0180A3F2", 200);
    }
    // Checkpointed and closed; now scribble over the middle of the file.
    let mut bytes = std::fs::read(&s.path).unwrap();
    assert!(bytes.len() > 3 * 4096);
    for b in &mut bytes[4096 + 100..3 * 4096] {
        *b = 0xA5;
    }
    std::fs::write(&s.path, &bytes).unwrap();
    let ob = Outbox::open(&s, &["w"]).unwrap();
    assert!(ob.recovered_from().is_some());
}

#[test]
fn delivered_telemetry_and_log_are_pruned_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = storage(dir.path());
    s.delivered_retention = Duration::ZERO;
    s.log_max_rows = 2;
    let mut ob = Outbox::open(&s, &["w"]).unwrap();
    let ids = enqueue_n(&mut ob, "0180A3F2", 5);
    let mut store = Store::open(&s.path).unwrap();
    // The webhook has taken the first three.
    let st = store.webhook("w").unwrap().unwrap();
    let log: Vec<_> = (0..4)
        .map(|i| enocean_agent::outbox::LogEntry {
            id: 0,
            at: format!("{:.3}", jiff::Timestamp::now()),
            webhook: "w".into(),
            delivery_id: format!("d{i}"),
            delivery_row: None,
            seq_first: None,
            seq_last: None,
            trigger: "auto".into(),
            outcome: "delivered".into(),
            status: Some(200),
            error: None,
            latency_ms: 1,
            response: String::new(),
        })
        .collect();
    store.commit_acks("w", st.cursor + 3, &log).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let p = ob.maintain().unwrap();
    assert_eq!(p.telemetry, 3);
    assert_eq!(p.log, 2);
    assert!(!store.has_telemetry(&ids[2]).unwrap());
    assert!(store.has_telemetry(&ids[3]).unwrap(), "undelivered kept");
    assert_eq!(ob.size().0, 2);
}

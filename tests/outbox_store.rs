//! The outbox on a real SQLite file: group commit, sequence numbers, persistence, bounds, a full
//! database, a corrupt file, pruning.

mod common;

use std::time::{Duration, Instant};

use common::*;
use enocean_agent::outbox::record::StoredRecord;
use enocean_agent::outbox::{
    DeliveryChange, DeliveryState, HealthChange, LogEntry, NewDelivery, Outbox, Outcome, Overflow,
    Phase, Store, Trigger, UnixMs, UnknownValue,
};

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
    // Enough pages for the schema and a little telemetry (160 KiB).
    let pages: i64 = {
        let store = Store::open(&s.path).unwrap();
        drop(store);
        160 * 1024 / i64::from(enocean_agent::outbox::schema::PAGE_SIZE)
    };
    ob.set_page_limit(pages as u64).unwrap();
    let mut committed = Vec::new();
    let mut errors = 0;
    // Enough rounds to fill it with bodies as small as they are stored now (about 60 bytes each).
    for round in 0..80 {
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
    assert!(errors < 80);
}

#[test]
fn corrupt_file_is_moved_aside_and_a_fresh_one_created() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    std::fs::write(&s.path, vec![0x42u8; 8192]).unwrap();
    let mut ob = Outbox::open(&s, &["w"]).unwrap();
    let moved = ob.recovered_from().expect("moved aside").to_path_buf();
    let name = moved.file_name().unwrap().to_string_lossy().into_owned();
    // outbox.db.corrupt-YYYYMMDDTHHMMSSZ (UTC, to the second)
    let stamp = name
        .strip_prefix("outbox.db.corrupt-")
        .expect("named as moved aside");
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "99999999T999999Z", "{name}");
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
            at: UnixMs::now(),
            webhook: "w".into(),
            delivery_id: format!("d{i}"),
            delivery_row: None,
            seq_first: None,
            seq_last: None,
            trigger: Trigger::Auto,
            outcome: Outcome::Delivered,
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

/// Every state, trigger, outcome and phase is stored as the name or code older files hold, reads
/// back as the same variant, and a value no variant has is an error naming it, never a guess.
#[test]
fn stored_states_round_trip_and_unknown_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let mut ob = Outbox::open(&s, &["w"]).unwrap();
    enqueue_n(&mut ob, "0180A3F2", 3);
    let mut store = Store::open(&s.path).unwrap();
    let records = [telemetry("0180A3F2", 1)];
    let entry = |trigger, outcome| LogEntry {
        id: 0,
        at: UnixMs::now(),
        webhook: "w".into(),
        delivery_id: uuid::Uuid::now_v7().to_string(),
        delivery_row: None,
        seq_first: Some(1),
        seq_last: Some(1),
        trigger,
        outcome,
        status: None,
        error: None,
        latency_ms: 3,
        response: String::new(),
    };
    // Deliveries in each state, with the stored text.
    let states = [
        (DeliveryState::Pending, "pending"),
        (DeliveryState::Delivered, "delivered"),
        (DeliveryState::Failed, "failed"),
    ];
    let stored: Vec<StoredRecord> = records.iter().cloned().map(StoredRecord::parsed).collect();
    let mut rows = Vec::new();
    for (state, _) in states {
        let change = DeliveryChange {
            state,
            attempts: 1,
            status: Some(503),
            error: Some("http_503".into()),
            requeue: None,
        };
        let row = store
            .record_first_attempt(
                0,
                &[],
                NewDelivery {
                    webhook: "w",
                    uuid: &uuid::Uuid::now_v7().to_string(),
                    event: "telemetry",
                    records: &stored,
                    body: b"{}",
                    first_attempt: &change,
                },
                &entry(Trigger::Auto, Outcome::Failed),
                &HealthChange::default(),
            )
            .unwrap();
        rows.push(row);
    }
    let raw = rusqlite::Connection::open(&s.path).unwrap();
    for (row, (state, name)) in rows.iter().zip(states) {
        assert_eq!(store.delivery(*row).unwrap().unwrap().state, state);
        let stored: String = raw
            .query_row("SELECT state FROM delivery WHERE id = ?1", [row], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, name);
        assert_eq!(state.to_string(), name);
    }
    // Every trigger and outcome, with the stored codes.
    let triggers = [(Trigger::Auto, 0), (Trigger::Manual, 1), (Trigger::Test, 2)];
    let outcomes = [
        (Outcome::Delivered, 0),
        (Outcome::Failed, 1),
        (Outcome::Gone, 2),
        (Outcome::Offline, 3),
        (Outcome::Rejected, 4),
    ];
    raw.execute("DELETE FROM attempt_log", []).unwrap();
    for (t, _) in triggers {
        for (o, _) in outcomes {
            store.log_attempt(&entry(t, o)).unwrap();
        }
    }
    let mut read: Vec<(Trigger, Outcome)> = store
        .attempts(None, false, 100)
        .unwrap()
        .iter()
        .map(|l| (l.trigger, l.outcome))
        .collect();
    read.reverse();
    let written: Vec<(Trigger, Outcome)> = triggers
        .iter()
        .flat_map(|(t, _)| outcomes.iter().map(move |(o, _)| (*t, *o)))
        .collect();
    assert_eq!(read, written);
    let codes: Vec<(i64, i64)> = raw
        .prepare("SELECT trigger, outcome FROM attempt_log ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<(i64, i64)> = triggers
        .iter()
        .flat_map(|(_, tc)| outcomes.iter().map(move |(_, oc)| (*tc, *oc)))
        .collect();
    assert_eq!(codes, expected);
    let failed_only = store.attempts(None, true, 100).unwrap();
    assert_eq!(failed_only.len(), 3 * 4, "every outcome but delivered");
    assert!(failed_only.iter().all(|l| l.outcome != Outcome::Delivered));
    // Every phase.
    for (phase, name) in [
        (Phase::Active, "active"),
        (Phase::Retrying, "retrying"),
        (Phase::Offline, "offline"),
        (Phase::Probing, "probing"),
        (Phase::Gone, "gone"),
    ] {
        store
            .apply_health(
                "w",
                &HealthChange {
                    phase,
                    ..HealthChange::default()
                },
            )
            .unwrap();
        assert_eq!(store.webhook("w").unwrap().unwrap().phase, phase);
        let stored: String = raw
            .query_row("SELECT phase FROM webhook WHERE name = 'w'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, name);
    }
    // Values no variant has: typed errors that name the column and the value.
    raw.execute(
        "UPDATE delivery SET state = 'lost' WHERE id = ?1",
        [rows[0]],
    )
    .unwrap();
    let e = store.delivery(rows[0]).unwrap_err();
    assert_eq!(
        e.unknown_value(),
        Some(&UnknownValue {
            what: "delivery state",
            value: "\"lost\"".into()
        }),
        "{e}"
    );
    assert!(
        e.to_string().contains("unknown delivery state \"lost\""),
        "{e}"
    );
    raw.execute(
        "UPDATE attempt_log SET outcome = 9 WHERE id = (SELECT max(id) FROM attempt_log)",
        [],
    )
    .unwrap();
    let e = store.attempts(None, false, 100).unwrap_err();
    assert_eq!(
        e.unknown_value(),
        Some(&UnknownValue {
            what: "attempt outcome",
            value: "9".into()
        }),
        "{e}"
    );
    raw.execute("UPDATE attempt_log SET trigger = -1, outcome = 0", [])
        .unwrap();
    let e = store.attempts(None, false, 1).unwrap_err();
    assert_eq!(e.unknown_value().map(|u| u.what), Some("attempt trigger"));
    raw.execute("UPDATE webhook SET phase = 'asleep'", [])
        .unwrap();
    let e = store.webhook("w").unwrap_err();
    assert_eq!(
        e.unknown_value(),
        Some(&UnknownValue {
            what: "webhook phase",
            value: "\"asleep\"".into()
        }),
        "{e}"
    );
}

/// Readings are stored compressed (src/outbox/body.rs); rows an older version wrote as JSON text
/// stay in place and read back the same, in order with the new ones; a damaged body is listed as
/// unreadable instead of stopping the senders.
#[test]
fn stored_bodies_are_compact_and_older_text_rows_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let mut ob = Outbox::open(&s, &[]).unwrap();
    // A row as versions before the compressed bodies wrote it: the JSON text itself.
    let old = telemetry("0180A3F2", 1);
    let old_json = serde_json::to_string(&old).unwrap();
    {
        let c = rusqlite::Connection::open(&s.path).unwrap();
        c.execute(
            "INSERT INTO telemetry (id, device, committed_at, body) VALUES (?1, ?2, 0, ?3)",
            rusqlite::params![old.id, old.sensor.id, old_json],
        )
        .unwrap();
    }
    let new = telemetry("0180A3F3", 2);
    ob.enqueue(new.clone()).unwrap();
    ob.flush().unwrap();
    drop(ob);
    let c = rusqlite::Connection::open(&s.path).unwrap();
    let (kind, len, format, id_len): (String, i64, i64, i64) = c
        .query_row(
            "SELECT typeof(body), length(body), unicode(CAST(substr(body, 1, 1) AS TEXT)), \
             length(id) FROM telemetry WHERE id = ?1",
            [enocean_agent::outbox::id_value(&new.id)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let new_json = serde_json::to_string(&new).unwrap();
    assert_eq!(kind, "blob");
    assert_eq!(
        format, 3,
        "compressed without the id, which the row holds, its time kept in binary"
    );
    assert_eq!(id_len, 16, "the id as its 16 bytes");
    assert!(
        (len as usize) * 3 < new_json.len(),
        "{len} bytes stored for {} bytes of JSON",
        new_json.len()
    );
    let store = Store::open(&s.path).unwrap();
    let rows = store.telemetry_after(0, 10).unwrap();
    assert_eq!(rows.len(), 2);
    let (a, b) = (rows[0].2.clone().unwrap(), rows[1].2.clone().unwrap());
    assert_eq!(
        (a.id.as_str(), b.id.as_str()),
        (old.id.as_str(), new.id.as_str())
    );
    // What a sender renders from them is what was committed, byte for byte.
    let mut a0 = old.clone();
    a0.seq = a.seq;
    let mut b0 = new.clone();
    b0.seq = b.seq;
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&a0).unwrap()
    );
    assert_eq!(
        serde_json::to_string(&b).unwrap(),
        serde_json::to_string(&b0).unwrap()
    );
    // A damaged compressed body: listed unreadable, the others still come.
    c.execute(
        "UPDATE telemetry SET body = x'02FFFFFF00DEAD' WHERE id = ?1",
        [enocean_agent::outbox::id_value(&new.id)],
    )
    .unwrap();
    let rows = store.telemetry_after(0, 10).unwrap();
    assert!(rows[0].2.is_some() && rows[1].2.is_none());
    let (n, list) = store.unreadable(10).unwrap();
    assert_eq!(n, 1);
    assert!(list[0].2.contains("stored body"), "{:?}", list[0]);
}

/// Readings are committed without a flush each; the flush comes one `commit_window` after the
/// first unflushed commit, and is skipped only when every running output has come past the
/// readings (they are at the receivers). A stop always flushes.
#[test]
fn commits_are_flushed_within_a_window_unless_every_output_has_come_past_them() {
    use enocean_agent::outbox::{SyncCounts, Waker};
    let dir = tempfile::tempdir().unwrap();
    let mut s = storage(dir.path());
    s.commit_window = Duration::from_secs(5);
    // Each reading commits in `enqueue`, so the test decides what the outputs did before the
    // flush is due.
    s.commit_batch = 1;
    let mut ob = Outbox::open(&s, &[]).unwrap();
    let waker = Waker::new();
    waker.delivered().register("w", 0);
    ob.set_waker(waker.clone());

    // An output that has not come past the reading: flushed at the window's end, not before.
    let t0 = Instant::now();
    let c = ob.enqueue(telemetry("0180A3F2", 1)).unwrap();
    assert_eq!(c.len(), 1);
    let due = ob.sync_due().expect("a flush is due for the commit");
    assert!(due >= t0 + Duration::from_secs(5));
    ob.poll(due - Duration::from_millis(1)).unwrap();
    assert_eq!(
        ob.sync_counts(),
        SyncCounts::default(),
        "not before the window"
    );
    ob.poll(due).unwrap();
    assert_eq!(ob.sync_counts().flushed, 1);
    assert!(ob.sync_due().is_none());

    // Every output came past it (delivered): no flush needed.
    let c = ob.enqueue(telemetry("0180A3F2", 2)).unwrap();
    waker.delivered().advance("w", c[0].seq);
    ob.poll(ob.sync_due().unwrap()).unwrap();
    assert_eq!(ob.sync_counts().flushed, 1);
    assert_eq!(ob.sync_counts().skipped, 1);

    // A second output that lags keeps the flush.
    waker.delivered().register("slow", c[0].seq);
    let c = ob.enqueue(telemetry("0180A3F2", 3)).unwrap();
    waker.delivered().advance("w", c[0].seq);
    ob.poll(ob.sync_due().unwrap()).unwrap();
    assert_eq!(ob.sync_counts().flushed, 2);

    // A stop flushes whatever the outputs did.
    let c = ob.enqueue(telemetry("0180A3F2", 4)).unwrap();
    waker.delivered().advance("w", c[0].seq);
    waker.delivered().advance("slow", c[0].seq);
    ob.flush().unwrap();
    assert_eq!(ob.sync_counts().flushed, 3);
    assert!(ob.sync_due().is_none());
}

/// Without any running output nothing ever leaves the outbox: every commit is flushed.
#[test]
fn without_outputs_every_window_is_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let mut ob = Outbox::open(&s, &[]).unwrap();
    ob.enqueue(telemetry("0180A3F2", 1)).unwrap();
    ob.poll(Instant::now()).unwrap();
    ob.poll(ob.sync_due().unwrap()).unwrap();
    assert_eq!(ob.sync_counts().flushed, 1);
    assert_eq!(ob.sync_counts().skipped, 0);
}

/// Seqs without SQLite's AUTOINCREMENT (one page less per commit): a new file's telemetry table
/// has none, and a seq is never handed out twice — not after the newest readings were delivered
/// and deleted and the outbox reopened, not when `outbox salvage` imports readings while the
/// daemon's outbox is open (they come after every reading committed before, the daemon's next
/// ones after them, even once the imported rows are gone).
#[test]
fn seqs_are_never_reused_without_autoincrement_even_beside_a_salvage() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let mut ob = Outbox::open(&s, &[]).unwrap();
    let raw = rusqlite::Connection::open(&s.path).unwrap();
    let sql: String = raw
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'telemetry'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!sql.contains("AUTOINCREMENT"), "{sql}");

    let commit = |ob: &mut Outbox, n: u32| -> u64 {
        ob.enqueue(telemetry("0180A3F2", n)).unwrap();
        ob.flush().unwrap().last().unwrap().seq
    };
    let mut seen = vec![commit(&mut ob, 1), commit(&mut ob, 2)];
    drop(ob);
    raw.execute("DELETE FROM telemetry", []).unwrap();
    let mut ob = Outbox::open(&s, &[]).unwrap();
    seen.push(commit(&mut ob, 3));

    // A file moved aside with three readings, salvaged while `ob` is open.
    let old = dir.path().join("old.db");
    {
        let mut s2 = storage(dir.path());
        s2.path = old.clone();
        let mut other = Outbox::open(&s2, &[]).unwrap();
        for n in 10..13 {
            other.enqueue(telemetry("0180A3F3", n)).unwrap();
        }
        other.flush().unwrap();
    }
    let mut cli = Store::open(&s.path).unwrap();
    assert_eq!(cli.salvage(&old).unwrap().imported, 3);
    let salvaged: Vec<u64> = raw
        .prepare("SELECT seq FROM telemetry WHERE device = '0180A3F3' ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get::<_, i64>(0).map(|v| v as u64))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    seen.extend(&salvaged);
    // The imported rows are delivered and deleted before the daemon commits again.
    raw.execute("DELETE FROM telemetry", []).unwrap();
    seen.push(commit(&mut ob, 4));
    drop(ob);
    let mut ob = Outbox::open(&s, &[]).unwrap();
    seen.push(commit(&mut ob, 5));
    assert!(
        seen.windows(2).all(|w| w[1] > w[0]),
        "seqs in commit order, none twice: {seen:?}"
    );
}

/// The records the storage thread remembers for the senders (`record::Recent`) spare a sender
/// the parse of a row it remembers, never the row itself: a row dropped after its commit is
/// not read back, a row changed on the disk is read as it is now (or listed unreadable), and
/// what is read is the same record a sender without the memory reads.
#[test]
fn remembered_records_never_outlive_or_overrule_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (s, mut ob, waker) = outbox_with_waker(dir.path());
    // Nobody reads heads yet (no webhook, or only template ones): nothing is remembered.
    ob.enqueue(telemetry("0180A3F2", 19)).unwrap();
    ob.flush().unwrap();
    assert!(!waker.recent().wanted());
    assert_eq!(waker.recent().len(), 0, "remembered with no reader");
    // Two webhooks read heads: a record stays remembered when one of them takes it.
    waker.recent().want();
    waker.recent().want();
    let readings: Vec<_> = (0..5).map(|k| telemetry("0180A3F2", 20 + k)).collect();
    for t in &readings {
        ob.enqueue(t.clone()).unwrap();
    }
    ob.flush().unwrap();
    let store = Store::open(&s.path).unwrap();
    // The reading committed before a reader wanted heads is not among those looked at.
    let first = store.records_after(0, 1, false, None).unwrap()[0].0;
    // A read returns at most `limit` rows (five are there), the oldest first.
    let two = store.records_after(0, 2, false, None).unwrap();
    assert_eq!(
        two.iter().map(|r| r.0).collect::<Vec<_>>(),
        [first, first + 1]
    );
    assert_eq!(store.telemetry_after(0, 3).unwrap().len(), 3);
    let read = |recent| sender_reads(&store, first, recent);
    assert_eq!(
        waker.recent().len(),
        5,
        "every committed reading remembered"
    );
    let with = read(Some(waker.recent()));
    assert_eq!(
        waker.recent().hits(),
        5,
        "every row read through its remembered head"
    );
    assert_eq!(with.len(), 5);
    assert_eq!(
        with,
        read(None),
        "the same records with and without the memory"
    );
    for ((_, r), t) in with.iter().zip(&readings) {
        let (id, _, json) = r.as_ref().unwrap();
        assert_eq!(id, &t.id);
        let mut t = t.clone();
        t.seq = serde_json::from_str::<serde_json::Value>(json).unwrap()["seq"]
            .as_u64()
            .unwrap();
        assert_eq!(json, &serde_json::to_string(&t).unwrap());
    }
    let seqs: Vec<u64> = with.iter().map(|(seq, _)| *seq).collect();
    let c = rusqlite::Connection::open(&s.path).unwrap();
    // Dropped after its commit (the outbox's bounds, an operator): not read back.
    c.execute("DELETE FROM telemetry WHERE seq = ?1", [seqs[1] as i64])
        .unwrap();
    // Changed on the disk: another reading's body, and a damaged one.
    let other = telemetry("0BADBEEF", 99);
    let body = enocean_agent::outbox::body::encode_record(
        &serde_json::to_string(&other).unwrap(),
        &readings[2].id,
    );
    c.execute(
        "UPDATE telemetry SET body = ?1 WHERE seq = ?2",
        rusqlite::params![body, seqs[2] as i64],
    )
    .unwrap();
    c.execute(
        "UPDATE telemetry SET body = x'02FFFFFF00DEAD' WHERE seq = ?1",
        [seqs[3] as i64],
    )
    .unwrap();
    // The same body under another reading id: read as the row is now.
    let new_id = uuid::Uuid::from_u128(0x5c2a_9a1e_0000_4000_8000_0000_0000_0001);
    c.execute(
        "UPDATE telemetry SET id = ?1 WHERE seq = ?2",
        rusqlite::params![&new_id.as_bytes()[..], seqs[4] as i64],
    )
    .unwrap();
    let after = read(Some(waker.recent()));
    assert_eq!(waker.recent().hits(), 6, "only the untouched row");
    assert_eq!(after, read(None));
    assert_eq!(
        after.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        vec![seqs[0], seqs[2], seqs[3], seqs[4]]
    );
    assert_eq!(after[0], with[0], "the untouched row");
    let (_, sensor, _) = after[1].1.as_ref().unwrap();
    assert_eq!(sensor, "0BADBEEF", "read as the row is now");
    assert!(after[2].1.is_none(), "unreadable, as without the memory");
    let (id, _, json) = after[3].1.as_ref().unwrap();
    assert_eq!(
        id,
        &new_id.to_string(),
        "the row's id, not the remembered one"
    );
    assert!(json.contains(&new_id.to_string()));
}

/// An outbox in `dir` that tells a [`Waker`] of its commits, as the daemon's storage thread does.
fn outbox_with_waker(
    dir: &std::path::Path,
) -> (
    enocean_agent::outbox::StorageConfig,
    Outbox,
    enocean_agent::outbox::Waker,
) {
    let s = storage(dir);
    let mut ob = Outbox::open(&s, &[]).unwrap();
    let waker = enocean_agent::outbox::Waker::new();
    ob.set_waker(waker.clone());
    (s, ob, waker)
}

/// The rows after `cursor` as a webhook sender reads them (through `recent` when given): each
/// seq with, for a readable row, the record's id, sensor and JSON text.
#[allow(clippy::type_complexity)] // a test's plain tuple
fn sender_reads(
    store: &Store,
    cursor: u64,
    recent: Option<&enocean_agent::outbox::record::Recent>,
) -> Vec<(u64, Option<(String, String, String)>)> {
    let text = |r: &StoredRecord| {
        let mut out = Vec::new();
        r.write_json(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    store
        .records_after(cursor, 10, false, recent)
        .unwrap()
        .into_iter()
        .map(|(seq, r)| (seq, r.map(|r| (r.id.clone(), r.sensor.clone(), text(&r)))))
        .collect()
}

/// With one webhook reading heads (the common gateway) a remembered record is handed over, not
/// copied: the first read of its row takes it, a second read of the same row (a retry after a
/// failed POST, say) decodes the row — and both are the same record.
#[test]
fn a_single_reader_takes_each_remembered_record_once_and_reads_it_again_from_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let (s, mut ob, waker) = outbox_with_waker(dir.path());
    waker.recent().want();
    for k in 0..3 {
        ob.enqueue(telemetry("0180A3F2", 30 + k)).unwrap();
    }
    ob.flush().unwrap();
    let store = Store::open(&s.path).unwrap();
    let read = |recent| sender_reads(&store, 0, recent);
    let first = read(Some(waker.recent()));
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|(_, r)| r.is_some()), "{first:?}");
    let hits = || waker.recent().hits();
    assert_eq!(hits(), 3, "every row read through its remembered record");
    let again = read(Some(waker.recent()));
    assert_eq!(hits(), 3, "handed over: the second read decodes the rows");
    assert_eq!(first, again);
    assert_eq!(first, read(None));
}

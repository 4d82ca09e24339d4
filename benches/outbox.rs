//! Outbox and delivery throughput: enqueue rate with group commit, drain rate to a loopback
//! receiver (one telemetry per POST and batches of 100), and bytes written to disk per telegram
//! at default settings (from `/proc/self/io`).
//!
//! Run: `cargo bench --bench outbox` (set `OUTBOX_BENCH_N` to change the sizes' base).
//! Goals (issue 4): ≥ 2 000/s unbatched, ≥ 20 000/s batched, ≤ 1.5 KB written per telegram.
//!
//! Also the CPU per record of the stored body (criterion, `cargo bench --bench outbox -- record`):
//! `record/encode` is `body::encode_record` of one reading of the simulated building (its JSON
//! text as committed), `record/serialize_encode` the same from the `Telemetry` (what a commit
//! does per reading), `record/decode` is `body::decode_record` of a stored body (what a sender
//! does per row before parsing the JSON). A filter other than `throughput` skips the
//! enqueue/drain runs; `-- throughput` runs only those.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use enocean_agent::outbox::{Outbox, StorageConfig, Store, body};
use enocean_agent::telemetry::{Gateway, Telemetry};
use enocean_agent::webhook::render::sample_telemetry;
use enocean_agent::webhook::{Sender, SenderOptions, WebhookConfig};

/// A realistic temperature + humidity reading (the DESIGN example's size): the sample that test
/// deliveries send, with a sensor id per device and a room tag.
fn telemetry(n: u32) -> Telemetry {
    let gateway = Gateway {
        id: "lobby-pi".into(),
        base_id: Some("FF8A1200".into()),
    };
    let mut t = sample_telemetry(gateway, jiff::Timestamp::now());
    t.id = uuid::Uuid::now_v7().to_string();
    t.sensor.id = format!("0180A3{:02X}", n % 16);
    t.sensor.name = Some("Office 2.14".into());
    t.sensor.tags = BTreeMap::from([("room".to_owned(), "2.14".to_owned())]).into();
    t
}

fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| {
                    l.strip_prefix("write_bytes: ")
                        .map(|v| v.trim().parse().ok())
                })
                .flatten()
        })
        .unwrap_or(0)
}

/// A loopback receiver answering 200 to everything; counts records received.
fn receiver() -> (String, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
    let port = server.server_addr().to_ip().expect("ip").port();
    let records = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..2 {
        let (srv, rec, st) = (server.clone(), records.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok(Some(mut req)) = srv.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let mut body = Vec::new();
                let _ = std::io::Read::read_to_end(req.as_reader(), &mut body);
                // Count records without a full parse: one `"seq":` per record.
                let n = body.windows(6).filter(|w| w == b"\"seq\":").count();
                rec.fetch_add(n, Ordering::SeqCst);
                let _ = req.respond(tiny_http::Response::empty(200));
            }
        });
    }
    (format!("http://127.0.0.1:{port}/bench"), records, stop)
}

fn bench_dir(name: &str) -> tempfile::TempDir {
    // On the real disk (not tmpfs) so /proc/self/io sees the writes.
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-outbox");
    std::fs::create_dir_all(&base).expect("bench dir");
    tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(base)
        .expect("tempdir")
}

fn enqueue_rate(n: u32) {
    let dir = bench_dir("enqueue");
    let cfg = StorageConfig::at(dir.path().join("outbox.db"));
    let mut ob = Outbox::open(&cfg, &["w"]).expect("open");
    let items: Vec<Telemetry> = (0..n).map(telemetry).collect();
    let w0 = write_bytes();
    let start = Instant::now();
    let mut committed = 0usize;
    for t in items {
        committed += ob.enqueue(t).expect("enqueue").len();
    }
    committed += ob.flush().expect("flush").len();
    let secs = start.elapsed().as_secs_f64();
    let written = write_bytes() - w0;
    println!(
        "enqueue (group commit, batch {}): {n} telemetry in {secs:.3} s = {:.0}/s committed; {:.0} bytes written per telegram (enqueue only)",
        cfg.commit_batch,
        committed as f64 / secs,
        written as f64 / f64::from(n)
    );
}

/// Enqueues `n` at default storage settings, then measures draining them to a loopback receiver
/// with `batch_max`; reports rate and bytes written per telegram (enqueue + delivery).
fn drain_rate(n: u32, batch_max: usize) {
    let dir = bench_dir("drain");
    let cfg = StorageConfig::at(dir.path().join("outbox.db"));
    let (url, records, stop) = receiver();
    let mut hook = WebhookConfig::new("bench", &url);
    hook.batch_max = batch_max;
    let hooks = vec![hook];
    let w0 = write_bytes();
    let mut ob = Outbox::open(&cfg, &["bench"]).expect("open");
    for i in 0..n {
        ob.enqueue(telemetry(i)).expect("enqueue");
    }
    ob.flush().expect("flush");
    let opts = SenderOptions {
        clock: Arc::new(|| true),
        ..SenderOptions::default()
    };
    let start = Instant::now();
    let sender =
        Sender::spawn(&hooks, &cfg.path, opts, Arc::new(AtomicBool::new(false))).expect("sender");
    let limit = Duration::from_secs(120);
    while records.load(Ordering::SeqCst) < n as usize && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = start.elapsed().as_secs_f64();
    sender.stop();
    drop(ob);
    let written = write_bytes() - w0;
    stop.store(true, Ordering::Relaxed);
    let got = records.load(Ordering::SeqCst);
    let store = Store::open(&cfg.path).expect("store");
    let st = store.status(&cfg.path).expect("status");
    println!(
        "drain batch_max={batch_max}: {got}/{n} telemetry delivered in {secs:.3} s = {:.0}/s; \
         {:.0} bytes written per telegram (enqueue + delivery + acks, default settings); backlog left {}",
        got as f64 / secs,
        written as f64 / f64::from(n),
        st.webhooks.first().map_or(0, |w| w.depth)
    );
}

/// Readings as the agent commits them ([`enocean_agent::sim::sample_readings`]: the simulated
/// building's telegrams decoded with the built-in profiles, the installer's names, a
/// synchronised clock), 2 000 a second from now.
#[cfg(feature = "sim")]
fn building(n: usize) -> Vec<Telemetry> {
    let step = jiff::SignedDuration::from_micros(500);
    enocean_agent::sim::sample_readings(n, jiff::Timestamp::now(), step)
}

/// Without the simulator: the sample reading, one sensor id per device.
#[cfg(not(feature = "sim"))]
fn building(n: usize) -> Vec<Telemetry> {
    (0..n as u32).map(telemetry).collect()
}

/// Per-record CPU of the stored body: encode (from JSON text, and from `Telemetry` as a commit
/// does) and decode. One record per iteration, taken in turn from a thousand.
fn records(c: &mut Criterion) {
    let items = building(1_000);
    let texts: Vec<(String, String)> = items
        .iter()
        .map(|t| (t.id.clone(), serde_json::to_string(t).expect("json")))
        .collect();
    let stored: Vec<(String, Vec<u8>)> = texts
        .iter()
        .map(|(id, json)| (id.clone(), body::encode_record(json, id)))
        .collect();
    let bytes: usize = stored.iter().map(|s| s.1.len()).sum();
    let json: usize = texts.iter().map(|s| s.1.len()).sum();
    println!(
        "record: {} readings, {:.1} bytes of JSON and {:.1} bytes stored per reading",
        texts.len(),
        json as f64 / texts.len() as f64,
        bytes as f64 / texts.len() as f64
    );
    let mut group = c.benchmark_group("record");
    let mut k = 0;
    group.bench_function("encode", |b| {
        b.iter(|| {
            k = (k + 1) % texts.len();
            let (id, json) = &texts[k];
            body::encode_record(black_box(json), black_box(id))
        })
    });
    group.bench_function("serialize_encode", |b| {
        b.iter(|| {
            k = (k + 1) % items.len();
            let t = black_box(&items[k]);
            body::encode_record(&serde_json::to_string(t).expect("json"), &t.id)
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            k = (k + 1) % stored.len();
            let (id, blob) = &stored[k];
            body::decode_record(rusqlite::types::ValueRef::Blob(black_box(blob)), id)
                .expect("decode")
        })
    });
    group.finish();
}

fn main() {
    // A filter (`cargo bench --bench outbox -- record`) selects criterion's cases; the
    // enqueue/drain runs go with no filter or `throughput`.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let mut c = Criterion::default().configure_from_args();
    records(&mut c);
    c.final_summary();
    if !"throughput".contains(filter.as_str()) {
        return;
    }
    // `cargo test --benches` runs bench binaries with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let base: u32 = std::env::var("OUTBOX_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 500 } else { 20_000 });
    enqueue_rate(base * 5);
    drain_rate(base, 1);
    drain_rate(base * 5, 100);
}

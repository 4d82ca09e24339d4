//! Throughput of the whole serial path: simulated stick → pseudo-terminal → tokio-serial →
//! ESP3 decoder → `SerialEvent::Telegram`, with the simulator unthrottled (rate 0) and its usual
//! mix of repeated copies, noise and bad-CRC frames. Both sides share one current-thread tokio
//! runtime, as the agent does. Reports telegrams per second.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use enocean_agent::serial::{self, PortConfig, SerialEvent};
use enocean_agent::sim::{SimConfig, SimStick};
use tokio::sync::{mpsc, oneshot};

const TELEGRAMS: u64 = 20_000;

fn link(n: u64) -> PathBuf {
    std::env::temp_dir().join(format!("enocean-agent-bench-{}-{n}", std::process::id()))
}

/// One run: `TELEGRAMS` original telegrams (plus copies) from the sim through the runtime.
async fn run_once(n: u64) -> Duration {
    let path = link(n);
    let mut sim = SimStick::start(SimConfig {
        rate: 0.0,
        max_telegrams: Some(TELEGRAMS),
        link: Some(path.clone()),
        ..SimConfig::default()
    })
    .expect("sim");
    let config = PortConfig {
        dedup_window: Duration::ZERO,
        ..PortConfig::new(path)
    };
    let (tx, mut rx) = mpsc::channel(4096);
    let (stop, stopped) = oneshot::channel::<()>();
    let start = Instant::now();
    let agent = tokio::spawn(serial::run(config, tx, async move {
        let _ = stopped.await;
    }));
    let mut received = 0u64;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("bench stalled")
            .expect("runtime ended");
        if let SerialEvent::Telegram { .. } = ev {
            received += 1;
            let s = sim.stats();
            if s.finished && received >= s.telegrams + s.copies {
                break;
            }
        }
    }
    let elapsed = start.elapsed();
    let _ = stop.send(());
    let _ = agent.await;
    sim.wait_finished().await;
    sim.stop().await;
    elapsed
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("serial_sim");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(TELEGRAMS));
    let mut n = 0;
    group.bench_function("sim_pty_tokio_serial_decoder", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    total += run_once(n).await;
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

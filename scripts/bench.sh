#!/usr/bin/env bash
# Prints the whole bench table of issue 12 in one run (README, "Bench"):
#   bash scripts/bench.sh            all rows
#   BENCH_QUICK=1 bash scripts/bench.sh   shorter runs (rough figures)
# Instruction counts come from callgrind (valgrind), which counts the same on an idle and on a
# loaded machine; the end-to-end rows come from `sim` + `run` + a loopback receiver
# (examples/bench_table.rs; a receiver that answers on its connection's thread, or tiny_http
# with BENCH_RECEIVER=tiny_http), CPU from the agent's own utime+stime, writes from /proc/PID/io,
# memory from VmHWM. Temporary files go under target/bench-tmp (a real disk: write_bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=${BENCH_QUICK:-}
export BENCH_DIR=${BENCH_DIR:-$PWD/target/bench-tmp}
mkdir -p "$BENCH_DIR"
tmp=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cargo build --release --bins --example bench_table --example record_cost >&2
bin=target/release/enocean-agent
ex=target/release/examples/bench_table

echo "## enocean-agent bench, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml build.rs || echo +changes)"
echo "machine: $(nproc) cores, $(uname -m), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| figure | value | how |"
echo "|---|---|---|"

# decode: instructions per frame = (total(N) - total(0)) / N, so start-up is not counted;
# start-up alone = total(0).
n=2000
"$ex" capture 0 "$tmp/c0.esp3"
"$ex" capture "$n" "$tmp/cN.esp3"
instr() { # args: capture, extra decode args
  local out="$tmp/cg.out"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" decode "$@" >/dev/null 2>"$tmp/cg.err" || true
  grep -m1 '^summary:' "$out" | awk '{print $2}'
  rm -f "$out"
}
if command -v valgrind >/dev/null; then
  e0=$(instr "$tmp/c0.esp3" --eep A5-04-01); eN=$(instr "$tmp/cN.esp3" --eep A5-04-01)
  p0=$(instr "$tmp/c0.esp3"); pN=$(instr "$tmp/cN.esp3")
  echo "| \`decode --eep A5-04-01\` instructions per frame (JSON out) | $(( (eN - e0) / n )) ($(( (pN - p0) / n )) without \`--eep\`) | callgrind, (total($n frames) - total(0)) / $n, simulator capture |"
  echo "| \`decode --eep A5-04-01\` start-up instructions | $e0 | callgrind, empty capture |"
  # A stored reading's steps (examples/record_cost.rs): (total(mode, m) - total(none, m)) / m.
  cost() {
    valgrind --tool=callgrind --callgrind-out-file="$tmp/rc.out" target/release/examples/record_cost "$@" >/dev/null 2>&1 || true
    grep -m1 '^summary:' "$tmp/rc.out" | awk '{print $2}'
    rm -f "$tmp/rc.out"
  }
  m=5000; r0=$(cost none $m)
  for step in "json:a reading's JSON as a commit writes it" "serde:the same with serde_json" \
    "store:JSON and stored body (a commit before SQLite)" "read:a sender's read of a stored body" \
    "recent:the same through the remembered head, the remembering included"; do
    echo "| instructions per reading, \`${step%%:*}\`: ${step#*:} | $(( ($(cost "${step%%:*}" $m) - r0) / m )) | callgrind, examples/record_cost.rs, $m readings |"
  done
else
  echo "| decode instructions per frame | (valgrind not installed) | |"
fi

row() { # label, output line of bench_table e2e
  local line=$2
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $line"; }
  echo "| $1 | CPU $(get cpu_us) µs, write_bytes $(get write_bytes) B, wchar $(get wchar) B, peak RSS $(( $(get hwm_kib) / 1024 )).$(( $(get hwm_kib) % 1024 * 10 / 1024 )) MB | $(get delivered) telegrams over $(get secs) s |"
}
# 200/s runs 60 s: the WAL is checkpointed every 1 000 pages of 1 KiB, about every 20 s there, so a
# shorter span's bytes depend on whether a checkpoint falls in it (20-30 s: 440-513 B per
# telegram, 60 s: 519-523 B on the same build).
if [ -n "$quick" ]; then s200=10; s2000=5; slow=20; backlog=100000; bsecs=10
else s200=60; s2000=15; slow=60; backlog=1000000; bsecs=30; fi
w=$("$ex" wake)
wakes() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $w"; }
echo "| this machine: CPU charged per sleep and wake-up of a thread (no work) | $(wakes wake_20ms_us) µs after 20 ms, $(wakes wake_5ms_us) µs after 5 ms, $(wakes wake_1ms_us) µs after 1 ms | bench_table wake; every wake-up of the agent costs this besides its work |"
echo "| **per delivered telegram** (sim → run → loopback receiver, HMAC) | | |"
# The two rows with a CPU goal run BENCH_REPS times (default 3; CPU moves by ±15 % between runs
# on a VM): the row is the run with the median CPU, and the range of all runs follows it.
reps=${BENCH_REPS:-3}
median_row() { # label, then bench_table's arguments
  local label=$1 lines=() k
  shift
  for ((k = 0; k < reps; k++)); do lines+=("$("$ex" "$@")"); done
  local sorted
  sorted=$(printf '%s\n' "${lines[@]}" | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^cpu_us=/) {split($i, a, "="); print a[2], $0}}' | sort -n)
  local mid=$(( (reps + 1) / 2 ))
  row "$label (median CPU of $reps runs: $(head -1 <<<"$sorted" | cut -d' ' -f1)–$(tail -1 <<<"$sorted" | cut -d' ' -f1) µs)" \
    "$(sed -n "${mid}p" <<<"$sorted" | cut -d' ' -f2-)"
}
median_row "200/s, one POST per telegram" e2e 200 "$s200" 1
# The same with the receiver of the figures before 2026-12-06 (examples/bench_table.rs says why
# the receiver counts).
BENCH_RECEIVER=tiny_http median_row "200/s, one POST per telegram, tiny_http receiver" e2e 200 "$s200" 1
median_row "2 000/s, batched (batch_max 100)" e2e 2000 "$s2000" 100
row "2 000/s, one POST per telegram" "$("$ex" e2e 2000 "$s2000" 1)"
for r in 0.8 5 20; do
  row "$r/s, one POST per telegram" "$("$ex" e2e "$r" "$slow" 1)"
done
b=$("$ex" backlog "$backlog" "$bsecs")
hb=$(sed -n 's/.*hwm_kib=\([0-9]*\).*/\1/p' <<<"$b")
echo "| peak RSS with a $backlog-reading backlog | $(( hb / 1024 )).$(( hb % 1024 * 10 / 1024 )) MB | agent started on it, batch_max 100, ${bsecs} s: $(sed -n 's/.*delivered=\([0-9]*\).*/\1/p' <<<"$b") delivered |"

cp "$bin" "$tmp/agent" && strip "$tmp/agent"
echo "| stripped binary, $(uname -m) | $(stat -c %s "$tmp/agent") B | target/release (profile.release) |"
# The gateway build (no simulator, no MQTT client, no bundled roots), when it was built with
#   cargo build --release --locked --no-default-features --target T --target-dir target/gw
for t in armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu; do
  g=target/gw/$t/release/enocean-agent
  gnu=arm-linux-gnueabihf; [ "$t" = armv7-unknown-linux-gnueabihf ] || gnu=aarch64-linux-gnu
  if [ -f "$g" ] && command -v "$gnu-strip" >/dev/null; then
    cp "$g" "$tmp/gw-$t" && "$gnu-strip" "$tmp/gw-$t"
    echo "| stripped binary, $t, gateway build (\`--no-default-features\`) | $(stat -c %s "$tmp/gw-$t") B | target/gw (built $(date -u -r "$g" +%Y-%m-%dT%H:%MZ)), $gnu-strip |"
  fi
done
for t in armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu; do
  f=target/$t/release/enocean-agent
  gnu=arm-linux-gnueabihf; [ "$t" = armv7-unknown-linux-gnueabihf ] || gnu=aarch64-linux-gnu
  if [ -f "$f" ] && command -v "$gnu-strip" >/dev/null; then
    # The release profile's `strip` leaves part of the symbol tables in a cross build.
    cp "$f" "$tmp/agent-$t" && "$gnu-strip" "$tmp/agent-$t"
    echo "| stripped binary, $t | $(stat -c %s "$tmp/agent-$t") B | scripts/cross.sh $t (built $(date -u -r "$f" +%Y-%m-%dT%H:%MZ)), $gnu-strip |"
  elif [ -f "$f" ]; then
    echo "| binary as built, $t | $(stat -c %s "$f") B | scripts/cross.sh $t (built $(date -u -r "$f" +%Y-%m-%dT%H:%MZ)); $gnu-strip not installed |"
  else
    echo "| stripped binary, $t | not built | run scripts/cross.sh $t first |"
  fi
done

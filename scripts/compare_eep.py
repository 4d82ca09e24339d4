#!/usr/bin/env python3
"""EEP decoding speed: enocean-agent (Rust, criterion bench) vs the Python `enocean` package.

Both decode the same telegrams: every data telegram of tests/data/eep_vectors.jsonl, with the
profile selected by EEP (and direction/command where the profile needs it).

    python3 -m venv bench-venv && bench-venv/bin/pip install enocean==0.60.1
    bench-venv/bin/python scripts/compare_eep.py [--rust-rate N]

Without --rust-rate the script runs `cargo bench --bench eep_decode` and reads its figure.
"""
import json
import os
import re
import subprocess
import sys
import time

import warnings

warnings.filterwarnings("ignore")
from enocean.protocol.packet import Packet  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load():
    items = []
    with open(os.path.join(ROOT, "tests/data/eep_vectors.jsonl")) as f:
        for line in f:
            v = json.loads(line)
            if v["kind"] != "eep_data":
                continue
            frame = bytearray.fromhex(v["esp3_hex"])
            items.append((frame, int(v["rorg"], 16), int(v["func"], 16), int(v["type"], 16),
                          v["direction"], v["command"]))
    return items


def python_rate(items, seconds=3.0):
    # Parse the frames once (framing is not what we measure), keep those kipe can decode.
    packets = []
    for frame, rorg, func, typ, direction, command in items:
        _, _, packet = Packet.parse_msg(frame)
        try:
            packet.parse_eep(func, typ, direction, command)
        except Exception:
            continue  # kipe crashes on some spec-valid values (see DISCREPANCIES.md)
        packets.append((packet, func, typ, direction, command))
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for packet, func, typ, direction, command in packets:
            packet.parse_eep(func, typ, direction, command)
        n += len(packets)
    return n / (time.perf_counter() - start), len(packets)


def rust_rate():
    out = subprocess.run(
        ["cargo", "bench", "--bench", "eep_decode", "--", "decode_mix$", "--noplot"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout
    m = re.search(r"decode_mix\s.*?thrpt:\s+\[\S+ \S+ (\S+) (\S)elem/s", out, re.S)
    if not m:
        sys.exit("could not read the criterion output:\n" + out)
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(m.group(2), 1)
    return float(m.group(1)) * scale


def main():
    items = load()
    rust = None
    if "--rust-rate" in sys.argv:
        rust = float(sys.argv[sys.argv.index("--rust-rate") + 1])
    py, used = python_rate(items)
    if rust is None:
        rust = rust_rate()
    print(f"telegrams: {len(items)} ({used} decodable by the Python package)")
    print(f"enocean-agent (Rust): {rust:,.0f} telegrams/s")
    print(f"enocean 0.60.1 (Python): {py:,.0f} telegrams/s")
    print(f"ratio: {rust / py:,.0f}x")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Decodes the same capture with the Python `enocean` package (0.60.1) and with enocean-agent, and
prints both rates and the ratio. Run through scripts/compare_python.sh, which sets up the venv."""
import json
import pathlib
import subprocess
import sys
import time
import warnings

warnings.filterwarnings("ignore")
from enocean.protocol.constants import PARSE_RESULT  # noqa: E402
from enocean.protocol.packet import Packet  # noqa: E402

root = pathlib.Path(__file__).resolve().parent.parent
capture = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else root / "tests/data/mixed.esp3")
data = capture.read_bytes()


def python_rate():
    frames, passes = 0, 0
    start = time.perf_counter()
    while passes < 1 or time.perf_counter() - start < 2.0:
        buf = []
        for i in range(0, len(data), 64):  # 64-byte reads, as the Rust side does
            buf.extend(data[i:i + 64])
            while True:
                status, buf, packet = Packet.parse_msg(buf)
                if status == PARSE_RESULT.INCOMPLETE:
                    break
                if status == PARSE_RESULT.OK and packet is not None:
                    frames += 1
        passes += 1
    secs = time.perf_counter() - start
    return {"frames": frames, "seconds": secs, "frames_per_s": frames / secs,
            "mb_per_s": len(data) * passes / secs / 1e6}


subprocess.run(["cargo", "build", "--quiet", "--release", "--example", "decode_rate"],
               cwd=root, check=True)
rust = json.loads(subprocess.run([str(root / "target/release/examples/decode_rate"), str(capture)],
                                 check=True, capture_output=True, text=True).stdout)
py = python_rate()
print(f"capture: {capture.name}, {len(data)} bytes, 64-byte reads")
print(f"enocean-agent (Rust):  {rust['frames_per_s']:>12,.0f} frames/s  {rust['mb_per_s']:8.1f} MB/s")
print(f"enocean 0.60.1 (Python): {py['frames_per_s']:>10,.0f} frames/s  {py['mb_per_s']:8.2f} MB/s")
print(f"ratio: {rust['frames_per_s'] / py['frames_per_s']:,.0f}x")

#!/usr/bin/env python3
"""Builds the ESP3 captures in tests/data/ from the vector frames (deterministic).

- sample.esp3: a short capture for the README's first command (20 telegrams, a little noise).
- mixed.esp3: the benchmark stream, RPS/1BS/4BS/VLD frames with about 2 % noise bursts, used by
  benches/esp3_decoder.rs and scripts/compare_python.py so both decode the same bytes.
"""
import json
import pathlib
import random

root = pathlib.Path(__file__).resolve().parent.parent
data = root / "tests" / "data"
frames = {}
for line in (data / "eep_vectors.jsonl").read_text().splitlines():
    v = json.loads(line)
    if v["kind"] == "eep_data":
        frames.setdefault(v["rorg"], []).append(bytes.fromhex(v["esp3_hex"]))


def build(n, seed, noise_every):
    rng = random.Random(seed)
    # A building's mix: mostly 4BS sensors, then rockers, contacts and VLD actuators/meters.
    weights = {"A5": 50, "F6": 25, "D5": 10, "D2": 15}
    kinds = list(weights)
    out = bytearray()
    for i in range(n):
        if noise_every and i % noise_every == noise_every - 1:
            noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))
            out += noise.replace(b"\x55", b"\x54")
        rorg = rng.choices(kinds, [weights[k] for k in kinds])[0]
        out += rng.choice(frames[rorg])
    return bytes(out)


(data / "sample.esp3").write_bytes(build(20, 1, 7))
(data / "mixed.esp3").write_bytes(build(20000, 2, 50))
print("wrote", data / "sample.esp3", "and", data / "mixed.esp3")

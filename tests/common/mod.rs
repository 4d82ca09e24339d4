//! Helpers shared by the integration tests: loading the JSON Lines vector files.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// Path of a file in `tests/data/`.
pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Every line of a JSON Lines file in `tests/data/`.
pub fn jsonl(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(data_path(name)).expect("vector file present");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

/// Bytes from a hex string.
pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("valid hex in vector file")
}

/// A `Command` for the agent binary built for these tests. Under cross-compilation the binary is
/// for another CPU and no binfmt handler may exist: `ENOCEAN_AGENT_TEST_RUNNER` (set by
/// `scripts/cross.sh`, e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`) is then put in front of it.
pub fn agent_command() -> std::process::Command {
    let bin = env!("CARGO_BIN_EXE_enocean-agent");
    let runner = std::env::var("ENOCEAN_AGENT_TEST_RUNNER").unwrap_or_default();
    let mut parts = runner.split_whitespace();
    match parts.next() {
        Some(program) => {
            let mut c = std::process::Command::new(program);
            c.args(parts).arg(bin);
            c
        }
        None => std::process::Command::new(bin),
    }
}

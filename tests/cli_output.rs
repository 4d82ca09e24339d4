//! What the command line prints, tried against the real binary.
//!
//! Every command that writes to stdout ends quietly when its reader goes away, as `cat` and `grep`
//! do: no panic, no backtrace, exit code 0. Two ways a reader goes away are tried: a pipe whose
//! reading end is closed before the command writes anything, and a reader that takes one line and
//! then closes its end while the command is still writing.
//!
//! No listing shows a URL's user, password or query values.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_enocean-agent");

fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[gateway]
id = "pipe-gw"
[serial]
port = "sim"
[storage]
path = {:?}
min_free_bytes = 0
[[device]]
id = "0180A3F2"
eep = "A5-04-01"
name = "Office"
[[webhook]]
name = "main"
url = "http://hookuser:hookpass-77@127.0.0.1:9/hook?token=query-token-99&site=lobby"
signing = {{ type = "hmac", secret = "pipe-secret" }}
[[webhook]]
name = "second"
url = "http://127.0.0.1:9/other"
"#,
            dir.join("outbox.db")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The database the daemon would have created.
    let cfg = enocean_agent::config::Config::load(&path).unwrap();
    drop(enocean_agent::outbox::Outbox::open(&cfg.storage, &cfg.enabled_webhooks()).unwrap());
    path
}

/// Every stdout-writing command, with arguments that make it print at least one line.
fn commands(cfg: &Path) -> Vec<Vec<String>> {
    let c = cfg.display().to_string();
    let capture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mixed.esp3").to_string();
    let mut all = vec![
        vec!["decode".into(), capture],
        vec!["profiles".into(), "list".into()],
        vec!["check-config".into(), "--config".into(), c.clone()],
    ];
    for sub in [
        &["devices"][..],
        &["deliveries"],
        &["outbox", "status"],
        &["webhook", "list"],
    ] {
        let mut v: Vec<String> = sub.iter().map(|s| s.to_string()).collect();
        v.extend(["--config".to_string(), c.clone()]);
        all.push(v);
    }
    all
}

fn assert_quiet(what: &str, status: std::process::ExitStatus, stderr: &str) {
    assert!(
        !stderr.contains("panicked")
            && !stderr.contains("Broken pipe")
            && !stderr.contains("backtrace"),
        "{what}: complained about the closed pipe:\n{stderr}"
    );
    assert!(status.success(), "{what}: exit {status:?}\n{stderr}");
}

#[test]
fn commands_end_quietly_when_stdout_is_already_closed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    for args in commands(&cfg) {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "off")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_quiet(
            &args.join(" "),
            out.status,
            &String::from_utf8_lossy(&out.stderr),
        );
    }
}

/// Reads one line of `cmd`'s stdout, closes the pipe and waits (bounded) for the command to end.
fn first_line_then_close(mut cmd: Command) -> (String, std::process::ExitStatus, String) {
    let mut child = cmd
        .env("RUST_LOG", "off")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} went on running after its reader closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (line, status, err)
}

#[test]
fn streaming_commands_stop_when_the_reader_leaves_after_one_line() {
    // A capture far larger than a pipe's buffer: decode is still writing when the reader leaves.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.esp3");
    let one = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/mixed.esp3"
    ))
    .unwrap();
    std::fs::write(&big, one.repeat(20)).unwrap();
    let mut decode = Command::new(BIN);
    decode.arg("decode").arg(&big);
    let (line, status, err) = first_line_then_close(decode);
    assert!(line.starts_with('{'), "decode printed {line:?}");
    assert_quiet("decode | head -1", status, &err);

    // listen runs until stopped; its reader leaving must stop it, well before --duration.
    let mut listen = Command::new(BIN);
    listen.args([
        "listen",
        "--port",
        "sim",
        "--sim-rate",
        "50",
        "--duration",
        "600",
    ]);
    let (line, status, err) = first_line_then_close(listen);
    assert!(!line.is_empty(), "listen printed nothing");
    assert_quiet("listen | head -1", status, &err);
}

#[test]
fn listings_never_show_url_credentials_or_query_values() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut listed_url = false;
    for args in commands(&cfg) {
        if args[0] == "decode" || args[0] == "profiles" || args[0] == "check-config" {
            continue;
        }
        let out = Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        for secret in ["hookuser", "hookpass-77", "query-token-99", "lobby"] {
            assert!(!text.contains(secret), "{args:?} shows {secret:?}:\n{text}");
        }
        listed_url |= text.contains("127.0.0.1:9/hook?token=***&site=***");
    }
    assert!(listed_url, "no listing showed the redacted URL at all");
}

#[test]
fn listen_decodes_with_given_configured_and_taught_eeps() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut child = Command::new(BIN)
        .args([
            "listen",
            "--port",
            "sim",
            "--sim-rate",
            "40",
            "--duration",
            "600",
            "--eep",
            "0180A3F3=A5-04-01",
            "--config",
        ])
        .arg(&cfg)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut given, mut configured, mut taught, mut unknown, mut teach_line) =
        (false, false, false, false, false);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(given && configured && taught && unknown) {
        assert!(
            Instant::now() < deadline,
            "not all kinds of line:\n{}",
            seen.join("\n")
        );
        let Some(Ok(line)) = lines.next() else {
            panic!("listen ended early:\n{}", seen.join("\n"))
        };
        // The sim building: 0180A3F2/3 are A5-04-01, 01867001 teaches in as A5-02-05 first.
        given |= line.contains("0180A3F3")
            && line.contains("A5-04-01: ")
            && line.contains("temperature");
        configured |= line.contains("0180A3F2")
            && line.contains("Office")
            && line.contains("A5-04-01: humidity");
        teach_line |= line.contains("01867001") && line.contains("TEACH-IN 4BS EEP A5-02-05");
        taught |= teach_line && line.contains("01867001") && line.contains("A5-02-05: temperature");
        unknown |= line.contains("unknown sender (");
        seen.push(line);
    }
    let first_telegram = seen.iter().position(|l| l.contains(" dBm ")).unwrap();
    let stick = seen.iter().position(|l| l.starts_with("# stick")).unwrap();
    assert!(
        stick < first_telegram,
        "the stick line comes first:\n{}",
        seen.join("\n")
    );
    drop(lines);
    let until = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < until,
            "listen did not stop after its reader left"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A bad --eep is a clear error.
    let out = Command::new(BIN)
        .args([
            "listen",
            "--port",
            "sim",
            "--duration",
            "1",
            "--eep",
            "0180A3F2",
        ])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected ID=EEP"));
}

#[test]
fn demo_shows_the_chain_per_telegram_and_the_next_steps() {
    let out = Command::new(BIN)
        .args(["demo", "--duration", "3", "--rate", "10"])
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("seq  sensor    name"), "{text}");
    // A chain line: seq, sensor, name, EEP, dBm, POST status and milliseconds, verified.
    let chain = text
        .lines()
        .find(|l| l.contains("0180A3F2") && l.contains("✓ verified"))
        .unwrap_or_else(|| panic!("no verified line for 0180A3F2:\n{text}"));
    assert!(
        chain.contains("Office 2.14") && chain.contains("A5-04-01") && chain.contains(" 200 "),
        "{chain}"
    );
    assert!(chain.contains(" ms "), "{chain}");
    assert!(!text.contains("BAD SIGNATURE"), "{text}");
    assert!(text.contains("learned: 01867001 as A5-02-05"), "{text}");
    assert!(
        text.contains("next steps:") && text.contains("check-config"),
        "{text}"
    );
}

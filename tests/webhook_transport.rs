//! The webhook senders' own TCP transport (src/webhook/transport.rs) against a raw HTTP/1.1
//! server on 127.0.0.1: requests reuse one connection, bodies larger than its buffers arrive
//! whole, a connection the server closed or spoiled is not reused, and a server that never
//! answers is a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use enocean_agent::config::Config;
use enocean_agent::webhook::WebhookConfig;
use enocean_agent::webhook::http::{self, Outcome};

/// What the server does after answering a request.
#[derive(Clone, Copy)]
enum After {
    KeepAlive,
    Close,
    Garbage,
    /// Reads the request and never answers.
    Silent,
}

/// Per request: the connection's number and the body.
type Seen = (usize, Vec<u8>);

/// Serves `requests` requests, then stops; reports each, and "done" after acting on `After`.
fn serve(after: After, requests: usize) -> (String, mpsc::Receiver<Seen>, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/in", listener.local_addr().unwrap());
    let (seen_tx, seen) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        let mut served = 0;
        let mut conn_no = 0;
        while served < requests {
            let (sock, _) = listener.accept().unwrap();
            conn_no += 1;
            let mut reader = BufReader::new(sock.try_clone().unwrap());
            let mut sock = sock;
            while served < requests {
                let Some(body) = read_request(&mut reader) else {
                    break;
                };
                served += 1;
                seen_tx.send((conn_no, body)).unwrap();
                match after {
                    After::Silent => {
                        // Hold the connection open, unanswered, until the client gives up.
                        let mut rest = Vec::new();
                        let _ = reader.read_to_end(&mut rest);
                        break;
                    }
                    _ => sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .unwrap(),
                }
                match after {
                    After::Close => {
                        drop(reader);
                        drop(sock);
                        done_tx.send(()).unwrap();
                        break;
                    }
                    After::Garbage => {
                        sock.write_all(b"surprise").unwrap();
                        done_tx.send(()).unwrap();
                        break;
                    }
                    _ => done_tx.send(()).unwrap(),
                }
            }
        }
    });
    (url, seen, done)
}

/// One request's body (by its content-length), or None at the end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

fn load(dir: &Path, url: &str, timeout: &str) -> WebhookConfig {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!("[[webhook]]\nname = \"t\"\nurl = \"{url}\"\ntimeout = \"{timeout}\"\n"),
    )
    .unwrap();
    Config::load(&path).unwrap().webhooks.remove(0)
}

#[test]
fn requests_share_one_connection_and_large_bodies_arrive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let bodies: Vec<Vec<u8>> = vec![
        b"{\"n\":1}".to_vec(),
        (0..1_000_000u32).map(|i| (i % 251) as u8).collect(), // > the 128 KiB buffer
        b"{\"n\":3}".to_vec(),
    ];
    let (url, seen, _done) = serve(After::KeepAlive, bodies.len());
    let hook = load(dir.path(), &url, "20s");
    let agent = http::agent(&hook);
    for body in &bodies {
        let r = http::post(&agent, &hook, &[], body);
        assert_eq!(
            (r.outcome, r.status),
            (Outcome::Delivered, Some(200)),
            "{r:?}"
        );
    }
    for body in &bodies {
        let (conn, got) = seen.recv().unwrap();
        assert_eq!(conn, 1, "one connection for every request");
        assert!(got == *body, "body of {} bytes arrived changed", body.len());
    }
}

#[test]
fn a_connection_the_server_closed_or_spoiled_is_not_reused() {
    for after in [After::Close, After::Garbage] {
        let dir = tempfile::tempdir().unwrap();
        let (url, seen, done) = serve(after, 3);
        let hook = load(dir.path(), &url, "20s");
        let agent = http::agent(&hook);
        for i in 1..=3 {
            let r = http::post(&agent, &hook, &[], format!("{{\"n\":{i}}}").as_bytes());
            assert_eq!(
                (r.outcome, r.status),
                (Outcome::Delivered, Some(200)),
                "{r:?}"
            );
            // The server has closed (or written its surprise) before the next request.
            done.recv().unwrap();
        }
        let conns: Vec<usize> = (0..3).map(|_| seen.recv().unwrap().0).collect();
        assert_eq!(conns, [1, 2, 3], "a new connection for each request");
    }
}

#[test]
fn a_server_that_never_answers_is_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (url, seen, _done) = serve(After::Silent, 1);
    let hook = load(dir.path(), &url, "300ms");
    let r = http::post(&http::agent(&hook), &hook, &[], b"{}");
    assert_eq!(
        (r.outcome, r.error.as_deref()),
        (Outcome::Failed, Some("timeout")),
        "{r:?}"
    );
    assert_eq!(seen.recv().unwrap().1, b"{}", "the request itself was sent");
}

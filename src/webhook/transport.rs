//! The webhook senders' TCP transport for ureq: the same connection as ureq's own, with a third
//! of the system calls per request. At one POST per telegram those calls were the largest part
//! of a delivered telegram's CPU (`docs/bench-history.md`): ureq's transport sends the request head
//! and the body in two `send`s (two TCP segments), sets the socket's send and receive timeouts
//! before every write and read (the remaining time changes by microseconds, so every time) and
//! probes a pooled connection twice per request with three calls each (non-blocking on, `recv`,
//! non-blocking off). Here
//! - what ureq writes is gathered and sent when it turns to reading the answer (or the buffer is
//!   half full): head and body in one `send`;
//! - a socket timeout is set again only when the wanted one differs from the set one by more
//!   than [`TIMEOUT_SLACK`] of it, so a request's deadline holds to within that fraction;
//! - the probe is one `recv(MSG_PEEK | MSG_DONTWAIT)`, and it is made once per request: ureq
//!   asks right after reading an answer (to pool the connection) and again when it takes the
//!   connection from the pool; the first is answered "open" without a look, the second looks
//!   (a server's close or stray bytes in between are seen there, as before).
//!
//! [`connector`] chains it as ureq's default chain does: a CONNECT proxy from the environment
//! (`HTTPS_PROXY` …) first, then this, then TLS (ureq's rustls connector). A SOCKS proxy is not
//! built in (it was not before either).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rustix::net::RecvFlags;
use ureq::Error;
use ureq::unversioned::transport::time::Instant;
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, NextTimeout,
    RustlsConnector, ShutdownHandle, Transport,
};

/// How far a set socket timeout may be from the wanted one before it is set again (a fraction
/// of the wanted one): a deadline of 10 s is kept to within ±0.625 s.
pub const TIMEOUT_SLACK: u32 = 16;

/// The connector chain of a webhook's agent: CONNECT proxy, [`LeanTcpConnector`], TLS.
pub fn connector() -> impl Connector<(), Out = impl Transport> {
    ().chain(ConnectProxyConnector::default())
        .chain(LeanTcpConnector)
        .chain(RustlsConnector::default())
}

/// Opens plain TCP connections for ureq with [`LeanTcp`] transports.
#[derive(Debug, Default)]
pub struct LeanTcpConnector;

impl<In: Transport> Connector<In> for LeanTcpConnector {
    type Out = Either<In, LeanTcp>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        if chained.is_some() {
            return Ok(chained.map(Either::A));
        }
        let stream = connect(details)?;
        if details.config.no_delay() {
            stream.set_nodelay(true)?;
        }
        let stream = Arc::new(Shared(stream));
        let handle: Weak<dyn ShutdownHandle> = {
            let weak: Weak<Shared> = Arc::downgrade(&stream);
            weak
        };
        (details.register_shutdown)(handle)?;
        let config = details.config;
        Ok(Some(Either::B(LeanTcp {
            stream,
            buffers: Bufs::new(config.input_buffer_size(), config.output_buffer_size()),
            read_timeout: None,
            write_timeout: None,
            answered: false,
        })))
    }
}

/// The socket, shared (weakly) with ureq's shutdown of the agent.
#[derive(Debug)]
struct Shared(TcpStream);

impl ShutdownHandle for Shared {
    fn shutdown(&self) {
        // An error means the socket is already closed or shut down.
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// Tries the resolved addresses in order, each with its share of the connect timeout (half of
/// what is left to the first, …, all of it to the last).
fn connect(details: &ConnectionDetails) -> Result<TcpStream, Error> {
    let timeout = details.timeout;
    let addrs: Vec<SocketAddr> = details.addrs.iter().copied().collect();
    let mut last: Option<Error> = None;
    for (i, addr) in addrs.iter().enumerate() {
        let elapsed = match ((details.current_time)(), details.now) {
            (Instant::Exact(now), Instant::Exact(start)) => now.saturating_duration_since(start),
            _ => Duration::ZERO,
        };
        let left = timeout.not_zero().map(|t| t.saturating_sub(elapsed));
        if left.is_some_and(|l| l.is_zero()) {
            return Err(Error::Timeout(timeout.reason));
        }
        let share = left.map(|l| {
            let share = if i + 1 == addrs.len() { l } else { l / 2 };
            share.max(Duration::from_millis(10))
        });
        let result = match share {
            Some(t) => TcpStream::connect_timeout(addr, t),
            None => TcpStream::connect(addr),
        };
        match result {
            Ok(s) => return Ok(s),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                last = Some(Error::Timeout(timeout.reason));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::NetworkUnreachable
                        | io::ErrorKind::HostUnreachable
                        | io::ErrorKind::AddrNotAvailable
                ) =>
            {
                last = Some(Error::Io(e));
            }
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::Io(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "no address to connect to",
        ))
    }))
}

/// A TCP connection to a webhook: gathers what ureq writes until it reads (see the module).
#[derive(Debug)]
pub struct LeanTcp {
    stream: Arc<Shared>,
    buffers: Bufs,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// An answer was read since the last probe: the next probe is the pooling one (see the
    /// module), answered without a look.
    answered: bool,
}

/// Whether a socket timeout of `set` may stand for the wanted `want`.
fn close_enough(set: Option<Duration>, want: Option<Duration>) -> bool {
    match (set, want) {
        (None, None) => true,
        (Some(s), Some(w)) => s.abs_diff(w) <= w / TIMEOUT_SLACK,
        _ => false,
    }
}

/// The wanted socket timeout for `t`: none when it never happens, never zero (zero would mean
/// "no timeout" to the socket).
fn wanted(t: NextTimeout) -> Result<Option<Duration>, Error> {
    if t.after.is_not_happening() {
        return Ok(None);
    }
    if t.after.is_zero() {
        return Err(Error::Timeout(t.reason));
    }
    Ok(Some(*t.after))
}

impl LeanTcp {
    /// Sends what was gathered.
    fn flush(&mut self, timeout: NextTimeout) -> Result<(), Error> {
        if self.buffers.pending == 0 {
            return Ok(());
        }
        let timeout = timeout.for_write();
        let want = wanted(timeout)?;
        if !close_enough(self.write_timeout, want) {
            self.stream.0.set_write_timeout(want)?;
            self.write_timeout = want;
        }
        let pending = self.buffers.pending;
        self.buffers.pending = 0;
        match (&self.stream.0).write_all(&self.buffers.output[..pending]) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                Err(Error::Timeout(timeout.reason))
            }
            Err(e) => Err(Error::Io(e)),
        }
    }
}

impl Transport for LeanTcp {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        self.buffers.pending += amount;
        debug_assert!(self.buffers.pending <= self.buffers.output.len());
        // Keep at least half the buffer free for ureq's next write.
        if self.buffers.pending >= self.buffers.output.len() / 2 {
            self.flush(timeout)?;
        }
        Ok(())
    }

    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.flush(timeout)?;
        if self.buffers.can_use_input() {
            return Ok(true);
        }
        self.await_input(timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.flush(timeout)?;
        let timeout = timeout.for_read();
        let want = wanted(timeout)?;
        if !close_enough(self.read_timeout, want) {
            self.stream.0.set_read_timeout(want)?;
            self.read_timeout = want;
        }
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&self.stream.0).read(input) {
                Ok(n) => break n,
                // A signal: read again (nothing in this agent signals its sender threads).
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) =>
                {
                    return Err(Error::Timeout(timeout.reason));
                }
                Err(e) => return Err(Error::Io(e)),
            }
        };
        self.buffers.input_appended(amount);
        self.answered = true;
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        if self.buffers.pending != 0 {
            return false;
        }
        if std::mem::take(&mut self.answered) {
            return true;
        }
        // Open means: nothing to read and no end of stream (bytes the server sent unasked, or
        // its close, both make the connection unfit for the next request).
        let mut byte = [0u8; 1];
        matches!(
            rustix::net::recv(
                &self.stream.0,
                &mut byte[..],
                RecvFlags::PEEK | RecvFlags::DONTWAIT
            ),
            Err(rustix::io::Errno::WOULDBLOCK)
        )
    }
}

/// The input and output buffers of one connection. The output keeps what was written but not
/// yet sent (`pending`) at its start; ureq writes after it.
#[derive(Debug)]
struct Bufs {
    input_size: usize,
    output_size: usize,
    input: Vec<u8>,
    /// Unconsumed input is `input[consumed..filled]`.
    consumed: usize,
    filled: usize,
    output: Vec<u8>,
    pending: usize,
    progress: bool,
}

/// The least room [`Buffers::tmp_and_output`] gives ureq for reading a request body.
const MIN_TMP: usize = 10 * 1024;

impl Bufs {
    fn new(input_size: usize, output_size: usize) -> Bufs {
        Bufs {
            input_size: input_size.max(MIN_TMP),
            output_size: output_size.max(2),
            input: Vec::new(),
            consumed: 0,
            filled: 0,
            output: Vec::new(),
            pending: 0,
            progress: false,
        }
    }

    /// Allocates on first use (zeroed allocations: pages are touched only when written).
    fn ensure(&mut self) {
        if self.output.is_empty() {
            self.output = vec![0; self.output_size];
        }
        if self.input.is_empty() {
            self.input = vec![0; self.input_size];
        }
    }

    /// Free input room at the end, moving unconsumed input to the start when that makes room.
    fn input_free(&mut self, least: usize) -> &mut [u8] {
        self.ensure();
        if self.consumed == self.filled {
            self.consumed = 0;
            self.filled = 0;
        } else if self.consumed > 0 && self.input.len() - self.filled < least.max(1) {
            self.input.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
        if self.input.len() - self.filled < least {
            self.input.resize(self.filled + least, 0);
        }
        &mut self.input[self.filled..]
    }
}

impl Buffers for Bufs {
    fn output(&mut self) -> &mut [u8] {
        self.ensure();
        &mut self.output[self.pending..]
    }

    fn input(&self) -> &[u8] {
        &self.input[self.consumed..self.filled]
    }

    fn input_append_buf(&mut self) -> &mut [u8] {
        self.input_free(1)
    }

    fn input_appended(&mut self, amount: usize) {
        self.filled = (self.filled + amount).min(self.input.len());
    }

    fn input_consume(&mut self, amount: usize) {
        self.progress = amount > 0;
        self.consumed = (self.consumed + amount).min(self.filled);
    }

    fn tmp_and_output(&mut self) -> (&mut [u8], &mut [u8]) {
        self.input_free(MIN_TMP);
        let pending = self.pending;
        (&mut self.input[self.filled..], &mut self.output[pending..])
    }

    fn can_use_input(&self) -> bool {
        self.consumed < self.filled && self.progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_set_again_only_when_it_moved_by_more_than_the_slack() {
        let ten = Duration::from_secs(10);
        assert!(close_enough(None, None));
        assert!(!close_enough(None, Some(ten)));
        assert!(!close_enough(Some(ten), None));
        assert!(close_enough(
            Some(ten),
            Some(ten - Duration::from_millis(500))
        ));
        assert!(close_enough(
            Some(ten - Duration::from_millis(600)),
            Some(ten)
        ));
        assert!(!close_enough(Some(ten), Some(Duration::from_secs(9))));
        assert!(!close_enough(Some(Duration::from_secs(9)), Some(ten)));
    }

    fn in_10s() -> NextTimeout {
        NextTimeout {
            after: ureq::unversioned::transport::time::Duration::from_secs(10),
            reason: ureq::Timeout::Global,
            per_read: None,
            per_write: None,
        }
    }

    /// A connected pair on loopback: our transport and the peer's socket.
    fn pair() -> (LeanTcp, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        let t = LeanTcp {
            stream: Arc::new(Shared(ours)),
            buffers: Bufs::new(64 * 1024, 64 * 1024),
            read_timeout: None,
            write_timeout: None,
            answered: false,
        };
        (t, peer)
    }

    fn write(t: &mut LeanTcp, bytes: &[u8]) {
        t.buffers().output()[..bytes.len()].copy_from_slice(bytes);
        t.transmit_output(bytes.len(), in_10s()).unwrap();
    }

    #[test]
    fn head_and_body_leave_in_one_send_when_the_answer_is_awaited() {
        let (mut t, mut peer) = pair();
        write(&mut t, b"POST / HTTP/1.1\r\ncontent-length: 4\r\n\r\n");
        write(&mut t, b"body");
        peer.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 256];
        assert_eq!(
            peer.read(&mut buf).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock),
            "nothing is sent before ureq turns to the answer"
        );
        peer.set_nonblocking(false).unwrap();
        peer.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        assert!(t.await_input(in_10s()).unwrap());
        let want = b"POST / HTTP/1.1\r\ncontent-length: 4\r\n\r\nbody";
        let mut got = vec![0u8; want.len()];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got[..], &want[..]);
        assert!(t.buffers().input().starts_with(b"HTTP/1.1 200"));
        assert_eq!(t.write_timeout, Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_large_body_is_sent_whenever_half_the_buffer_is_full() {
        let (mut t, mut peer) = pair();
        let chunk = vec![7u8; 40 * 1024];
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 3 * 40 * 1024];
            peer.read_exact(&mut got).unwrap();
            got
        });
        for _ in 0..3 {
            write(&mut t, &chunk);
        }
        t.flush(in_10s()).unwrap();
        let got = reader.join().unwrap();
        assert!(got.iter().all(|&b| b == 7));
    }

    #[test]
    fn the_probe_says_closed_for_unasked_bytes_and_for_the_peers_close() {
        let (mut t, mut peer) = pair();
        assert!(t.is_open(), "an idle connection is open");
        t.answered = true;
        peer.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        t.stream.0.peek(&mut byte).unwrap();
        assert!(t.is_open(), "pooling right after an answer: no look");
        assert!(
            !t.is_open(),
            "taking it from the pool: a look, which sees the byte"
        );
        let (mut t, mut peer) = pair();
        assert!(t.is_open(), "and the probe consumes nothing");
        peer.write_all(b"x").unwrap();
        // Loopback: the byte is queued before write_all returns; wait for it all the same.
        t.stream.0.peek(&mut byte).unwrap();
        assert!(!t.is_open(), "bytes nobody asked for");

        let (mut t, peer) = pair();
        drop(peer);
        let _ = t.stream.0.peek(&mut byte); // returns at the end of stream
        assert!(!t.is_open(), "the peer closed");

        let (mut t, _peer) = pair();
        t.buffers.pending = 1;
        assert!(
            !t.is_open(),
            "a half-written request never goes back to the pool"
        );
    }

    #[test]
    fn output_written_after_pending_bytes_and_input_compacted() {
        let mut b = Bufs::new(16, 16);
        b.output()[..3].copy_from_slice(b"abc");
        b.pending = 3;
        assert_eq!(
            b.output().len(),
            13,
            "writes go after what waits to be sent"
        );
        b.output()[..2].copy_from_slice(b"de");
        b.pending += 2;
        assert_eq!(&b.output[..b.pending], b"abcde");

        let room = b.input_append_buf().len();
        assert_eq!(room, MIN_TMP, "input is at least MIN_TMP");
        b.input_append_buf()[..4].copy_from_slice(b"wxyz");
        b.input_appended(4);
        b.input_consume(3);
        assert_eq!(b.input(), b"z");
        assert!(b.can_use_input());
        b.input_consume(0);
        assert!(!b.can_use_input(), "no progress: wait for more input");
        let (tmp, out) = b.tmp_and_output();
        assert!(tmp.len() >= MIN_TMP);
        assert_eq!(out.len(), 16 - 5);
        assert_eq!(b.input(), b"z", "unconsumed input survives");
    }
}

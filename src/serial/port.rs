//! The open stick as the reader uses it: a non-blocking port that can leave the runtime's
//! reactor while the reader gathers a burst (see `PortConfig::gather`).
//!
//! A port registered with the reactor wakes the runtime's thread for every chunk of bytes the
//! driver receives, whether or not anyone reads: on a busy line that is a wake-up per telegram.
//! While [`Port::rest`] is in force the port is not registered, so bytes simply collect in the
//! kernel's buffer (4 KiB for a tty: 0.7 s of the stick's 57 600 baud, 35 times the gather
//! window) until [`Port::watch`] registers it again and the next read takes them all at once.

use std::io::{self, Read, Write};
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;

/// The stick's port, watched by the reactor or resting.
#[derive(Debug)]
pub struct Port {
    state: State,
}

#[derive(Debug)]
enum State {
    /// Registered: reads and writes wait for readiness.
    Watched {
        fd: AsyncFd<mio_serial::SerialStream>,
        /// Registered since the last read: try the port before waiting for the reactor to
        /// report what arrived meanwhile.
        fresh: bool,
    },
    /// Not registered: nothing wakes the runtime for it.
    Resting(mio_serial::SerialStream),
    /// Registration failed and took the port with it (the session ends and reopens).
    Gone,
}

impl Port {
    /// Registers an open port with the current runtime's reactor.
    pub(crate) fn new(stream: mio_serial::SerialStream) -> io::Result<Self> {
        let mut port = Self {
            state: State::Resting(stream),
        };
        port.watch()?;
        Ok(port)
    }

    /// Stops watching the port: bytes that arrive wait in the kernel's buffer and wake nothing.
    pub fn rest(&mut self) {
        self.state = match std::mem::replace(&mut self.state, State::Gone) {
            State::Watched { fd, .. } => State::Resting(fd.into_inner()),
            other => other,
        };
    }

    /// Watches the port again (a no-op while watched).
    pub fn watch(&mut self) -> io::Result<()> {
        match std::mem::replace(&mut self.state, State::Gone) {
            // `try_new` is deprecated in favour of the `unsafe` `register`, whose one condition
            // is that the fd stays open and the same while registered: a
            // `mio_serial::SerialStream` owns its fd from open to drop and never replaces it
            // (tokio-serial registers the same type the same way). The crate forbids `unsafe`.
            #[allow(deprecated)]
            State::Resting(stream) => match AsyncFd::try_new(stream) {
                Ok(fd) => {
                    self.state = State::Watched { fd, fresh: true };
                    Ok(())
                }
                Err(e) => Err(e.into_parts().1),
            },
            State::Gone => Err(gone()),
            watched => {
                self.state = watched;
                Ok(())
            }
        }
    }

    /// Bytes received and not read yet (the kernel's input queue).
    pub fn waiting(&self) -> io::Result<u32> {
        use tokio_serial::SerialPort;
        let n = match &self.state {
            State::Watched { fd, .. } => fd.get_ref().bytes_to_read(),
            State::Resting(stream) => stream.bytes_to_read(),
            State::Gone => return Err(gone()),
        };
        n.map_err(io::Error::from)
    }

    /// True while the reactor does not watch the port.
    pub fn is_resting(&self) -> bool {
        matches!(self.state, State::Resting(_))
    }

    /// Reads what is waiting into `buf`; `Poll::Pending` (and a wake-up when bytes come) when
    /// nothing is. The port must be watched.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let State::Watched { fd, fresh } = &mut self.state else {
            return Poll::Ready(Err(gone()));
        };
        if std::mem::take(fresh) {
            match fd.get_mut().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
        }
        loop {
            let mut guard = ready!(fd.poll_read_ready_mut(cx))?;
            if let Ok(r) = guard.try_io(|fd| fd.get_mut().read(buf)) {
                return Poll::Ready(r);
            }
        }
    }

    /// Writes all of `bytes` (watching the port again if it rested).
    pub async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        self.watch()?;
        let State::Watched { fd, .. } = &mut self.state else {
            return Err(gone());
        };
        while !bytes.is_empty() {
            let mut guard = fd.writable_mut().await?;
            match guard.try_io(|fd| fd.get_mut().write(bytes)) {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => bytes = &bytes[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }
}

fn gone() -> io::Error {
    io::Error::other("the port could not be registered with the runtime")
}

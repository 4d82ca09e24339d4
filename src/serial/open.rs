//! Opening the stick's port by path, with errors an installer can act on.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use tokio_serial::{DataBits, FlowControl, Parity, StopBits};

use super::port::Port;

/// The USB 300's line speed (ESP3: 57 600 baud, 8 data bits, no parity, 1 stop bit).
pub const BAUD_RATE: u32 = 57_600;

/// Why a port could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Nothing at that path (stick unplugged, wrong name, udev rule missing).
    #[error("serial port {path} does not exist (is the stick plugged in? is the path right?)")]
    Missing {
        /// The path tried.
        path: PathBuf,
    },
    /// Another process holds the port (ports are opened exclusively).
    #[error(
        "serial port {path} is in use by another process (another agent, ModemManager, a terminal?)"
    )]
    InUse {
        /// The path tried.
        path: PathBuf,
    },
    /// No permission to open the device.
    #[error("no permission to open serial port {path} (is the user in the dialout group?)")]
    PermissionDenied {
        /// The path tried.
        path: PathBuf,
    },
    /// The path exists but is not a serial device.
    #[error("{path} is not a serial device")]
    NotASerialDevice {
        /// The path tried.
        path: PathBuf,
    },
    /// Any other failure.
    #[error("cannot open serial port {path}: {reason}")]
    Other {
        /// The path tried.
        path: PathBuf,
        /// The operating system's description.
        reason: String,
    },
}

impl OpenError {
    /// True when the device path does not exist (the runtime then watches for it to appear).
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Missing { .. })
    }
}

/// Opens `path` at 57 600 baud 8N1 without flow control, exclusively (TIOCEXCL and an exclusive
/// `flock`, so a second opener fails at once). Must be called from within a tokio runtime.
pub fn open(path: &Path) -> Result<Port, OpenError> {
    let p = || path.to_path_buf();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(OpenError::Missing { path: p() });
        }
        Ok(m) if !m.file_type().is_char_device() => {
            return Err(OpenError::NotASerialDevice { path: p() });
        }
        _ => {}
    }
    let builder = tokio_serial::new(path.to_string_lossy(), BAUD_RATE)
        .data_bits(DataBits::Eight)
        .parity(Parity::None)
        .stop_bits(StopBits::One)
        .flow_control(FlowControl::None);
    let mut stream = mio_serial::SerialStream::open(&builder).map_err(|e| classify(path, e))?;
    stream.set_exclusive(true).map_err(|e| classify(path, e))?;
    Port::new(stream).map_err(|e| OpenError::Other {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn classify(path: &Path, e: tokio_serial::Error) -> OpenError {
    use std::io::ErrorKind as Io;
    use tokio_serial::ErrorKind as K;
    let path = path.to_path_buf();
    match e.kind {
        // serialport reports both EBUSY (TIOCEXCL) and a held flock as NoDevice.
        K::NoDevice => OpenError::InUse { path },
        K::Io(Io::NotFound) => OpenError::Missing { path },
        K::Io(Io::PermissionDenied) => OpenError::PermissionDenied { path },
        K::Unknown if e.description.contains("typewriter") => OpenError::NotASerialDevice { path },
        _ => OpenError::Other {
            path,
            reason: e.description,
        },
    }
}

//! The start-up handshake: CO_RD_VERSION then CO_RD_IDBASE, each with a response timeout and a
//! few tries. A sans-IO state machine: the session loop asks it what to send and when to wake,
//! and hands it every RESPONSE frame; reception never waits for it.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::esp3::command::CommonCommand;
use crate::esp3::response::{BaseIdInfo, Response, ReturnCode, VersionInfo};
use crate::esp3::{Error, Frame};

/// What the stick told about itself; identifies the gateway in telemetry. A field is `None` when
/// that command got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickInfo {
    /// The CO_RD_VERSION answer: app/API version, chip ID, description.
    pub version: Option<VersionInfo>,
    /// The CO_RD_IDBASE answer: base ID and remaining write cycles.
    pub base: Option<BaseIdInfo>,
}

impl StickInfo {
    /// The base ID, if known.
    pub fn base_id(&self) -> Option<u32> {
        self.base.map(|b| b.base_id)
    }

    /// The base ID as 8 uppercase hex digits (`FF8A1200`), if known.
    pub fn base_id_hex(&self) -> Option<String> {
        self.base_id().map(|b| format!("{b:08X}"))
    }

    /// The chip ID, if known.
    pub fn chip_id(&self) -> Option<u32> {
        self.version.as_ref().map(|v| v.chip_id)
    }

    /// The application (firmware) version as `a.b.c.d`, if known.
    pub fn app_version(&self) -> Option<String> {
        self.version.as_ref().map(VersionInfo::app_version_string)
    }

    /// The stick's description (`GATEWAYCTRL`), if known.
    pub fn description(&self) -> Option<&str> {
        self.version.as_ref().map(|v| v.description.as_str())
    }
}

impl fmt::Display for StickInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unknown = || "unknown".to_string();
        write!(
            f,
            "base ID {}, chip ID {}, app version {}, {}",
            self.base_id_hex().unwrap_or_else(unknown),
            self.chip_id()
                .map(|c| format!("{c:08X}"))
                .unwrap_or_else(unknown),
            self.app_version().unwrap_or_else(unknown),
            self.description().unwrap_or("no description"),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Version,
    IdBase,
    Done,
}

impl Step {
    fn command(self) -> Option<CommonCommand> {
        match self {
            Step::Version => Some(CommonCommand::ReadVersion),
            Step::IdBase => Some(CommonCommand::ReadIdBase),
            Step::Done => None,
        }
    }

    fn next(self) -> Self {
        match self {
            Step::Version => Step::IdBase,
            Step::IdBase | Step::Done => Step::Done,
        }
    }
}

/// Handshake progress for one connection.
#[derive(Debug)]
pub(super) struct Handshake {
    timeout: Duration,
    attempts: u32,
    step: Step,
    attempt: u32,
    awaiting: Option<Instant>,
    version: Option<VersionInfo>,
    base: Option<BaseIdInfo>,
    errors: Vec<String>,
    reported: bool,
}

impl Handshake {
    pub(super) fn new(timeout: Duration, attempts: u32) -> Self {
        Self {
            timeout,
            attempts: attempts.max(1),
            step: Step::Version,
            attempt: 0,
            awaiting: None,
            version: None,
            base: None,
            errors: Vec::new(),
            reported: false,
        }
    }

    /// The command to write now, if any. Handles an expired wait as a failed try.
    pub(super) fn poll_send(&mut self, now: Instant) -> Option<CommonCommand> {
        if let Some(deadline) = self.awaiting {
            if now < deadline {
                return None;
            }
            self.awaiting = None;
        }
        loop {
            let cmd = self.step.command()?;
            if self.attempt < self.attempts {
                self.attempt += 1;
                self.awaiting = Some(now + self.timeout);
                return Some(cmd);
            }
            self.errors.push(format!(
                "no answer to {} after {} tries",
                name(cmd),
                self.attempts
            ));
            self.advance();
        }
    }

    /// True once both commands are done (answered, refused or out of tries).
    pub(super) fn finished(&self) -> bool {
        self.step == Step::Done
    }

    /// When the outstanding command times out.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.awaiting
    }

    /// Takes a RESPONSE frame. Gives it back when no command was waiting for it.
    ///
    /// RESPONSE frames carry no command code, so an answer is matched by its shape: a late
    /// answer to an earlier try of the other command (33 data bytes for CO_RD_VERSION, 5 for
    /// CO_RD_IDBASE) is ignored and the wait goes on.
    pub(super) fn on_response(&mut self, frame: Frame) -> Option<Frame> {
        let Some(cmd) = self.step.command().filter(|_| self.awaiting.is_some()) else {
            return Some(frame);
        };
        let Ok(response) = Response::parse(&frame) else {
            return Some(frame);
        };
        let fits = response.code != ReturnCode::Ok
            || match self.step {
                Step::Version => response.data.len() >= 32,
                _ => response.data.len() == 4,
            };
        if !fits {
            log::debug!(
                "serial: ignoring a RESPONSE that does not answer {}",
                name(cmd)
            );
            return None;
        }
        self.awaiting = None;
        let parsed = match self.step {
            Step::Version => VersionInfo::parse(&response).map(|v| self.version = Some(v)),
            _ => BaseIdInfo::parse(&response).map(|b| self.base = Some(b)),
        };
        match parsed {
            Ok(()) => self.advance(),
            Err(e @ Error::NotOk(_)) => {
                // The stick refuses the command: asking again will not help.
                self.errors.push(format!("{}: {e}", name(cmd)));
                self.advance();
            }
            Err(e) => {
                // Cannot happen after the shape check; the next try follows at once.
                log::debug!("serial: unexpected answer to {}: {e}", name(cmd));
            }
        }
        None
    }

    /// The result, once, when both commands are done.
    pub(super) fn take_outcome(&mut self) -> Option<Result<StickInfo, String>> {
        if self.step != Step::Done || self.reported {
            return None;
        }
        self.reported = true;
        if self.version.is_none() && self.base.is_none() {
            return Some(Err(self.errors.join("; ")));
        }
        for e in &self.errors {
            log::warn!("serial: handshake incomplete: {e}");
        }
        Some(Ok(StickInfo {
            version: self.version.take(),
            base: self.base.take(),
        }))
    }

    fn advance(&mut self) {
        self.step = self.step.next();
        self.attempt = 0;
        self.awaiting = None;
    }
}

fn name(cmd: CommonCommand) -> &'static str {
    match cmd {
        CommonCommand::ReadVersion => "CO_RD_VERSION",
        CommonCommand::ReadIdBase => "CO_RD_IDBASE",
        CommonCommand::WriteReset => "CO_WR_RESET",
    }
}

// The answers come from the simulated stick's, so these run with the `sim` feature (the default).
#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::sim::response_to;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn full_handshake() {
        let now = t0();
        let mut hs = Handshake::new(Duration::from_millis(500), 3);
        let c = hs.poll_send(now).unwrap();
        assert_eq!(c, CommonCommand::ReadVersion);
        assert_eq!(hs.poll_send(now), None);
        assert!(hs.on_response(response_to(&c.frame())).is_none());
        let c = hs.poll_send(now).unwrap();
        assert_eq!(c, CommonCommand::ReadIdBase);
        assert!(hs.on_response(response_to(&c.frame())).is_none());
        assert_eq!(hs.poll_send(now), None);
        let info = hs.take_outcome().unwrap().unwrap();
        assert_eq!(info.base_id_hex().as_deref(), Some("FF8A1200"));
        assert_eq!(info.description(), Some("GATEWAYCTRL"));
        assert_eq!(info.app_version().as_deref(), Some("2.11.1.0"));
        assert!(hs.take_outcome().is_none());
        assert!(info.to_string().contains("FF8A1200"));
    }

    #[test]
    fn retries_then_fails_without_answers() {
        let mut now = t0();
        let mut hs = Handshake::new(Duration::from_millis(500), 2);
        let mut sent = Vec::new();
        for _ in 0..10 {
            if let Some(c) = hs.poll_send(now) {
                sent.push(c);
            }
            now += Duration::from_millis(501);
        }
        assert_eq!(
            sent,
            [
                CommonCommand::ReadVersion,
                CommonCommand::ReadVersion,
                CommonCommand::ReadIdBase,
                CommonCommand::ReadIdBase
            ]
        );
        let err = hs.take_outcome().unwrap().unwrap_err();
        assert!(
            err.contains("CO_RD_VERSION") && err.contains("CO_RD_IDBASE"),
            "{err}"
        );
    }

    #[test]
    fn late_answer_to_the_other_command_is_ignored() {
        let now = t0();
        let mut hs = Handshake::new(Duration::from_millis(500), 3);
        let version = hs.poll_send(now).unwrap();
        // First try times out, a second one goes out, then both answers arrive.
        let later = now + Duration::from_millis(501);
        assert_eq!(hs.poll_send(later), Some(CommonCommand::ReadVersion));
        assert!(hs.on_response(response_to(&version.frame())).is_none());
        assert_eq!(hs.poll_send(later), Some(CommonCommand::ReadIdBase));
        // The second version answer arrives while CO_RD_IDBASE is awaited: ignored.
        assert!(hs.on_response(response_to(&version.frame())).is_none());
        assert_eq!(hs.deadline(), Some(later + Duration::from_millis(500)));
        let idbase = CommonCommand::ReadIdBase.frame();
        assert!(hs.on_response(response_to(&idbase)).is_none());
        let info = hs.take_outcome().unwrap().unwrap();
        assert_eq!(info.base_id(), Some(0xFF8A_1200));
        assert_eq!(info.chip_id(), Some(crate::sim::SIM_CHIP_ID));
    }

    #[test]
    fn partial_answer_and_unsolicited_response() {
        let now = t0();
        let mut hs = Handshake::new(Duration::from_millis(500), 1);
        let stray = response_to(&CommonCommand::ReadIdBase.frame());
        assert!(
            hs.on_response(stray.clone()).is_some(),
            "nothing awaited yet"
        );
        let c = hs.poll_send(now).unwrap();
        // A RET_NOT_SUPPORTED answer moves on at once.
        let refused = Frame::new(crate::esp3::PacketType::Response, &[0x02], &[]).unwrap();
        assert!(hs.on_response(refused).is_none());
        assert_eq!(c, CommonCommand::ReadVersion);
        assert_eq!(hs.poll_send(now), Some(CommonCommand::ReadIdBase));
        assert!(hs.on_response(stray).is_none());
        let info = hs.take_outcome().unwrap().unwrap();
        assert_eq!(info.version, None);
        assert_eq!(info.base.and_then(|b| b.remaining_write_cycles), Some(10));
        assert_eq!(info.base_id(), Some(0xFF8A_1200));
    }
}

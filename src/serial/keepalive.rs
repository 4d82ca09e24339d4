//! Proof of life for a quiet line: when no frame has arrived for a while, ask the stick for its
//! version (CO_RD_VERSION). A stick that answers nothing after a few tries is treated as lost and
//! the port is reopened. Sans-IO like [`super::handshake`]: the session asks it what to do and
//! when to wake, and tells it when frames arrive.

use std::time::Duration;

use tokio::time::Instant;

/// What the session must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// Nothing.
    Wait,
    /// Write CO_RD_VERSION (try number `attempt`, from 1).
    Probe {
        /// Which try this is.
        attempt: u32,
    },
    /// No frame came back after every try: the stick (or the reader) is dead.
    Dead {
        /// How long no frame had arrived.
        silent_for: Duration,
    },
}

/// Keep-alive state of one connection.
#[derive(Debug)]
pub(super) struct KeepAlive {
    interval: Duration,
    timeout: Duration,
    attempts: u32,
    last_frame: Instant,
    /// Tries sent so far and when the last one times out, while a probe is outstanding.
    probe: Option<(u32, Instant)>,
    /// Probes sent whose RESPONSE has not come yet (it may come after another frame).
    owed: u32,
}

impl KeepAlive {
    /// A keep-alive for a connection opened at `now`. `interval` zero turns it off.
    pub(super) fn new(interval: Duration, timeout: Duration, attempts: u32, now: Instant) -> Self {
        Self {
            interval,
            timeout,
            attempts: attempts.max(1),
            last_frame: now,
            probe: None,
            owed: 0,
        }
    }

    /// A good frame arrived (any packet type): the stick is alive and the reader reads.
    pub(super) fn frame_received(&mut self, now: Instant) {
        self.last_frame = now;
        self.probe = None;
    }

    /// True while a probe waits for its answer.
    #[cfg(test)]
    fn probing(&self) -> bool {
        self.probe.is_some()
    }

    /// Takes a RESPONSE: true when it answers one of our probes (then it is ours, not the
    /// agent's), false when no probe is owed an answer.
    pub(super) fn take_answer(&mut self) -> bool {
        let ours = self.owed > 0;
        self.owed = self.owed.saturating_sub(1);
        ours
    }

    /// What to do at `now`.
    pub(super) fn poll(&mut self, now: Instant) -> Action {
        if self.interval.is_zero() {
            return Action::Wait;
        }
        match self.probe {
            None if now >= self.last_frame + self.interval => {
                self.probe = Some((1, now + self.timeout));
                self.owed += 1;
                Action::Probe { attempt: 1 }
            }
            Some((sent, deadline)) if now >= deadline => {
                if sent < self.attempts {
                    self.probe = Some((sent + 1, now + self.timeout));
                    self.owed += 1;
                    Action::Probe { attempt: sent + 1 }
                } else {
                    Action::Dead {
                        silent_for: now.saturating_duration_since(self.last_frame),
                    }
                }
            }
            _ => Action::Wait,
        }
    }

    /// When `poll` next has something to do.
    pub(super) fn deadline(&self) -> Option<Instant> {
        if self.interval.is_zero() {
            return None;
        }
        Some(match self.probe {
            Some((_, deadline)) => deadline,
            None => self.last_frame + self.interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn quiet_line_is_probed_then_declared_dead() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(1000 * MS, 500 * MS, 3, t0);
        assert_eq!(k.deadline(), Some(t0 + 1000 * MS));
        assert_eq!(k.poll(t0 + 999 * MS), Action::Wait);
        assert_eq!(k.poll(t0 + 1000 * MS), Action::Probe { attempt: 1 });
        assert!(k.probing());
        assert_eq!(k.poll(t0 + 1499 * MS), Action::Wait);
        assert_eq!(k.deadline(), Some(t0 + 1500 * MS));
        assert_eq!(k.poll(t0 + 1500 * MS), Action::Probe { attempt: 2 });
        assert_eq!(k.poll(t0 + 2000 * MS), Action::Probe { attempt: 3 });
        assert_eq!(
            k.poll(t0 + 2500 * MS),
            Action::Dead {
                silent_for: 2500 * MS
            }
        );
    }

    #[test]
    fn any_frame_answers_the_probe_and_restarts_the_wait() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(1000 * MS, 500 * MS, 2, t0);
        assert_eq!(k.poll(t0 + 1000 * MS), Action::Probe { attempt: 1 });
        // A telegram comes first, then the probe's RESPONSE: both prove the stick alive, and
        // the RESPONSE is recognised as ours; a later one is not.
        k.frame_received(t0 + 1050 * MS);
        assert!(!k.probing());
        k.frame_received(t0 + 1100 * MS);
        assert!(k.take_answer());
        assert!(!k.take_answer());
        assert_eq!(k.poll(t0 + 1600 * MS), Action::Wait);
        assert_eq!(k.deadline(), Some(t0 + 2100 * MS));
        // Frames keep arriving: no probe at all.
        k.frame_received(t0 + 2000 * MS);
        assert_eq!(k.poll(t0 + 2100 * MS), Action::Wait);
    }

    #[test]
    fn zero_interval_turns_it_off() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(Duration::ZERO, 500 * MS, 3, t0);
        assert_eq!(k.deadline(), None);
        assert_eq!(k.poll(t0 + 3600 * 1000 * MS), Action::Wait);
    }
}

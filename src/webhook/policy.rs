//! The delivery policy as a sans-IO state machine: it is told the outcome of every attempt and
//! the time, and answers what to do next (send, wait until, probe, stop) and what the attempt
//! meant (delivered, keep at the head of the queue, failed for good; deactivated, resumed…). It
//! never touches the network, the database or the clock, so every rule is tested with plain
//! values; the sender thread (`sender.rs`) drives it and persists what it decides.
//!
//! The rules (the table in `docs/outbox-and-webhooks.md` is the user-facing form):
//!
//! - One queue per webhook in seq order; the sender always works on its head.
//! - **Endpoint failure** (5xx, 408, 425, 429, timeout, connection refused or reset, TLS,
//!   protocol, redirect): the head stays at the head and is retried, `backoff(n)` after the n-th
//!   failed attempt of a round, never before a `Retry-After`. A round is `1 + max_retries` failed
//!   attempts; it counts as one **failed delivery**, and the next round starts `backoff(1)` later
//!   (with `deactivate_after = 0`, never deactivated, `backoff(k)` after the k-th failed delivery
//!   in a row, so the rounds slow down to `backoff_max`). Nothing behind the head is sent, so
//!   first deliveries arrive in seq order.
//! - **Rejected** (any other 4xx): the receiver refuses this body. The delivery is failed for good
//!   (kept, listed, resendable), counts as a failed delivery, and the queue moves on at once.
//! - After `deactivate_after` failed deliveries in a row the webhook is **deactivated** and
//!   **probed**: one attempt of the head of the queue after `probe_delay(1)`, then after
//!   `probe_delay(2)`, … (doubling from `probe_base`, capped at `probe_max`). A probe that gets
//!   through **resumes** the webhook; the queue drains from its head.
//! - **410 Gone**: the delivery fails, the webhook is deactivated and never probed.
//! - **Offline** (the gateway's own network: DNS, no route): not counted, the head is retried
//!   with backoff forever (on the probe schedule while deactivated).
//! - The operator's `webhook disable` and `enable` are outside: a disabled webhook is not
//!   driven at all, and `enable` starts a fresh policy ([`Policy::reset`]).

use std::time::{Duration, Instant};

use super::config::WebhookConfig;
use crate::delivery::Outcome;
use crate::outbox::{Phase, StreakEnd};

/// The policy's settings, from a `[[webhook]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// Retries after the first attempt of a round (a round is `1 + max_retries` attempts).
    pub max_retries: u32,
    /// First retry delay; doubled for every further failed attempt.
    pub backoff_base: Duration,
    /// Upper bound of a retry delay.
    pub backoff_max: Duration,
    /// Random spread of each delay as a fraction (0.2 = ±20 %).
    pub jitter: f64,
    /// Failed deliveries in a row that deactivate the webhook (0 = never).
    pub deactivate_after: u32,
    /// Delay of the first probe after a deactivation; doubled for every failed probe.
    pub probe_base: Duration,
    /// Upper bound of the probe delay (jitter never goes beyond it).
    pub probe_max: Duration,
}

impl PolicyConfig {
    /// The policy settings of a webhook.
    pub fn from_webhook(cfg: &WebhookConfig) -> Self {
        Self {
            max_retries: cfg.max_retries,
            backoff_base: cfg.backoff_base,
            backoff_max: cfg.backoff_max,
            jitter: cfg.jitter,
            deactivate_after: cfg.deactivate_after,
            probe_base: cfg.probe_base,
            probe_max: cfg.probe_max,
        }
    }
}

/// What the sender should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the head of the queue (a first attempt or a retry).
    Send,
    /// The webhook is deactivated: send the head of the queue as a probe.
    Probe,
    /// Nothing before this instant.
    WaitUntil(Instant),
    /// The endpoint answered 410 Gone: nothing until the operator enables the webhook.
    Stop,
}

/// What becomes of the delivery that was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered.
    Delivered,
    /// Stays at the head of the queue (pending) for the next attempt or probe.
    Retry,
    /// Failed for good (rejected or 410): kept and resendable, the queue moves on.
    Failed,
}

/// Something worth a log line and a persisted state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The first failed attempt after deliveries went through: retrying the head.
    Retrying,
    /// A round of attempts failed or a delivery was rejected; `consecutive` in a row now.
    DeliveryFailed {
        /// Failed deliveries in a row.
        consecutive: u32,
    },
    /// `deactivate_after` failed deliveries in a row: deactivated, probing from now on.
    Deactivated {
        /// Failed deliveries in a row.
        consecutive: u32,
    },
    /// A probe got through: the webhook is active again.
    Resumed {
        /// Failed deliveries in a row before.
        after: u32,
    },
    /// A delivery got through after failed attempts, without a deactivation.
    Recovered {
        /// Failed deliveries in a row before.
        after: u32,
    },
    /// 410 Gone: deactivated, not probed.
    Gone,
    /// The gateway's own network is down; attempts are held, not counted.
    WentOffline,
    /// An attempt reached the network again.
    BackOnline,
}

/// The policy's answer to an attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What becomes of the attempted delivery.
    pub fate: Fate,
    /// True when the delivery was rejected while failures kept coming: put back into the queue
    /// if the streak ends in a deactivation ([`StreakEnd::Requeue`]).
    pub in_streak: bool,
    /// What to do with the deliveries rejected during the streak this attempt ended.
    pub streak_end: Option<StreakEnd>,
    /// What happened, in order.
    pub events: Vec<Event>,
}

/// The delivery policy of one webhook. See the module documentation for the rules.
#[derive(Debug)]
pub struct Policy {
    cfg: PolicyConfig,
    /// Active, Retrying, Probing or Gone (Offline is the `offline` count on top).
    phase: Phase,
    consecutive: u32,
    /// Failed attempts of the head in the current round.
    round: u32,
    /// Failed probes since the deactivation.
    probes: u32,
    /// Offline attempts in a row.
    offline: u32,
    not_before: Option<Instant>,
    rng: fastrand::Rng,
}

impl Policy {
    /// A fresh policy (active, nothing failed). `seed` drives the jitter.
    pub fn new(cfg: PolicyConfig, seed: u64) -> Self {
        Self {
            cfg,
            phase: Phase::Active,
            consecutive: 0,
            round: 0,
            probes: 0,
            offline: 0,
            not_before: None,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The policy as persisted before a restart: a deactivated webhook is probed first after
    /// `probe_delay(1)`, a gone one stays stopped, anything else sends at once and keeps its
    /// count of failed deliveries.
    pub fn restore(
        cfg: PolicyConfig,
        seed: u64,
        phase: Phase,
        consecutive: u32,
        now: Instant,
    ) -> Self {
        let mut p = Self::new(cfg, seed);
        p.consecutive = consecutive;
        match phase {
            Phase::Probing => {
                p.phase = Phase::Probing;
                let d = p.probe_delay(1);
                p.not_before = Some(later(now, d));
            }
            Phase::Gone => p.phase = Phase::Gone,
            Phase::Retrying if consecutive > 0 => p.phase = Phase::Retrying,
            _ => {}
        }
        p
    }

    /// Starts afresh (the operator enabled the webhook).
    pub fn reset(&mut self) {
        self.phase = Phase::Active;
        self.consecutive = 0;
        self.round = 0;
        self.probes = 0;
        self.offline = 0;
        self.not_before = None;
    }

    /// The phase to show and persist: Offline while attempts do not reach the network (unless
    /// deactivated or gone).
    pub fn phase(&self) -> Phase {
        match self.phase {
            Phase::Active | Phase::Retrying if self.offline > 0 => Phase::Offline,
            p => p,
        }
    }

    /// Failed deliveries in a row.
    pub fn consecutive(&self) -> u32 {
        self.consecutive
    }

    /// When the next attempt or probe is due, if it must wait.
    pub fn not_before(&self) -> Option<Instant> {
        self.not_before
    }

    /// What to do at `now`.
    pub fn next(&self, now: Instant) -> Action {
        if self.phase == Phase::Gone {
            return Action::Stop;
        }
        if let Some(t) = self.not_before
            && now < t
        {
            return Action::WaitUntil(t);
        }
        if self.phase == Phase::Probing {
            Action::Probe
        } else {
            Action::Send
        }
    }

    /// Takes the outcome of the attempt just made on the head of the queue (`retry_after`: the
    /// server's `Retry-After`, already capped) and decides.
    pub fn on_attempt(
        &mut self,
        now: Instant,
        outcome: Outcome,
        retry_after: Option<Duration>,
    ) -> Decision {
        let mut d = Decision {
            fate: Fate::Retry,
            in_streak: false,
            streak_end: None,
            events: Vec::new(),
        };
        let ra = retry_after.unwrap_or(Duration::ZERO);
        if outcome == Outcome::Offline {
            self.offline += 1;
            if self.offline == 1 {
                d.events.push(Event::WentOffline);
            }
            let delay = if self.phase == Phase::Probing {
                self.probe_delay(self.probes + 1)
            } else {
                self.backoff(self.offline)
            };
            self.not_before = Some(later(now, delay));
            return d;
        }
        if self.offline > 0 {
            self.offline = 0;
            d.events.push(Event::BackOnline);
        }
        match outcome {
            Outcome::Delivered => {
                d.fate = Fate::Delivered;
                if self.phase == Phase::Probing {
                    d.events.push(Event::Resumed {
                        after: self.consecutive,
                    });
                    d.streak_end = Some(StreakEnd::Requeue);
                } else if self.consecutive > 0 || self.round > 0 {
                    d.events.push(Event::Recovered {
                        after: self.consecutive,
                    });
                    if self.consecutive > 0 {
                        d.streak_end = Some(StreakEnd::Finalize);
                    }
                }
                self.reset();
            }
            Outcome::Failed => {
                if self.phase == Phase::Probing {
                    self.probes += 1;
                    let delay = self.probe_delay(self.probes + 1).max(ra);
                    self.not_before = Some(later(now, delay));
                } else {
                    if self.phase == Phase::Active && self.round == 0 {
                        d.events.push(Event::Retrying);
                    }
                    self.phase = Phase::Retrying;
                    self.round += 1;
                    let delay = if self.round > self.cfg.max_retries {
                        self.round = 0;
                        self.delivery_failed(&mut d);
                        if self.phase == Phase::Probing {
                            self.probe_delay(1)
                        } else if self.cfg.deactivate_after == 0 {
                            // Never deactivated: the rounds themselves back off to the cap.
                            self.backoff(self.consecutive)
                        } else {
                            self.backoff(1)
                        }
                    } else {
                        self.backoff(self.round)
                    };
                    self.not_before = Some(later(now, delay.max(ra)));
                }
            }
            Outcome::Rejected => {
                d.fate = Fate::Failed;
                d.in_streak = true;
                self.round = 0;
                if self.phase == Phase::Probing {
                    // The endpoint answers but refuses this body (or everything): the next
                    // probe, one probe delay later, takes the next delivery, so one refused
                    // body cannot hold the queue.
                    self.consecutive = self.consecutive.saturating_add(1);
                    self.probes += 1;
                    let delay = self.probe_delay(self.probes + 1);
                    self.not_before = Some(later(now, delay));
                } else {
                    self.phase = Phase::Active;
                    self.delivery_failed(&mut d);
                    self.not_before = if self.phase == Phase::Probing {
                        Some(later(now, self.probe_delay(1)))
                    } else {
                        None
                    };
                }
            }
            Outcome::Gone => {
                d.fate = Fate::Failed;
                d.events.push(Event::Gone);
                self.phase = Phase::Gone;
                self.round = 0;
                self.not_before = None;
            }
            Outcome::Offline => unreachable!("handled above"),
        }
        d
    }

    /// Counts a failed delivery; deactivates at the threshold.
    fn delivery_failed(&mut self, d: &mut Decision) {
        self.consecutive = self.consecutive.saturating_add(1);
        d.events.push(Event::DeliveryFailed {
            consecutive: self.consecutive,
        });
        if self.cfg.deactivate_after > 0 && self.consecutive >= self.cfg.deactivate_after {
            self.phase = Phase::Probing;
            self.probes = 0;
            d.events.push(Event::Deactivated {
                consecutive: self.consecutive,
            });
        }
    }

    /// The delay after the `n`-th failure (1-based): `backoff_base · 2^(n-1)`, capped at
    /// `backoff_max`, spread by ±`jitter`.
    pub fn backoff(&mut self, n: u32) -> Duration {
        let d = doubling(self.cfg.backoff_base, n, self.cfg.backoff_max);
        spread(d, self.cfg.jitter, self.rng.f64(), None)
    }

    /// The delay before the `n`-th probe (1-based): `probe_base · 2^(n-1)`, capped at
    /// `probe_max`, spread by ±`jitter` but never beyond `probe_max`.
    pub fn probe_delay(&mut self, n: u32) -> Duration {
        let d = doubling(self.cfg.probe_base, n, self.cfg.probe_max);
        spread(d, self.cfg.jitter, self.rng.f64(), Some(self.cfg.probe_max))
    }
}

/// `base · 2^(n-1)` capped at `max` (n = 0 counts as 1).
fn doubling(base: Duration, n: u32, max: Duration) -> Duration {
    let exp = n.saturating_sub(1).min(30);
    base.saturating_mul(1u32 << exp).min(max)
}

/// `d` spread by ±`jitter` using `r` in [0, 1), optionally capped.
fn spread(d: Duration, jitter: f64, r: f64, cap: Option<Duration>) -> Duration {
    let f = (1.0 + jitter * (r * 2.0 - 1.0)).max(0.0);
    let out = Duration::try_from_secs_f64(d.as_secs_f64() * f).unwrap_or(d);
    match cap {
        Some(c) => out.min(c.max(d)),
        None => out,
    }
}

/// `now + d`, saturating a year ahead instead of overflowing.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn cfg() -> PolicyConfig {
        PolicyConfig {
            max_retries: 2,
            backoff_base: 2 * S,
            backoff_max: 300 * S,
            jitter: 0.0,
            deactivate_after: 5,
            probe_base: 30 * S,
            probe_max: 180 * S,
        }
    }

    /// Feeds `outcome` at the time the policy asks for, returns (time, decision).
    fn step(p: &mut Policy, now: &mut Instant, outcome: Outcome) -> Decision {
        if let Action::WaitUntil(t) = p.next(*now) {
            *now = t;
        }
        assert!(matches!(p.next(*now), Action::Send | Action::Probe));
        p.on_attempt(*now, outcome, None)
    }

    #[test]
    fn retries_then_delivers_without_counting_a_failed_delivery() {
        let t0 = Instant::now();
        let mut now = t0;
        let mut p = Policy::new(cfg(), 1);
        assert_eq!(p.next(now), Action::Send);
        let d = step(&mut p, &mut now, Outcome::Failed);
        assert_eq!(d.fate, Fate::Retry);
        assert_eq!(d.events, vec![Event::Retrying]);
        assert_eq!(p.phase(), Phase::Retrying);
        assert_eq!(p.next(now), Action::WaitUntil(now + 2 * S));
        step(&mut p, &mut now, Outcome::Failed);
        assert_eq!(p.next(now), Action::WaitUntil(now + 4 * S));
        let d = step(&mut p, &mut now, Outcome::Delivered);
        assert_eq!(d.fate, Fate::Delivered);
        assert_eq!(d.events, vec![Event::Recovered { after: 0 }]);
        assert_eq!(d.streak_end, None);
        assert_eq!(now - t0, 6 * S);
        assert_eq!((p.phase(), p.consecutive()), (Phase::Active, 0));
        assert_eq!(p.next(now), Action::Send);
    }

    #[test]
    fn outage_deactivates_after_five_rounds_then_probes_with_backoff_and_resumes() {
        let t0 = Instant::now();
        let mut now = t0;
        let mut p = Policy::new(cfg(), 1);
        let mut failed = Vec::new();
        let mut deactivated_at = None;
        for _ in 0..15 {
            let d = step(&mut p, &mut now, Outcome::Failed);
            assert_eq!(d.fate, Fate::Retry, "the head is never given up");
            for e in d.events {
                match e {
                    Event::DeliveryFailed { consecutive } => failed.push((consecutive, now - t0)),
                    Event::Deactivated { consecutive } => {
                        assert_eq!(consecutive, 5);
                        deactivated_at = Some(now - t0);
                    }
                    _ => {}
                }
            }
        }
        // Rounds of 0, +2, +4 s, the next round 2 s after the last.
        let secs: Vec<(u32, u64)> = failed.iter().map(|(c, d)| (*c, d.as_secs())).collect();
        assert_eq!(secs, vec![(1, 6), (2, 14), (3, 22), (4, 30), (5, 38)]);
        assert_eq!(deactivated_at, Some(38 * S));
        assert_eq!(p.phase(), Phase::Probing);
        // Probes: 30 s, then 60, 120, 180, 180 (capped).
        let mut gaps = Vec::new();
        for _ in 0..5 {
            let before = now;
            let Action::WaitUntil(t) = p.next(now) else {
                panic!("probing waits first")
            };
            now = t;
            assert_eq!(p.next(now), Action::Probe);
            let d = p.on_attempt(now, Outcome::Failed, None);
            assert_eq!((d.fate, d.events.as_slice()), (Fate::Retry, &[][..]));
            gaps.push((now - before).as_secs());
        }
        assert_eq!(gaps, vec![30, 60, 120, 180, 180]);
        assert_eq!(
            p.consecutive(),
            5,
            "failed probes are not failed deliveries"
        );
        let d = step(&mut p, &mut now, Outcome::Delivered);
        assert_eq!(d.events, vec![Event::Resumed { after: 5 }]);
        assert_eq!(d.streak_end, Some(StreakEnd::Requeue));
        assert_eq!((p.phase(), p.next(now)), (Phase::Active, Action::Send));
    }

    #[test]
    fn retry_after_is_a_lower_bound_for_retries_and_probes() {
        let mut now = Instant::now();
        let mut p = Policy::new(cfg(), 1);
        p.on_attempt(now, Outcome::Failed, Some(10 * S));
        assert_eq!(p.next(now), Action::WaitUntil(now + 10 * S));
        let mut c = cfg();
        c.deactivate_after = 1;
        c.max_retries = 0;
        let mut p = Policy::new(c, 1);
        p.on_attempt(now, Outcome::Failed, None);
        assert_eq!(p.phase(), Phase::Probing);
        now += 30 * S;
        p.on_attempt(now, Outcome::Failed, Some(500 * S));
        assert_eq!(p.next(now), Action::WaitUntil(now + 500 * S));
    }

    #[test]
    fn a_rejected_body_moves_on_at_once_and_is_final_when_others_succeed() {
        let mut now = Instant::now();
        let mut p = Policy::new(cfg(), 1);
        let d = step(&mut p, &mut now, Outcome::Rejected);
        assert_eq!((d.fate, d.in_streak), (Fate::Failed, true));
        assert_eq!(d.events, vec![Event::DeliveryFailed { consecutive: 1 }]);
        assert_eq!(p.next(now), Action::Send, "never blocks the queue");
        let d = step(&mut p, &mut now, Outcome::Delivered);
        assert_eq!(d.streak_end, Some(StreakEnd::Finalize));
        assert_eq!(p.consecutive(), 0);
    }

    #[test]
    fn everything_rejected_deactivates_probes_the_next_delivery_and_requeues_on_resume() {
        let mut now = Instant::now();
        let mut p = Policy::new(cfg(), 1);
        for i in 1..=5 {
            let d = step(&mut p, &mut now, Outcome::Rejected);
            assert_eq!(d.fate, Fate::Failed);
            if i < 5 {
                assert_eq!(p.next(now), Action::Send);
            }
        }
        assert_eq!(p.phase(), Phase::Probing);
        let Action::WaitUntil(t) = p.next(now) else {
            panic!("waits for the first probe")
        };
        assert_eq!(t - now, 30 * S);
        let d = step(&mut p, &mut now, Outcome::Rejected);
        assert_eq!((d.fate, d.in_streak), (Fate::Failed, true));
        assert_eq!(p.phase(), Phase::Probing);
        assert!(matches!(p.next(now), Action::WaitUntil(_)));
        let d = step(&mut p, &mut now, Outcome::Delivered);
        assert_eq!(d.streak_end, Some(StreakEnd::Requeue));
        assert_eq!(d.events, vec![Event::Resumed { after: 6 }]);
    }

    #[test]
    fn gone_stops_without_probing_until_reset() {
        let mut now = Instant::now();
        let mut p = Policy::new(cfg(), 1);
        let d = step(&mut p, &mut now, Outcome::Gone);
        assert_eq!(
            (d.fate, d.events.as_slice()),
            (Fate::Failed, &[Event::Gone][..])
        );
        assert_eq!(p.next(now + 86_400 * S), Action::Stop);
        p.reset();
        assert_eq!(p.next(now), Action::Send);
    }

    #[test]
    fn offline_is_not_counted_and_backs_off_forever() {
        let mut now = Instant::now();
        let mut c = cfg();
        c.backoff_max = 20 * S;
        let mut p = Policy::new(c, 1);
        let d = step(&mut p, &mut now, Outcome::Offline);
        assert_eq!(d.events, vec![Event::WentOffline]);
        assert_eq!(d.fate, Fate::Retry);
        let mut gaps = Vec::new();
        for _ in 0..100 {
            let before = now;
            let d = step(&mut p, &mut now, Outcome::Offline);
            assert!(d.events.is_empty());
            gaps.push((now - before).as_secs());
        }
        assert_eq!(&gaps[..5], &[2, 4, 8, 16, 20]);
        assert_eq!((p.phase(), p.consecutive()), (Phase::Offline, 0));
        let d = step(&mut p, &mut now, Outcome::Failed);
        assert_eq!(d.events, vec![Event::BackOnline, Event::Retrying]);
        assert_eq!(p.phase(), Phase::Retrying);
    }

    #[test]
    fn offline_while_probing_keeps_the_probe_schedule_and_the_deactivation() {
        let mut now = Instant::now();
        let mut c = cfg();
        c.deactivate_after = 1;
        c.max_retries = 0;
        let mut p = Policy::new(c, 1);
        step(&mut p, &mut now, Outcome::Failed);
        assert_eq!(p.phase(), Phase::Probing);
        step(&mut p, &mut now, Outcome::Offline);
        assert_eq!(p.phase(), Phase::Probing);
        assert_eq!(p.next(now), Action::WaitUntil(now + 30 * S));
        let d = step(&mut p, &mut now, Outcome::Delivered);
        assert_eq!(
            d.events,
            vec![Event::BackOnline, Event::Resumed { after: 1 }]
        );
    }

    #[test]
    fn never_deactivates_with_zero_and_rounds_back_off_to_the_cap() {
        let mut now = Instant::now();
        let mut c = cfg();
        c.deactivate_after = 0;
        c.max_retries = 0;
        c.backoff_max = 60 * S;
        let mut p = Policy::new(c, 1);
        for _ in 0..50 {
            step(&mut p, &mut now, Outcome::Failed);
        }
        assert_eq!(p.phase(), Phase::Retrying);
        assert_eq!(p.consecutive(), 50);
        assert_eq!(p.next(now), Action::WaitUntil(now + 60 * S));
    }

    #[test]
    fn restore_after_restart() {
        let now = Instant::now();
        let p = Policy::restore(cfg(), 1, Phase::Probing, 5, now);
        assert_eq!(p.next(now), Action::WaitUntil(now + 30 * S));
        assert_eq!(p.next(now + 30 * S), Action::Probe);
        let p = Policy::restore(cfg(), 1, Phase::Gone, 0, now);
        assert_eq!(p.next(now), Action::Stop);
        let p = Policy::restore(cfg(), 1, Phase::Retrying, 3, now);
        assert_eq!((p.next(now), p.consecutive()), (Action::Send, 3));
        let p = Policy::restore(cfg(), 1, Phase::Offline, 0, now);
        assert_eq!((p.next(now), p.phase()), (Action::Send, Phase::Active));
    }

    #[test]
    fn jitter_stays_within_bounds_and_probes_never_exceed_the_cap() {
        let mut c = cfg();
        c.jitter = 0.5;
        let mut p = Policy::new(c, 7);
        for _ in 0..1000 {
            let b = p.backoff(1).as_secs_f64();
            assert!((1.0..=3.0).contains(&b), "{b}");
            let first = p.probe_delay(1).as_secs_f64();
            assert!((15.0..=45.0).contains(&first), "{first}");
            let capped = p.probe_delay(10);
            assert!(capped <= 180 * S && capped >= 90 * S, "{capped:?}");
        }
        assert!(p.backoff(u32::MAX) <= 450 * S);
    }
}

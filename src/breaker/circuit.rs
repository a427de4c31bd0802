//! One circuit: its state machine and the sliding window of outcomes.

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use tokio::time::Instant;

use super::{BreakerConfig, BreakerState, Window};

/// How long a refused caller is told to wait while every probe slot is taken:
/// the probes' outcome is not known yet, so no better estimate exists.
const PROBES_BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// One circuit's state, behind one short lock.
pub(crate) struct Circuit {
    machine: Mutex<Machine>,
}

struct Machine {
    phase: Phase,
    /// Changes on every transition, so an outcome of a call admitted before it
    /// (a slow call finishing after the circuit opened) is not counted.
    epoch: u64,
    outcomes: Outcomes,
}

#[derive(Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// What [`Circuit::admit`] decided.
pub(crate) enum Admission {
    /// The call may go through; report its outcome with [`Circuit::record`].
    Admitted(Ticket),
    /// The call is refused; try again after this long.
    Refused(Duration),
}

/// An admitted call, as the circuit needs it back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    epoch: u64,
    probe: bool,
}

/// How a call ended, as the circuit counts it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outcome {
    pub(crate) failed: bool,
    pub(crate) slow: bool,
    /// An upstream's `Retry-After` on an overload answer: hold the circuit open.
    pub(crate) hold_for: Option<Duration>,
}

/// A state change, reported after the lock is released.
pub(crate) type Transition = (BreakerState, BreakerState);

impl Circuit {
    pub(crate) fn new(config: &BreakerConfig) -> Self {
        Self {
            machine: Mutex::new(Machine {
                phase: Phase::Closed,
                epoch: 0,
                outcomes: Outcomes::new(config.window),
            }),
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.lock().phase.state()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Machine> {
        // The lock guards plain counters updated without panicking code.
        self.machine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits or refuses one call.
    pub(crate) fn admit(&self, config: &BreakerConfig) -> (Admission, Option<Transition>) {
        let mut m = self.lock();
        match m.phase {
            Phase::Closed => (
                Admission::Admitted(Ticket {
                    epoch: m.epoch,
                    probe: false,
                }),
                None,
            ),
            Phase::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return (Admission::Refused(until - now), None);
                }
                let t = m.enter(Phase::HalfOpen {
                    in_flight: 1,
                    successes: 0,
                });
                (
                    Admission::Admitted(Ticket {
                        epoch: m.epoch,
                        probe: true,
                    }),
                    Some(t),
                )
            }
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                if in_flight >= config.half_open_probes {
                    return (Admission::Refused(PROBES_BUSY_RETRY_AFTER), None);
                }
                m.phase = Phase::HalfOpen {
                    in_flight: in_flight + 1,
                    successes,
                };
                (
                    Admission::Admitted(Ticket {
                        epoch: m.epoch,
                        probe: true,
                    }),
                    None,
                )
            }
        }
    }

    /// Counts the outcome of an admitted call.
    pub(crate) fn record(
        &self,
        ticket: Ticket,
        outcome: Outcome,
        config: &BreakerConfig,
    ) -> Option<Transition> {
        let mut m = self.lock();
        let now = Instant::now();
        if let Some(hold) = outcome.hold_for {
            let until = now + hold.min(config.max_retry_after);
            return match m.phase {
                Phase::Open { until: current } => {
                    m.phase = Phase::Open {
                        until: current.max(until),
                    };
                    None
                }
                _ => Some(m.enter(Phase::Open { until })),
            };
        }
        if ticket.epoch != m.epoch {
            return None;
        }
        match m.phase {
            Phase::Closed => {
                m.outcomes.push(now, outcome.failed, outcome.slow);
                m.outcomes.trips(now, config).then(|| {
                    m.enter(Phase::Open {
                        until: now + config.open_for,
                    })
                })
            }
            Phase::HalfOpen {
                in_flight,
                successes,
            } if ticket.probe => {
                if outcome.failed || outcome.slow {
                    return Some(m.enter(Phase::Open {
                        until: now + config.open_for,
                    }));
                }
                let successes = successes + 1;
                if successes >= config.half_open_probes {
                    return Some(m.enter(Phase::Closed));
                }
                m.phase = Phase::HalfOpen {
                    in_flight: in_flight.saturating_sub(1),
                    successes,
                };
                None
            }
            _ => None,
        }
    }

    /// An admitted call ended without an outcome (it was dropped): a probe's
    /// slot is given back, and nothing is counted.
    pub(crate) fn release(&self, ticket: Ticket) {
        if !ticket.probe {
            return;
        }
        let mut m = self.lock();
        if let (
            true,
            Phase::HalfOpen {
                in_flight,
                successes,
            },
        ) = (ticket.epoch == m.epoch, m.phase)
        {
            m.phase = Phase::HalfOpen {
                in_flight: in_flight.saturating_sub(1),
                successes,
            };
        }
    }
}

impl Machine {
    fn enter(&mut self, phase: Phase) -> Transition {
        let from = self.phase.state();
        self.phase = phase;
        self.epoch = self.epoch.wrapping_add(1);
        if let Phase::Closed = phase {
            self.outcomes.clear();
        }
        (from, phase.state())
    }
}

/// The outcomes the rates are computed over.
enum Outcomes {
    Count {
        capacity: usize,
        /// Bit 0: failed; bit 1: slow.
        calls: VecDeque<u8>,
        failures: u32,
        slow: u32,
    },
    Time {
        start: Instant,
        slot_nanos: u128,
        slots: Box<[Slot; SLOTS]>,
    },
}

const SLOTS: usize = 10;

#[derive(Clone, Copy, Default)]
struct Slot {
    generation: u64,
    calls: u32,
    failures: u32,
    slow: u32,
}

impl Outcomes {
    fn new(window: Window) -> Self {
        match window {
            Window::Count(n) => Outcomes::Count {
                capacity: n as usize,
                calls: VecDeque::with_capacity(n as usize),
                failures: 0,
                slow: 0,
            },
            Window::Time(d) => Outcomes::Time {
                start: Instant::now(),
                slot_nanos: (d.as_nanos() / SLOTS as u128).max(1),
                slots: Box::new([Slot::default(); SLOTS]),
            },
        }
    }

    fn clear(&mut self) {
        match self {
            Outcomes::Count {
                calls,
                failures,
                slow,
                ..
            } => {
                calls.clear();
                *failures = 0;
                *slow = 0;
            }
            Outcomes::Time { slots, .. } => **slots = [Slot::default(); SLOTS],
        }
    }

    fn push(&mut self, now: Instant, failed: bool, was_slow: bool) {
        match self {
            Outcomes::Count {
                capacity,
                calls,
                failures,
                slow,
            } => {
                if calls.len() == *capacity
                    && let Some(old) = calls.pop_front()
                {
                    *failures -= u32::from(old & 1);
                    *slow -= u32::from(old >> 1);
                }
                calls.push_back(u8::from(failed) | (u8::from(was_slow) << 1));
                *failures += u32::from(failed);
                *slow += u32::from(was_slow);
            }
            Outcomes::Time {
                start,
                slot_nanos,
                slots,
            } => {
                let generation = generation(*start, *slot_nanos, now);
                let slot = &mut slots[(generation % SLOTS as u64) as usize];
                if slot.generation != generation || slot.calls == 0 {
                    *slot = Slot {
                        generation,
                        ..Slot::default()
                    };
                }
                slot.calls += 1;
                slot.failures += u32::from(failed);
                slot.slow += u32::from(was_slow);
            }
        }
    }

    /// (calls, failures, slow calls) in the window at `now`.
    fn totals(&self, now: Instant) -> (u32, u32, u32) {
        match self {
            Outcomes::Count {
                calls,
                failures,
                slow,
                ..
            } => (calls.len() as u32, *failures, *slow),
            Outcomes::Time {
                start,
                slot_nanos,
                slots,
            } => {
                let current = generation(*start, *slot_nanos, now);
                slots
                    .iter()
                    .filter(|s| s.calls > 0 && current.saturating_sub(s.generation) < SLOTS as u64)
                    .fold((0, 0, 0), |(c, f, s), slot| {
                        (c + slot.calls, f + slot.failures, s + slot.slow)
                    })
            }
        }
    }

    fn trips(&self, now: Instant, config: &BreakerConfig) -> bool {
        let (calls, failures, slow) = self.totals(now);
        if calls < config.min_calls {
            return false;
        }
        let rate = |n: u32| f64::from(n) / f64::from(calls);
        rate(failures) >= config.failure_rate
            || config
                .slow_calls
                .is_some_and(|(_, threshold)| rate(slow) >= threshold)
    }
}

fn generation(start: Instant, slot_nanos: u128, now: Instant) -> u64 {
    (now.saturating_duration_since(start).as_nanos() / slot_nanos) as u64
}

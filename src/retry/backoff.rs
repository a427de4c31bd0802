//! Exponential backoff and its jitter.

use std::time::Duration;

use super::Random;

/// How much randomness spreads out the delays of clients that failed together.
///
/// With `d(n) = min(max_delay, base · multiplier^(n-1))` the exponential delay
/// before retry `n` (1, 2, 3, …) and `U(a, b)` a uniform draw:
///
/// | jitter | delay before retry `n` |
/// | --- | --- |
/// | [`None`](Jitter::None) | `d(n)` |
/// | [`Full`](Jitter::Full) (default) | `U(0, d(n))` |
/// | [`Equal`](Jitter::Equal) | `d(n)/2 + U(0, d(n)/2)` |
/// | [`Decorrelated`](Jitter::Decorrelated) | `min(max_delay, U(base, 3 · previous))`, `previous` starting at `base` |
///
/// Full jitter spreads retries the most and is the right default (see AWS's
/// "Exponential Backoff And Jitter"); equal jitter keeps at least half the
/// exponential delay; decorrelated grows from the previous delay actually slept
/// and ignores the multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Jitter {
    /// No randomness: exactly `d(n)`.
    None,
    /// `U(0, d(n))`.
    #[default]
    Full,
    /// `d(n)/2 + U(0, d(n)/2)`.
    Equal,
    /// `min(max_delay, U(base, 3 · previous))`.
    Decorrelated,
}

/// The delay schedule: base delay, multiplier, cap and [`Jitter`].
///
/// ```
/// use steadfast::retry::{Backoff, Jitter, ThreadRandom};
/// use std::time::Duration;
///
/// let backoff = Backoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(5), Jitter::None);
/// let delays: Vec<_> = (1..=4)
///     .map(|n| backoff.delay(n, Duration::ZERO, &mut ThreadRandom))
///     .collect();
/// assert_eq!(delays, [100, 200, 400, 800].map(Duration::from_millis));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    multiplier: f64,
    max: Duration,
    jitter: Jitter,
}

impl Default for Backoff {
    /// The seed's schedule: 100 ms, ×2, capped at 5 s, full jitter.
    fn default() -> Self {
        Self::new(
            Duration::from_millis(100),
            2.0,
            Duration::from_secs(5),
            Jitter::Full,
        )
    }
}

impl Backoff {
    /// A schedule. A multiplier below 1 (or NaN) is taken as 1: delays never shrink.
    pub fn new(base: Duration, multiplier: f64, max: Duration, jitter: Jitter) -> Self {
        Self {
            base,
            multiplier: if multiplier >= 1.0 { multiplier } else { 1.0 },
            max,
            jitter,
        }
    }

    /// The base delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The multiplier.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The cap on every delay.
    pub fn max_delay(&self) -> Duration {
        self.max
    }

    /// The jitter.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    pub(crate) fn with_base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    pub(crate) fn with_multiplier(self, multiplier: f64) -> Self {
        Self::new(self.base, multiplier, self.max, self.jitter)
    }

    pub(crate) fn with_max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    pub(crate) fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The exponential delay before retry `n` (counting from 1), before jitter:
    /// `min(max_delay, base · multiplier^(n-1))`.
    pub fn exponential(&self, n: u32) -> Duration {
        let exponent = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
        let nanos = nanos(self.base) * self.multiplier.powi(exponent);
        from_nanos(nanos.min(nanos_of_max(self.max)))
    }

    /// The delay before retry `n` (counting from 1); `previous` is the delay slept
    /// before the last retry (only [`Jitter::Decorrelated`] reads it; pass
    /// `Duration::ZERO` for the first retry).
    pub fn delay(&self, n: u32, previous: Duration, rng: &mut impl Random) -> Duration {
        match self.jitter {
            Jitter::None => self.exponential(n),
            Jitter::Full => {
                let d = nanos(self.exponential(n));
                from_nanos(d * rng.next_f64())
            }
            Jitter::Equal => {
                let half = nanos(self.exponential(n)) / 2.0;
                from_nanos(half + half * rng.next_f64())
            }
            Jitter::Decorrelated => {
                let base = nanos(self.base);
                let previous = if previous.is_zero() {
                    base
                } else {
                    nanos(previous)
                };
                let high = (3.0 * previous).max(base);
                let drawn = base + (high - base) * rng.next_f64();
                from_nanos(drawn.min(nanos_of_max(self.max)))
            }
        }
    }
}

/// Nanoseconds as a float: exact below 2^53 ns (104 days), and without the
/// slow `u128` conversion of `as_nanos() as f64`.
fn nanos(d: Duration) -> f64 {
    d.as_secs() as f64 * 1e9 + f64::from(d.subsec_nanos())
}

fn nanos_of_max(max: Duration) -> f64 {
    nanos(max)
}

/// Whole nanoseconds, truncated; saturating at `u64::MAX` ns (584 years).
fn from_nanos(nanos: f64) -> Duration {
    if nanos.is_nan() || nanos <= 0.0 {
        Duration::ZERO
    } else if nanos >= u64::MAX as f64 {
        Duration::from_nanos(u64::MAX)
    } else {
        Duration::from_nanos(nanos as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the scripted values in turn, then repeats the last.
    #[derive(Clone)]
    struct Script(Vec<f64>, usize);

    impl Random for Script {
        fn next_f64(&mut self) -> f64 {
            let v = self.0[self.1.min(self.0.len() - 1)];
            self.1 += 1;
            v
        }
        fn fork(&mut self) -> Self {
            self.clone()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn backoff(jitter: Jitter) -> Backoff {
        Backoff::new(ms(100), 2.0, ms(1000), jitter)
    }

    #[test]
    fn exponential_doubles_and_caps() {
        let b = backoff(Jitter::None);
        let got: Vec<_> = (1..=6).map(|n| b.exponential(n)).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000].map(ms));
        assert_eq!(
            b.exponential(10_000),
            ms(1000),
            "huge n saturates at the cap"
        );
        assert_eq!(
            b.exponential(0),
            ms(100),
            "n = 0 is read as the first retry"
        );
    }

    #[test]
    fn full_jitter_is_uniform_below_the_exponential_delay() {
        let b = backoff(Jitter::Full);
        let mut r = Script(vec![0.5, 0.25, 0.0, 0.75], 0);
        let got: Vec<_> = (1..=4)
            .map(|n| b.delay(n, Duration::ZERO, &mut r))
            .collect();
        assert_eq!(got, [ms(50), ms(50), ms(0), ms(600)]);
    }

    #[test]
    fn equal_jitter_keeps_half() {
        let b = backoff(Jitter::Equal);
        let mut r = Script(vec![0.0, 0.5, 0.75], 0);
        let got: Vec<_> = (1..=3)
            .map(|n| b.delay(n, Duration::ZERO, &mut r))
            .collect();
        assert_eq!(got, [ms(50), ms(150), ms(350)]);
    }

    #[test]
    fn decorrelated_grows_from_the_previous_delay_and_caps() {
        let b = backoff(Jitter::Decorrelated);
        let mut r = Script(vec![0.5, 0.5, 1.0], 0);
        // U(100, 300) at 0.5 = 200; U(100, 600) at 0.5 = 350; U(100, 1050) at ~1 = capped at 1000.
        let first = b.delay(1, Duration::ZERO, &mut r);
        assert_eq!(first, ms(200));
        let second = b.delay(2, first, &mut r);
        assert_eq!(second, ms(350));
        let third = b.delay(3, second, &mut r);
        assert_eq!(third, ms(1000));
    }

    #[test]
    fn a_multiplier_below_one_never_shrinks_delays() {
        let b = Backoff::new(ms(100), 0.5, ms(1000), Jitter::None);
        assert_eq!(b.exponential(3), ms(100));
        let b = Backoff::new(ms(100), f64::NAN, ms(1000), Jitter::None);
        assert_eq!(b.exponential(3), ms(100));
    }
}

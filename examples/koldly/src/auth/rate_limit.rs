//! Rate limits by client address, with the generic cell rate algorithm (GCRA):
//! a budget of `max` requests that refills one request every `window / max`,
//! so no burst of twice the limit fits across a window's edge, and a refused
//! client learns exactly when its next request will be accepted.
//!
//! In memory it is `governor`'s keyed limiter (one process); with
//! `REDIS_URL` the same algorithm runs in Redis as one Lua script — read the
//! theoretical arrival time, decide, write it back, atomically — so every
//! instance shares one budget per client. When Redis fails or does not answer
//! within 500 ms, the check falls back to the process's own limiter (and logs
//! the failure) rather than refusing or waving through everybody.
//!
//! Clients are keyed by address as the trusted-proxy resolution gives it
//! ([`RequestMeta`](crate::request_meta::RequestMeta)); an IPv6 client by its
//! /64, the block one subscriber usually holds, so rotating addresses within it
//! buys no fresh budget.
//!
//! Cost: one mutex-guarded hash map update in memory; one Redis round trip
//! (`EVALSHA`) with Redis.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use governor::{Quota, state::keyed::DefaultKeyedStateStore};
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use crate::{clock::Clock, config::RateLimit};

/// A client as a rate limit sees it: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key of `ip` (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => Self(IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) & (u128::MAX << 64),
            ))),
            v4 => Self(v4),
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// koldly's clock as governor's: whole seconds since the epoch.
#[derive(Clone)]
struct GovernorClock(Arc<dyn Clock>);

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_secs(self.0.now().max(0) as u64)
    }
}

type Memory = governor::RateLimiter<
    ClientKey,
    DefaultKeyedStateStore<ClientKey>,
    GovernorClock,
    governor::middleware::NoOpMiddleware<Duration>,
>;

/// GCRA in one atomic step: KEYS[1] holds the theoretical arrival time (ms);
/// ARGV: now, emission interval, tolerance (all ms). Returns 0 when the
/// request is allowed, else the milliseconds until it would be. The same
/// arithmetic as governor's `Gcra::test_and_update`.
const GCRA_LUA: &str = r"
local now = tonumber(ARGV[1])
local t = tonumber(ARGV[2])
local tau = tonumber(ARGV[3])
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then tat = tonumber(stored) end
local earliest = tat - tau
if now < earliest then return earliest - now end
local nxt = math.max(tat, now) + t
redis.call('SET', KEYS[1], nxt, 'PX', math.max(nxt - now, 1))
return 0
";

/// How long a Redis check may take before the process's own limiter decides.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// Past this many checks, the in-memory limiter forgets clients whose budget
/// is full again.
const SWEEP_EVERY: u64 = 4096;

/// The shared half: Redis, connected on first use.
struct Shared {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
}

/// One rate limit (login, forgot-password...).
pub struct RateLimiter {
    name: &'static str,
    emission: Duration,
    tolerance: Duration,
    clock: Arc<dyn Clock>,
    memory: Memory,
    shared: Option<Shared>,
    checks: AtomicU64,
}

impl RateLimiter {
    /// A limiter named `name` (its Redis keys are `koldly:rate:{name}:...`)
    /// allowing `limit.max` requests per `limit.window`; shared through
    /// `redis` when given.
    pub fn new(
        name: &'static str,
        limit: RateLimit,
        clock: Arc<dyn Clock>,
        redis: Option<redis::Client>,
    ) -> Self {
        let max = NonZeroU32::new(limit.max.max(1)).expect("at least 1");
        let emission = (limit.window / max.get()).max(Duration::from_millis(1));
        let quota = Quota::with_period(emission)
            .expect("a non-zero period")
            .allow_burst(max);
        Self {
            name,
            emission,
            tolerance: emission * (max.get() - 1),
            memory: governor::RateLimiter::new(
                quota,
                DefaultKeyedStateStore::default(),
                GovernorClock(clock.clone()),
            ),
            clock,
            shared: redis.map(|client| Shared {
                client,
                connection: OnceCell::new(),
                script: redis::Script::new(GCRA_LUA),
            }),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request from `ip`; `Err(retry_after)` (whole seconds,
    /// rounded up) when it is over the limit.
    pub async fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let key = ClientKey::of(ip);
        if let Some(shared) = &self.shared {
            match self.check_shared(shared, key).await {
                Ok(outcome) => return outcome,
                Err(err) => tracing::error!(
                    limit = self.name,
                    error = %err,
                    "shared rate limit unavailable; this instance's own limit applies"
                ),
            }
        }
        self.check_memory(key)
    }

    fn check_memory(&self, key: ClientKey) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.memory.retain_recent();
        }
        let now = governor::clock::Clock::now(&GovernorClock(self.clock.clone()));
        self.memory
            .check_key(&key)
            .map_err(|not_until| whole_seconds(not_until.wait_time_from(now)))
    }

    async fn check_shared(
        &self,
        shared: &Shared,
        key: ClientKey,
    ) -> Result<Result<(), Duration>, redis::RedisError> {
        let work = async {
            let connection = shared
                .connection
                .get_or_try_init(|| ConnectionManager::new(shared.client.clone()))
                .await?;
            let now_ms = self.clock.now().max(0) as u64 * 1000;
            let wait_ms: u64 = shared
                .script
                .key(format!("koldly:rate:{}:{key}", self.name))
                .arg(now_ms)
                .arg(self.emission.as_millis() as u64)
                .arg(self.tolerance.as_millis() as u64)
                .invoke_async(&mut connection.clone())
                .await?;
            Ok(match wait_ms {
                0 => Ok(()),
                ms => Err(whole_seconds(Duration::from_millis(ms))),
            })
        };
        tokio::time::timeout(REDIS_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "rate limit check timed out",
                )))
            })
    }
}

/// `wait` rounded up to whole seconds, at least one (`Retry-After` counts
/// seconds; rounding down would invite a request that is refused again).
fn whole_seconds(wait: Duration) -> Duration {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn limiter(clock: &Arc<ManualClock>) -> RateLimiter {
        RateLimiter::new(
            "test",
            RateLimit {
                max: 5,
                window: Duration::from_secs(900),
            },
            clock.clone(),
            None,
        )
    }

    #[tokio::test]
    async fn no_double_burst_across_a_window_edge() {
        let clock = Arc::new(ManualClock::new());
        let limiter = limiter(&clock);
        let a: IpAddr = [10, 0, 0, 1].into();
        assert!(limiter.check(a).await.is_ok());
        clock.advance(Duration::from_secs(899));
        for _ in 0..4 {
            assert!(limiter.check(a).await.is_ok());
        }
        clock.advance(Duration::from_secs(1));
        assert!(limiter.check(a).await.is_ok(), "one refilled");
        assert_eq!(limiter.check(a).await, Err(Duration::from_secs(179)));
        clock.advance(Duration::from_secs(178));
        assert_eq!(limiter.check(a).await, Err(Duration::from_secs(1)));
        clock.advance(Duration::from_secs(1));
        assert!(
            limiter.check(a).await.is_ok(),
            "exactly when Retry-After said"
        );
        let b: IpAddr = [10, 0, 0, 2].into();
        assert!(
            limiter.check(b).await.is_ok(),
            "another address, its own budget"
        );
    }

    #[tokio::test]
    async fn ipv6_clients_are_keyed_by_their_64() {
        let clock = Arc::new(ManualClock::new());
        let limiter = limiter(&clock);
        for i in 1..=5u16 {
            let ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i));
            assert!(limiter.check(ip).await.is_ok());
        }
        let same_64 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0xffff, 1, 2, 3));
        assert!(limiter.check(same_64).await.is_err());
        let next_64 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert!(limiter.check(next_64).await.is_ok());
        assert_eq!(ClientKey::of(same_64).to_string(), "2001:db8:0:1::/64");
        let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        assert_eq!(ClientKey::of(mapped).to_string(), "10.0.0.9");
    }

    // Paused time: the 500 ms limit on each Redis attempt passes at once.
    #[tokio::test(start_paused = true)]
    async fn an_unreachable_redis_falls_back_to_this_instance() {
        let clock = Arc::new(ManualClock::new());
        let unreachable = redis::Client::open("redis://127.0.0.1:1/").unwrap();
        let limiter = RateLimiter::new(
            "test",
            RateLimit {
                max: 2,
                window: Duration::from_secs(60),
            },
            clock,
            Some(unreachable),
        );
        let a: IpAddr = [10, 0, 0, 1].into();
        assert!(limiter.check(a).await.is_ok());
        assert!(limiter.check(a).await.is_ok());
        assert_eq!(limiter.check(a).await, Err(Duration::from_secs(30)));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(
            whole_seconds(Duration::from_millis(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            whole_seconds(Duration::from_millis(179_001)),
            Duration::from_secs(180)
        );
        assert_eq!(
            whole_seconds(Duration::from_secs(179)),
            Duration::from_secs(179)
        );
    }
}

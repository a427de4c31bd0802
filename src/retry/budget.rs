//! A retry budget shared across requests: retries may add only a fraction to the load.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

/// Slots in the sliding window.
const SLOTS: usize = 10;
/// One retry, in the budget's fixed-point units (so a 20% ratio is 200 per request).
const UNIT: i64 = 1000;
/// The most deposits gathered before they are added to the window (one clock
/// read per batch).
const MAX_BATCH: i64 = 64;

/// How many retries the layer may make, shared by every request that holds it.
///
/// A fixed number of retries per request multiplies the load on an upstream that
/// is already failing: three retries turn one request into four, and every layer
/// of clients that retries multiplies again. A budget (as in Finagle, tower's
/// `TpsBudget` and the AWS SDKs' retry quota) caps retries as a share of the
/// traffic instead:
///
/// - every request deposits `ratio` of a retry (0.2 by default), and every retry
///   withdraws one;
/// - deposits and withdrawals count for a sliding `window` (10 s by default,
///   in ten slots) and then expire;
/// - a reserve of `min_per_second × window` retries (10 per second by default)
///   lets a service with little traffic still retry.
///
/// So over any window, retries ≤ `ratio × requests + min_per_second × window`:
/// at steady state retries add at most 20% to the request rate, plus 10 per
/// second. An empty budget refuses, and the layer returns the failure at once.
///
/// The budget is an `Arc` around atomics: clone it to share it between layers,
/// services and [`RetryPolicy::run`](super::RetryPolicy::run) calls. Updates are
/// lock-free and the clock is tokio's, so `tokio::time::pause()` drives it in
/// tests. A deposit is one relaxed atomic add: deposits are gathered in
/// batches (as many as arrive within one slot, up to 64; one at low rates),
/// each dated by its first deposit (so it expires no later than that one
/// would, and a batch older than the window is not counted) and moved to the
/// window when full or when the balance is read (so, after a sudden drop in
/// traffic, up to one batch may go uncounted: the error is towards fewer
/// retries, never more). Two racing withdrawals may
/// both take the last retry: the bound holds to within the number of threads.
///
/// ```
/// use steadfast::retry::RetryBudget;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // No reserve: only deposits pay for retries.
/// let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.5);
/// assert!(!budget.withdraw());
/// budget.deposit();
/// budget.deposit();
/// assert!(budget.withdraw(), "two requests at 50% pay for one retry");
/// assert!(!budget.withdraw());
/// # }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    start: Instant,
    slot_nanos: u64,
    /// Each slot packs its generation (high 32 bits) and its balance change (low 32, signed).
    slots: [AtomicU64; SLOTS],
    /// Deposits not yet in a slot: a request adds to it with one relaxed
    /// atomic, and it is moved to the window every `BATCH` deposits and before
    /// the balance is read.
    pending: AtomicI64,
    /// The generation of the oldest pending deposit: a batch counts from then,
    /// so it expires no later than its first deposit would.
    pending_since: AtomicU32,
    /// How many deposits make a batch: as many as come within one slot, up
    /// to `MAX_BATCH`.
    batch: AtomicU32,
    reserve: i64,
    deposit: i32,
    window: Duration,
    min_per_second: u32,
    ratio: f64,
}

impl Default for RetryBudget {
    /// 20% of requests, plus 10 retries per second, over 10 seconds.
    fn default() -> Self {
        Self::new(Duration::from_secs(10), 10, 0.2)
    }
}

impl RetryBudget {
    /// A budget over `window`, with a reserve of `min_per_second` retries per
    /// second and `ratio` of a retry earned by each request (0.2 = 20%; clamped
    /// to 0..=1000).
    pub fn new(window: Duration, min_per_second: u32, ratio: f64) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1000.0)
        };
        let slot_nanos = u64::try_from(window.as_nanos() / SLOTS as u128)
            .unwrap_or(u64::MAX)
            .max(1);
        let reserve = (f64::from(min_per_second) * window.as_secs_f64() * UNIT as f64) as i64;
        Self {
            inner: Arc::new(Inner {
                start: Instant::now(),
                slot_nanos,
                slots: std::array::from_fn(|_| AtomicU64::new(0)),
                pending: AtomicI64::new(0),
                pending_since: AtomicU32::new(0),
                batch: AtomicU32::new(1),
                reserve,
                deposit: (ratio * UNIT as f64).round() as i32,
                window,
                min_per_second,
                ratio,
            }),
        }
    }

    /// Records a request: it earns `ratio` of a retry.
    ///
    /// One relaxed atomic add; the clock is read once per batch of deposits
    /// (the first of a batch dates it, so deposits never outlive the window).
    #[inline]
    pub fn deposit(&self) {
        let inner = &*self.inner;
        let amount = i64::from(inner.deposit);
        if amount > 0 {
            let before = inner.pending.fetch_add(amount, Ordering::Relaxed);
            let batch = i64::from(inner.batch.load(Ordering::Relaxed));
            if before == 0 || before + amount >= batch * amount {
                inner.deposit_slow(before, amount);
            }
        }
    }

    /// Takes one retry from the budget; `false` (and nothing taken) when it is empty.
    pub fn withdraw(&self) -> bool {
        let inner = &*self.inner;
        let generation = inner.generation();
        inner.flush(generation);
        if inner.sum(generation) >= UNIT {
            inner.add(generation, -(UNIT as i32));
            true
        } else {
            false
        }
    }

    /// The retries available now.
    pub fn balance(&self) -> f64 {
        let inner = &*self.inner;
        let generation = inner.generation();
        inner.flush(generation);
        inner.sum(generation) as f64 / UNIT as f64
    }

    /// Whether two handles share one budget.
    pub fn ptr_eq(&self, other: &RetryBudget) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Inner {
    /// The first deposit of a batch dates it; the one that fills it moves it
    /// to the window.
    #[cold]
    #[inline(never)]
    fn deposit_slow(&self, before: i64, amount: i64) {
        let generation = self.generation();
        if before == 0 {
            self.pending_since.store(generation, Ordering::Relaxed);
        }
        let batch = i64::from(self.batch.load(Ordering::Relaxed));
        if before + amount >= batch * amount {
            // A batch should not span more than a slot: grow it while it fills
            // within one, shrink it when it does not (down to one deposit).
            if self.flush(generation) == 0 {
                let next = (batch * 2).min(MAX_BATCH) as u32;
                self.batch.store(next, Ordering::Relaxed);
            }
        }
    }

    /// Moves the pending deposits to the slot of the oldest of them; a batch
    /// that began before the window is dropped (it is never counted late).
    /// A batch that spanned a slot boundary halves the next ones.
    fn flush(&self, now: u32) -> u32 {
        if self.pending.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let since = self.pending_since.load(Ordering::Relaxed);
        let amount = self.pending.swap(0, Ordering::AcqRel);
        let age = now.wrapping_sub(since);
        if amount > 0 && age < SLOTS as u32 {
            self.add(since, i32::try_from(amount).unwrap_or(i32::MAX));
        }
        if age > 0 {
            let batch = self.batch.load(Ordering::Relaxed);
            self.batch.store((batch / 2).max(1), Ordering::Relaxed);
        }
        age
    }

    #[inline]
    fn generation(&self) -> u32 {
        let elapsed = Instant::now().saturating_duration_since(self.start);
        // u64 arithmetic (584 years of nanoseconds), not `as_nanos`'s u128 division.
        let nanos = elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()));
        // Wraps after 2^32 slots (13 years of 100 ms slots); comparisons wrap too.
        (nanos / self.slot_nanos) as u32
    }

    #[inline]
    fn add(&self, generation: u32, amount: i32) {
        let slot = &self.slots[generation as usize % SLOTS];
        let mut current = slot.load(Ordering::Acquire);
        loop {
            let (stored, value) = unpack(current);
            let next = if stored == generation || (stored.wrapping_sub(generation) as i32) > 0 {
                // The slot is this generation's (or a later one's, if this thread was slow).
                pack(stored, value.saturating_add(amount))
            } else {
                // The slot holds an expired generation: start it afresh.
                pack(generation, amount)
            };
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    fn sum(&self, generation: u32) -> i64 {
        let live: i64 = self
            .slots
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Acquire)))
            .filter(|(stored, _)| generation.wrapping_sub(*stored) < SLOTS as u32)
            .map(|(_, value)| i64::from(value))
            .sum();
        self.reserve.saturating_add(live)
    }
}

fn pack(generation: u32, value: i32) -> u64 {
    (u64::from(generation) << 32) | u64::from(value as u32)
}

fn unpack(packed: u64) -> (u32, i32) {
    ((packed >> 32) as u32, packed as u32 as i32)
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("window", &self.inner.window)
            .field("min_per_second", &self.inner.min_per_second)
            .field("ratio", &self.inner.ratio)
            .field("balance", &self.balance())
            .finish()
    }
}

impl tower::retry::budget::Budget for RetryBudget {
    fn deposit(&self) {
        RetryBudget::deposit(self)
    }

    fn withdraw(&self) -> bool {
        RetryBudget::withdraw(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_budget_refuses() {
        let budget = RetryBudget::new(secs(1), 0, 0.0);
        assert!(!budget.withdraw());
        budget.deposit();
        assert!(!budget.withdraw(), "a zero ratio earns nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_allows_min_per_second_times_window() {
        let budget = RetryBudget::new(secs(2), 5, 0.0);
        for i in 0..10 {
            assert!(budget.withdraw(), "retry {i} is in the reserve");
        }
        assert!(!budget.withdraw());
        // Withdrawals expire with the window, and the reserve is whole again.
        advance(secs(2) + Duration::from_millis(1)).await;
        assert_eq!(budget.balance(), 10.0);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_pay_ratio_and_expire() {
        let budget = RetryBudget::new(secs(1), 0, 0.2);
        for _ in 0..10 {
            budget.deposit();
        }
        assert_eq!(budget.balance(), 2.0);
        assert!(budget.withdraw());
        advance(Duration::from_millis(500)).await;
        assert!(budget.withdraw(), "deposits half a window old still count");
        assert!(!budget.withdraw());
        for _ in 0..5 {
            budget.deposit();
        }
        advance(Duration::from_millis(1100)).await;
        assert!(!budget.withdraw(), "deposits older than the window expired");
        assert_eq!(budget.balance(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn batched_deposits_count_when_read_and_expire_with_their_first() {
        let budget = RetryBudget::new(secs(1), 0, 1.0);
        // At a low rate every deposit is dated on its own.
        budget.deposit();
        advance(Duration::from_millis(500)).await;
        budget.deposit();
        advance(Duration::from_millis(600)).await;
        assert_eq!(
            budget.balance(),
            1.0,
            "the first expired, the second did not"
        );
        advance(Duration::from_millis(500)).await;
        // Many deposits within one slot: they are batched, and all count.
        for _ in 0..100 {
            budget.deposit();
        }
        assert_eq!(budget.balance(), 100.0);
        // A batch expires with its first deposit, never later.
        for _ in 0..3 {
            budget.deposit();
        }
        advance(Duration::from_millis(950)).await;
        budget.deposit();
        advance(Duration::from_millis(100)).await;
        assert_eq!(budget.balance(), 0.0, "never counted past the window");
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_budget_and_tower_can_use_it() {
        use tower::retry::budget::Budget;
        let a = RetryBudget::new(secs(1), 1, 0.0);
        let b = a.clone();
        assert!(a.ptr_eq(&b));
        assert!(Budget::withdraw(&b));
        assert!(!Budget::withdraw(&a), "the clone spent the only retry");
    }

    #[test]
    fn concurrent_withdrawals_stay_close_to_the_bound() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let _guard = rt.enter();
        let budget = RetryBudget::new(secs(10), 0, 1.0);
        for _ in 0..1000 {
            budget.deposit();
        }
        let taken = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let _guard = rt.enter();
                    for _ in 0..500 {
                        if budget.withdraw() {
                            taken.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let taken = taken.into_inner();
        assert!((1000..=1004).contains(&taken), "took {taken} of 1000");
    }

    #[test]
    fn packing_round_trips() {
        for (g, v) in [(0, 0), (7, -1000), (u32::MAX, i32::MIN), (1, i32::MAX)] {
            assert_eq!(unpack(pack(g, v)), (g, v));
        }
    }
}

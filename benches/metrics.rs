//! What the `metrics` feature costs where it records: a request that fails
//! once with a 503 and is retried at once (one retry counter and one delay
//! sample per request), and the success path, which records nothing.
//!
//! Run it twice, as `benches/README.md` shows: without the feature (the
//! variants are named "feature off") and with it, where it runs with no
//! recorder installed (the facade's no-op) and with a recorder of atomic
//! counters installed (the cost of the call itself; a real exporter adds its
//! own key lookup).

mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::StatusCode;
use support::retry::{empty, flaky, ok, steadfast_retry, steadfast_retry_always};
use tower::{Layer, service_fn};

#[cfg(feature = "metrics")]
mod recorder {
    //! A recorder whose every counter and histogram is one shared atomic.

    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };

    use metrics::{
        Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };

    #[derive(Default)]
    pub struct Atomics {
        counter: Arc<AtomicU64>,
        histogram: Arc<Sum>,
    }

    #[derive(Default)]
    struct Sum(AtomicU64);

    impl HistogramFn for Sum {
        fn record(&self, value: f64) {
            self.0.fetch_add(value.to_bits() & 1, Ordering::Relaxed);
        }
    }

    impl Recorder for Atomics {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.counter.clone())
        }

        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }

        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.histogram.clone())
        }
    }
}

fn variants(c: &mut Criterion, recorder: &str) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("metrics");
    let retried = steadfast_retry_always().layer(flaky());
    group.bench_function(format!("one retry/{recorder}"), |b| {
        b.to_async(&rt).iter(|| async {
            let res = support::call(&mut retried.clone(), empty()).await;
            assert_eq!(res.status(), StatusCode::OK);
            black_box(res)
        })
    });
    let success = steadfast_retry().layer(service_fn(ok));
    group.bench_function(format!("success/{recorder}"), |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(support::call(&mut success.clone(), empty()).await) })
    });
    group.finish();
}

fn metrics_cost(c: &mut Criterion) {
    #[cfg(not(feature = "metrics"))]
    variants(c, "feature off");
    #[cfg(feature = "metrics")]
    {
        variants(c, "feature on, no recorder");
        metrics::set_global_recorder(recorder::Atomics::default())
            .expect("the only recorder of this process");
        variants(c, "feature on, atomic recorder");
    }
}

criterion_group!(benches, metrics_cost);
criterion_main!(benches);

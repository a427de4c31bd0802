//! Where the jitter's randomness comes from.

/// A source of uniform random numbers for jitter.
///
/// The retry layer keeps one generator per service and gives each request its
/// own [`fork`](Random::fork), so requests never share (or lock) a generator.
/// [`ThreadRandom`] (the default) draws from rand's thread-local generator. Any
/// seedable rand generator works too, which makes delays reproducible in tests:
///
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use steadfast::retry::Random;
///
/// let mut a = StdRng::seed_from_u64(7);
/// let mut b = StdRng::seed_from_u64(7);
/// assert_eq!(a.next_f64(), b.next_f64());
/// let x = a.next_f64();
/// assert!((0.0..1.0).contains(&x));
/// ```
///
/// Implement it yourself to script exact values, as the tests do.
pub trait Random: Clone + Send + 'static {
    /// A number drawn uniformly from `[0, 1)`.
    fn next_f64(&mut self) -> f64;

    /// An independent generator for one request, derived from this one.
    fn fork(&mut self) -> Self;
}

/// Draws from rand's thread-local generator: nothing to seed, share or lock.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRandom;

impl Random for ThreadRandom {
    fn next_f64(&mut self) -> f64 {
        rand::random::<f64>()
    }

    fn fork(&mut self) -> Self {
        ThreadRandom
    }
}

impl<R> Random for R
where
    R: rand::RngCore + rand::SeedableRng + Clone + Send + 'static,
{
    fn next_f64(&mut self) -> f64 {
        rand::Rng::random::<f64>(self)
    }

    fn fork(&mut self) -> Self {
        R::from_rng(self)
    }
}

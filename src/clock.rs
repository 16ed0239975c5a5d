//! Time, injected: the core never reads a clock of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
    }

    /// `self - d`, saturating at the epoch.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ghauthz::Timestamp;
    /// assert_eq!(Timestamp(5_000).minus(Duration::from_secs(2)), Timestamp(3_000));
    /// assert_eq!(Timestamp(5_000).minus(Duration::from_secs(9)), Timestamp(0));
    /// ```
    pub fn minus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
    }

    /// Whole seconds since the epoch.
    pub fn as_secs(self) -> u64 {
        self.0 / 1000
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock: the wall time read once, at first use, plus the monotonic time elapsed
/// since, read from the CPU's time-stamp counter (through `quanta`, falling back to the OS's
/// monotonic clock where the counter is unreliable).
///
/// Reading it costs a few nanoseconds and no fence, which keeps the cache's hit path short, and
/// lifetimes counted with it are immune to wall-clock steps. It follows a wall-clock change made
/// after first use only through the slow drift of the two clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[derive(Debug)]
struct Anchor {
    clock: quanta::Clock,
    /// The counter's raw value at first use.
    start: u64,
    wall_ms: u64,
}

static ANCHOR: std::sync::OnceLock<Anchor> = std::sync::OnceLock::new();

fn wall_ms() -> u64 {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let a = ANCHOR.get_or_init(|| {
            let clock = quanta::Clock::new();
            let start = clock.raw();
            Anchor { clock, start, wall_ms: wall_ms() }
        });
        // Raw counter values, scaled once: no `Duration` on the way.
        let elapsed_ns = a.clock.delta_as_nanos(a.start, a.clock.raw());
        Timestamp(a.wall_ms.saturating_add(elapsed_ns / 1_000_000))
    }
}

/// A clock that moves only when told: for tests, and for world mode's fixed `now`.
///
/// ```
/// use ghauthz::{Clock, ManualClock, Timestamp};
/// use std::time::Duration;
/// let clock = ManualClock::new(Timestamp(1_000));
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), Timestamp(3_000));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self { ms: Arc::new(AtomicU64::new(start.0)) }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.ms.fetch_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, t: Timestamp) {
        self.ms.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_tracks_wall_time() {
        let ours = SystemClock.now().0;
        let wall = wall_ms();
        assert!(ours.abs_diff(wall) < 1_000, "{ours} vs {wall}");
        std::thread::sleep(Duration::from_millis(20));
        assert!(SystemClock.now().0 >= ours + 20);
    }
}

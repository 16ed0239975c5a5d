//! The system clock: the adapter that reads the machine's time for the core's [`Clock`].

use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::time::{Clock, Timestamp};

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
    /// Milliseconds per counter tick, in 64.64 fixed point: one multiply turns ticks into
    /// milliseconds.
    ms_per_tick: u128,
}

/// Counter ticks over which the clock's rate is read off quanta's calibration.
const RATE_TICKS: u64 = 1 << 40;

static ANCHOR: std::sync::OnceLock<Anchor> = std::sync::OnceLock::new();

fn wall_ms() -> u64 {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Timestamp {
        let a = ANCHOR.get_or_init(|| {
            let clock = quanta::Clock::new();
            let start = clock.raw();
            let ns = u128::from(clock.delta_as_nanos(0, RATE_TICKS));
            let ms_per_tick = (ns << (64 - RATE_TICKS.trailing_zeros())) / 1_000_000;
            Anchor { clock, start, wall_ms: wall_ms(), ms_per_tick }
        });
        let ticks = u128::from(a.clock.raw().saturating_sub(a.start));
        let elapsed_ms = u64::try_from((ticks * a.ms_per_tick) >> 64).unwrap_or(u64::MAX);
        Timestamp(a.wall_ms.saturating_add(elapsed_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn system_clock_tracks_wall_time() {
        let ours = SystemClock.now().0;
        let wall = wall_ms();
        assert!(ours.abs_diff(wall) < 1_000, "{ours} vs {wall}");
        std::thread::sleep(Duration::from_millis(20));
        assert!(SystemClock.now().0 >= ours + 20);
    }

    #[test]
    fn system_clock_counts_milliseconds_at_the_counter_s_rate() {
        let (ours, wall) = (SystemClock.now().0, wall_ms());
        std::thread::sleep(Duration::from_millis(300));
        let (ours, wall) = (SystemClock.now().0 - ours, wall_ms() - wall);
        assert!(ours.abs_diff(wall) <= 20, "{ours} ms counted while the wall clock moved {wall} ms");
    }
}

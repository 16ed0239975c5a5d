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
}

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

/// The latest time taken on the way in, and written: 9999-12-31T23:59:59.999Z. RFC 3339 has
/// four-digit years; a later time would print as `+10000-...`, which is not RFC 3339.
pub(crate) const LAST_RFC3339_MS: u64 = 253_402_300_799_999;

/// Why a text is not a time this crate takes (the text is never repeated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// Not an RFC 3339 time (`2026-11-22T10:00:00Z`).
    #[error("not an RFC 3339 time")]
    NotRfc3339,
    /// Before 1970-01-01T00:00:00Z.
    #[error("before 1970")]
    Before1970,
    /// After 9999-12-31T23:59:59.999Z (in UTC: an offset can carry the last day past it).
    #[error("after year 9999")]
    AfterYear9999,
}

impl Timestamp {
    /// Reads an RFC 3339 time from 1970 to the end of year 9999 (UTC), the times this crate
    /// takes and writes.
    ///
    /// ```
    /// use ghauthz::{TimeError, Timestamp};
    /// assert_eq!(Timestamp::parse_rfc3339("1970-01-01T00:00:01Z"), Ok(Timestamp(1000)));
    /// assert_eq!(Timestamp::parse_rfc3339("9999-12-31T23:00:00-02:00"), Err(TimeError::AfterYear9999));
    /// assert_eq!(Timestamp::parse_rfc3339("1969-12-31T23:59:59Z"), Err(TimeError::Before1970));
    /// assert_eq!(Timestamp::parse_rfc3339("yesterday"), Err(TimeError::NotRfc3339));
    /// ```
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, TimeError> {
        let t = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| TimeError::NotRfc3339)?;
        let ms = u64::try_from(t.timestamp_millis()).map_err(|_| TimeError::Before1970)?;
        if ms > LAST_RFC3339_MS {
            return Err(TimeError::AfterYear9999);
        }
        Ok(Timestamp(ms))
    }

    /// The time in RFC 3339, UTC, to the second (`2026-11-22T10:00:00Z`); a time after year
    /// 9999 is written as the last second of 9999, the latest RFC 3339 can say.
    ///
    /// ```
    /// use ghauthz::Timestamp;
    /// assert_eq!(Timestamp(1_000).to_rfc3339(), "1970-01-01T00:00:01Z");
    /// assert_eq!(Timestamp(u64::MAX).to_rfc3339(), "9999-12-31T23:59:59Z");
    /// ```
    pub fn to_rfc3339(self) -> String {
        let ms = i64::try_from(self.0.min(LAST_RFC3339_MS)).unwrap_or(0);
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    }
}

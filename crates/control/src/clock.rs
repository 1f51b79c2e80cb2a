//! The one clock. Everything below the binary takes the time from a [`Clock`] it is given (the
//! control plane's [`crate::Control::clock`]); `std::time::SystemTime::now` is refused by
//! clippy (`clippy.toml`, `disallowed-methods`) everywhere but in [`Clock::system`]'s source
//! below, so that a test can hand in any time and a reader finds every reading of the clock.

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A source of the current time; `Copy`, passed down by value.
#[derive(Clone, Copy, Debug)]
pub struct Clock(fn() -> SystemTime);

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The real clock.
    pub const fn system() -> Self {
        Self(system_time)
    }

    /// A clock that reads `source` (tests: a fixed or moving time).
    pub const fn from_fn(source: fn() -> SystemTime) -> Self {
        Self(source)
    }

    /// The current time.
    pub fn time(&self) -> SystemTime {
        (self.0)()
    }

    /// Unix seconds (0 before the epoch, `i64::MAX` past its range).
    pub fn now(&self) -> i64 {
        self.time().duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
    }

    /// Unix milliseconds.
    pub fn unix_millis(&self) -> u64 {
        self.time().duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
    }
}

/// The one real clock source of the workspace's libraries.
#[allow(clippy::disallowed_methods)] // the real clock: every other reading goes through `Clock`
fn system_time() -> SystemTime {
    SystemTime::now()
}

/// Unix seconds by the real clock, for callers that hold no [`crate::Control`] (the command
/// line, tests).
pub fn now() -> i64 {
    Clock::system().now()
}

/// [`now`] as unsigned seconds, as the token issuer takes them.
pub fn unix_now() -> u64 {
    u64::try_from(now()).unwrap_or(0)
}

/// RFC 3339 UTC (`2027-06-30T12:00:00Z`) for Unix seconds.
pub fn rfc3339(unix_seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix_seconds.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_2027() -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_millis(1_814_400_000_250)
    }

    #[test]
    fn a_clock_passed_in_is_the_one_read() {
        let clock = Clock::from_fn(at_2027);
        assert_eq!(clock.now(), 1_814_400_000);
        assert_eq!(clock.unix_millis(), 1_814_400_000_250);
        assert_eq!(rfc3339(clock.now()), "2027-07-01T00:00:00Z");
    }

    #[test]
    fn before_the_epoch_is_zero() {
        let clock = Clock::from_fn(|| UNIX_EPOCH - std::time::Duration::from_secs(5));
        assert_eq!(clock.now(), 0);
        assert_eq!(clock.unix_millis(), 0);
    }
}

//! Moments in the future that never overflow: `Instant + Duration` panics
//! when the sum cannot be represented, so every deadline is built here.

use std::time::Duration;

/// Far enough to be "never" for a process, short enough to be
/// representable on every clock.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// An instant that can be moved forward without panicking.
pub trait Later: Copy {
    fn checked_add(&self, d: Duration) -> Option<Self>;

    /// `self + d`, or as far as the clock goes (a hundred years on, at
    /// most) when that cannot be represented.
    fn later(self, d: Duration) -> Self {
        self.checked_add(d)
            .or_else(|| self.checked_add(d.min(NEVER)))
            .unwrap_or(self)
    }
}

impl Later for std::time::Instant {
    fn checked_add(&self, d: Duration) -> Option<Self> {
        std::time::Instant::checked_add(self, d)
    }
}

impl Later for tokio::time::Instant {
    fn checked_add(&self, d: Duration) -> Option<Self> {
        tokio::time::Instant::checked_add(self, d)
    }
}

/// `now + d` on tokio's clock, never panicking.
pub fn after(d: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now().later(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_duration_does_not_panic() {
        let now = std::time::Instant::now();
        assert!(now.later(Duration::MAX) > now);
        assert_eq!(
            now.later(Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        let t = tokio::time::Instant::now();
        assert!(t.later(Duration::MAX) > t);
    }
}

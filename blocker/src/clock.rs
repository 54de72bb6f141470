//! Ban expiry times in the clock the XDP program reads.
//!
//! The program compares entries against `bpf_ktime_get_coarse_ns()`, i.e.
//! `CLOCK_MONOTONIC_COARSE`: not moved by NTP steps, a third of the cost of the precise clocks,
//! at most a tick behind `CLOCK_MONOTONIC`, which is what is read here. It stands still during
//! suspend, so a ban lasts that much longer on a machine that sleeps (mail servers don't).
//! LAPI speaks wall-clock durations; these functions convert between the two.

use std::time::{Duration, SystemTime};

/// `CLOCK_MONOTONIC` now, in nanoseconds: the program's clock.
#[must_use]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    #[expect(
        clippy::cast_sign_loss,
        reason = "the monotonic clock is never negative"
    )]
    let (secs, nanos) = (ts.tv_sec as u64, ts.tv_nsec as u64);
    secs * 1_000_000_000 + nanos
}

/// The monotonic time at which a ban ending at wall-clock `until` ends, given the two clocks' readings
/// at the same moment. `None` (a ban with no end) maps to `u64::MAX`.
#[must_use]
pub fn expiry_ns(until: Option<SystemTime>, wall_now: SystemTime, clock_now: u64) -> u64 {
    let Some(until) = until else { return u64::MAX };
    match until.duration_since(wall_now) {
        Ok(ahead) => clock_now.saturating_add(nanos(ahead)),
        Err(past) => clock_now.saturating_sub(nanos(past.duration())),
    }
}

/// The wall-clock time of a monotonic reading (for display: `blocker list`, `check`).
#[must_use]
pub fn wall_time(expires_at_ns: u64, wall_now: SystemTime, clock_now: u64) -> Option<SystemTime> {
    if expires_at_ns == u64::MAX {
        return None;
    }
    Some(if expires_at_ns >= clock_now {
        wall_now + Duration::from_nanos(expires_at_ns - clock_now)
    } else {
        wall_now - Duration::from_nanos(clock_now - expires_at_ns)
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_the_wall_clock_offset() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let boot = 5_000_000_000;
        let later = wall + Duration::from_secs(10);
        let earlier = wall - Duration::from_secs(2);
        assert_eq!(expiry_ns(Some(later), wall, boot), 15_000_000_000);
        assert_eq!(expiry_ns(Some(earlier), wall, boot), 3_000_000_000);
        assert_eq!(expiry_ns(None, wall, boot), u64::MAX);
        assert_eq!(wall_time(15_000_000_000, wall, boot), Some(later));
        assert_eq!(wall_time(3_000_000_000, wall, boot), Some(earlier));
        assert_eq!(wall_time(u64::MAX, wall, boot), None);
    }

    #[test]
    fn a_ban_far_in_the_past_saturates_at_zero() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(expiry_ns(Some(SystemTime::UNIX_EPOCH), wall, 1), 0);
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a && a > 0);
    }
}

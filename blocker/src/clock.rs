//! Ban expiry times in the clock the XDP program reads.
//!
//! The program compares entries against `bpf_ktime_get_boot_ns()`, i.e. `CLOCK_BOOTTIME`,
//! which keeps counting through suspend and is not moved by NTP steps; LAPI speaks wall-clock
//! durations. These functions convert between the two.

use std::time::{Duration, SystemTime};

/// `CLOCK_BOOTTIME` now, in nanoseconds.
#[must_use]
pub fn boottime_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_BOOTTIME exists on every kernel with XDP.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_BOOTTIME) failed");
    #[expect(clippy::cast_sign_loss, reason = "BOOTTIME is never negative")]
    let (secs, nanos) = (ts.tv_sec as u64, ts.tv_nsec as u64);
    secs * 1_000_000_000 + nanos
}

/// The boottime at which a ban ending at wall-clock `until` ends, given the two clocks' readings
/// at the same moment. `None` (a ban with no end) maps to `u64::MAX`.
#[must_use]
pub fn expiry_ns(until: Option<SystemTime>, wall_now: SystemTime, boot_now: u64) -> u64 {
    let Some(until) = until else { return u64::MAX };
    match until.duration_since(wall_now) {
        Ok(ahead) => boot_now.saturating_add(nanos(ahead)),
        Err(past) => boot_now.saturating_sub(nanos(past.duration())),
    }
}

/// The wall-clock time of a boottime reading (for display: `blocker list`, `check`).
#[must_use]
pub fn wall_time(expires_at_ns: u64, wall_now: SystemTime, boot_now: u64) -> Option<SystemTime> {
    if expires_at_ns == u64::MAX {
        return None;
    }
    Some(if expires_at_ns >= boot_now {
        wall_now + Duration::from_nanos(expires_at_ns - boot_now)
    } else {
        wall_now - Duration::from_nanos(boot_now - expires_at_ns)
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
    fn boottime_moves_forward() {
        let a = boottime_ns();
        let b = boottime_ns();
        assert!(b >= a && a > 0);
    }
}

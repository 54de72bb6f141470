//! Ban expiry times in the clock the XDP program reads.
//!
//! The program compares entries against `bpf_ktime_get_coarse_ns()`, i.e.
//! `CLOCK_MONOTONIC_COARSE`: not moved by NTP steps, a third of the cost of the precise clocks,
//! at most a tick behind `CLOCK_MONOTONIC`, which is what is read here. The program reads it
//! once a jiffy per CPU, so normally within two ticks, and always late, never early. It stands
//! still during suspend, so a ban lasts that much longer on a machine that sleeps (mail
//! servers don't).
//! LAPI speaks wall-clock durations; these functions convert between the two.
//!
//! Inside a time namespace (`unshare --time --fork`, LXC's `lxc.time.offset.monotonic`) this
//! process's monotonic clock runs at an offset from the kernel's, which the program reads;
//! [`now_ns`] takes the offset back out, so bans end when LAPI says wherever the daemon runs.

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime},
};

/// `CLOCK_MONOTONIC` now, in nanoseconds, as the kernel counts it: the program's clock.
#[must_use]
pub fn now_ns() -> u64 {
    namespace_monotonic_ns().saturating_add_signed(-time_namespace_offset_ns())
}

/// This process's `CLOCK_MONOTONIC`, which a time namespace offsets.
fn namespace_monotonic_ns() -> u64 {
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

/// How far this process's time namespace puts `CLOCK_MONOTONIC` ahead of the kernel's, read
/// once (a namespace's offsets are fixed once a process is in it).
fn time_namespace_offset_ns() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        read_time_namespace_offset().unwrap_or_else(|why| {
            tracing::warn!(
                "{why}; taking 0, so inside a time namespace bans would end off by its offset"
            );
            0
        })
    })
}

/// The monotonic offset from `/proc/self/timens_offsets` (0 where the kernel has no time
/// namespaces). The file describes the namespace this process's children get
/// (`time_for_children`), which is its own unless it unshared one without forking since.
fn read_time_namespace_offset() -> Result<i64, String> {
    const FILE: &str = "/proc/self/timens_offsets";
    let text = match std::fs::read_to_string(FILE) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot read {FILE} ({e})")),
    };
    if let (Ok(own), Ok(children)) = (
        std::fs::read_link("/proc/self/ns/time"),
        std::fs::read_link("/proc/self/ns/time_for_children"),
    ) && own != children
    {
        return Err(format!(
            "{FILE} describes {}, not {} where this process runs",
            children.display(),
            own.display()
        ));
    }
    monotonic_offset_ns(&text)
        .ok_or_else(|| format!("{FILE} has no monotonic offset that reads as one ({text:?})"))
}

/// The monotonic offset in a `timens_offsets` text: lines `CLOCK SECONDS NANOSECONDS`, the clock
/// named `monotonic` (or given as its id, 1). A text without the line means no offset.
fn monotonic_offset_ns(text: &str) -> Option<i64> {
    let Some(line) = text
        .lines()
        .find(|line| matches!(line.split_whitespace().next(), Some("monotonic" | "1")))
    else {
        return Some(0);
    };
    let mut fields = line.split_whitespace().skip(1);
    let seconds: i64 = fields.next()?.parse().ok()?;
    let nanos: i64 = fields.next()?.parse().ok()?;
    if fields.next().is_some() {
        return None;
    }
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
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
    fn a_time_namespace_offset_is_read_from_its_line() {
        assert_eq!(
            monotonic_offset_ns("monotonic      86400         5\nboottime 7 0\n"),
            Some(86_400_000_000_005)
        );
        assert_eq!(
            monotonic_offset_ns("boottime 0 0\n1 -2 0\n"),
            Some(-2_000_000_000)
        );
        assert_eq!(monotonic_offset_ns("boottime 1 0\n"), Some(0));
        assert_eq!(monotonic_offset_ns("monotonic x 0\n"), None);
        assert_eq!(monotonic_offset_ns("monotonic 1 0 9\n"), None);
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a && a > 0);
    }
}

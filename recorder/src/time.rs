//! Wall-clock helpers without a date crate: milliseconds since the epoch and the UTC date path.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, or 0 if the clock is before 1970.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The UTC calendar date `(year, month, day)` of a Unix time in milliseconds.
///
/// This is Howard Hinnant's `civil_from_days`, which is exact for the proleptic
/// Gregorian calendar; object keys are grouped by the day a session started.
pub(crate) fn utc_date(ms: u64) -> (i64, u32, u32) {
    let days = i64::try_from(ms / 86_400_000).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), (1970, 1, 1));
        // 2026-11-22T06:25:47Z
        assert_eq!(utc_date(1_795_328_747_000), (2026, 11, 22));
        // 2000-02-29T12:00:00Z
        assert_eq!(utc_date(951_825_600_000), (2000, 2, 29));
        // 2024-12-31T23:59:59Z
        assert_eq!(utc_date(1_735_689_599_000), (2024, 12, 31));
    }
}

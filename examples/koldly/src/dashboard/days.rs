//! Local calendar days in a user's IANA time zone, as unix-second ranges: a
//! day is 23, 24 or 25 hours long around a daylight-saving change.

use jiff::{Timestamp, ToSpan, civil::Date, tz::TimeZone};

/// One local day: its date and `[start, end)` in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalDay {
    /// The local date.
    pub date: Date,
    /// Its first second (local midnight).
    pub start: i64,
    /// The next day's first second.
    pub end: i64,
}

/// The time zone named `name` (IANA, e.g. `Europe/Paris`), from the tz
/// database compiled into koldly.
pub fn zone(name: &str) -> Option<TimeZone> {
    TimeZone::get(name).ok()
}

/// The `days` local days of `tz` ending with the one `now` falls in, oldest first.
pub fn last_days(tz: &TimeZone, now: i64, days: u32) -> Option<Vec<LocalDay>> {
    let today = Timestamp::from_second(now)
        .ok()?
        .to_zoned(tz.clone())
        .date();
    let first = today
        .checked_sub(i64::from(days.saturating_sub(1)).days())
        .ok()?;
    let start_of = |date: Date| -> Option<i64> {
        Some(
            date.to_zoned(tz.clone())
                .ok()?
                .start_of_day()
                .ok()?
                .timestamp()
                .as_second(),
        )
    };
    let mut out = Vec::with_capacity(days as usize);
    let mut date = first;
    let mut start = start_of(date)?;
    for _ in 0..days {
        let next = date.tomorrow().ok()?;
        let end = start_of(next)?;
        out.push(LocalDay { date, start, end });
        date = next;
        start = end;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_follow_the_zone_and_its_clock_changes() {
        let paris = zone("Europe/Paris").unwrap();
        // 2026-03-29T12:00:00Z: Paris moved to summer time at 01:00 UTC that day.
        let days = last_days(&paris, 1_774_785_600, 2).unwrap();
        assert_eq!(days[0].date.to_string(), "2026-03-28");
        assert_eq!(days[1].date.to_string(), "2026-03-29");
        assert_eq!(days[0].end - days[0].start, 24 * 3600);
        assert_eq!(days[1].end - days[1].start, 23 * 3600);
        assert_eq!(days[1].start, 1_774_738_800); // 2026-03-28T23:00:00Z
        let kolkata = zone("Asia/Kolkata").unwrap();
        let day = last_days(&kolkata, 1_774_785_600, 1).unwrap()[0];
        assert_eq!(day.start % 900, 0);
        assert_eq!(day.start, 1_774_722_600); // 2026-03-28T18:30:00Z
        assert!(zone("Mars/Olympus").is_none());
    }
}

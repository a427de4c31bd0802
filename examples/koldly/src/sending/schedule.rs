//! When a campaign may send, in its own time zone: the local day (for the
//! daily limit), the sending window (DST included) and the spacing that
//! spreads a day's sends over the window.
//!
//! Everything is computed from the IANA zone with jiff's bundled database,
//! so it works without `/usr/share/zoneinfo`. Nothing is stored per day: the
//! daily count is the rows claimed since [`Schedule::day_start`].

use jiff::{Timestamp, Zoned, civil::Date, tz::TimeZone};

/// A campaign's sending rules.
#[derive(Debug, Clone)]
pub struct Schedule {
    tz: TimeZone,
    window_start: i8,
    window_end: i8,
    daily_limit: i64,
}

/// Why a time zone name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownZone;

impl Schedule {
    /// The rules for zone `timezone`, the window `[start, end)` in local hours
    /// (0–23, 1–24, start before end) and `daily_limit` sends a day.
    pub fn new(
        timezone: &str,
        window_start: i64,
        window_end: i64,
        daily_limit: i64,
    ) -> Result<Self, UnknownZone> {
        let tz = zone(timezone)?;
        Ok(Self {
            tz,
            window_start: window_start.clamp(0, 23) as i8,
            window_end: window_end.clamp(1, 24) as i8,
            daily_limit: daily_limit.max(1),
        })
    }

    fn local(&self, now: i64) -> Zoned {
        Timestamp::from_second(now)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.tz.clone())
    }

    /// `hour` o'clock (24: the next midnight) on local `date`, as unix
    /// seconds. An hour a DST change skips resolves to the instant after the
    /// gap; a repeated one to its first occurrence.
    fn at(&self, date: Date, hour: i8) -> i64 {
        let (date, hour) = if hour >= 24 {
            (date.tomorrow().unwrap_or(date), 0)
        } else {
            (date, hour)
        };
        date.at(hour, 0, 0, 0)
            .to_zoned(self.tz.clone())
            .map(|z| z.timestamp().as_second())
            .unwrap_or(i64::MAX)
    }

    /// The local midnight that began `now`'s day, as unix seconds.
    pub fn day_start(&self, now: i64) -> i64 {
        self.local(now)
            .start_of_day()
            .map(|z| z.timestamp().as_second())
            .unwrap_or(now)
    }

    /// The window of `now`'s local day, `[start, end)` in unix seconds.
    pub fn window(&self, now: i64) -> (i64, i64) {
        let date = self.local(now).date();
        (
            self.at(date, self.window_start),
            self.at(date, self.window_end),
        )
    }

    /// The window of the local day after `now`'s.
    fn next_window(&self, now: i64) -> (i64, i64) {
        let date = self.local(now).date();
        let next = date.tomorrow().unwrap_or(date);
        (
            self.at(next, self.window_start),
            self.at(next, self.window_end),
        )
    }

    /// Whether `now` falls in its day's window.
    pub fn in_window(&self, now: i64) -> bool {
        let (start, end) = self.window(now);
        (start..end).contains(&now)
    }

    /// Seconds between two sends on `now`'s day: the day's window (its real
    /// length, a DST change included) divided by the daily limit.
    pub fn spacing(&self, now: i64) -> i64 {
        let (start, end) = self.window(now);
        ((end - start) / self.daily_limit).max(1)
    }

    /// The daily limit.
    pub fn daily_limit(&self) -> i64 {
        self.daily_limit
    }

    /// The earliest instant at or after `now` when the campaign may send
    /// again, given `sent_today` sends since the local midnight and its last
    /// send at `last_send` (unix seconds).
    pub fn next_send(&self, now: i64, sent_today: i64, last_send: Option<i64>) -> i64 {
        let (start, end) = self.window(now);
        if sent_today >= self.daily_limit || now >= end {
            return self.next_window(now).0;
        }
        let spaced = last_send.map_or(now, |last| (last + self.spacing(now)).max(now));
        let candidate = spaced.max(start);
        if candidate >= end {
            self.next_window(now).0
        } else {
            candidate
        }
    }
}

/// The IANA zone `name` (from the bundled database).
pub fn zone(name: &str) -> Result<TimeZone, UnknownZone> {
    if name.is_empty() || name.len() > 64 {
        return Err(UnknownZone);
    }
    TimeZone::get(name).map_err(|_| UnknownZone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_second()
    }

    #[test]
    fn the_local_day_starts_at_local_midnight() {
        let s = Schedule::new("America/New_York", 9, 17, 10).unwrap();
        // 03:30 UTC on 2026-03-10 is 23:30 on the 9th in New York (EDT, -4).
        assert_eq!(
            s.day_start(ts("2026-03-10T03:30:00Z")),
            ts("2026-03-09T04:00:00Z")
        );
        // Before the DST change (EST, -5).
        assert_eq!(
            s.day_start(ts("2026-03-08T06:00:00Z")),
            ts("2026-03-08T05:00:00Z")
        );
    }

    #[test]
    fn the_window_follows_dst() {
        let s = Schedule::new("Europe/Paris", 9, 17, 8).unwrap();
        // Winter: UTC+1.
        assert_eq!(
            s.window(ts("2026-03-28T12:00:00Z")),
            (ts("2026-03-28T08:00:00Z"), ts("2026-03-28T16:00:00Z"))
        );
        // The day after the change (29 March 2026): UTC+2.
        assert_eq!(
            s.window(ts("2026-03-29T12:00:00Z")),
            (ts("2026-03-29T07:00:00Z"), ts("2026-03-29T15:00:00Z"))
        );
        assert!(!s.in_window(ts("2026-03-29T06:59:59Z")));
        assert!(s.in_window(ts("2026-03-29T07:00:00Z")));
        assert!(!s.in_window(ts("2026-03-29T15:00:00Z")));
    }

    #[test]
    fn a_window_over_the_dst_change_is_an_hour_shorter() {
        // 00:00–06:00 on the night clocks jump from 02:00 to 03:00: 5 real hours.
        let s = Schedule::new("Europe/Paris", 0, 6, 5).unwrap();
        let (start, end) = s.window(ts("2026-03-29T01:30:00Z"));
        assert_eq!(end - start, 5 * 3600);
        assert_eq!(s.spacing(ts("2026-03-29T01:30:00Z")), 3600);
    }

    #[test]
    fn next_send_spreads_and_stops_at_the_limit() {
        let s = Schedule::new("UTC", 9, 17, 8).unwrap();
        let nine = ts("2026-06-01T09:00:00Z");
        assert_eq!(s.spacing(nine), 3600);
        // Before the window: its start.
        assert_eq!(s.next_send(ts("2026-06-01T07:00:00Z"), 0, None), nine);
        // One send at 09:00: the next at 10:00.
        assert_eq!(s.next_send(nine + 60, 1, Some(nine)), nine + 3600);
        // The limit reached: tomorrow's window.
        assert_eq!(
            s.next_send(nine + 60, 8, Some(nine)),
            ts("2026-06-02T09:00:00Z")
        );
        // After the window: tomorrow's.
        assert_eq!(
            s.next_send(ts("2026-06-01T17:00:00Z"), 0, None),
            ts("2026-06-02T09:00:00Z")
        );
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert!(Schedule::new("Mars/Olympus", 9, 17, 1).is_err());
        assert!(Schedule::new("", 9, 17, 1).is_err());
        assert!(Schedule::new("Asia/Kolkata", 9, 17, 1).is_ok());
    }
}

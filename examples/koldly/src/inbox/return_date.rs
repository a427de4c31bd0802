//! The day an out-of-office reply says its writer is back.
//!
//! Reads ISO dates (`2026-12-14`), month-name dates with or without a year
//! (`December 14`, `Dec 14th, 2026`, `14 December`) and, after a word that
//! announces the return (`back`, `return`, `until`…), a weekday (`back on
//! Monday`). A date without a year is the first such day on or after the day
//! the reply arrived; a weekday the first one after it. A date that follows a
//! return word wins over one that does not (`out from Dec 10, back Dec 15`).
//!
//! ```
//! use koldly::inbox::return_date::return_date;
//! // 2026-12-01 12:00 UTC, a Tuesday.
//! let received = 1_796_126_400;
//! assert_eq!(return_date("Out of office, back on December 14.", received).as_deref(), Some("2026-12-14"));
//! assert_eq!(return_date("I return Monday", received).as_deref(), Some("2026-12-07"));
//! assert_eq!(return_date("Out of office.", received), None);
//! ```

use time::{Date, Month, OffsetDateTime, Weekday};

/// Words after which a date is the return date.
const RETURN_WORDS: &[&str] = &[
    "back",
    "return",
    "returning",
    "returns",
    "until",
    "till",
    "til",
    "through",
    "resume",
];

/// The return date `text` names, as `YYYY-MM-DD`, for a reply received at
/// `received_at` (unix seconds).
pub fn return_date(text: &str, received_at: i64) -> Option<String> {
    let today = OffsetDateTime::from_unix_timestamp(received_at)
        .ok()?
        .date();
    let lower = text.to_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || ",.;:()!?/\"'".contains(c))
        .filter(|t| !t.is_empty())
        .collect();
    let mut first_any: Option<Date> = None;
    for i in 0..tokens.len() {
        let after_return_word = (1..=2).any(|back| {
            i.checked_sub(back)
                .is_some_and(|j| RETURN_WORDS.contains(&tokens[j]))
        });
        let found = date_at(&tokens, i, today).or_else(|| {
            after_return_word
                .then(|| weekday(tokens[i]).map(|w| next_weekday(today, w)))
                .flatten()
        });
        if let Some(date) = found.filter(|d| *d >= today) {
            if after_return_word {
                return Some(iso(date));
            }
            first_any.get_or_insert(date);
        }
    }
    first_any.map(iso)
}

/// The date that starts at token `i`, if one does.
fn date_at(tokens: &[&str], i: usize, today: Date) -> Option<Date> {
    let token = tokens[i];
    if let Some(date) = iso_date(token) {
        return Some(date);
    }
    let next = tokens.get(i + 1).copied();
    let year_at = |j: usize| tokens.get(j).and_then(|t| year(t));
    if let (Some(m), Some(d)) = (month(token), next.and_then(day)) {
        return resolve(year_at(i + 2), m, d, today);
    }
    if let (Some(d), Some(m)) = (day(token), next.and_then(month)) {
        return resolve(year_at(i + 2), m, d, today);
    }
    None
}

/// The date `month`/`day` of `year`, or without one the first on or after `today`.
fn resolve(year: Option<i32>, month: Month, day: u8, today: Date) -> Option<Date> {
    match year {
        Some(y) => Date::from_calendar_date(y, month, day).ok(),
        None => {
            let this = Date::from_calendar_date(today.year(), month, day).ok();
            match this {
                Some(d) if d >= today => Some(d),
                _ => Date::from_calendar_date(today.year() + 1, month, day).ok(),
            }
        }
    }
}

fn iso_date(token: &str) -> Option<Date> {
    let mut parts = token.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

fn month(token: &str) -> Option<Month> {
    const NAMES: [(&str, Month); 12] = [
        ("jan", Month::January),
        ("feb", Month::February),
        ("mar", Month::March),
        ("apr", Month::April),
        ("may", Month::May),
        ("jun", Month::June),
        ("jul", Month::July),
        ("aug", Month::August),
        ("sep", Month::September),
        ("oct", Month::October),
        ("nov", Month::November),
        ("dec", Month::December),
    ];
    const FULL: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    NAMES
        .iter()
        .zip(FULL)
        .find(|((short, _), full)| {
            token == *short || token == *full || (*short == "sep" && token == "sept")
        })
        .map(|((_, month), _)| *month)
}

fn day(token: &str) -> Option<u8> {
    let digits = token
        .strip_suffix("st")
        .or_else(|| token.strip_suffix("nd"))
        .or_else(|| token.strip_suffix("rd"))
        .or_else(|| token.strip_suffix("th"))
        .unwrap_or(token);
    if digits.is_empty() || digits.len() > 2 {
        return None;
    }
    digits.parse().ok().filter(|d| (1..=31).contains(d))
}

fn year(token: &str) -> Option<i32> {
    (token.len() == 4)
        .then(|| token.parse().ok())
        .flatten()
        .filter(|y| (2000..=2100).contains(y))
}

fn weekday(token: &str) -> Option<Weekday> {
    Some(match token {
        "monday" | "mon" => Weekday::Monday,
        "tuesday" | "tue" | "tues" => Weekday::Tuesday,
        "wednesday" | "wed" => Weekday::Wednesday,
        "thursday" | "thu" | "thurs" => Weekday::Thursday,
        "friday" | "fri" => Weekday::Friday,
        "saturday" | "sat" => Weekday::Saturday,
        "sunday" | "sun" => Weekday::Sunday,
        _ => return None,
    })
}

/// The first `weekday` after `today`.
fn next_weekday(today: Date, weekday: Weekday) -> Date {
    let mut day = today.next_day().unwrap_or(today);
    while day.weekday() != weekday {
        day = day.next_day().unwrap_or(day);
    }
    day
}

fn iso(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01 12:00 UTC, a Tuesday.
    const RECEIVED: i64 = 1_796_126_400;

    #[test]
    fn return_dates_in_the_usual_phrasings() {
        for (text, expected) in [
            (
                "I'm out of the office until 2026-12-14.",
                Some("2026-12-14"),
            ),
            ("Back on December 14th.", Some("2026-12-14")),
            ("back Dec 14, 2026", Some("2026-12-14")),
            ("Returning 14 December", Some("2026-12-14")),
            ("On annual leave, back 3 January", Some("2027-01-03")),
            ("I will return on Monday", Some("2026-12-07")),
            ("Back Tuesday", Some("2026-12-08")),
            ("Out from Dec 2, back Dec 9", Some("2026-12-09")),
            ("Out of office on Monday", None),
            ("Out of office.", None),
            ("back on February 30", None),
        ] {
            assert_eq!(return_date(text, RECEIVED).as_deref(), expected, "{text}");
        }
    }
}

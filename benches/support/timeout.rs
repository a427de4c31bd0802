//! The timeout groups' route table and the path they ask for.

use std::time::Duration;

use steadfast::timeout::TimeoutTable;

/// The path every timeout variant is sent.
pub const PATH: &str = "/api/campaigns/42/status";

/// A table of `rules` rules: `rules - 1` prefixes that do not match [`PATH`],
/// then the pattern that does.
pub fn table(rules: usize) -> TimeoutTable {
    let mut table = TimeoutTable::new(Duration::from_secs(15));
    for i in 1..rules {
        let prefix: &'static str = Box::leak(format!("/api/area{i}/").into_boxed_str());
        table = table.prefix(prefix, Duration::from_secs(10 + i as u64));
    }
    table.route("/api/campaigns/{id}/status", Duration::from_secs(12))
}

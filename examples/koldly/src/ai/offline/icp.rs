//! Reading an ICP out of a description by keywords.

use super::text::{clean, fit};
use crate::ai::tasks::{Icp, MAX_ICP_FIELD_CHARS};

const INDUSTRIES: &[(&str, &str)] = &[
    ("saas", "SaaS"),
    ("software", "Software"),
    ("fintech", "Fintech"),
    ("healthcare", "Healthcare"),
    ("e-commerce", "E-commerce"),
    ("ecommerce", "E-commerce"),
    ("manufacturing", "Manufacturing"),
    ("logistics", "Logistics"),
    ("education", "Education"),
    ("real estate", "Real estate"),
    ("marketing agenc", "Marketing agencies"),
    ("retail", "Retail"),
    ("construction", "Construction"),
];

const TITLES: &[&str] = &[
    "CEO",
    "CTO",
    "CFO",
    "COO",
    "CMO",
    "Founder",
    "VP of Sales",
    "VP of Marketing",
    "VP of Engineering",
    "Head of Sales",
    "Head of Marketing",
    "Head of Growth",
    "Engineering Manager",
    "Sales Manager",
    "Operations Manager",
    "Owner",
];

const PAIN_WORDS: &[&str] = &[
    "struggle", "pain", "problem", "waste", "slow", "manual", "hard to", "costly", "lose",
];

const SIZES: &[(&str, &str)] = &[
    ("enterprise", "enterprise"),
    ("startup", "startup"),
    ("small business", "small business"),
    ("smb", "small business"),
    ("mid-market", "mid-market"),
];

pub(super) fn parse_icp(description: &str) -> Icp {
    let lower = description.to_lowercase();
    let industry = INDUSTRIES
        .iter()
        .find(|(needle, _)| lower.contains(needle))
        .map(|(_, name)| (*name).to_owned());
    let job_titles = TITLES
        .iter()
        .filter(|t| contains_word(&lower, &t.to_lowercase()))
        .map(|t| (*t).to_owned())
        .collect();
    let company_size = employee_range(&lower).or_else(|| {
        SIZES
            .iter()
            .find(|(needle, _)| lower.contains(needle))
            .map(|(_, size)| (*size).to_owned())
    });
    let pain_points = description
        .split(['.', '!', '?', '\n'])
        .map(str::trim)
        .filter(|s| {
            let s = s.to_lowercase();
            PAIN_WORDS.iter().any(|w| s.contains(w))
        })
        .map(|s| fit(&clean(s, 40), MAX_ICP_FIELD_CHARS))
        .filter(|s| !s.is_empty())
        .take(3)
        .collect();
    Icp {
        industry,
        company_size,
        job_titles,
        pain_points,
        value_proposition: None,
    }
}

/// Whether `needle` occurs in `haystack` between non-alphanumeric characters.
fn contains_word(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// `10-50` (or `10 to 50`) followed by "employees" or "people".
fn employee_range(lower: &str) -> Option<String> {
    let words: Vec<&str> = lower.split_whitespace().collect();
    words.iter().enumerate().find_map(|(i, w)| {
        let next = words.get(i + 1)?;
        if !(next.starts_with("employee") || next.starts_with("people")) {
            return None;
        }
        let range = if i >= 2 && words[i - 1] == "to" {
            format!("{}-{}", words[i - 2], w)
        } else {
            (*w).to_owned()
        };
        let valid = range
            .split('-')
            .all(|n| !n.is_empty() && n.trim_end_matches('+').chars().all(|c| c.is_ascii_digit()));
        valid.then_some(range)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::tasks::Validate;

    #[test]
    fn icps_are_read_from_descriptions() {
        let icp = parse_icp(
            "We sell to SaaS companies with 50 to 200 employees. Our buyers are the CTO and the \
             VP of Engineering. They struggle with flaky deploys. They like coffee.",
        );
        assert_eq!(icp.industry.as_deref(), Some("SaaS"));
        assert_eq!(icp.company_size.as_deref(), Some("50-200"));
        assert_eq!(icp.job_titles, ["CTO", "VP of Engineering"]);
        assert_eq!(icp.pain_points, ["They struggle with flaky deploys"]);
        assert!(icp.validate(&[]).is_ok());
    }
}

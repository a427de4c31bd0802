//! Making user text fit a template.

use sha2::{Digest, Sha256};

/// User text fit for a template: no placeholder-like brackets, no address,
/// whitespace collapsed, at most `max_words` words.
pub(super) fn clean(text: &str, max_words: usize) -> String {
    text.split_whitespace()
        .filter(|w| !w.contains('@'))
        .map(|w| w.replace(['{', '}', '[', ']', '<', '>', '%'], ""))
        .filter(|w| !w.is_empty())
        .take(max_words)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `clean` of an optional field; `None` when nothing is left.
pub(super) fn field(value: &Option<String>, max_words: usize) -> Option<String> {
    value
        .as_deref()
        .map(|v| clean(v, max_words))
        .filter(|v| !v.is_empty())
}

/// At most `max` characters, cut at a word boundary when there is one.
pub(super) fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    match cut.rfind(' ') {
        Some(space) if space > 0 => cut[..space].to_owned(),
        _ => cut,
    }
}

/// The first sentence of `text`, without its final punctuation.
pub(super) fn first_sentence(text: &str) -> String {
    let end = text.find(['.', '!', '?', '\n']).unwrap_or(text.len());
    text[..end].trim().to_owned()
}

pub(super) fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) if chars.clone().next().is_some_and(|n| n.is_lowercase()) => {
            c.to_lowercase().chain(chars).collect()
        }
        _ => text.to_owned(),
    }
}

/// A stable number in `0..n` from `key`.
pub(super) fn variant(key: &str, n: usize) -> usize {
    let digest = Sha256::digest(key.to_lowercase().as_bytes());
    usize::from(digest[0]) % n
}

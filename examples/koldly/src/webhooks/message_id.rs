//! Message-IDs as headers carry them: `<local@domain>`, one in `In-Reply-To`
//! or `Message-Id`, several (oldest first) in `References`.

/// The longest Message-ID kept (RFC 5322's line limit).
pub const MAX_CHARS: usize = 998;

/// How many Message-IDs of one reply are looked up at most.
pub const MAX_CANDIDATES: usize = 20;

/// The Message-IDs in `header`, without their angle brackets. A header without
/// brackets counts as one bare id when it looks like one (`local@domain`, no
/// spaces).
pub fn parse(header: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else { break };
        let id = after[..close].trim();
        if is_plausible(id) {
            ids.push(id.to_owned());
        }
        rest = &after[close + 1..];
    }
    if ids.is_empty() {
        let bare = header.trim();
        if is_plausible(bare) {
            ids.push(bare.to_owned());
        }
    }
    ids
}

fn is_plausible(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CHARS
        && id.contains('@')
        && !id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
}

/// The ids a reply may answer, most likely first: `In-Reply-To`, then
/// `References` from the newest (last) back; each once, at most
/// [`MAX_CANDIDATES`].
pub fn candidates(in_reply_to: Option<&str>, references: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let direct = in_reply_to.map(parse).unwrap_or_default();
    let mut older = references.map(parse).unwrap_or_default();
    older.reverse();
    for id in direct.into_iter().chain(older) {
        if out.len() == MAX_CANDIDATES {
            break;
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_out_bare_and_in_order() {
        assert_eq!(parse("<a@x.io>"), ["a@x.io"]);
        assert_eq!(parse("  b@x.io "), ["b@x.io"]);
        assert_eq!(
            parse("<a@x.io>\r\n <b@x.io> (comment)"),
            ["a@x.io", "b@x.io"]
        );
        assert!(parse("no id here").is_empty());
        assert!(parse("<>").is_empty());
        assert_eq!(
            candidates(Some("<c@x.io>"), Some("<a@x.io> <b@x.io> <c@x.io>")),
            ["c@x.io", "b@x.io", "a@x.io"]
        );
        let many: String = (0..50).map(|i| format!("<{i}@x.io> ")).collect();
        assert_eq!(candidates(None, Some(&many)).len(), MAX_CANDIDATES);
        assert_eq!(candidates(None, Some(&many))[0], "49@x.io");
    }
}

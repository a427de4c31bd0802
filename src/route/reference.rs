//! A brute-force reference for the [`Matcher`](super::Matcher): every rule
//! tried against the path, the most specific kept, written straight from the
//! precedence rules in the [module docs](super). Slow and obvious on purpose:
//! the property tests and the `route_patterns` fuzz target compare the trie
//! with it.

use http::Method;

use super::RuleKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    Literal(&'a str),
    Param,
}

/// The value of the most specific rule matching `method` and `path`, among
/// `rules` that the matcher compiled without error.
pub(crate) fn best_match<'r, T>(
    rules: &'r [(RuleKind, Option<Method>, String, T)],
    method: &Method,
    path: &str,
) -> Option<&'r T> {
    rules
        .iter()
        .filter(|(_, m, _, _)| m.as_ref().is_none_or(|m| m == method))
        .filter_map(|(kind, m, rule, value)| {
            specificity(*kind, rule, path).map(|rank| ((rank, m.is_some()), value))
        })
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, value)| value)
}

/// How specific a matching rule is, as a tuple compared field by field in
/// precedence order: whole path, depth, literal positions (earlier first),
/// wildcard over prefix. `None` when the rule does not match.
fn specificity(kind: RuleKind, rule: &str, path: &str) -> Option<(bool, usize, Vec<bool>, bool)> {
    let body = rule.strip_prefix('/')?;
    // The named segments' text (`None`: no segment at all) and the tail.
    let (named, wildcard) = match kind {
        RuleKind::Prefix => {
            let body = body.strip_suffix('/').unwrap_or(body);
            ((!body.is_empty()).then_some(body), false)
        }
        RuleKind::Pattern => match body.rsplit_once('/') {
            Some((head, last)) if last.starts_with("{*") => (Some(head), true),
            // `/{*rest}`: a wildcard right after the root names no segment.
            None if body.starts_with("{*") => (None, true),
            _ => (Some(body), false),
        },
    };
    let parts: Vec<Part<'_>> = named
        .map(|named| {
            named
                .split('/')
                .map(|s| {
                    if s.starts_with('{') {
                        Part::Param
                    } else {
                        Part::Literal(s)
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    // The request's segments: what follows the leading `/`, split at `/`.
    let rest = path.strip_prefix('/').unwrap_or(path);
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.len() < parts.len() {
        return None;
    }
    for (part, segment) in parts.iter().zip(&segments) {
        match part {
            Part::Literal(text) if text != segment => return None,
            Part::Param if segment.is_empty() => return None,
            _ => {}
        }
    }
    let whole = kind == RuleKind::Pattern && !wildcard;
    if whole && segments.len() != parts.len() {
        return None;
    }
    if wildcard {
        // At least one more character after the named segments' `/`.
        let named: usize = segments[..parts.len()].iter().map(|s| s.len() + 1).sum();
        if rest.len() <= named || segments.len() == parts.len() {
            return None;
        }
    }
    let literals = parts
        .iter()
        .map(|p| matches!(p, Part::Literal(_)))
        .collect();
    Some((whole, parts.len(), literals, wildcard))
}

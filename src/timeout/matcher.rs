//! The compiled table: a trie of path segments, matched segment by segment
//! without building strings or allocating.

use http::Method;

use super::table::{Limit, RuleKind, RuleSpec, TableError, TimeoutTable};

/// The most segments a rule may name before its open end.
const MAX_SEGMENTS: usize = 64;

/// What the table chose for a request: the limit and the rule that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) limit: Limit,
    /// The rule's path as written, or `"default"`; for logs.
    pub(crate) route: &'static str,
}

/// The compiled rules.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    root: Node,
    /// The whole-path patterns by their text, sorted by [`by_len_then_bytes`]:
    /// inside an axum `Router` the path looked up is the route's own pattern
    /// (`MatchedPath`), and a rule written with that very text is always the
    /// most specific match (see [`Matcher::lookup`]), so one binary search
    /// answers without walking the trie.
    patterns: Vec<(&'static str, Slot)>,
    default: Entry,
    /// No rules at all: every request gets the default without a walk.
    only_default: bool,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Literal children, sorted by [`by_len_then_bytes`] for binary search: most
    /// comparisons end at the length, without looking at the bytes.
    literals: Vec<(Box<str>, Node)>,
    /// The `{param}` child.
    param: Option<Box<Node>>,
    /// Patterns ending here: the path must end here too.
    exact: Slot,
    /// Patterns whose `{*wildcard}` follows here: at least one more character.
    wildcard: Slot,
    /// Prefixes ending here: anything may follow.
    prefix: Slot,
    /// Whether `prefix` or `wildcard` holds a rule: most nodes are only a step
    /// on the way, and one test skips both.
    open_tail: bool,
}

/// The rules of one path shape and tail, by method.
#[derive(Debug, Clone, Default)]
struct Slot {
    any: Option<Entry>,
    methods: Vec<(Method, Entry)>,
}

impl Slot {
    /// The entry for `method` and whether it was method-specific.
    #[inline]
    fn get(&self, method: &Method) -> Option<(Entry, bool)> {
        if self.methods.is_empty() {
            return self.any.map(|e| (e, false));
        }
        self.methods
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, e)| (*e, true))
            .or_else(|| self.any.map(|e| (e, false)))
    }

    fn insert(&mut self, method: Option<Method>, entry: Entry) -> Result<(), &'static str> {
        const DUPLICATE: &str = "another rule has the same path shape and method";
        match method {
            None if self.any.is_some() => Err(DUPLICATE),
            None => {
                self.any = Some(entry);
                Ok(())
            }
            Some(m) if self.methods.iter().any(|(have, _)| *have == m) => Err(DUPLICATE),
            Some(m) => {
                self.methods.push((m, entry));
                Ok(())
            }
        }
    }
}

/// How specific a match is; the greatest wins. Packed into one integer whose
/// fields, from the most significant bits down, are in precedence order:
///
/// - bit 127, `whole`: a pattern matching the whole path beats one matching its
///   beginning;
/// - bits 66..=72, `depth`: more segments matched by the rule beat fewer (at most
///   64, since no rule is deeper);
/// - bits 2..=65, `literals`: at the first segment where two rules differ, a
///   literal beats a `{param}` (bit `63 - i` of the field set when segment `i`
///   was literal);
/// - bit 1, `wildcard`: a `{*wildcard}` pattern beats a prefix of the same segments;
/// - bit 0, `method`: a method-specific rule beats an any-method rule.
type Rank = u128;

#[inline(always)]
fn rank(whole: bool, depth: usize, literals: u64, wildcard: bool, method: bool) -> Rank {
    debug_assert!(depth <= MAX_SEGMENTS);
    (u128::from(whole) << 127)
        | ((depth as u128) << 66)
        | (u128::from(literals) << 2)
        | (u128::from(wildcard) << 1)
        | u128::from(method)
}

#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    Literal(&'a str),
    Param,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    Exact,
    Wildcard,
    Prefix,
}

impl Matcher {
    pub(crate) fn compile(table: &TimeoutTable) -> Result<Self, TableError> {
        let mut root = Node::default();
        let mut patterns: Vec<(&'static str, Slot)> = Vec::new();
        for rule in &table.rules {
            let error = |reason| TableError {
                path: rule.path,
                reason,
            };
            let (segments, tail) = parse(rule).map_err(error)?;
            let node = segments
                .iter()
                .fold(&mut root, |node, segment| node.child(*segment));
            node.open_tail |= tail != Tail::Exact;
            let slot = match tail {
                Tail::Exact => &mut node.exact,
                Tail::Wildcard => &mut node.wildcard,
                Tail::Prefix => &mut node.prefix,
            };
            let entry = Entry {
                limit: rule.limit,
                route: rule.path,
            };
            slot.insert(rule.method.clone(), entry).map_err(error)?;
            if tail == Tail::Exact {
                let i = match patterns.binary_search_by(|(p, _)| by_len_then_bytes(p, rule.path)) {
                    Ok(i) => i,
                    Err(i) => {
                        patterns.insert(i, (rule.path, Slot::default()));
                        i
                    }
                };
                // The trie's slot above already refused a duplicate.
                patterns[i]
                    .1
                    .insert(rule.method.clone(), entry)
                    .map_err(error)?;
            }
        }
        Ok(Self {
            root,
            patterns,
            default: Entry {
                limit: table.default,
                route: "default",
            },
            only_default: table.rules.is_empty(),
        })
    }

    /// The most specific rule for `method` and `path`, or the default.
    ///
    /// When `path` is the text of a whole-path pattern with a rule for `method`,
    /// that rule wins without a walk: any other rule matching the same text
    /// whole has the same depth and, segment by segment, a `{param}` at least
    /// wherever this one has (a literal cannot match a `{name}` segment), so it
    /// is no more specific; and prefix and wildcard rules rank below whole-path
    /// matches of this depth.
    #[inline]
    pub(crate) fn lookup(&self, method: &Method, path: &str) -> Entry {
        if self.only_default {
            return self.default;
        }
        if let Ok(i) = self
            .patterns
            .binary_search_by(|(p, _)| by_len_then_bytes(p, path))
            && let Some((entry, _)) = self.patterns[i].1.get(method)
        {
            return entry;
        }
        self.walk(method, path)
    }

    fn walk(&self, method: &Method, path: &str) -> Entry {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let mut best = None;
        self.root.walk(method, Some(rest), 0, 0, &mut best);
        best.map_or(self.default, |(_, entry)| entry)
    }
}

impl Node {
    fn child(&mut self, segment: Segment<'_>) -> &mut Node {
        match segment {
            Segment::Param => self.param.get_or_insert_with(Default::default),
            Segment::Literal(s) => {
                let i = match self
                    .literals
                    .binary_search_by(|(k, _)| by_len_then_bytes(k, s))
                {
                    Ok(i) => i,
                    Err(i) => {
                        self.literals.insert(i, (s.into(), Node::default()));
                        i
                    }
                };
                &mut self.literals[i].1
            }
        }
    }

    /// Matches the path left after `depth` segments: `rest` is what follows the
    /// last consumed `/`, `None` once the path has ended. Returns true when a
    /// whole-path match was found: depth-first, literal before param, the first
    /// one is the best.
    fn walk(
        &self,
        method: &Method,
        mut rest: Option<&str>,
        mut depth: usize,
        mut literals: u64,
        best: &mut Option<(Rank, Entry)>,
    ) -> bool {
        // A loop down the trie; it recurses only where a literal child and the
        // `{param}` child both match a segment (the literal is tried first).
        let mut node = self;
        loop {
            if node.open_tail {
                consider(&node.prefix, method, false, depth, literals, false, best);
                if rest.is_some_and(|path| !path.is_empty()) {
                    consider(&node.wildcard, method, false, depth, literals, true, best);
                }
            }
            let Some(path) = rest else {
                return consider(&node.exact, method, true, depth, literals, false, best);
            };
            if node.literals.is_empty() && node.param.is_none() {
                return false;
            }
            let (literal, segment, next) = node.next_segment(path);
            let param = node.param.as_deref().filter(|_| !segment.is_empty());
            let next_node = match (literal, param) {
                (None, None) => return false,
                (Some(child), param) => {
                    let bit = 1u64 << (63 - depth);
                    match param {
                        None => {
                            literals |= bit;
                            child
                        }
                        Some(param) => {
                            if child.walk(method, next, depth + 1, literals | bit, best) {
                                return true;
                            }
                            param
                        }
                    }
                }
                (None, Some(param)) => param,
            };
            node = next_node;
            rest = next;
            depth += 1;
        }
    }
}

/// Offers `slot`'s entry for `method`, ranked, to `best`; whether it had one.
#[inline(always)]
fn consider(
    slot: &Slot,
    method: &Method,
    whole: bool,
    depth: usize,
    literals: u64,
    wildcard: bool,
    best: &mut Option<(Rank, Entry)>,
) -> bool {
    let Some((entry, method)) = slot.get(method) else {
        return false;
    };
    let rank = rank(whole, depth, literals, wildcard, method);
    if best.is_none_or(|(have, _)| rank > have) {
        *best = Some((rank, entry));
    }
    true
}

impl Node {
    /// Splits the next segment off `path` (what follows the last consumed `/`):
    /// the literal child it names if any, the segment, and what follows its `/`.
    #[inline]
    fn next_segment<'p>(&self, path: &'p str) -> (Option<&Node>, &'p str, Option<&'p str>) {
        let split = |len: usize| {
            // `len` is at the end or at a `/` (ASCII): both are char boundaries.
            if len == path.len() {
                (&path[..len], None)
            } else {
                (&path[..len], Some(&path[len + 1..]))
            }
        };
        if self.literals.len() <= 4 {
            // Few children: compare each against the start of the path, so the
            // segment's end is only searched for when none matches.
            let bytes = path.as_bytes();
            for (literal, child) in &self.literals {
                let literal = literal.as_bytes();
                if bytes.starts_with(literal) && bytes.get(literal.len()).is_none_or(|&b| b == b'/')
                {
                    let (segment, next) = split(literal.len());
                    return (Some(child), segment, next);
                }
            }
            let (segment, next) = split(segment_len(bytes));
            return (None, segment, next);
        }
        let (segment, next) = split(segment_len(path.as_bytes()));
        let child = self
            .literals
            .binary_search_by(|(k, _)| by_len_then_bytes(k, segment))
            .ok()
            .map(|i| &self.literals[i].1);
        (child, segment, next)
    }
}

/// The length of the first segment of `path`: up to its first `/`.
#[inline]
fn segment_len(path: &[u8]) -> usize {
    path.iter().position(|&b| b == b'/').unwrap_or(path.len())
}

/// The order of literal children: by length first, then bytes.
fn by_len_then_bytes(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Splits a rule's path into segments and its tail.
fn parse(rule: &RuleSpec) -> Result<(Vec<Segment<'static>>, Tail), &'static str> {
    let body = rule
        .path
        .strip_prefix('/')
        .ok_or("a path must start with '/'")?;
    let (body, mut tail) = match rule.kind {
        // "/api/auth/" and "/api/auth" both name the segments `api`, `auth`; "/" names none.
        RuleKind::Prefix => (body.strip_suffix('/').unwrap_or(body), Tail::Prefix),
        RuleKind::Pattern => (body, Tail::Exact),
    };
    let mut segments = Vec::new();
    if rule.kind == RuleKind::Prefix && body.is_empty() {
        return Ok((segments, tail));
    }
    let mut parts = body.split('/').peekable();
    while let Some(part) = parts.next() {
        match parse_segment(part)? {
            Parsed::Literal(s) => segments.push(Segment::Literal(s)),
            Parsed::Param => segments.push(Segment::Param),
            Parsed::Wildcard if rule.kind == RuleKind::Prefix => {
                return Err("a prefix cannot hold a `{*wildcard}`; use a pattern");
            }
            Parsed::Wildcard if parts.peek().is_some() => {
                return Err("a `{*wildcard}` must be the last segment");
            }
            Parsed::Wildcard => tail = Tail::Wildcard,
        }
    }
    if segments.len() > MAX_SEGMENTS {
        return Err("a rule may name at most 64 segments");
    }
    Ok((segments, tail))
}

enum Parsed<'a> {
    Literal(&'a str),
    Param,
    Wildcard,
}

fn parse_segment(part: &str) -> Result<Parsed<'_>, &'static str> {
    if !part.contains(['{', '}']) {
        return Ok(Parsed::Literal(part));
    }
    let name = part
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .filter(|name| !name.contains(['{', '}']))
        .ok_or("braces must enclose a whole segment: `{name}` or `{*name}`")?;
    if name.is_empty() {
        return Err("a `{param}` needs a name");
    }
    match name.strip_prefix('*') {
        Some("") => Err("a `{*wildcard}` needs a name"),
        Some(_) => Ok(Parsed::Wildcard),
        None => Ok(Parsed::Param),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::Method;

    use super::*;

    fn secs(n: u64) -> Limit {
        Limit::After(Duration::from_secs(n))
    }

    fn limit(m: &Matcher, method: Method, path: &str) -> Limit {
        m.lookup(&method, path).limit
    }

    fn get(m: &Matcher, path: &str) -> (Limit, &'static str) {
        let e = m.lookup(&Method::GET, path);
        (e.limit, e.route)
    }

    fn compile(table: TimeoutTable) -> Matcher {
        Matcher::compile(&table).unwrap()
    }

    fn error(table: TimeoutTable) -> &'static str {
        Matcher::compile(&table).unwrap_err().reason()
    }

    #[test]
    fn the_seed_table() {
        let m = compile(
            TimeoutTable::new(secs(15))
                .prefix("/api/auth/", secs(12))
                .prefix("/api/analytics/", secs(30)),
        );
        assert_eq!(get(&m, "/api/auth/login"), (secs(12), "/api/auth/"));
        assert_eq!(get(&m, "/api/auth"), (secs(12), "/api/auth/"));
        assert_eq!(get(&m, "/api/auth/"), (secs(12), "/api/auth/"));
        assert_eq!(
            get(&m, "/api/analytics/campaigns/7"),
            (secs(30), "/api/analytics/")
        );
        assert_eq!(get(&m, "/api/campaigns"), (secs(15), "default"));
        assert_eq!(get(&m, "/"), (secs(15), "default"));
        assert_eq!(get(&m, ""), (secs(15), "default"));
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let m = compile(TimeoutTable::new(secs(15)).prefix("/api/auth", secs(12)));
        assert_eq!(get(&m, "/api/authors").0, secs(15));
        assert_eq!(get(&m, "/api/aut").0, secs(15));
        assert_eq!(get(&m, "/api").0, secs(15));
        assert_eq!(get(&m, "/api/auth/x/y/z").0, secs(12));
        assert_eq!(
            get(&m, "/api/auth?next=/x").0,
            secs(15),
            "a query is not part of a path"
        );
    }

    #[test]
    fn the_root_prefix_matches_everything() {
        let m = compile(TimeoutTable::new(secs(15)).prefix("/", secs(1)));
        assert_eq!(get(&m, "/").0, secs(1));
        assert_eq!(get(&m, "/a/b").0, secs(1));
    }

    #[test]
    fn patterns_match_whole_paths() {
        let m = compile(
            TimeoutTable::new(secs(15))
                .route("/api/campaigns/{id}/status", secs(5))
                .route("/", secs(1))
                .route("/users/", secs(2)),
        );
        assert_eq!(get(&m, "/api/campaigns/42/status").0, secs(5));
        assert_eq!(
            get(&m, "/api/campaigns/{id}/status").0,
            secs(5),
            "axum's MatchedPath"
        );
        assert_eq!(get(&m, "/api/campaigns/42/status/").0, secs(15));
        assert_eq!(get(&m, "/api/campaigns/42").0, secs(15));
        assert_eq!(
            get(&m, "/api/campaigns//status").0,
            secs(15),
            "a param is never empty"
        );
        assert_eq!(get(&m, "/api/campaigns/42/status/x").0, secs(15));
        assert_eq!(get(&m, "/").0, secs(1));
        assert_eq!(get(&m, "/users/").0, secs(2));
        assert_eq!(
            get(&m, "/users").0,
            secs(15),
            "a trailing slash is significant"
        );
    }

    #[test]
    fn wildcards_need_something_to_match() {
        let m = compile(TimeoutTable::new(secs(15)).route("/files/{*rest}", secs(60)));
        assert_eq!(get(&m, "/files/a").0, secs(60));
        assert_eq!(get(&m, "/files/a/b/c.txt").0, secs(60));
        assert_eq!(get(&m, "/files/{*rest}").0, secs(60), "axum's MatchedPath");
        assert_eq!(get(&m, "/files/").0, secs(15));
        assert_eq!(get(&m, "/files").0, secs(15));
        assert_eq!(get(&m, "/filesystem/a").0, secs(15));
    }

    #[test]
    fn precedence() {
        let m = compile(
            TimeoutTable::new(secs(15))
                .prefix("/api/", secs(20))
                .prefix("/api/campaigns/", secs(25))
                .route("/api/campaigns/{*rest}", secs(9))
                .route("/api/campaigns/{id}/status", secs(5))
                .route("/api/{kind}/archive/status", secs(8))
                .route("/api/{*rest}", secs(21)),
        );
        // A whole-path pattern beats everything open-ended.
        assert_eq!(get(&m, "/api/campaigns/42/status").0, secs(5));
        assert_eq!(get(&m, "/api/users/archive/status").0, secs(8));
        // Both patterns match; at the first segment where they differ,
        // `campaigns` (literal) beats `{kind}`, although `archive` is literal in
        // the other rule.
        assert_eq!(get(&m, "/api/campaigns/archive/status").0, secs(5));
        // Longer beats shorter; a wildcard pattern beats a prefix of the same segments.
        assert_eq!(get(&m, "/api/campaigns/42").0, secs(9));
        assert_eq!(get(&m, "/api/campaigns/42/status/x").0, secs(9));
        // The wildcard needs something after `campaigns/`; the prefix does not.
        assert_eq!(get(&m, "/api/campaigns").0, secs(25));
        assert_eq!(get(&m, "/api/campaigns/").0, secs(25));
        assert_eq!(get(&m, "/api/users").0, secs(21));
        assert_eq!(get(&m, "/api").0, secs(20));
        assert_eq!(get(&m, "/health").0, secs(15));
    }

    #[test]
    fn a_literal_beats_a_param_in_the_same_place() {
        let m = compile(
            TimeoutTable::new(secs(15))
                .route("/users/{id}", secs(1))
                .route("/users/me", secs(2))
                .route("/{section}/me", secs(3)),
        );
        assert_eq!(get(&m, "/users/me").0, secs(2));
        assert_eq!(get(&m, "/users/42").0, secs(1));
        assert_eq!(get(&m, "/admins/me").0, secs(3));
    }

    #[test]
    fn a_whole_path_pattern_beats_a_prefix_of_the_same_length() {
        let m = compile(
            TimeoutTable::new(secs(15))
                .prefix("/api/auth/", secs(12))
                .route("/{a}/{b}", secs(3)),
        );
        assert_eq!(get(&m, "/api/auth").0, secs(3));
        assert_eq!(get(&m, "/api/auth/login").0, secs(12));
    }

    #[test]
    fn literal_before_param_backtracks() {
        // The literal branch matches the first segments but has nothing for the
        // rest: the param branch must still be tried.
        let m = compile(
            TimeoutTable::new(secs(15))
                .route("/a/b/c", secs(1))
                .route("/a/{x}/d", secs(2)),
        );
        assert_eq!(get(&m, "/a/b/d").0, secs(2));
        assert_eq!(get(&m, "/a/b/c").0, secs(1));
    }

    #[test]
    fn method_specific_rules() {
        let m = compile(
            TimeoutTable::new(secs(15))
                .route("/api/campaigns/{id}/status", secs(5))
                .route_for(Method::POST, "/api/campaigns/{id}/status", secs(3))
                .route_for(Method::PUT, "/api/campaigns/{id}", secs(4))
                .prefix_for(Method::DELETE, "/api/", secs(2)),
        );
        let path = "/api/campaigns/1/status";
        assert_eq!(limit(&m, Method::POST, path), secs(3));
        assert_eq!(limit(&m, Method::GET, path), secs(5));
        assert_eq!(limit(&m, Method::PUT, "/api/campaigns/1"), secs(4));
        assert_eq!(limit(&m, Method::GET, "/api/campaigns/1"), secs(15));
        // The path is more specific first; the method only breaks ties.
        assert_eq!(limit(&m, Method::DELETE, path), secs(5));
        assert_eq!(limit(&m, Method::DELETE, "/api/campaigns/1"), secs(2));
        assert_eq!(limit(&m, Method::GET, "/api/x"), secs(15));
    }

    #[test]
    fn a_method_rule_that_does_not_apply_leaves_the_next_best() {
        let m = compile(
            TimeoutTable::new(secs(15))
                .route_for(Method::POST, "/a/b", secs(1))
                .route("/a/{x}", secs(2))
                .prefix("/a/", secs(3)),
        );
        assert_eq!(limit(&m, Method::POST, "/a/b"), secs(1));
        assert_eq!(limit(&m, Method::GET, "/a/b"), secs(2));
        assert_eq!(limit(&m, Method::GET, "/a"), secs(3));
    }

    #[test]
    fn opt_out() {
        let m = compile(
            TimeoutTable::new(secs(15))
                .prefix("/api/events/", Limit::Unlimited)
                .route("/api/events/{id}/ack", secs(2)),
        );
        assert_eq!(
            get(&m, "/api/events/stream"),
            (Limit::Unlimited, "/api/events/")
        );
        assert_eq!(get(&m, "/api/events/9/ack").0, secs(2));
        let m = compile(TimeoutTable::new(Limit::Unlimited).prefix("/api/", secs(1)));
        assert_eq!(get(&m, "/health").0, Limit::Unlimited);
    }

    #[test]
    fn invalid_rules() {
        let t = || TimeoutTable::new(secs(1));
        assert_eq!(
            error(t().route("api/x", secs(1))),
            "a path must start with '/'"
        );
        assert_eq!(error(t().prefix("", secs(1))), "a path must start with '/'");
        assert_eq!(
            error(t().route("/a/{*rest}/b", secs(1))),
            "a `{*wildcard}` must be the last segment"
        );
        assert_eq!(
            error(t().prefix("/a/{*rest}", secs(1))),
            "a prefix cannot hold a `{*wildcard}`; use a pattern"
        );
        for bad in ["/a/{id", "/a/id}", "/a/x{id}", "/a/{id}.json", "/a/{{id}}"] {
            assert_eq!(
                error(t().route(bad, secs(1))),
                "braces must enclose a whole segment: `{name}` or `{*name}`",
                "{bad}"
            );
        }
        assert_eq!(
            error(t().route("/a/{}", secs(1))),
            "a `{param}` needs a name"
        );
        assert_eq!(
            error(t().route("/a/{*}", secs(1))),
            "a `{*wildcard}` needs a name"
        );
        let deep: &'static str = "/x".repeat(65).leak();
        assert_eq!(
            error(t().route(deep, secs(1))),
            "a rule may name at most 64 segments"
        );
        let deepest: &'static str = "/x".repeat(64).leak();
        let m = compile(t().route(deepest, secs(2)));
        assert_eq!(get(&m, deepest).0, secs(2));
    }

    #[test]
    fn duplicates_are_rejected() {
        let t = || TimeoutTable::new(secs(1));
        let dup = "another rule has the same path shape and method";
        assert_eq!(
            error(t().route("/a/{x}", secs(1)).route("/a/{y}", secs(2))),
            dup
        );
        assert_eq!(error(t().prefix("/a/", secs(1)).prefix("/a", secs(2))), dup);
        assert_eq!(
            error(
                t().route_for(Method::GET, "/a", secs(1))
                    .route_for(Method::GET, "/a", secs(2))
            ),
            dup
        );
        let err =
            Matcher::compile(&t().route("/a/{x}", secs(1)).route("/a/{y}", secs(2))).unwrap_err();
        assert_eq!(err.path(), "/a/{y}");
        assert_eq!(
            err.to_string(),
            "invalid timeout rule `/a/{y}`: another rule has the same path shape and method"
        );
        // Same path, different tail or method: not duplicates.
        compile(
            t().route("/a", secs(1))
                .prefix("/a", secs(2))
                .route("/a/{*rest}", secs(3))
                .route_for(Method::GET, "/a", secs(4))
                .route_for(Method::POST, "/a", secs(5)),
        );
    }

    #[test]
    fn a_pattern_looked_up_by_its_own_text_gets_what_the_walk_gives() {
        let m = compile(
            TimeoutTable::new(secs(15))
                .prefix("/api/", secs(1))
                .route("/api/campaigns/{id}/status", secs(2))
                .route("/api/campaigns/{id}/{field}", secs(3))
                .route("/api/campaigns/stats/status", secs(4))
                .route("/api/{area}/{id}/status", secs(5))
                .route("/api/campaigns/{*rest}", secs(6))
                .route_for(Method::POST, "/api/campaigns/{id}/status", secs(7))
                .route_for(Method::PUT, "/api/items/{id}", secs(8))
                .route("/health", secs(9)),
        );
        let texts = [
            "/api/campaigns/{id}/status",
            "/api/campaigns/{id}/{field}",
            "/api/campaigns/stats/status",
            "/api/{area}/{id}/status",
            "/api/campaigns/{*rest}",
            "/api/items/{id}",
            "/health",
        ];
        for text in texts {
            for method in [Method::GET, Method::POST, Method::PUT] {
                assert_eq!(
                    m.lookup(&method, text),
                    m.walk(&method, text),
                    "{method} {text}"
                );
            }
        }
        assert_eq!(
            limit(&m, Method::POST, "/api/campaigns/{id}/status"),
            secs(7)
        );
        assert_eq!(
            limit(&m, Method::GET, "/api/campaigns/{id}/status"),
            secs(2)
        );
        // A method rule that does not apply: the walk decides (the `/api/` prefix).
        assert_eq!(limit(&m, Method::GET, "/api/items/{id}"), secs(1));
    }

    #[test]
    fn paths_deeper_than_any_rule_are_fine() {
        let m = compile(TimeoutTable::new(secs(15)).prefix("/a/", secs(1)));
        let long = format!("/a{}", "/x".repeat(10_000));
        assert_eq!(get(&m, &long).0, secs(1));
        assert_eq!(get(&m, &"/".repeat(10_000)).0, secs(15));
    }
}

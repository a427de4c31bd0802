//! The compiled rules: a trie of path segments, matched segment by segment
//! without building strings or allocating.

use http::Method;

use super::{RouteError, RuleKind};

/// The most segments a rule may name before its open end.
const MAX_SEGMENTS: usize = 64;

/// The compiled rules, each carrying a `T` (the layer's value for the rule).
#[derive(Debug, Clone)]
pub(crate) struct Matcher<T> {
    root: Node<T>,
    /// The whole-path patterns by their text, sorted by [`by_len_then_bytes`]:
    /// inside an axum `Router` the path looked up is the route's own pattern
    /// (`MatchedPath`), and a rule written with that very text is always the
    /// most specific match (see [`Matcher::lookup`]), so one binary search
    /// answers without walking the trie.
    patterns: Vec<(Box<str>, Slot<T>)>,
    /// No rules at all: every lookup misses without a walk.
    empty: bool,
}

#[derive(Debug, Clone)]
struct Node<T> {
    /// Literal children, sorted by [`by_len_then_bytes`] for binary search: most
    /// comparisons end at the length, without looking at the bytes.
    literals: Vec<(Box<str>, Node<T>)>,
    /// The `{param}` child.
    param: Option<Box<Node<T>>>,
    /// Patterns ending here: the path must end here too.
    exact: Slot<T>,
    /// Patterns whose `{*wildcard}` follows here: at least one more character.
    wildcard: Slot<T>,
    /// Prefixes ending here: anything may follow.
    prefix: Slot<T>,
    /// Whether `prefix` or `wildcard` holds a rule: most nodes are only a step
    /// on the way, and one test skips both.
    open_tail: bool,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            literals: Vec::new(),
            param: None,
            exact: Slot::default(),
            wildcard: Slot::default(),
            prefix: Slot::default(),
            open_tail: false,
        }
    }
}

/// The rules of one path shape and tail, by method.
#[derive(Debug, Clone)]
struct Slot<T> {
    any: Option<T>,
    methods: Vec<(Method, T)>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            any: None,
            methods: Vec::new(),
        }
    }
}

impl<T> Slot<T> {
    /// The entry for `method` and whether it was method-specific.
    #[inline]
    fn get(&self, method: &Method) -> Option<(&T, bool)> {
        if self.methods.is_empty() {
            return self.any.as_ref().map(|e| (e, false));
        }
        self.methods
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, e)| (e, true))
            .or_else(|| self.any.as_ref().map(|e| (e, false)))
    }

    fn insert(&mut self, method: Option<Method>, entry: T) -> Result<(), &'static str> {
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

impl<T: Clone> Matcher<T> {
    /// Compiles `rules` (kind, method, path, value); an error names the first
    /// rule that is not a valid path or repeats another's path shape and method.
    pub(crate) fn compile<'r>(
        rules: impl IntoIterator<Item = (RuleKind, Option<&'r Method>, &'r str, T)>,
    ) -> Result<Self, RouteError> {
        let mut root = Node::default();
        let mut patterns: Vec<(Box<str>, Slot<T>)> = Vec::new();
        let mut empty = true;
        for (kind, method, path, value) in rules {
            empty = false;
            let error = |reason| RouteError::new(path, reason);
            let (segments, tail) = parse(kind, path).map_err(error)?;
            let node = segments
                .iter()
                .fold(&mut root, |node, segment| node.child(*segment));
            node.open_tail |= tail != Tail::Exact;
            let slot = match tail {
                Tail::Exact => &mut node.exact,
                Tail::Wildcard => &mut node.wildcard,
                Tail::Prefix => &mut node.prefix,
            };
            slot.insert(method.cloned(), value.clone()).map_err(error)?;
            if tail == Tail::Exact {
                let i = match patterns.binary_search_by(|(p, _)| by_len_then_bytes(p, path)) {
                    Ok(i) => i,
                    Err(i) => {
                        patterns.insert(i, (path.into(), Slot::default()));
                        i
                    }
                };
                // The trie's slot above already refused a duplicate.
                patterns[i]
                    .1
                    .insert(method.cloned(), value)
                    .map_err(error)?;
            }
        }
        Ok(Self {
            root,
            patterns,
            empty,
        })
    }

    /// The value of the most specific rule for `method` and `path`, if any matches.
    ///
    /// When `path` is the text of a whole-path pattern with a rule for `method`,
    /// that rule wins without a walk: any other rule matching the same text
    /// whole has the same depth and, segment by segment, a `{param}` at least
    /// wherever this one has (a literal cannot match a `{name}` segment), so it
    /// is no more specific; and prefix and wildcard rules rank below whole-path
    /// matches of this depth.
    #[inline]
    pub(crate) fn lookup(&self, method: &Method, path: &str) -> Option<&T> {
        if self.empty {
            return None;
        }
        if let Ok(i) = self
            .patterns
            .binary_search_by(|(p, _)| by_len_then_bytes(p, path))
            && let Some((entry, _)) = self.patterns[i].1.get(method)
        {
            return Some(entry);
        }
        self.walk(method, path)
    }

    pub(crate) fn walk(&self, method: &Method, path: &str) -> Option<&T> {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let mut best = None;
        self.root.walk(method, Some(rest), 0, 0, &mut best);
        best.map(|(_, entry)| entry)
    }
}

impl<T> Node<T> {
    fn child(&mut self, segment: Segment<'_>) -> &mut Node<T> {
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
    fn walk<'s>(
        &'s self,
        method: &Method,
        mut rest: Option<&str>,
        mut depth: usize,
        mut literals: u64,
        best: &mut Option<(Rank, &'s T)>,
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
fn consider<'s, T>(
    slot: &'s Slot<T>,
    method: &Method,
    whole: bool,
    depth: usize,
    literals: u64,
    wildcard: bool,
    best: &mut Option<(Rank, &'s T)>,
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

impl<T> Node<T> {
    /// Splits the next segment off `path` (what follows the last consumed `/`):
    /// the literal child it names if any, the segment, and what follows its `/`.
    #[inline]
    fn next_segment<'p>(&self, path: &'p str) -> (Option<&Node<T>>, &'p str, Option<&'p str>) {
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
fn parse(kind: RuleKind, path: &str) -> Result<(Vec<Segment<'_>>, Tail), &'static str> {
    let body = path.strip_prefix('/').ok_or("a path must start with '/'")?;
    let (body, mut tail) = match kind {
        // "/api/auth/" and "/api/auth" both name the segments `api`, `auth`; "/" names none.
        RuleKind::Prefix => (body.strip_suffix('/').unwrap_or(body), Tail::Prefix),
        RuleKind::Pattern => (body, Tail::Exact),
    };
    let mut segments = Vec::new();
    if kind == RuleKind::Prefix && body.is_empty() {
        return Ok((segments, tail));
    }
    let mut parts = body.split('/').peekable();
    while let Some(part) = parts.next() {
        match parse_segment(part)? {
            Parsed::Literal(s) => segments.push(Segment::Literal(s)),
            Parsed::Param => segments.push(Segment::Param),
            Parsed::Wildcard if kind == RuleKind::Prefix => {
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
    if part.starts_with([':', '*']) {
        // axum 0.7's syntax, which axum 0.8 refuses too: never a literal by mistake.
        return Err("`:name` and `*name` are not segments; write `{name}` or `{*name}`");
    }
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

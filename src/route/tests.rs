//! The matcher's rules, written as the timeout table writes them: every
//! rule carries a number (its limit in seconds) and its path.
use http::Method;

use super::*;
use crate::route::{RouteError, RuleKind};

const UNLIMITED: u64 = u64::MAX;

/// A rule set with a default, built like `TimeoutTable`.
struct Rules {
    default: u64,
    rules: Vec<(RuleKind, Option<Method>, &'static str, u64)>,
}

impl Rules {
    fn new(default: u64) -> Self {
        Self {
            default,
            rules: Vec::new(),
        }
    }
    fn add(mut self, kind: RuleKind, method: Option<Method>, path: &'static str, n: u64) -> Self {
        self.rules.push((kind, method, path, n));
        self
    }
    fn prefix(self, path: &'static str, n: u64) -> Self {
        self.add(RuleKind::Prefix, None, path, n)
    }
    fn prefix_for(self, method: Method, path: &'static str, n: u64) -> Self {
        self.add(RuleKind::Prefix, Some(method), path, n)
    }
    fn route(self, path: &'static str, n: u64) -> Self {
        self.add(RuleKind::Pattern, None, path, n)
    }
    fn route_for(self, method: Method, path: &'static str, n: u64) -> Self {
        self.add(RuleKind::Pattern, Some(method), path, n)
    }
}

struct Compiled {
    matcher: Matcher<(u64, &'static str)>,
    default: u64,
}

impl Compiled {
    fn lookup(&self, method: &Method, path: &str) -> (u64, &'static str) {
        self.matcher
            .lookup(method, path)
            .copied()
            .unwrap_or((self.default, "default"))
    }
    fn walk(&self, method: &Method, path: &str) -> (u64, &'static str) {
        self.matcher
            .walk(method, path)
            .copied()
            .unwrap_or((self.default, "default"))
    }
}

fn secs(n: u64) -> u64 {
    n
}

fn try_compile(rules: Rules) -> Result<Compiled, RouteError> {
    let matcher = Matcher::compile(
        rules
            .rules
            .iter()
            .map(|(kind, method, path, n)| (*kind, method.as_ref(), *path, (*n, *path))),
    )?;
    Ok(Compiled {
        matcher,
        default: rules.default,
    })
}

fn limit(m: &Compiled, method: Method, path: &str) -> u64 {
    m.lookup(&method, path).0
}

fn get(m: &Compiled, path: &str) -> (u64, &'static str) {
    m.lookup(&Method::GET, path)
}

fn compile(rules: Rules) -> Compiled {
    try_compile(rules).unwrap()
}

fn error(rules: Rules) -> &'static str {
    try_compile(rules).err().unwrap().reason()
}

#[test]
fn the_seed_table() {
    let m = compile(
        Rules::new(secs(15))
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
    let m = compile(Rules::new(secs(15)).prefix("/api/auth", secs(12)));
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
    let m = compile(Rules::new(secs(15)).prefix("/", secs(1)));
    assert_eq!(get(&m, "/").0, secs(1));
    assert_eq!(get(&m, "/a/b").0, secs(1));
}

#[test]
fn patterns_match_whole_paths() {
    let m = compile(
        Rules::new(secs(15))
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
    let m = compile(Rules::new(secs(15)).route("/files/{*rest}", secs(60)));
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
        Rules::new(secs(15))
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
        Rules::new(secs(15))
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
        Rules::new(secs(15))
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
        Rules::new(secs(15))
            .route("/a/b/c", secs(1))
            .route("/a/{x}/d", secs(2)),
    );
    assert_eq!(get(&m, "/a/b/d").0, secs(2));
    assert_eq!(get(&m, "/a/b/c").0, secs(1));
}

#[test]
fn method_specific_rules() {
    let m = compile(
        Rules::new(secs(15))
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
        Rules::new(secs(15))
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
        Rules::new(secs(15))
            .prefix("/api/events/", UNLIMITED)
            .route("/api/events/{id}/ack", secs(2)),
    );
    assert_eq!(get(&m, "/api/events/stream"), (UNLIMITED, "/api/events/"));
    assert_eq!(get(&m, "/api/events/9/ack").0, secs(2));
    let m = compile(Rules::new(UNLIMITED).prefix("/api/", secs(1)));
    assert_eq!(get(&m, "/health").0, UNLIMITED);
}

#[test]
fn invalid_rules() {
    let t = || Rules::new(secs(1));
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
    let t = || Rules::new(secs(1));
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
    let err = try_compile(t().route("/a/{x}", secs(1)).route("/a/{y}", secs(2)))
        .err()
        .unwrap();
    assert_eq!(err.path(), "/a/{y}");
    assert_eq!(
        err.to_string(),
        "invalid route rule `/a/{y}`: another rule has the same path shape and method"
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
        Rules::new(secs(15))
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
    let m = compile(Rules::new(secs(15)).prefix("/a/", secs(1)));
    let long = format!("/a{}", "/x".repeat(10_000));
    assert_eq!(get(&m, &long).0, secs(1));
    assert_eq!(get(&m, &"/".repeat(10_000)).0, secs(15));
}

#[test]
fn axum_07_segments_are_refused() {
    let t = || Rules::new(secs(1));
    let reason = "`:name` and `*name` are not segments; write `{name}` or `{*name}`";
    assert_eq!(error(t().route("/users/:id", secs(1))), reason);
    assert_eq!(error(t().route("/files/*path", secs(1))), reason);
    assert_eq!(error(t().prefix("/:tenant/", secs(1))), reason);
}

//! The matcher against the brute-force [`reference`](super::reference) on
//! random rule sets and paths: segments drawn from a small alphabet so rules
//! overlap, collide and nest as real tables do.

use http::Method;
use proptest::prelude::*;

use super::{Matcher, RuleKind, reference};

fn segment() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("a"),
        Just("b"),
        Just("ab"),
        Just(""),
        Just("{id}"),
        Just("{other}"),
        Just("{*rest}"),
    ]
}

fn method() -> impl Strategy<Value = Option<Method>> {
    prop_oneof![
        Just(None),
        Just(Some(Method::GET)),
        Just(Some(Method::POST))
    ]
}

fn rule() -> impl Strategy<Value = (RuleKind, Option<Method>, String, usize)> {
    (
        prop_oneof![Just(RuleKind::Prefix), Just(RuleKind::Pattern)],
        method(),
        proptest::collection::vec(segment(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(kind, method, segments, slash)| {
            let mut path = format!("/{}", segments.join("/"));
            if slash && !path.ends_with('/') {
                path.push('/');
            }
            (kind, method, path, 0)
        })
}

fn request_path() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(
            prop_oneof![
                Just("a"),
                Just("b"),
                Just("ab"),
                Just(""),
                Just("c"),
                Just("{id}")
            ],
            0..5,
        ),
        any::<bool>(),
    )
        .prop_map(|(segments, bare)| {
            let path = format!("/{}", segments.join("/"));
            if bare {
                path.trim_start_matches('/').to_owned()
            } else {
                path
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_trie_agrees_with_brute_force(
        rules in proptest::collection::vec(rule(), 0..10),
        paths in proptest::collection::vec(request_path(), 1..10),
    ) {
        // Keep each rule that compiles with those kept before it: a malformed
        // or repeated rule refuses a whole set, and most sets would be lost.
        let compile = |rules: &[(RuleKind, Option<Method>, String, usize)]| {
            Matcher::compile(
                rules.iter().map(|(kind, method, path, i)| (*kind, method.as_ref(), path.as_str(), *i)),
            )
        };
        let mut kept = Vec::new();
        for (i, (kind, method, path, _)) in rules.into_iter().enumerate() {
            kept.push((kind, method, path, i));
            if compile(&kept).is_err() {
                kept.pop();
            }
        }
        let rules = kept;
        let matcher = compile(&rules).unwrap();
        for path in &paths {
            for method in [Method::GET, Method::POST, Method::DELETE] {
                let want = reference::best_match(&rules, &method, path);
                prop_assert_eq!(matcher.lookup(&method, path), want, "{} {:?} in {:?}", method, path, rules);
                prop_assert_eq!(matcher.walk(&method, path), want, "{} {:?} in {:?}", method, path, rules);
            }
        }
    }
}

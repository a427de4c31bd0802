//! Keyset pagination shared by every list: `?limit=1..100` (default 20) and an
//! opaque `?cursor=` from the previous page's `next_cursor`, answered as
//! `{"items": [...], "next_cursor": "..." | null}`.
//!
//! Lists are ordered newest first on `(created_at, id)` (ids are time-ordered
//! UUIDv7, so ties within a second keep their order) and a page starts strictly
//! after its cursor's row, so rows inserted meanwhile never shift or repeat
//! what the following pages hold. A list ordered by a leading group first
//! (favourite ICP templates) puts that group in the cursor too.
//!
//! The query string is read by [`ListQuery`], which names the parameter in its
//! 400 problem instead of axum's unnamed rejection.

use axum::extract::{FromRequestParts, RawQuery};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{StatusCode, request::Parts};
use serde::Serialize;

use crate::{error::ApiError, validation::field_problem};

/// The default page size.
pub const DEFAULT_LIMIT: i64 = 20;
/// The largest page size.
pub const MAX_LIMIT: i64 = 100;

/// Where a page starts: strictly after this row in the list's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The leading sort group (a favourite flag), 0 for lists without one.
    pub group: i64,
    /// The row's `created_at`.
    pub created_at: i64,
    /// The row's id.
    pub id: String,
}

impl Cursor {
    /// The opaque text handed to clients.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}.{}.{}", self.group, self.created_at, self.id))
    }

    /// The cursor `text` encodes, or `None` when it is not one of ours.
    pub fn decode(text: &str) -> Option<Self> {
        if text.len() > 200 {
            return None;
        }
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
        let mut parts = raw.splitn(3, '.');
        let group = parts.next()?.parse().ok()?;
        let created_at = parts.next()?.parse().ok()?;
        let id = parts.next()?;
        let well_formed = !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        well_formed.then(|| Self {
            group,
            created_at,
            id: id.to_owned(),
        })
    }
}

/// What a list asks the database for.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// Rows on the page (1 to [`MAX_LIMIT`]).
    pub limit: i64,
    /// Where it starts; `None` for the first page.
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// How many rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }
}

/// One page of a list, as the API answers it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The rows, in the list's order.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The page of `rows` (fetched with [`PageRequest::fetch`]): the extra row,
    /// if any, only says that a next page exists, whose cursor is the last
    /// kept row's `key`.
    pub fn from_rows(mut rows: Vec<T>, request: &PageRequest, key: impl Fn(&T) -> Cursor) -> Self {
        let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|row| key(row).encode())
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }

    /// The page with each row turned into `f(row)`.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

/// How a list's `limit` and `cursor` are documented: `params(PageParams)` in
/// a list's `#[utoipa::path]` (the handler reads them with [`ListQuery`]).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// Rows on the page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// The previous page's `next_cursor`; absent for the first page.
    cursor: Option<String>,
}

/// A list's query string: `limit`, `cursor` and its own filters. Parameters a
/// list does not know are ignored; a malformed one is a 400 naming it.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pairs: Vec<(String, String)>,
}

impl ListQuery {
    /// The query string `query` (without `?`).
    pub fn parse(query: &str) -> Self {
        Self {
            pairs: form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// The value of `name` (its first occurrence).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `limit` and `cursor`, validated.
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = match self.get("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(field_problem(
                        StatusCode::BAD_REQUEST,
                        "limit",
                        format!("must be an integer from 1 to {MAX_LIMIT}"),
                    ));
                }
            },
        };
        let after = match self.get("cursor") {
            None | Some("") => None,
            Some(text) => Some(Cursor::decode(text).ok_or_else(|| {
                field_problem(
                    StatusCode::BAD_REQUEST,
                    "cursor",
                    "is not a cursor this list returned",
                )
            })?),
        };
        Ok(PageRequest { limit, after })
    }

    /// The value of the filter `name` among `allowed`, or `default` when it is
    /// absent; any other value is a 400 listing the allowed ones.
    pub fn one_of<'a>(
        &self,
        name: &str,
        allowed: &[&'a str],
        default: Option<&'a str>,
    ) -> Result<Option<&'a str>, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => allowed
                .iter()
                .find(|a| **a == value)
                .map(|a| Some(*a))
                .ok_or_else(|| {
                    field_problem(
                        StatusCode::BAD_REQUEST,
                        name,
                        format!("must be one of {}", allowed.join(", ")),
                    )
                }),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let RawQuery(query) = RawQuery::from_request_parts(parts, state)
            .await
            .unwrap_or(RawQuery(None));
        Ok(Self::parse(query.as_deref().unwrap_or("")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = Cursor {
            group: 1,
            created_at: 1_700_000_000,
            id: "0190a8f2-0000-7000-8000-000000000001".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in [
            "",
            "abc",
            "!!!",
            &URL_SAFE_NO_PAD.encode("1.x.id"),
            &URL_SAFE_NO_PAD.encode("0.1.id'--"),
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(ListQuery::parse("").page().unwrap().limit, 20);
        assert_eq!(ListQuery::parse("limit=100").page().unwrap().limit, 100);
        for bad in ["limit=0", "limit=101", "limit=-1", "limit=ten", "cursor=zz"] {
            assert!(ListQuery::parse(bad).page().is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_keep_limit_rows_and_point_after_the_last() {
        let request = PageRequest {
            limit: 2,
            after: None,
        };
        let key = |n: &i64| Cursor {
            group: 0,
            created_at: *n,
            id: n.to_string(),
        };
        let page = Page::from_rows(vec![3, 2, 1], &request, key);
        assert_eq!(page.items, vec![3, 2]);
        assert_eq!(
            Cursor::decode(&page.next_cursor.unwrap())
                .unwrap()
                .created_at,
            2
        );
        let last = Page::from_rows(vec![1], &request, key);
        assert_eq!(last.next_cursor, None);
    }
}

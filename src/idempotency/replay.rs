//! What of a response is stored, and how a stored response is replayed.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, header, response::Parts};

use super::{IDEMPOTENT_REPLAYED, StoredResponse};
use crate::ResponseBody;

/// Headers never stored: hop-by-hop headers (RFC 9110 §7.6.1), those that
/// describe one transmission (`Date`, `Content-Length`: the server sets them
/// anew), `Set-Cookie` (a replay must not hand out a session or a cookie to
/// whoever resends the key), and the replay marker itself.
const NOT_STORED: [HeaderName; 13] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::DATE,
    header::CONTENT_LENGTH,
    header::SET_COOKIE,
    IDEMPOTENT_REPLAYED,
];

/// The stored form of a response head and its complete body.
pub(crate) fn to_stored(parts: &Parts, body: Bytes) -> StoredResponse {
    let mut headers = parts.headers.clone();
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in NOT_STORED.iter().chain(&named) {
        headers.remove(name);
    }
    StoredResponse {
        status: parts.status,
        headers,
        body,
    }
}

/// A stored response, replayed: same status, headers and body bytes, plus
/// `Idempotent-Replayed: true`.
pub(crate) fn replay<B: http_body::Body>(stored: StoredResponse) -> Response<ResponseBody<B>> {
    let StoredResponse {
        status,
        mut headers,
        body,
    } = stored;
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    let mut res = Response::new(ResponseBody::full(body));
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn drops_transport_headers_and_cookies_keeps_the_rest() {
        let res = Response::builder()
            .status(201)
            .header("content-type", "application/json")
            .header("location", "/orders/1")
            .header("x-custom", "a")
            .header("x-custom", "b")
            .header("set-cookie", "session=1")
            .header("content-length", "2")
            .header("date", "Tue, 15 Nov 1994 08:12:31 GMT")
            .header("connection", "x-hop, keep-alive")
            .header("x-hop", "1")
            .header("transfer-encoding", "chunked")
            .body(())
            .unwrap();
        let (parts, ()) = res.into_parts();
        let stored = to_stored(&parts, Bytes::from_static(b"{}"));
        assert_eq!(stored.status, StatusCode::CREATED);
        let names: Vec<_> = stored.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-type", "location", "x-custom"]);
        assert_eq!(stored.headers.get_all("x-custom").iter().count(), 2);

        let replayed: Response<ResponseBody<http_body_util::Empty<Bytes>>> = replay(stored);
        assert_eq!(replayed.status(), StatusCode::CREATED);
        assert_eq!(replayed.headers()["idempotent-replayed"], "true");
        assert_eq!(replayed.headers()["location"], "/orders/1");
    }
}

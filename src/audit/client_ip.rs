//! The client's address: the peer, or what trusted proxies say it was.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use http::{Extensions, HeaderMap, header::FORWARDED};

/// The header a trusted proxy records the client chain in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

/// An IP address or a CIDR range (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`).
///
/// ```
/// use steadfast::audit::IpRange;
///
/// let range: IpRange = "10.0.0.0/8".parse().unwrap();
/// assert!(range.contains("10.1.2.3".parse().unwrap()));
/// assert!(!range.contains("11.0.0.1".parse().unwrap()));
/// assert!("10.0.0.0/33".parse::<IpRange>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// The range of `prefix` leading bits of `network`; `None` when the prefix
    /// is longer than the address.
    pub fn new(network: IpAddr, prefix: u8) -> Option<Self> {
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { network, prefix })
    }

    /// Whether `ip` is in the range. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl From<IpAddr> for IpRange {
    fn from(ip: IpAddr) -> Self {
        let ip = ip.to_canonical();
        Self {
            network: ip,
            prefix: if ip.is_ipv4() { 32 } else { 128 },
        }
    }
}

/// A string that is neither an IP address nor a CIDR range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidIpRange(String);

impl fmt::Display for InvalidIpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an IP address or CIDR range: {:?}", self.0)
    }
}

impl std::error::Error for InvalidIpRange {}

impl FromStr for IpRange {
    type Err = InvalidIpRange;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidIpRange(s.to_owned());
        match s.trim().split_once('/') {
            None => s
                .trim()
                .parse::<IpAddr>()
                .map(Self::from)
                .map_err(|_| invalid()),
            Some((ip, prefix)) => {
                let ip: IpAddr = ip.parse().map_err(|_| invalid())?;
                let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
                // An IPv4-mapped network keeps its meaning in IPv4 terms.
                let prefix = match ip {
                    IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
                        prefix.checked_sub(96).ok_or_else(invalid)?
                    }
                    _ => prefix,
                };
                Self::new(ip, prefix).ok_or_else(invalid)
            }
        }
    }
}

/// Which peers may say who the client is, and in which header.
///
/// The client address of a request is its peer address — axum's
/// `ConnectInfo<SocketAddr>` extension, or a plain `SocketAddr` extension for
/// hyper users — unless that peer is a trusted proxy. Then the chain in the
/// configured header is walked right to left, skipping trusted hops; the first
/// untrusted hop is the client. Nobody is trusted by default, so by default a
/// forged `X-Forwarded-For` changes nothing.
///
/// If a trusted hop reports something that is not an address (`unknown`, an
/// obfuscated RFC 7239 identifier), the walk stops at the last address known:
/// the trusted proxy that reported it. Only one header is read — the one your
/// proxies write — because a client can send the other one forged.
///
/// ```
/// use steadfast::audit::{ForwardedHeader, IpRange, TrustedProxies};
/// use http::HeaderMap;
///
/// let proxies = TrustedProxies::none().trust("10.0.0.0/8".parse::<IpRange>().unwrap());
/// let mut headers = HeaderMap::new();
/// headers.insert("x-forwarded-for", "203.0.113.9, 198.51.100.2, 10.0.0.7".parse().unwrap());
///
/// let peer = "10.0.0.1".parse().ok();
/// assert_eq!(proxies.client_ip(peer, &headers), "198.51.100.2".parse().ok());
///
/// // An untrusted peer is the client, whatever it claims.
/// let peer = "198.51.100.2".parse().ok();
/// assert_eq!(proxies.client_ip(peer, &headers), peer);
///
/// let rfc7239 = proxies.header(ForwardedHeader::Forwarded);
/// let mut headers = HeaderMap::new();
/// headers.insert("forwarded", r#"for="[2001:db8::1]:4711";proto=https, for=10.0.0.7"#.parse().unwrap());
/// assert_eq!(rfc7239.client_ip("10.0.0.1".parse().ok(), &headers), "2001:db8::1".parse().ok());
/// ```
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    ranges: Vec<IpRange>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Trusts nobody: the client is always the peer.
    pub fn none() -> Self {
        Self::default()
    }

    /// Also trusts `range` (an address or a CIDR range).
    pub fn trust(mut self, range: impl Into<IpRange>) -> Self {
        self.ranges.push(range.into());
        self
    }

    /// Reads the chain from `header` (default `X-Forwarded-For`).
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// The peer address in `extensions`: axum's `ConnectInfo<SocketAddr>`, or a
    /// plain `SocketAddr`.
    pub fn peer_ip(extensions: &Extensions) -> Option<IpAddr> {
        #[cfg(feature = "axum")]
        if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
            return Some(info.0.ip());
        }
        extensions.get::<SocketAddr>().map(SocketAddr::ip)
    }

    /// The client address of a request with `headers` from `peer`.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.to_canonical();
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let name = match self.header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => FORWARDED.as_str(),
        };
        let mut nearest = peer;
        // Header lines in reverse, then each line's hops in reverse.
        for line in headers.get_all(name).iter().rev() {
            let Ok(line) = line.to_str() else {
                return Some(nearest);
            };
            for element in split_elements(line).rev() {
                let hop = match self.header {
                    ForwardedHeader::XForwardedFor => parse_node(element),
                    ForwardedHeader::Forwarded => forwarded_for(element).and_then(parse_node),
                };
                match hop {
                    Some(ip) if self.is_trusted(ip) => nearest = ip,
                    Some(ip) => return Some(ip),
                    None => return Some(nearest),
                }
            }
        }
        Some(nearest)
    }

    /// The client address of a request: [`peer_ip`](Self::peer_ip) and
    /// [`client_ip`](Self::client_ip) together.
    pub fn resolve<B>(&self, request: &http::Request<B>) -> Option<IpAddr> {
        self.client_ip(Self::peer_ip(request.extensions()), request.headers())
    }
}

/// Splits a header line at commas outside quoted strings.
fn split_elements(line: &str) -> impl DoubleEndedIterator<Item = &str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in line.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                parts.push(line[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(line[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty())
}

/// The `for=` value of one RFC 7239 element, unquoted.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// An address with an optional port: `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]:80`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, _) = rest.split_once(']')?;
        return ip.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    node.parse::<SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn ranges() {
        let v6: IpRange = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let mapped: IpRange = "::ffff:10.0.0.0/104".parse().unwrap();
        assert!(mapped.contains(ip("10.9.9.9")));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("::1")));
        assert!(IpRange::from(ip("::ffff:127.0.0.1")).contains(ip("127.0.0.1")));
        for bad in ["", "10.0.0.0/", "10/8", "::/129", "nonsense"] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn walks_right_to_left_across_header_lines() {
        let proxies = TrustedProxies::none()
            .trust("10.0.0.0/8".parse::<IpRange>().unwrap())
            .trust(ip("192.0.2.1"));
        let h = headers(
            "x-forwarded-for",
            &["6.6.6.6, 203.0.113.5", "192.0.2.1:8080, 10.1.1.1"],
        );
        assert_eq!(
            proxies.client_ip(Some(ip("10.0.0.2")), &h),
            Some(ip("203.0.113.5"))
        );
        // Everyone trusted: the leftmost address.
        let h = headers("x-forwarded-for", &["10.9.9.9, 10.1.1.1"]);
        assert_eq!(
            proxies.client_ip(Some(ip("10.0.0.2")), &h),
            Some(ip("10.9.9.9"))
        );
        // No header: the peer.
        assert_eq!(
            proxies.client_ip(Some(ip("10.0.0.2")), &HeaderMap::new()),
            Some(ip("10.0.0.2"))
        );
        // A garbage hop stops the walk at the proxy that reported it.
        let h = headers("x-forwarded-for", &["1.2.3.4, unknown, 10.1.1.1"]);
        assert_eq!(
            proxies.client_ip(Some(ip("10.0.0.2")), &h),
            Some(ip("10.1.1.1"))
        );
        // No peer known: no client address.
        assert_eq!(proxies.client_ip(None, &h), None);
    }

    #[test]
    fn parses_rfc7239() {
        let proxies = TrustedProxies::none()
            .trust("10.0.0.0/8".parse::<IpRange>().unwrap())
            .header(ForwardedHeader::Forwarded);
        let h = headers(
            "forwarded",
            &[
                r#"for=198.51.100.17;proto=https;by=10.0.0.1, For="[2001:db8:cafe::17]:4711", for=10.0.0.3"#,
            ],
        );
        assert_eq!(
            proxies.client_ip(Some(ip("10.0.0.2")), &h),
            Some(ip("2001:db8:cafe::17"))
        );
        let h = headers(
            "forwarded",
            &[r#"for=198.51.100.17, for=_hidden, for="10.0.0.3:80""#],
        );
        assert_eq!(
            proxies.client_ip(Some(ip("10.0.0.2")), &h),
            Some(ip("10.0.0.3"))
        );
        // The other header is ignored.
        let h = headers("x-forwarded-for", &["6.6.6.6"]);
        assert_eq!(
            proxies.client_ip(Some(ip("10.0.0.2")), &h),
            Some(ip("10.0.0.2"))
        );
    }
}

//! Single sign-on through a trusted proxy (oauth2-proxy, a company's SSO
//! gateway): a header names the person, believed only when the connection
//! comes from the proxy's own addresses, and a table maps people (or
//! `*@domain`) to roles.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::Identity;
use crate::domain::{Actor, Role};

/// A network: an address and how many of its leading bits count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

/// Why a network entry was refused; each names the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an address or address/bits")]
    NotAnAddress(String),
    #[error("{text:?}: the prefix length must be 0 to {max}")]
    PrefixLength { text: String, max: u8 },
}

impl Cidr {
    /// `10.0.0.0/8`, `::1/128`, or a bare address (all its bits).
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| CidrError::NotAnAddress(text.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| CidrError::PrefixLength {
                    text: text.to_owned(),
                    max,
                })?,
        };
        // Peers arrive as IPv4 when they are IPv4-mapped; so do entries.
        Ok(match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Cidr {
                    addr: IpAddr::V4(v4),
                    bits: bits.saturating_sub(96),
                },
                None => Cidr { addr, bits },
            },
            IpAddr::V4(_) => Cidr { addr, bits },
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (net, ip, width) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.bits);
        shift >= width || (net >> shift) == (ip >> shift)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustedProxyError {
    /// A client's own copy of the header beside the proxy's: which one the
    /// proxy meant cannot be told.
    #[error("the {header} header came more than once")]
    Repeated { header: String },
    #[error("{0} has no role in http.trusted_proxy.roles")]
    NoRole(String),
    #[error("the {header} header does not name a person")]
    Malformed { header: String },
}

/// `[http.trusted_proxy]`, validated.
#[derive(Debug, Clone)]
pub struct TrustedProxy {
    /// Lower-case header name, e.g. `x-forwarded-email`.
    pub header: String,
    pub from: Vec<Cidr>,
    /// Exact people first, then `*@domain` entries (lower-case).
    roles: BTreeMap<String, Role>,
}

impl TrustedProxy {
    pub fn new(header: &str, from: Vec<Cidr>, roles: BTreeMap<String, Role>) -> TrustedProxy {
        TrustedProxy {
            header: header.to_ascii_lowercase(),
            from,
            roles: roles
                .into_iter()
                .map(|(who, role)| (who.to_ascii_lowercase(), role))
                .collect(),
        }
    }

    /// Whether a connection from `peer` speaks for the proxy.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.from.iter().any(|c| c.contains(peer))
    }

    /// The person this request comes from, when it comes through the
    /// proxy (from one of its addresses, with its header): `None` when it
    /// does not, so other credentials are looked at.
    pub fn identify(
        &self,
        peer: Option<std::net::IpAddr>,
        headers: &axum::http::HeaderMap,
    ) -> Option<Result<Identity, TrustedProxyError>> {
        if !peer.is_some_and(|p| self.trusts(p)) {
            return None;
        }
        let mut values = headers.get_all(self.header.as_str()).iter();
        let first = values.next()?;
        if values.next().is_some() {
            return Some(Err(TrustedProxyError::Repeated {
                header: self.header.clone(),
            }));
        }
        Some(self.identity(first.to_str().unwrap_or_default()))
    }

    /// The person the proxy's header names, with their role.
    pub fn identity(&self, value: &str) -> Result<Identity, TrustedProxyError> {
        let who = value.trim().to_ascii_lowercase();
        // A person's name or email: never a path, a list, or another kind
        // of actor (`cli:…`, `bootstrap`).
        let shaped = !who.is_empty()
            && who.len() <= 254
            && who
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '@'))
            && !matches!(who.as_str(), "bootstrap" | "system");
        if !shaped {
            return Err(TrustedProxyError::Malformed {
                header: self.header.clone(),
            });
        }
        let domain = who.rsplit_once('@').map(|(_, d)| format!("*@{d}"));
        let role = self
            .roles
            .get(&who)
            .or_else(|| domain.as_ref().and_then(|d| self.roles.get(d)))
            .copied()
            .ok_or_else(|| TrustedProxyError::NoRole(who.clone()))?;
        Ok(Identity {
            actor: Actor::named(who),
            role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            Cidr::parse("::1/128")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn people_and_domains_map_to_roles() {
        let proxy = TrustedProxy::new(
            "X-Forwarded-Email",
            vec![Cidr::parse("127.0.0.1").unwrap()],
            BTreeMap::from([
                ("Alice@Acme.example".to_owned(), Role::Approver),
                ("*@acme.example".to_owned(), Role::Viewer),
            ]),
        );
        let alice = proxy.identity("alice@acme.example").unwrap();
        assert_eq!(
            (alice.actor.as_str(), alice.role),
            ("alice@acme.example", Role::Approver)
        );
        assert_eq!(
            proxy.identity("bob@acme.example").unwrap().role,
            Role::Viewer
        );
        assert_eq!(
            proxy.identity("eve@evil.example"),
            Err(TrustedProxyError::NoRole("eve@evil.example".into()))
        );
        assert!(proxy.identity("a\"b@acme.example").is_err());
        assert!(proxy.identity("a/b@acme.example").is_err());
        assert!(proxy.identity("cli:x@acme.example").is_err());
        let mut headers = axum::http::HeaderMap::new();
        headers.append("x-forwarded-email", "ann@acme.example".parse().unwrap());
        let trusted = Some("127.0.0.1".parse().unwrap());
        assert!(matches!(proxy.identify(trusted, &headers), Some(Ok(_))));
        assert!(
            proxy
                .identify(Some("10.9.9.9".parse().unwrap()), &headers)
                .is_none()
        );
        headers.append("x-forwarded-email", "bob@acme.example".parse().unwrap());
        assert!(matches!(
            proxy.identify(trusted, &headers),
            Some(Err(TrustedProxyError::Repeated { .. }))
        ));
        assert!(proxy.identity(" ").is_err());
    }
}

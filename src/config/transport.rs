//! Which URLs a token or a roster may travel to: `https://`, or `http://`
//! only to this machine (the simulator, a local proxy) unless a connection
//! says `allow_insecure_http = true`.

/// Why a URL may not carry a token or a roster; the message follows the
/// key that names the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsecureTransport {
    #[error(
        "is http:// to another host, which would send credentials and people's ids in clear text; use https://, or set allow_insecure_http = true"
    )]
    ClearText,
    #[error("must be an http:// or https:// URL")]
    NotHttp,
}

/// Refuses `http://` to another host unless `allow_insecure_http`.
pub fn check_transport(
    url: &reqwest::Url,
    allow_insecure_http: bool,
) -> Result<(), InsecureTransport> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(url) => Ok(()),
        "http" => Err(InsecureTransport::ClearText),
        _ => Err(InsecureTransport::NotHttp),
    }
}

/// `localhost`, `127.0.0.0/8` or `::1`.
fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(is_loopback_host)
}

/// A host name or address (IPv6 in brackets or not) on this machine.
pub(super) fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::check_transport;

    fn check(url: &str, allow: bool) -> bool {
        check_transport(&reqwest::Url::parse(url).unwrap(), allow).is_ok()
    }

    #[test]
    fn clear_text_only_to_this_machine_or_when_allowed() {
        assert!(check("https://api.example.com/v1", false));
        assert!(check("http://127.0.0.1:8081/v1", false));
        assert!(check("http://127.9.9.9/v1", false));
        assert!(check("http://localhost:8081/v1", false));
        assert!(check("http://[::1]:8081/v1", false));
        assert!(!check("http://api.example.com/v1", false));
        assert!(!check("http://10.0.0.5/v1", false));
        assert!(!check("http://localhost.example.com/v1", false));
        assert!(check("http://api.example.com/v1", true));
        assert!(!check("ftp://api.example.com/v1", true));
    }
}

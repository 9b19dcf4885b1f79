//! Talos API endpoint addresses: `host[:port]` as written in a talosconfig, with the
//! apid port 50000 as default, and the TLS server name derived from the host.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use rustls::pki_types::ServerName;

use crate::Error;

/// apid's port (`constants.ApidPort`).
pub const DEFAULT_API_PORT: u16 = 50000;

/// One Talos API endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiEndpoint {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
}

impl ApiEndpoint {
    /// Parses `host`, `host:port`, `[ipv6]`, `[ipv6]:port` or a bare IPv6 address.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidEndpoint {
            endpoint: text.to_string(),
            reason: reason.to_string(),
        };
        let s = text.trim();
        if s.is_empty() {
            return Err(invalid("it is empty"));
        }
        if s.contains("://") {
            return Err(invalid(
                "it carries a URL scheme; Talos endpoints are plain addresses (drop `https://`)",
            ));
        }
        if s.contains('/') || s.chars().any(char::is_whitespace) {
            return Err(invalid("it contains `/` or whitespace"));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let Some((inside, after)) = rest.split_once(']') else {
                return Err(invalid("`[` without a closing `]`"));
            };
            if inside.parse::<Ipv6Addr>().is_err() {
                return Err(invalid("the text inside `[...]` is not an IPv6 address"));
            }
            let port = match after {
                "" => None,
                p => match p.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return Err(invalid("unexpected text after `]`")),
                },
            };
            (inside, port)
        } else if s.matches(':').count() > 1 {
            if s.parse::<Ipv6Addr>().is_err() {
                return Err(invalid(
                    "several `:` but not an IPv6 address; write IPv6 with a port as `[addr]:port`",
                ));
            }
            (s, None)
        } else if let Some((host, port)) = s.split_once(':') {
            (host, Some(port))
        } else {
            (s, None)
        };
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        let port = match port {
            None => DEFAULT_API_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(invalid("the port is not a number in 1..=65535")),
                Ok(p) => p,
            },
        };
        let server_name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => match ServerName::try_from(host.to_string()) {
                Ok(name) => name,
                Err(_) => {
                    return Err(invalid(
                        "the host is neither an IP address nor a valid DNS name",
                    ));
                }
            },
        };
        Ok(ApiEndpoint {
            host: host.to_string(),
            port,
            server_name,
        })
    }

    /// Host name or IP address, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS server name: the endpoint host (an IP address is matched against IP SANs).
    pub fn server_name(&self) -> ServerName<'static> {
        self.server_name.clone()
    }

    /// `host:port`, with brackets around IPv6 addresses.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for ApiEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, u16) {
        let e = ApiEndpoint::parse(s).unwrap();
        (e.host().to_string(), e.port())
    }

    #[test]
    fn default_port_and_explicit_port() {
        assert_eq!(ok("10.5.0.2"), ("10.5.0.2".into(), 50000));
        assert_eq!(ok("10.5.0.2:50001"), ("10.5.0.2".into(), 50001));
        assert_eq!(ok("cp1.example.com"), ("cp1.example.com".into(), 50000));
        assert_eq!(ok(" node-a:443 "), ("node-a".into(), 443));
    }

    #[test]
    fn ipv6_forms() {
        assert_eq!(ok("fd00::1"), ("fd00::1".into(), 50000));
        assert_eq!(ok("[fd00::1]"), ("fd00::1".into(), 50000));
        assert_eq!(ok("[fd00::1]:6000"), ("fd00::1".into(), 6000));
        assert_eq!(
            ApiEndpoint::parse("[fd00::1]:6000").unwrap().authority(),
            "[fd00::1]:6000"
        );
    }

    #[test]
    fn rejects_bad_input_with_reason() {
        for bad in [
            "",
            "https://10.0.0.1",
            "10.0.0.1:0",
            "10.0.0.1:x",
            "10.0.0.1:70000",
            "[fd00::1",
            "[nothost]:1",
            "a:b:c",
            ":50000",
            "a/b",
        ] {
            let err = ApiEndpoint::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidEndpoint { .. }), "{bad}");
            assert!(err.to_string().contains("port defaults to 50000"), "{err}");
        }
    }

    #[test]
    fn server_name_is_ip_for_ip_hosts() {
        let e = ApiEndpoint::parse("127.0.0.1:1").unwrap();
        assert!(matches!(e.server_name(), ServerName::IpAddress(_)));
        let e = ApiEndpoint::parse("talos.local").unwrap();
        assert!(matches!(e.server_name(), ServerName::DnsName(_)));
    }
}

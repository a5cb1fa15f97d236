//! Where webhooks may go: public addresses only, unless the operator allows private ones.
//!
//! A webhook URL is chosen by an analyst, and the server POSTs to it: without a guard, anyone with the analyst
//! role could make Vigil call its own admin ports, the database, a cloud metadata service (169.254.169.254) or
//! anything else on the internal network (server-side request forgery). The guard sits where it cannot be
//! bypassed:
//! - DNS names are resolved by [`PublicResolver`], the webhook client's only resolver. It drops every non-public
//!   address, so the connection goes to an address that was checked, and a name that re-resolves to an internal
//!   address between a check and the connect (DNS rebinding) gains nothing.
//! - IP literals never reach a resolver, so [`check_url`] refuses non-public ones before a request is made (and when
//!   a config is written, so the analyst hears about it at once).
//! - The client follows no redirects and uses no proxy from the environment, so neither can carry the request
//!   somewhere unchecked.
//!
//! `WEBHOOK_ALLOW_PRIVATE=true` turns the guard off, for lab set-ups and tests whose receivers run on loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a webhook destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "webhook destination {host} is not a public address ({why}); set WEBHOOK_ALLOW_PRIVATE=true to allow it"
)]
pub struct Forbidden {
    pub host: String,
    pub why: &'static str,
}

/// `None` when `ip` is a public unicast address; otherwise the kind of range it is in.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "\"this network\" (0.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "shared address space (100.64.0.0/10)",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local (169.254.0.0/16, cloud metadata)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let s = ip.segments();
    // Addresses that carry an IPv4 address are judged by it: ::ffff:127.0.0.1 reaches 127.0.0.1.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    Some(match s[0] {
        // NAT64 (64:ff9b::/96) translates to the embedded IPv4 address.
        0x0064 if s[1] == 0xff9b => return non_public_v4(embedded(s[6], s[7])),
        // 6to4 (2002::/16) tunnels to the IPv4 address in bits 16–48.
        0x2002 => return non_public_v4(embedded(s[1], s[2])),
        0x2001 if s[1] == 0 => "Teredo (2001::/32)",
        0x2001 if s[1] == 0x0db8 => "documentation (2001:db8::/32)",
        x if x & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        x if x & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        x if x & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        x if x & 0xff00 == 0xff00 => "multicast",
        // The rest of ::/8 (IPv4-compatible and other reserved forms).
        x if x & 0xff00 == 0 => "reserved (::/8)",
        _ => return None,
    })
}

/// Refuses a URL whose host is an IP literal outside the public range (names are checked by [`PublicResolver`]
/// when the connection is made, and `localhost` is refused here too since it never means a public host).
pub fn check_url(url: &reqwest::Url) -> Result<(), Forbidden> {
    let forbidden = |why| {
        Err(Forbidden {
            host: url.host_str().unwrap_or_default().to_owned(),
            why,
        })
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => non_public_v4(ip).map_or(Ok(()), forbidden),
        Some(url::Host::Ipv6(ip)) => non_public_v6(ip).map_or(Ok(()), forbidden),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                forbidden("loopback")
            } else {
                Ok(())
            }
        }
        None => forbidden("no host"),
    }
}

/// The webhook client's DNS resolver: the system's answer with every non-public address removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublicResolver;

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| non_public(a.ip()).is_none())
                .collect();
            if public.is_empty() {
                let why = all
                    .first()
                    .and_then(|a| non_public(a.ip()))
                    .unwrap_or("no address");
                return Err(Box::new(Forbidden { host, why }) as Box<_>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Whether a failed request was refused by the guard (as opposed to a network failure worth retrying).
pub fn refused_by_guard(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<Forbidden>() {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn internal_ranges_are_not_public() {
        for s in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001::1",
            "2001:db8::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(non_public(ip(s)).is_some(), "{s} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert_eq!(non_public(ip(s)), None, "{s} is public");
        }
    }

    #[test]
    fn url_literals_and_localhost_are_checked() {
        let url = |s: &str| reqwest::Url::parse(s).expect("url");
        for bad in [
            "http://127.0.0.1:8000/hook",
            "http://[::1]/x",
            "http://[::ffff:7f00:1]/x",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:9000/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            // Alternative spellings of 127.0.0.1 are normalised by the URL parser before we see them.
            "http://2130706433/",
            "http://0x7f.1/",
        ] {
            assert!(check_url(&url(bad)).is_err(), "{bad}");
        }
        for good in [
            "https://hooks.example.com/x",
            "http://8.8.8.8/x",
            "https://[2606:4700:4700::1111]/x",
        ] {
            assert_eq!(check_url(&url(good)), Ok(()), "{good}");
        }
    }

    #[tokio::test]
    async fn the_resolver_drops_internal_answers() {
        let err = PublicResolver
            .resolve("localhost".parse().expect("name"))
            .await
            .err()
            .expect("localhost resolves to loopback only");
        assert!(refused_by_guard(err.as_ref()), "{err}");
    }
}

//! The egress guard: webhook URLs are customer input, so a delivery must not become a way to
//! reach our own network (the cloud metadata service, an admin port on loopback, a database
//! on a private subnet).
//!
//! The check runs on the address actually connected to: the webhook client resolves names
//! through [`GuardedResolver`], which drops every internal address, so a name that resolves to
//! a public address at validation time and to `127.0.0.1` at delivery time (DNS rebinding)
//! still cannot pass. IP-literal hosts are not resolved by the HTTP client, so
//! [`check_host`] checks them before the request. Redirects are never followed by the
//! webhook client, so a public endpoint cannot bounce a delivery inwards either.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

/// An allowlist entry: `10.20.0.0/16`, `127.0.0.0/8`, `fd00::/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a CIDR like \"10.0.0.0/8\""))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is inside this block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
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

/// An IPv4 address hidden in an IPv6 one (`::ffff:10.0.0.1`) is judged as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Why `ip` is internal (not a public unicast address), or `None` when it is public.
pub fn internal_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match (a, b) {
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        _ if ip.is_loopback() => "loopback",
        (10, _) | (192, 168) => "private",
        (172, b) if (16..32).contains(&b) => "private",
        (100, b) if (64..128).contains(&b) => "shared (carrier-grade NAT)",
        (169, 254) => "link-local (cloud metadata)",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_broadcast() || a >= 240 => "reserved",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    let seg = ip.segments();
    Some(match seg[0] {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        s if s & 0xfe00 == 0xfc00 => "unique-local",
        s if s & 0xffc0 == 0xfe80 => "link-local",
        s if s & 0xffc0 == 0xfec0 => "site-local",
        s if s & 0xff00 == 0xff00 => "multicast",
        // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form (::a.b.c.d) carry an
        // IPv4 address that the network may translate to: judge that one.
        0x64 if seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] => {
            return v4_reason(Ipv4Addr::from(u128::from(ip) as u32));
        }
        0 if seg[1..6] == [0, 0, 0, 0, 0] => {
            return v4_reason(Ipv4Addr::from(u128::from(ip) as u32)).or(Some("reserved"));
        }
        _ => return None,
    })
}

/// Whether a delivery may connect to `ip`: public, or inside the allowlist.
pub fn permitted(ip: IpAddr, allow: &[Cidr]) -> Result<(), &'static str> {
    match internal_reason(ip) {
        None => Ok(()),
        Some(_) if allow.iter().any(|c| c.contains(ip)) => Ok(()),
        Some(reason) => Err(reason),
    }
}

/// A connection the guard refused; found in a request error's source chain.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The host as written in the URL.
    pub host: String,
    /// The addresses it resolved to, with why each was refused.
    pub addresses: Vec<(IpAddr, &'static str)>,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self
            .addresses
            .iter()
            .map(|(ip, why)| format!("{ip} ({why})"))
            .collect();
        write!(
            f,
            "refused to connect to `{}`: it resolves only to internal addresses [{}]; \
             webhooks may only reach public addresses unless [webhooks] allow_cidrs permits them",
            self.host,
            list.join(", ")
        )
    }
}

impl std::error::Error for Refused {}

/// Checks an IP-literal host (`127.0.0.1`, `[::1]`); names are checked by the resolver.
pub fn check_host(url: &url::Url, allow: &[Cidr]) -> Result<(), Refused> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    permitted(ip, allow).map_err(|why| Refused {
        host: url.host_str().unwrap_or_default().to_string(),
        addresses: vec![(ip, why)],
    })
}

/// Resolves names with the system resolver and keeps only permitted addresses.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allow: Arc<Vec<Cidr>>,
}

impl GuardedResolver {
    /// A resolver that lets through public addresses and those in `allow`.
    pub fn new(allow: Vec<Cidr>) -> Self {
        Self {
            allow: Arc::new(allow),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = Vec::new();
            let mut kept = Vec::new();
            for addr in found {
                match permitted(addr.ip(), &allow) {
                    Ok(()) => kept.push(addr),
                    Err(why) => refused.push((addr.ip(), why)),
                }
            }
            if kept.is_empty() && !refused.is_empty() {
                return Err(Box::new(Refused {
                    host,
                    addresses: refused,
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The guard's refusal inside a request error, if that is what the error is.
pub fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.clone());
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(s: &str) -> bool {
        internal_reason(s.parse().unwrap()).is_some()
    }

    #[test]
    fn private_ranges_are_internal() {
        for ip in [
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.0.1",
            "192.168.255.255",
        ] {
            assert!(blocked(ip), "{ip}");
        }
        for ip in ["172.15.255.255", "172.32.0.1", "11.0.0.1", "192.169.0.1"] {
            assert!(!blocked(ip), "{ip} is public");
        }
    }

    #[test]
    fn metadata_loopback_multicast_and_unspecified_are_internal() {
        assert_eq!(
            internal_reason("169.254.169.254".parse().unwrap()),
            Some("link-local (cloud metadata)")
        );
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "ff02::1",
            "ff0e::1",
        ] {
            assert!(blocked(ip), "{ip}");
        }
    }

    #[test]
    fn ipv6_unique_local_and_link_local_are_internal() {
        for ip in ["fc00::1", "fd12:3456:789a::1", "fe80::1", "febf::1"] {
            assert!(blocked(ip), "{ip}");
        }
        assert!(blocked("fec0::1"), "deprecated site-local");
        assert!(!blocked("2001:4860:4860::8888"));
        assert!(!blocked("fbff::1"), "just below fc00::/7");
        assert!(!blocked("fe7f::1"), "just below fe80::/10");
    }

    #[test]
    fn ipv4_mapped_and_embedded_forms_are_judged_as_ipv4() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:192.168.1.1",
            "::ffff:7f00:1",
            "64:ff9b::a00:1",
            "::10.0.0.1",
        ] {
            assert!(blocked(ip), "{ip}");
        }
        assert!(!blocked("::ffff:8.8.8.8"));
        assert!(!blocked("8.8.8.8"));
    }

    #[test]
    fn the_allowlist_lets_chosen_blocks_through() {
        let allow: Vec<Cidr> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(permitted("127.0.0.1".parse().unwrap(), &allow).is_ok());
        assert!(permitted("::ffff:127.0.0.1".parse().unwrap(), &allow).is_ok());
        assert!(permitted("::1".parse().unwrap(), &allow).is_err());
        assert!(permitted("10.0.0.1".parse().unwrap(), &allow).is_err());
        let single: Cidr = "10.1.2.3".parse().unwrap();
        assert!(single.contains("10.1.2.3".parse().unwrap()));
        assert!(!single.contains("10.1.2.4".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("10.1.2.3".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("ten/8".parse::<Cidr>().is_err());
    }

    #[test]
    fn literal_hosts_are_checked_before_any_request() {
        for raw in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "https://169.254.169.254/latest",
            "http://[::ffff:10.0.0.1]/",
        ] {
            let url = url::Url::parse(raw).unwrap();
            let err = check_host(&url, &[]).unwrap_err();
            assert!(err.to_string().contains("refused"), "{err}");
        }
        let url = url::Url::parse("https://hooks.example.com/x").unwrap();
        assert!(
            check_host(&url, &[]).is_ok(),
            "names are left to the resolver"
        );
    }
}

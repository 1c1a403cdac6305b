//! A tenant's webhook URL, validated when it is stored and before each
//! delivery: `https` only, no user or password, an IP-literal host must be
//! a public address. Its `Debug` and `Display` show the scheme and host
//! only (the secret of an incoming webhook is its path). Name resolution
//! and delivery (the vetting DNS resolver) live in the notifier.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// Which destinations are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddressPolicy {
    /// Local development: `http://` and loopback addresses are allowed.
    pub allow_local: bool,
}

/// A destination refused by the address policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook address refused: {0}")]
pub struct Refused(pub String);

/// Why an address is not a public unicast address, if it is not.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    let reason = if ip.is_loopback() {
        "loopback"
    } else if o[0] == 0 {
        "unspecified (0.0.0.0/8)"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local (includes the instance metadata service)"
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        "shared address space (CGNAT, 100.64.0.0/10)"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_broadcast() || o[0] >= 240 {
        "reserved"
    } else if ip.is_documentation() {
        "documentation"
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        "benchmarking (198.18.0.0/15)"
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        "IETF protocol assignments (192.0.0.0/24)"
    } else if o[0] == 192 && o[1] == 88 && o[2] == 99 {
        "6to4 relay anycast"
    } else {
        return None;
    };
    Some(reason)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let reason = if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if ip.to_ipv4_mapped().is_some() {
        "IPv4-mapped"
    } else if s[0..6] == [0; 6] {
        "IPv4-compatible"
    } else if ip.is_multicast() {
        "multicast"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "unique local (fc00::/7, includes the instance metadata service)"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "link-local"
    } else if (s[0] & 0xffc0) == 0xfec0 {
        "site-local"
    } else if s[0] == 0x64 && s[1] == 0xff9b {
        "NAT64 (embeds an IPv4 address)"
    } else if s[0] == 0x2002 {
        "6to4 (embeds an IPv4 address)"
    } else if s[0] == 0x2001 && s[1] == 0 {
        "Teredo (embeds an IPv4 address)"
    } else if s[0] == 0x2001 && s[1] == 0xdb8 {
        "documentation"
    } else if s[0] == 0x100 && s[1..4] == [0, 0, 0] {
        "discard-only (100::/64)"
    } else {
        return None;
    };
    Some(reason)
}

impl AddressPolicy {
    /// Ok if a connection to `ip` is allowed.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.allow_local && ip.is_loopback() {
            return Ok(());
        }
        match non_public_reason(ip) {
            None => Ok(()),
            Some(why) => Err(Refused(format!("{ip} is {why}"))),
        }
    }
}

/// A tenant's webhook URL. Shows only scheme and host.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    /// Parses and checks a URL: scheme, no credentials, a public literal
    /// address (names are checked after resolution, at each delivery).
    pub fn parse(raw: &str, policy: AddressPolicy) -> Result<Self, Refused> {
        let url = Url::parse(raw.trim()).map_err(|e| Refused(format!("not a URL ({e})")))?;
        let url = Self(url);
        url.check(policy)?;
        Ok(url)
    }

    /// The checks of [`WebhookUrl::parse`], again before each delivery
    /// (the policy may have changed since the URL was stored).
    pub fn check(&self, policy: AddressPolicy) -> Result<(), Refused> {
        let url = &self.0;
        match url.scheme() {
            "https" => {}
            "http" if policy.allow_local => {}
            "http" => {
                return Err(Refused(
                    "only https:// webhooks are allowed (http:// only with notifier.webhook_allow_local)"
                        .into(),
                ));
            }
            other => return Err(Refused(format!("scheme {other:?} is not https"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused(
                "credentials in the URL are not allowed (put secrets in the path)".into(),
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| Refused("the URL has no host".into()))?;
        if let Some(ip) = literal_ip(host) {
            policy.check(ip)?;
        }
        Ok(())
    }

    /// The full URL, for sending only: never log or store what this returns
    /// anywhere but the tenant-settings row.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The parsed URL, for the delivery client (never log it).
    pub fn url(&self) -> &Url {
        &self.0
    }
}

/// The host as an IP address, if it is an IP literal (`[…]` for IPv6).
fn literal_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}/…",
            self.0.scheme(),
            self.0.host_str().unwrap_or("?")
        )
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({self})")
    }
}

impl Serialize for WebhookUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    /// Stored URLs are parsed, not policy-checked: the policy is applied
    /// at each delivery.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Url::parse(&raw)
            .map(Self)
            .map_err(|_| serde::de::Error::custom("stored webhook URL is not a URL"))
    }
}

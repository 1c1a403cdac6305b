//! Webhook delivery that cannot be pointed at Kopter's own network.
//!
//! - [`WebhookUrl`] holds a tenant's URL and never shows it: its `Debug`
//!   and `Display` print the scheme and host only (the secret of an
//!   incoming webhook is its path). Errors are stripped of the URL
//!   (`reqwest::Error::without_url`) before they are logged or stored.
//! - Static checks when a URL is set and before each delivery: `https`
//!   only, no user or password, an IP-literal host must be a public
//!   address.
//! - Names are resolved by [`VettingResolver`], reqwest's DNS hook, on every
//!   delivery: if any address of the name is not public the request fails,
//!   and the connection is made to exactly the vetted addresses (no second
//!   lookup, so no time-of-check/time-of-use gap).
//! - Redirects are not followed; proxies from the environment are not used
//!   (a proxy would connect on our behalf, past the resolver).
//! - [`AddressPolicy::allow_local`] (config `notifier.webhook_allow_local`,
//!   local development only) allows `http` and loopback, nothing else.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::deliver::SendError;
pub use kopter_store::webhook_url::{AddressPolicy, Refused, WebhookUrl, non_public_reason};

pub type LookupFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Name → addresses. The system resolver in production; tests inject
/// names that resolve to private addresses.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: String) -> LookupFuture;
}

/// The operating system's resolver (`getaddrinfo` via tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> LookupFuture {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// reqwest's DNS hook: resolves, refuses the name if any address is not
/// allowed, and hands reqwest exactly the vetted addresses to connect to.
pub struct VettingResolver {
    lookup: Arc<dyn Lookup>,
    policy: AddressPolicy,
}

impl reqwest::dns::Resolve for VettingResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let lookup = self.lookup.clone();
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = lookup.lookup(host.clone()).await?;
            if ips.is_empty() {
                return Err(format!("{host} has no addresses").into());
            }
            for ip in &ips {
                policy
                    .check(*ip)
                    .map_err(|Refused(why)| Refused(format!("{host} resolves to {why}")))?;
            }
            // Port 0: the connector uses the URL's port.
            let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Posts Slack-compatible `{"text": …}` bodies.
#[derive(Clone)]
pub struct WebhookClient {
    client: reqwest::Client,
    policy: AddressPolicy,
}

impl WebhookClient {
    pub fn new(timeout: Duration, policy: AddressPolicy, lookup: Arc<dyn Lookup>) -> Self {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(VettingResolver { lookup, policy }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .https_only(!policy.allow_local)
            .user_agent(concat!("kopter-notifier/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("static reqwest configuration is valid");
        Self { client, policy }
    }

    pub fn policy(&self) -> AddressPolicy {
        self.policy
    }

    /// One delivery attempt.
    pub async fn post(&self, url: &WebhookUrl, text: &str) -> Result<(), SendError> {
        url.check(self.policy)
            .map_err(|e| SendError::refused(e.to_string()))?;
        let resp = self
            .client
            .post(url.url().clone())
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await
            .map_err(classify)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let why = format!("the webhook answered HTTP {status}");
        if status.is_redirection() {
            Err(SendError::permanent(format!(
                "{why}; redirects are not followed"
            )))
        } else if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
            Err(SendError::retry(why))
        } else {
            Err(SendError::permanent(why))
        }
    }
}

/// A reqwest error as a delivery error, without the URL.
fn classify(err: reqwest::Error) -> SendError {
    let err = err.without_url();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut parts = Vec::new();
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return SendError::refused(refused.to_string());
        }
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = e.source();
    }
    let reason = parts.join(": ");
    if err.is_builder() {
        SendError::permanent(reason)
    } else {
        SendError::retry(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> AddressPolicy {
        AddressPolicy::default()
    }

    #[test]
    fn non_public_addresses_are_named() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "192.0.0.8",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(non_public_reason(ip).is_some(), "{ip} passed");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "100.128.0.1", "2606:4700::1111"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(non_public_reason(ip), None, "{ip}");
        }
    }

    #[test]
    fn local_mode_allows_loopback_only() {
        let local = AddressPolicy { allow_local: true };
        assert!(local.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(local.check("::1".parse().unwrap()).is_ok());
        assert!(local.check("10.0.0.1".parse().unwrap()).is_err());
        assert!(local.check("169.254.169.254".parse().unwrap()).is_err());
        assert!(strict().check("127.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn urls_are_checked_statically() {
        let ok = WebhookUrl::parse("https://hooks.example.com/services/T/B/secret", strict());
        assert!(ok.is_ok());
        let cases = [
            ("http://hooks.example.com/x", "only https"),
            ("ftp://hooks.example.com/x", "scheme"),
            ("https://user:pw@hooks.example.com/x", "credentials"),
            ("https://user@hooks.example.com/x", "credentials"),
            ("https://127.0.0.1/x", "loopback"),
            ("https://2130706433/x", "loopback"),
            ("https://0x7f.1/x", "loopback"),
            ("https://169.254.169.254/latest/meta-data", "link-local"),
            ("https://10.0.0.5/x", "private"),
            ("https://[::1]/x", "loopback"),
            ("https://[::ffff:10.0.0.1]/x", "IPv4-mapped"),
            ("https://[fd00:ec2::254]/x", "unique local"),
            ("not a url", "not a URL"),
        ];
        for (url, why) in cases {
            let err = WebhookUrl::parse(url, strict()).unwrap_err();
            assert!(err.to_string().contains(why), "{url}: {err}");
        }
        let local = AddressPolicy { allow_local: true };
        assert!(WebhookUrl::parse("http://127.0.0.1:8080/hook", local).is_ok());
        assert!(WebhookUrl::parse("http://10.0.0.1/hook", local).is_err());
    }

    #[test]
    fn urls_never_show_their_path() {
        let url = WebhookUrl::parse(
            "https://hooks.example.com/services/T/B/s3cr3t?token=t0k",
            strict(),
        )
        .unwrap();
        for shown in [
            format!("{url}"),
            format!("{url:?}"),
            format!("{:?}", Some(&url)),
        ] {
            assert!(
                !shown.contains("s3cr3t") && !shown.contains("t0k"),
                "{shown}"
            );
            assert!(shown.contains("hooks.example.com"), "{shown}");
        }
        // Storage keeps it whole.
        let json = serde_json::to_string(&url).unwrap();
        assert!(json.contains("s3cr3t"));
        let back: WebhookUrl = serde_json::from_str(&json).unwrap();
        assert_eq!(back, url);
    }
}

//! Where offer files come from: the public bulk API or the Price List
//! Query API, both ending in an HTTP GET of a region's EC2 offer file.
//!
//! * **Bulk** (default): `{offers_url}/offers/v1.0/aws/index.json` (the
//!   offer index) names `AmazonEC2`'s `currentRegionIndexUrl`; the region
//!   index lists every region (opt-in ones and local zones included) with
//!   its `currentVersionUrl`, `…/AmazonEC2/{version}/{region}/index.json`.
//!   The regions are what the index says, never a list in code. URLs in
//!   the indexes are resolved against `offers_url` and must stay on its
//!   origin: an index pointing elsewhere is refused, not followed.
//! * **API**: `ListPriceLists(AmazonEC2, USD, now)` gives one price list
//!   per region (its ARN ends in `/{version}/{region}`);
//!   `GetPriceListFileUrl(arn, json)` gives a (pre-signed, https) URL of
//!   the same offer file.
//!
//! Redirects are not followed (the bulk host does not use them; a redirect
//! to another origin is refused like an off-origin URL).

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use chrono::Utc;
use kopter_runtime::config::{PriceSource, PricingConfig};
use reqwest::{StatusCode, Url, header};
use serde::Deserialize;

/// The offer index path below `offers_url`.
pub const OFFER_INDEX_PATH: &str = "/offers/v1.0/aws/index.json";
/// Largest offer index or region index accepted (real ones are ~100 KB).
pub const MAX_INDEX_BYTES: usize = 16 << 20;

/// One region's offer file, as an index or the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferLocation {
    pub region: String,
    /// The version the index names, when it names one (skip a region
    /// whose version is already in force without downloading it).
    pub version: Option<String>,
    pub fetch: Fetch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    Url(Url),
    /// A Price List Query API price list; its file URL is asked for when
    /// the file is needed (the URL is pre-signed and short-lived).
    PriceList {
        arn: String,
    },
}

impl OfferLocation {
    /// What to record as the prices' source.
    pub fn source(&self) -> String {
        match &self.fetch {
            Fetch::Url(u) => u.to_string(),
            Fetch::PriceList { arn } => arn.clone(),
        }
    }
}

/// Fetches indexes and offer files.
#[derive(Clone, Debug)]
pub struct Sources {
    http: reqwest::Client,
    kind: PriceSource,
    base: Url,
    allow_http: bool,
    pricing: Option<aws_sdk_pricing::Client>,
}

#[derive(Deserialize)]
struct OfferIndex {
    offers: std::collections::HashMap<String, OfferIndexEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OfferIndexEntry {
    current_region_index_url: Option<String>,
}

#[derive(Deserialize)]
struct RegionIndex {
    regions: std::collections::BTreeMap<String, RegionIndexEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegionIndexEntry {
    region_code: Option<String>,
    current_version_url: String,
}

impl Sources {
    /// `pricing` is the Price List Query API client (needed for source
    /// `api` only).
    pub fn new(
        config: &PricingConfig,
        pricing: Option<aws_sdk_pricing::Client>,
    ) -> anyhow::Result<Self> {
        let base = Url::parse(&config.offers_url)
            .with_context(|| format!("pricing.offers_url {:?}", config.offers_url))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            .timeout(config.download_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kopter-pricing/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("build the HTTP client")?;
        if config.source == PriceSource::Api && pricing.is_none() {
            bail!("pricing.source is api but no Price List API client was given");
        }
        Ok(Self {
            http,
            kind: config.source,
            base,
            allow_http: config.allow_http,
            pricing,
        })
    }

    /// Every region's offer file, from the configured source.
    pub async fn list(&self) -> anyhow::Result<Vec<OfferLocation>> {
        match self.kind {
            PriceSource::Bulk => self.list_bulk().await,
            PriceSource::Api => self.list_api().await,
        }
    }

    async fn list_bulk(&self) -> anyhow::Result<Vec<OfferLocation>> {
        let index_url = self.on_origin(OFFER_INDEX_PATH, "the offer index path")?;
        let index: OfferIndex = self.get_json(&index_url).await?;
        let rel = index
            .offers
            .get("AmazonEC2")
            .and_then(|e| e.current_region_index_url.clone())
            .ok_or_else(|| {
                anyhow!("{index_url}: no AmazonEC2 currentRegionIndexUrl in the offer index")
            })?;
        let region_index_url = self.on_origin(&rel, &format!("{index_url} (AmazonEC2)"))?;
        let regions: RegionIndex = self.get_json(&region_index_url).await?;
        let mut out = Vec::with_capacity(regions.regions.len());
        for (key, entry) in regions.regions {
            let region = entry.region_code.unwrap_or(key);
            let url = self.on_origin(
                &entry.current_version_url,
                &format!("{region_index_url} (region {region})"),
            )?;
            out.push(OfferLocation {
                version: version_from_url(&url, &region),
                region,
                fetch: Fetch::Url(url),
            });
        }
        if out.is_empty() {
            bail!("{region_index_url}: the EC2 region index lists no regions");
        }
        Ok(out)
    }

    async fn list_api(&self) -> anyhow::Result<Vec<OfferLocation>> {
        let client = self.pricing.as_ref().expect("checked in new");
        let now = aws_smithy_types::DateTime::from_secs(Utc::now().timestamp());
        let lists: Vec<aws_sdk_pricing::types::PriceList> = client
            .list_price_lists()
            .service_code("AmazonEC2")
            .currency_code("USD")
            .effective_date(now)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .context("Price List API ListPriceLists(AmazonEC2)")?;
        let mut out = Vec::new();
        for list in lists {
            let (Some(arn), Some(region)) = (list.price_list_arn, list.region_code) else {
                continue;
            };
            if !list
                .file_formats
                .unwrap_or_default()
                .iter()
                .any(|f| f == "json")
            {
                continue;
            }
            out.push(OfferLocation {
                version: version_from_arn(&arn, &region),
                region,
                fetch: Fetch::PriceList { arn },
            });
        }
        if out.is_empty() {
            bail!("Price List API: ListPriceLists(AmazonEC2, USD) returned no JSON price list");
        }
        Ok(out)
    }

    /// The URL to download `location`'s file from.
    pub async fn resolve(&self, location: &OfferLocation) -> anyhow::Result<Url> {
        match &location.fetch {
            Fetch::Url(u) => Ok(u.clone()),
            Fetch::PriceList { arn } => {
                let client = self.pricing.as_ref().expect("checked in new");
                let out = client
                    .get_price_list_file_url()
                    .price_list_arn(arn)
                    .file_format("json")
                    .send()
                    .await
                    .with_context(|| format!("Price List API GetPriceListFileUrl({arn})"))?;
                let raw = out
                    .url
                    .ok_or_else(|| anyhow!("GetPriceListFileUrl({arn}) returned no URL"))?;
                let url = Url::parse(&raw)
                    .with_context(|| format!("GetPriceListFileUrl({arn}) returned {raw:?}"))?;
                self.check_scheme(&url)
                    .with_context(|| format!("GetPriceListFileUrl({arn})"))?;
                Ok(url)
            }
        }
    }

    /// GETs an offer file; `None` when the server says it is unchanged
    /// since `etag` (304).
    pub async fn get(
        &self,
        url: &Url,
        etag: Option<&str>,
    ) -> anyhow::Result<Option<reqwest::Response>> {
        let mut req = self.http.get(url.clone());
        if let Some(etag) = etag {
            req = req.header(header::IF_NONE_MATCH, etag);
        }
        let resp = req.send().await.with_context(|| format!("GET {url}"))?;
        match resp.status() {
            StatusCode::NOT_MODIFIED => Ok(None),
            s if s.is_success() => Ok(Some(resp)),
            s if s.is_redirection() => bail!(
                "GET {url}: {s} redirect to {:?} not followed",
                resp.headers().get(header::LOCATION)
            ),
            s => bail!("GET {url}: HTTP {s}"),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &Url) -> anyhow::Result<T> {
        let mut resp = self
            .get(url, None)
            .await?
            .ok_or_else(|| anyhow!("GET {url}: 304 without a conditional request"))?;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .with_context(|| format!("GET {url}: body"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_INDEX_BYTES {
                bail!("{url}: larger than {MAX_INDEX_BYTES} bytes, not an index");
            }
        }
        serde_json::from_slice(&body).map_err(|e| {
            anyhow!(
                "{url}: invalid index JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            )
        })
    }

    /// `rel` (from an index, or a path) resolved against the base URL; it
    /// must stay on the base's scheme, host and port.
    fn on_origin(&self, rel: &str, what: &str) -> anyhow::Result<Url> {
        let url = self
            .base
            .join(rel)
            .with_context(|| format!("{what}: URL {rel:?} does not parse"))?;
        if url.origin() != self.base.origin() {
            bail!(
                "{what}: URL {rel:?} leaves the price list host {} — refused",
                self.base.origin().ascii_serialization()
            );
        }
        self.check_scheme(&url).with_context(|| what.to_string())?;
        Ok(url)
    }

    fn check_scheme(&self, url: &Url) -> anyhow::Result<()> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.allow_http => Ok(()),
            s => bail!("URL scheme {s:?} refused ({url}); https only"),
        }
    }
}

/// `…/AmazonEC2/{version}/{region}/index.json` → `version` (digits).
pub fn version_from_url(url: &Url, region: &str) -> Option<String> {
    let segs: Vec<&str> = url.path_segments()?.collect();
    match segs.as_slice() {
        [.., version, r, "index.json"] if *r == region && is_version(version) => {
            Some((*version).to_string())
        }
        _ => None,
    }
}

/// `arn:aws:pricing:::price-list/aws/AmazonEC2/USD/{version}/{region}` → `version`.
pub fn version_from_arn(arn: &str, region: &str) -> Option<String> {
    let mut parts = arn.rsplit('/');
    let r = parts.next()?;
    let version = parts.next()?;
    (r == region && is_version(version)).then(|| version.to_string())
}

fn is_version(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(base: &str, allow_http: bool) -> Sources {
        let mut c = kopter_runtime::Config::defaults(None).pricing;
        c.offers_url = base.into();
        c.allow_http = allow_http;
        Sources::new(&c, None).unwrap()
    }

    #[test]
    fn versions_come_from_urls_and_arns() {
        let u = Url::parse(
            "https://p.example/offers/v1.0/aws/AmazonEC2/20250523232744/ca-west-1/index.json",
        )
        .unwrap();
        assert_eq!(
            version_from_url(&u, "ca-west-1").as_deref(),
            Some("20250523232744")
        );
        assert_eq!(version_from_url(&u, "eu-west-1"), None);
        let cur =
            Url::parse("https://p.example/offers/v1.0/aws/AmazonEC2/current/ca-west-1/index.json")
                .unwrap();
        assert_eq!(version_from_url(&cur, "ca-west-1"), None);
        assert_eq!(
            version_from_arn(
                "arn:aws:pricing:::price-list/aws/AmazonEC2/USD/20230328234721/us-east-1",
                "us-east-1"
            )
            .as_deref(),
            Some("20230328234721")
        );
        assert_eq!(
            version_from_arn(
                "arn:aws:pricing:::price-list/aws/AmazonEC2/USD/x/us-east-1",
                "us-east-1"
            ),
            None
        );
    }

    #[test]
    fn index_urls_must_stay_on_the_price_list_host() {
        let s = sources("https://pricing.us-east-1.amazonaws.com", false);
        let ok = s
            .on_origin("/offers/v1.0/aws/AmazonEC2/current/region_index.json", "t")
            .unwrap();
        assert_eq!(
            ok.as_str(),
            "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonEC2/current/region_index.json"
        );
        for evil in [
            "https://evil.example/offers/x.json",
            "//169.254.169.254/latest/meta-data/",
            "http://pricing.us-east-1.amazonaws.com/offers/x.json",
            "https://pricing.us-east-1.amazonaws.com:8443/x.json",
            "file:///etc/passwd",
        ] {
            let e = s.on_origin(evil, "region index (region x)").unwrap_err();
            assert!(
                format!("{e:#}").contains("region index (region x)"),
                "{evil}: {e:#}"
            );
        }
        let local = sources("http://127.0.0.1:9/", true);
        assert!(local.on_origin("/offers/v1.0/aws/index.json", "t").is_ok());
        let no_http = sources("http://127.0.0.1:9/", false);
        assert!(
            no_http
                .on_origin("/offers/v1.0/aws/index.json", "t")
                .is_err()
        );
    }
}

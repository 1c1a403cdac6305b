//! Price-list files for the demo, in the real AWS bulk format and layout,
//! and the local HTTP server that serves them (nothing emulates the Price
//! List service).
//!
//! Layout, as `pricing.offers_url` expects it:
//! `/offers/v1.0/aws/index.json` (offer index) →
//! `/offers/v1.0/aws/AmazonEC2/current/region_index.json` (region index) →
//! `/offers/v1.0/aws/AmazonEC2/{version}/{region}/index.json` (one region's
//! EC2 offer file). Every file carries an `ETag` and answers
//! `If-None-Match` with 304, as AWS's CloudFront does.
//!
//! The region files have AWS's pretty-printing (`"key" : "value"`, two
//! spaces) and attribute set, products first, then `terms.OnDemand` and
//! `terms.Reserved`: instance products (Linux and Windows, shared tenancy,
//! capacity status `Used`, plus `AllocatedCapacityReservation` rows that a
//! correct parser skips), EBS storage/IOPS/snapshot products and a few other
//! families. Prices are us-east-1's public on-demand rates (2025) scaled per
//! region; reserved terms are 1-yr and 3-yr standard offerings.
//!
//! The same server takes webhook posts (`POST /webhook/{tenant}`), so the
//! notifier's webhook channel can be shown end to end.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

/// Version and publication time of the demo's price list (before any hour
/// the demo prices, so it is the version in force).
pub const VERSION: &str = "20250601000000";
pub const PUBLISHED: &str = "2025-06-01T00:00:00Z";

/// (instance type, vCPUs, memory GiB, family, Linux USD/h in us-east-1).
const TYPES: &[(&str, u32, u32, &str, f64)] = &[
    ("t3.micro", 2, 1, "General purpose", 0.0104),
    ("t3.small", 2, 2, "General purpose", 0.0208),
    ("t3.medium", 2, 4, "General purpose", 0.0416),
    ("t3.large", 2, 8, "General purpose", 0.0832),
    ("m5.large", 2, 8, "General purpose", 0.096),
    ("m5.xlarge", 4, 16, "General purpose", 0.192),
    ("m5.2xlarge", 8, 32, "General purpose", 0.384),
    ("m6i.large", 2, 8, "General purpose", 0.096),
    ("m6i.xlarge", 4, 16, "General purpose", 0.192),
    ("m7g.large", 2, 8, "General purpose", 0.0816),
    ("c5.large", 2, 4, "Compute optimized", 0.085),
    ("c5.xlarge", 4, 8, "Compute optimized", 0.17),
    ("c5.2xlarge", 8, 16, "Compute optimized", 0.34),
    ("c6g.large", 2, 4, "Compute optimized", 0.068),
    ("r5.large", 2, 16, "Memory optimized", 0.126),
    ("r5.xlarge", 4, 32, "Memory optimized", 0.252),
    ("r6i.large", 2, 16, "Memory optimized", 0.126),
];

/// (operatingSystem, operation, Windows licence USD per vCPU-hour).
const PLATFORMS: &[(&str, &str, f64)] = &[
    ("Linux", "RunInstances", 0.0),
    ("Windows", "RunInstances:0002", 0.046),
];

/// (productFamily, volumeApiName, usagetype suffix, unit, us-east-1 USD).
const EBS: &[(&str, &str, &str, &str, f64)] = &[
    ("Storage", "gp2", "EBS:VolumeUsage.gp2", "GB-Mo", 0.10),
    ("Storage", "gp3", "EBS:VolumeUsage.gp3", "GB-Mo", 0.08),
    ("Storage", "io1", "EBS:VolumeUsage.piops", "GB-Mo", 0.125),
    ("Storage", "st1", "EBS:VolumeUsage.st1", "GB-Mo", 0.045),
    ("Storage", "sc1", "EBS:VolumeUsage.sc1", "GB-Mo", 0.015),
    ("Storage", "standard", "EBS:VolumeUsage", "GB-Mo", 0.05),
    (
        "System Operation",
        "gp3",
        "EBS:VolumeP-IOPS.gp3",
        "IOPS-Mo",
        0.005,
    ),
    // Its own family, priced per GiB/s-month: 0.04 USD per MiB/s-month
    // × 1024 (https://aws.amazon.com/ebs/pricing/).
    (
        "Provisioned Throughput",
        "gp3",
        "EBS:VolumeP-Throughput.gp3",
        "GiBps-mo",
        40.96,
    ),
    (
        "System Operation",
        "io1",
        "EBS:VolumeP-IOPS.piops",
        "IOPS-Mo",
        0.065,
    ),
    ("Storage Snapshot", "", "EBS:SnapshotUsage", "GB-Mo", 0.05),
];

/// (region, location, usage-type prefix, price factor against us-east-1).
pub const REGIONS: &[(&str, &str, &str, f64)] = &[
    ("us-east-1", "US East (N. Virginia)", "", 1.0),
    ("eu-west-1", "EU (Ireland)", "EU-", 1.115),
    ("ap-southeast-2", "Asia Pacific (Sydney)", "APS2-", 1.25),
];

/// A JSON value printed in AWS's style; objects keep insertion order.
enum J {
    S(String),
    O(Vec<(String, J)>),
}

fn s(v: impl Into<String>) -> J {
    J::S(v.into())
}

fn o(pairs: Vec<(&str, J)>) -> J {
    J::O(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

impl J {
    fn write(&self, out: &mut String, indent: usize) {
        match self {
            J::S(v) => {
                out.push('"');
                for c in v.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            J::O(pairs) if pairs.is_empty() => out.push_str("{ }"),
            J::O(pairs) => {
                out.push_str("{\n");
                for (n, (k, v)) in pairs.iter().enumerate() {
                    out.push_str(&"  ".repeat(indent + 1));
                    let _ = write!(out, "\"{k}\" : ");
                    v.write(out, indent + 1);
                    out.push_str(if n + 1 == pairs.len() { "\n" } else { ",\n" });
                }
                out.push_str(&"  ".repeat(indent));
                out.push('}');
            }
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out
    }
}

/// A deterministic 16-character SKU of a product name.
fn sku(name: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..16)
        .map(|i| {
            h = h.rotate_left(5) ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            h = h.wrapping_mul(0x0100_0000_01b3);
            ALPHABET[(h % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

fn usd(v: f64) -> String {
    format!("{v:.10}")
}

fn dimension(sku: &str, term: &str, rate: &str, desc: String, unit: &str, price: f64) -> J {
    o(vec![
        ("rateCode", s(format!("{sku}.{term}.{rate}"))),
        ("description", s(desc)),
        ("beginRange", s("0")),
        ("endRange", s("Inf")),
        ("unit", s(unit)),
        ("pricePerUnit", o(vec![("USD", s(usd(price)))])),
        ("appliesTo", J::O(vec![])),
    ])
}

/// The EC2 offer file of one region.
pub fn region_file(region: &str) -> anyhow::Result<String> {
    let &(region, location, prefix, factor) = REGIONS
        .iter()
        .find(|r| r.0 == region)
        .ok_or_else(|| anyhow::anyhow!("no demo prices for region {region}"))?;
    let mut products = Vec::new();
    let mut on_demand = Vec::new();
    let mut reserved = Vec::new();
    for &(itype, vcpu, mem, family, linux) in TYPES {
        for &(os, operation, licence) in PLATFORMS {
            for capacity in ["Used", "AllocatedCapacityReservation"] {
                let id = sku(&format!("{region}/{itype}/{os}/{capacity}"));
                let usage = if capacity == "Used" {
                    format!("{prefix}BoxUsage:{itype}")
                } else {
                    format!("{prefix}Reservation:{itype}")
                };
                let hourly = (linux + licence * f64::from(vcpu)) * factor;
                products.push((
                    id.clone(),
                    o(vec![
                        ("sku", s(&id)),
                        ("productFamily", s("Compute Instance")),
                        (
                            "attributes",
                            o(vec![
                                ("enhancedNetworkingSupported", s("Yes")),
                                ("memory", s(format!("{mem} GiB"))),
                                ("vcpu", s(vcpu.to_string())),
                                ("capacitystatus", s(capacity)),
                                ("locationType", s("AWS Region")),
                                ("storage", s("EBS only")),
                                ("instanceFamily", s(family)),
                                ("operatingSystem", s(os)),
                                ("regionCode", s(region)),
                                ("networkPerformance", s("Up to 10 Gigabit")),
                                ("servicename", s("Amazon Elastic Compute Cloud")),
                                ("instanceType", s(itype)),
                                ("tenancy", s("Shared")),
                                ("usagetype", s(&usage)),
                                ("normalizationSizeFactor", s((vcpu * 2).to_string())),
                                ("servicecode", s("AmazonEC2")),
                                ("licenseModel", s("No License required")),
                                ("currentGeneration", s("Yes")),
                                ("preInstalledSw", s("NA")),
                                ("location", s(location)),
                                ("processorArchitecture", s("64-bit")),
                                ("marketoption", s("OnDemand")),
                                ("operation", s(operation)),
                                ("availabilityzone", s("NA")),
                            ]),
                        ),
                    ]),
                ));
                let od_term = "JRTCKXETXF";
                on_demand.push((
                    id.clone(),
                    J::O(vec![(
                        format!("{id}.{od_term}"),
                        o(vec![
                            ("offerTermCode", s(od_term)),
                            ("sku", s(&id)),
                            ("effectiveDate", s("2025-06-01T00:00:00Z")),
                            (
                                "priceDimensions",
                                J::O(vec![(
                                    format!("{id}.{od_term}.6YS6EN2CT7"),
                                    dimension(
                                        &id,
                                        od_term,
                                        "6YS6EN2CT7",
                                        format!(
                                            "${hourly:.4} per On Demand {os} {itype} Instance Hour"
                                        ),
                                        "Hrs",
                                        hourly,
                                    ),
                                )]),
                            ),
                            ("termAttributes", J::O(vec![])),
                        ]),
                    )]),
                ));
                if capacity == "Used" {
                    reserved.push((id.clone(), reserved_terms(&id, os, hourly)));
                }
            }
        }
    }
    for &(family, volume, usage, unit, price) in EBS {
        let id = sku(&format!("{region}/{usage}"));
        let price = price * factor;
        let mut attrs = vec![
            ("servicecode", s("AmazonEC2")),
            ("location", s(location)),
            ("locationType", s("AWS Region")),
            ("usagetype", s(format!("{prefix}{usage}"))),
            ("operation", s("")),
            ("regionCode", s(region)),
            ("servicename", s("Amazon Elastic Compute Cloud")),
        ];
        if !volume.is_empty() {
            attrs.push(("volumeApiName", s(volume)));
        }
        products.push((
            id.clone(),
            o(vec![
                ("sku", s(&id)),
                ("productFamily", s(family)),
                ("attributes", o(attrs)),
            ]),
        ));
        on_demand.push((id.clone(), on_demand_term(&id, unit, price, usage)));
    }
    for (family, usage, unit, price) in [
        ("Data Transfer", "DataTransfer-Out-Bytes", "GB", 0.09),
        ("IP Address", "PublicIPv4:InUseAddress", "Hrs", 0.005),
        ("NAT Gateway", "NatGateway-Hours", "Hrs", 0.045),
    ] {
        let id = sku(&format!("{region}/{usage}"));
        products.push((
            id.clone(),
            o(vec![
                ("sku", s(&id)),
                ("productFamily", s(family)),
                (
                    "attributes",
                    o(vec![
                        ("servicecode", s("AmazonEC2")),
                        ("location", s(location)),
                        ("locationType", s("AWS Region")),
                        ("usagetype", s(format!("{prefix}{usage}"))),
                        ("regionCode", s(region)),
                    ]),
                ),
            ]),
        ));
        on_demand.push((id.clone(), on_demand_term(&id, unit, price * factor, usage)));
    }
    let file = o(vec![
        ("formatVersion", s("v1.0")),
        (
            "disclaimer",
            s(
                "This pricing list is for informational purposes only. All prices are subject to the additional terms included in the pricing pages on http://aws.amazon.com. All Free Tier prices are also subject to the terms included at https://aws.amazon.com/free/",
            ),
        ),
        ("offerCode", s("AmazonEC2")),
        ("version", s(VERSION)),
        ("publicationDate", s(PUBLISHED)),
        ("products", J::O(products)),
        (
            "terms",
            o(vec![
                ("OnDemand", J::O(on_demand)),
                ("Reserved", J::O(reserved)),
            ]),
        ),
    ]);
    Ok(file.render())
}

fn on_demand_term(id: &str, unit: &str, price: f64, what: &str) -> J {
    let term = "JRTCKXETXF";
    J::O(vec![(
        format!("{id}.{term}"),
        o(vec![
            ("offerTermCode", s(term)),
            ("sku", s(id)),
            ("effectiveDate", s("2025-06-01T00:00:00Z")),
            (
                "priceDimensions",
                J::O(vec![(
                    format!("{id}.{term}.6YS6EN2CT7"),
                    dimension(
                        id,
                        term,
                        "6YS6EN2CT7",
                        format!("${price:.4} per {unit} of {what}"),
                        unit,
                        price,
                    ),
                )]),
            ),
            ("termAttributes", J::O(vec![])),
        ]),
    )])
}

/// 1-yr standard No Upfront and 3-yr standard All Upfront terms.
fn reserved_terms(id: &str, os: &str, hourly: f64) -> J {
    let mut terms = Vec::new();
    for (code, years, option, factor) in [
        ("4NA7Y494T4", 1u32, "No Upfront", 0.63),
        ("NQ3QZPMQV9", 3, "All Upfront", 0.40),
    ] {
        let hours = 8760.0 * f64::from(years);
        let mut dims = Vec::new();
        if option == "All Upfront" {
            let upfront = (hourly * factor * hours).round();
            dims.push((
                format!("{id}.{code}.2TG2D8R56U"),
                o(vec![
                    ("rateCode", s(format!("{id}.{code}.2TG2D8R56U"))),
                    ("description", s("Upfront Fee")),
                    ("unit", s("Quantity")),
                    ("pricePerUnit", o(vec![("USD", s(format!("{upfront}")))])),
                    ("appliesTo", J::O(vec![])),
                ]),
            ));
            dims.push((
                format!("{id}.{code}.6YS6EN2CT7"),
                dimension(
                    id,
                    code,
                    "6YS6EN2CT7",
                    format!("{os} (Amazon VPC), reserved instance applied"),
                    "Hrs",
                    0.0,
                ),
            ));
        } else {
            dims.push((
                format!("{id}.{code}.6YS6EN2CT7"),
                dimension(
                    id,
                    code,
                    "6YS6EN2CT7",
                    format!("{os} (Amazon VPC), reserved instance applied"),
                    "Hrs",
                    hourly * factor,
                ),
            ));
        }
        terms.push((
            format!("{id}.{code}"),
            o(vec![
                ("offerTermCode", s(code)),
                ("sku", s(id)),
                ("effectiveDate", s("2025-06-01T00:00:00Z")),
                ("priceDimensions", J::O(dims)),
                (
                    "termAttributes",
                    o(vec![
                        ("LeaseContractLength", s(format!("{years}yr"))),
                        ("OfferingClass", s("standard")),
                        ("PurchaseOption", s(option)),
                    ]),
                ),
            ]),
        ));
    }
    J::O(terms)
}

/// Every file of the bulk layout for `regions`: path → body.
pub fn site_files(regions: &[&str]) -> anyhow::Result<HashMap<String, String>> {
    let mut files = HashMap::new();
    files.insert(
        "/offers/v1.0/aws/index.json".to_owned(),
        o(vec![
            ("formatVersion", s("v1.0")),
            (
                "disclaimer",
                s("This pricing list is for informational purposes only."),
            ),
            ("publicationDate", s(PUBLISHED)),
            (
                "offers",
                o(vec![(
                    "AmazonEC2",
                    o(vec![
                        ("offerCode", s("AmazonEC2")),
                        (
                            "versionIndexUrl",
                            s("/offers/v1.0/aws/AmazonEC2/index.json"),
                        ),
                        (
                            "currentVersionUrl",
                            s("/offers/v1.0/aws/AmazonEC2/current/index.json"),
                        ),
                        (
                            "currentRegionIndexUrl",
                            s("/offers/v1.0/aws/AmazonEC2/current/region_index.json"),
                        ),
                    ]),
                )]),
            ),
        ])
        .render(),
    );
    let mut index = Vec::new();
    for region in regions {
        let path = format!("/offers/v1.0/aws/AmazonEC2/{VERSION}/{region}/index.json");
        files.insert(path.clone(), region_file(region)?);
        index.push((
            (*region).to_owned(),
            o(vec![
                ("regionCode", s(*region)),
                ("currentVersionUrl", s(path)),
            ]),
        ));
    }
    files.insert(
        "/offers/v1.0/aws/AmazonEC2/current/region_index.json".to_owned(),
        o(vec![
            ("formatVersion", s("v1.0")),
            (
                "disclaimer",
                s("This pricing list is for informational purposes only."),
            ),
            ("publicationDate", s(PUBLISHED)),
            ("regions", J::O(index)),
        ])
        .render(),
    );
    Ok(files)
}

/// What the site has served and received.
#[derive(Default)]
pub struct SiteLog {
    /// GETs answered with a body, per path.
    pub downloads: HashMap<String, usize>,
    /// Webhook posts per tenant (the path's last segment), with bodies.
    pub webhooks: HashMap<String, Vec<String>>,
}

struct Site {
    files: HashMap<String, (Bytes, String)>,
    log: Mutex<SiteLog>,
}

/// The running price-file (and webhook) server.
pub struct PriceSite {
    pub base_url: String,
    site: Arc<Site>,
}

impl PriceSite {
    /// Serves `files` on `listen` (port 0: any free port) until `stop`.
    pub async fn start(
        files: HashMap<String, String>,
        listen: SocketAddr,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let site = Arc::new(Site {
            files: files
                .into_iter()
                .map(|(path, body)| {
                    let etag = format!("\"{}\"", &sku(&body)[..12]);
                    (path, (Bytes::from(body), etag))
                })
                .collect(),
            log: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("price-file server on {listen}: {e}"))?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/webhook/{tenant}", post(webhook))
            .route("/{*path}", get(file))
            .with_state(site.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        Ok(Self { base_url, site })
    }

    /// Webhook posts received for `tenant`.
    pub fn webhooks(&self, tenant: &str) -> Vec<String> {
        let log = self.site.log.lock().expect("site log");
        log.webhooks.get(tenant).cloned().unwrap_or_default()
    }

    /// Region files downloaded (with a body).
    pub fn region_downloads(&self) -> usize {
        let log = self.site.log.lock().expect("site log");
        log.downloads
            .iter()
            .filter(|(p, _)| p.contains(VERSION))
            .map(|(_, n)| n)
            .sum()
    }
}

async fn file(
    State(site): State<Arc<Site>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/{path}");
    let Some((body, etag)) = site.files.get(&path) else {
        return status(StatusCode::NOT_FOUND, "no such key");
    };
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return status(StatusCode::NOT_MODIFIED, "");
    }
    *site
        .log
        .lock()
        .expect("site log")
        .downloads
        .entry(path)
        .or_default() += 1;
    Response::builder()
        .header(header::ETAG, etag.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.clone()))
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR, ""))
}

async fn webhook(
    State(site): State<Arc<Site>>,
    Path(tenant): Path<String>,
    body: String,
) -> Response {
    site.log
        .lock()
        .expect("site log")
        .webhooks
        .entry(tenant)
        .or_default()
        .push(body);
    status(StatusCode::OK, "ok")
}

fn status(code: StatusCode, text: &'static str) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = code;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_file_parses_with_the_pricing_parser() {
        for &(region, ..) in REGIONS {
            let text = region_file(region).unwrap();
            assert!(text.contains("\"offerCode\" : \"AmazonEC2\""));
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let products = v["products"].as_object().unwrap();
            // 17 types × 2 platforms × 2 capacity statuses + 10 EBS + 3 other
            assert_eq!(products.len(), TYPES.len() * 4 + EBS.len() + 3);
            assert_eq!(
                v["terms"]["Reserved"].as_object().unwrap().len(),
                TYPES.len() * 2
            );
        }
        assert!(region_file("mars-1").is_err());
        // The pricing service's own streaming parser reads every price.
        let text = region_file("eu-west-1").unwrap();
        let options = pricing::offer::ParseOptions::default();
        let (meta, counts) = pricing::offer::parse_offer_with(
            text.as_bytes(),
            &options,
            |_: pricing::offer::Price| Ok::<(), std::convert::Infallible>(()),
        )
        .unwrap();
        assert_eq!(meta.version, VERSION);
        assert_eq!(counts.instance_products as usize, TYPES.len() * 2);
        assert_eq!(counts.on_demand as usize, TYPES.len() * 2);
        assert_eq!(counts.reserved as usize, TYPES.len() * 2 * 2);
        assert_eq!(counts.ebs as usize, EBS.len());
        // SKUs are distinct across regions and products.
        let a = sku("us-east-1/m5.large/Linux/Used");
        let b = sku("eu-west-1/m5.large/Linux/Used");
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn site_has_the_bulk_layout() {
        let files = site_files(&["us-east-1", "eu-west-1"]).unwrap();
        let index: serde_json::Value =
            serde_json::from_str(&files["/offers/v1.0/aws/index.json"]).unwrap();
        let ri_path = index["offers"]["AmazonEC2"]["currentRegionIndexUrl"]
            .as_str()
            .unwrap();
        let ri: serde_json::Value = serde_json::from_str(&files[ri_path]).unwrap();
        let url = ri["regions"]["eu-west-1"]["currentVersionUrl"]
            .as_str()
            .unwrap();
        assert!(files.contains_key(url), "{url}");
        assert_eq!(ri["regions"].as_object().unwrap().len(), 2);
    }
}

//! A fault-injecting HTTP proxy between Kopter and its local AWS (moto).
//!
//! Services point `KOPTER_AWS__ENDPOINT_URL` at [`FaultProxy::url`]; the
//! proxy forwards each call to the upstream endpoint, except a share that it
//! answers itself, as AWS would under pressure:
//!
//! | fault | answer |
//! |---|---|
//! | throttle | the service's own throttling error in its own protocol (below) |
//! | server error | `503 Service Unavailable`, `text/plain` body — what a load balancer says, not AWS's protocol |
//! | reset | the connection is reset (TCP RST, `SO_LINGER` 0) without an answer |
//! | stall ([`FaultProxy::set_stalled`]) | the request is read and never answered |
//!
//! Throttling errors per protocol (codes from the AWS API references and
//! the SDK's throttling list, `aws_runtime::retries::classifiers`):
//!
//! | service (how recognised) | answer |
//! |---|---|
//! | DynamoDB (`X-Amz-Target: DynamoDB_20120810.*`) | 400, awsJson 1.0, `__type` `…#ProvisionedThroughputExceededException` |
//! | SQS, JSON protocol (`X-Amz-Target: AmazonSQS.*`, the SDK's since 2023) | 400, `__type` `com.amazonaws.sqs#RequestThrottled`, `x-amzn-query-error: RequestThrottled;Sender` |
//! | SQS / SNS / STS, query protocol (form body with `Action=`) | 400, `text/xml` `<ErrorResponse>` with code `RequestThrottled` (SQS) or `Throttling` |
//! | EC2 (SigV4 scope `ec2`) | 503, ec2Query `<Response><Errors>` with `RequestLimitExceeded` |
//! | S3 (SigV4 scope `s3`) | 503, restXml `<Error>` with `SlowDown` |
//! | anything else | 400, awsJson `ThrottlingException` |
//!
//! The service is taken from the `X-Amz-Target` header, else the SigV4
//! credential scope of the `Authorization` header
//! (`Credential=AKID/date/region/<service>/aws4_request`), else the host.
//!
//! Faults are injected *instead of* forwarding, so an injected fault never
//! has an effect upstream (a reset after the upstream acted is a later
//! refinement). Decisions come from one seeded RNG in arrival order: the
//! same seed and the same order of calls give the same faults. Every
//! decision is counted per fault kind and service ([`FaultCounts`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kopter_runtime::aws::{ErrorProtocol, protocol_error_body};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Which share of calls gets which fault. Shares are probabilities
/// (0.0–1.0) drawn independently per call; their sum must be at most 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPlan {
    /// Seed of the decision sequence.
    pub seed: u64,
    /// Share answered with the service's throttling error.
    pub throttle: f64,
    /// Share answered `503 Service Unavailable` with a text body.
    pub server_error: f64,
    /// Share whose connection is reset without an answer.
    pub reset: f64,
}

impl FaultPlan {
    /// Forward everything.
    pub fn none() -> Self {
        Self {
            seed: 0,
            throttle: 0.0,
            server_error: 0.0,
            reset: 0.0,
        }
    }

    /// Checks the shares.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("throttle", self.throttle),
            ("server_error", self.server_error),
            ("reset", self.reset),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name}: {v} is not a share between 0 and 1"));
            }
        }
        if self.throttle + self.server_error + self.reset > 1.0 + 1e-9 {
            return Err("throttle + server_error + reset must be at most 1".into());
        }
        Ok(())
    }
}

/// What the proxy did with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Forwarded upstream.
    None,
    Throttle,
    ServerError,
    Reset,
    Stall,
}

impl Fault {
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "forwarded",
            Self::Throttle => "throttle",
            Self::ServerError => "server_error",
            Self::Reset => "reset",
            Self::Stall => "stall",
        }
    }
}

/// The AWS service and protocol of a request, as far as the proxy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    DynamoDb,
    /// SQS over its JSON protocol.
    SqsJson,
    /// A query-protocol call (form body with `Action=`) to the named
    /// service (`sqs`, `sns`, `sts`, `iam`, …).
    Query(String),
    Ec2,
    S3,
    /// Anything else, by its SigV4 service name (or `unknown`).
    Other(String),
}

impl Target {
    /// Recognises the service from the request's headers and body.
    pub fn identify(headers: &hyper::HeaderMap, host: Option<&str>, body: &[u8]) -> Self {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(target) = header("x-amz-target") {
            if target.starts_with("DynamoDB_") {
                return Self::DynamoDb;
            }
            if target.starts_with("AmazonSQS.") {
                return Self::SqsJson;
            }
        }
        let service = header("authorization")
            .and_then(sigv4_service)
            .map(str::to_owned)
            .or_else(|| {
                host.and_then(|h| h.split('.').next())
                    .filter(|s| !s.is_empty() && !s.chars().all(|c| c.is_ascii_digit()))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "unknown".into());
        let form = header("content-type").is_some_and(|c| c.contains("x-www-form-urlencoded"));
        match service.as_str() {
            "ec2" => Self::Ec2,
            "s3" => Self::S3,
            "dynamodb" => Self::DynamoDb,
            _ if form && (body.starts_with(b"Action=") || contains(body, b"&Action=")) => {
                Self::Query(service)
            }
            _ => Self::Other(service),
        }
    }

    /// Short service name for counters.
    pub fn service(&self) -> &str {
        match self {
            Self::DynamoDb => "dynamodb",
            Self::SqsJson => "sqs",
            Self::Query(s) | Self::Other(s) => s,
            Self::Ec2 => "ec2",
            Self::S3 => "s3",
        }
    }

    /// The service's throttling answer: `(status, content type, extra
    /// header, body)`.
    pub fn throttle_response(&self) -> (u16, &'static str, Option<(&'static str, String)>, String) {
        let msg = "Rate exceeded (injected by the Kopter fault proxy)";
        match self {
            Self::DynamoDb => (
                400,
                "application/x-amz-json-1.0",
                None,
                protocol_error_body(
                    ErrorProtocol::Json,
                    "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                    msg,
                ),
            ),
            Self::SqsJson => (
                400,
                "application/x-amz-json-1.0",
                Some(("x-amzn-query-error", "RequestThrottled;Sender".into())),
                protocol_error_body(
                    ErrorProtocol::Json,
                    "com.amazonaws.sqs#RequestThrottled",
                    msg,
                ),
            ),
            Self::Query(service) => {
                let code = if service == "sqs" {
                    "RequestThrottled"
                } else {
                    "Throttling"
                };
                (
                    400,
                    "text/xml",
                    None,
                    protocol_error_body(ErrorProtocol::Query, code, msg),
                )
            }
            Self::Ec2 => (
                503,
                "text/xml;charset=UTF-8",
                None,
                protocol_error_body(ErrorProtocol::Ec2, "RequestLimitExceeded", msg),
            ),
            Self::S3 => (
                503,
                "application/xml",
                None,
                protocol_error_body(ErrorProtocol::RestXml, "SlowDown", msg),
            ),
            Self::Other(_) => (
                400,
                "application/x-amz-json-1.1",
                Some(("x-amzn-errortype", "ThrottlingException".into())),
                protocol_error_body(ErrorProtocol::Json, "ThrottlingException", msg),
            ),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn parts_headers_get(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The access key id of a SigV4 `Authorization` header
/// (`AWS4-HMAC-SHA256 Credential=AKID/20261129/us-east-1/sts/aws4_request, …`).
fn sigv4_access_key(auth: &str) -> Option<String> {
    let cred = auth.split("Credential=").nth(1)?;
    cred.split('/').next().map(str::to_owned)
}

/// The service of a SigV4 `Authorization` header's credential scope.
fn sigv4_service(auth: &str) -> Option<&str> {
    let scope = auth.split("Credential=").nth(1)?;
    let scope = scope.split([',', ' ']).next()?;
    // AKID/date/region/service/aws4_request
    scope.split('/').nth(3)
}

/// Counts of what the proxy did, per fault kind and service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub by_service: BTreeMap<(Fault, String), u64>,
}

impl FaultCounts {
    /// Calls that got `fault`, over all services.
    pub fn total(&self, fault: Fault) -> u64 {
        self.by_service
            .iter()
            .filter(|((f, _), _)| *f == fault)
            .map(|(_, n)| n)
            .sum()
    }

    /// Calls to `service` that got `fault`.
    pub fn of(&self, fault: Fault, service: &str) -> u64 {
        self.by_service
            .get(&(fault, service.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Every call the proxy saw.
    pub fn calls(&self) -> u64 {
        self.by_service.values().sum()
    }
}

impl std::fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} calls:", self.calls())?;
        for fault in [
            Fault::None,
            Fault::Throttle,
            Fault::ServerError,
            Fault::Reset,
            Fault::Stall,
        ] {
            write!(f, " {} {}", fault.label(), self.total(fault))?;
        }
        Ok(())
    }
}

/// The seeded decision sequence.
#[derive(Debug)]
pub struct Decider {
    plan: FaultPlan,
    rng: StdRng,
}

impl Decider {
    pub fn new(plan: FaultPlan) -> Self {
        Self {
            plan,
            rng: StdRng::seed_from_u64(plan.seed),
        }
    }

    /// The next call's fault.
    pub fn next_fault(&mut self) -> Fault {
        let draw: f64 = self.rng.random();
        let p = &self.plan;
        if draw < p.reset {
            Fault::Reset
        } else if draw < p.reset + p.server_error {
            Fault::ServerError
        } else if draw < p.reset + p.server_error + p.throttle {
            Fault::Throttle
        } else {
            Fault::None
        }
    }
}

struct Shared {
    upstream: hyper::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    decider: Mutex<Decider>,
    counts: Mutex<FaultCounts>,
    stalled: AtomicBool,
    /// Every call forwarded, in order (see [`FaultProxy::calls`]).
    log: Mutex<Vec<SignedCall>>,
    /// Calls whose body contains one of these are always throttled.
    refused: Mutex<Vec<Vec<u8>>>,
}

/// One call the proxy forwarded: who signed it and what it was. Tests use
/// it to check which credentials a component used for which call (moto
/// does not enforce IAM, so signing is what can be asserted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCall {
    /// SigV4 service of the credential scope (`dynamodb`, `sts`, …).
    pub service: String,
    /// Access key id of the SigV4 credential; `None` when unsigned.
    pub access_key: Option<String>,
    /// The operation: `X-Amz-Target` (`DynamoDB_20120810.Query`) or the
    /// form's `Action` (`AssumeRole`).
    pub operation: String,
    /// The request body (STS and other query-protocol calls only: their
    /// parameters, e.g. an AssumeRole's session tags).
    pub form: Option<String>,
    /// The response body (STS calls only: e.g. the credentials issued).
    pub sts_response: Option<String>,
    /// DynamoDB calls: the request units the call would consume on an
    /// on-demand table, estimated from the bytes on the wire (see
    /// [`dynamodb_units`]); zero for other services.
    pub units: Units,
    /// An SQS ReceiveMessage that came back without a message (an idle
    /// long poll).
    pub empty_receive: bool,
    /// DynamoDB calls: the table (`TableName`, or the first table of a
    /// batch's `RequestItems` or a transaction's `TransactItems`).
    pub table: Option<String>,
    /// DynamoDB calls: the kind of the first item the request names
    /// ([`dynamodb_key_kind`]), e.g. `waste-idle` or `hour#region`.
    pub key_kind: Option<String>,
    /// DynamoDB calls: the units the answer's `ConsumedCapacity` reports
    /// (Kopter's clients ask for it, see `kopter_runtime::consumed_capacity`);
    /// `None` when the answer has none. Exact on DynamoDB Local; moto
    /// answers fixed numbers.
    pub reported: Option<Units>,
}

/// DynamoDB request units of one call: reads in half units (an eventually
/// consistent read of up to 4 KB is half a read request unit), writes in
/// whole units (up to 1 KB each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Units {
    pub read_halves: u64,
    pub write: u64,
}

/// Estimates the request units of one DynamoDB call from its request and
/// response bodies, by AWS's rules ("Read/write capacity mode" in the
/// DynamoDB developer guide): a write costs 1 WRU per started KB of the
/// item (at least 1; a delete or a failed conditional write 1; a
/// transactional write twice); a GetItem or BatchGetItem 1 RRU per started
/// 4 KB per item, a Query or Scan per started 4 KB of all items returned,
/// half that when eventually consistent (the default), and at least half
/// a unit per call. The sizes are those of the JSON on the wire, which
/// are a little larger than DynamoDB's item sizes (type tags, quotes):
/// the estimate errs high. Not a substitute for `ReturnConsumedCapacity`.
pub fn dynamodb_units(operation: &str, request: &[u8], response: &[u8]) -> Units {
    use serde_json::Value;
    let op = operation.rsplit('.').next().unwrap_or(operation);
    let req: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
    let resp: Value = serde_json::from_slice(response).unwrap_or(Value::Null);
    let size = |v: &Value| v.to_string().len() as u64;
    let write_units = |item: Option<&Value>| item.map_or(1, |i| size(i).div_ceil(1024).max(1));
    let consistent = req["ConsistentRead"].as_bool().unwrap_or(false);
    let reads = |bytes: u64| {
        let units = bytes.div_ceil(4096).max(1);
        if consistent { units * 2 } else { units }
    };
    match op {
        "PutItem" => Units {
            write: write_units(req.get("Item")),
            ..Units::default()
        },
        // Before/after sizes are not on the wire: the update's own size.
        "UpdateItem" => Units {
            write: size(&req).div_ceil(1024).max(1),
            ..Units::default()
        },
        "DeleteItem" => Units {
            write: 1,
            ..Units::default()
        },
        "BatchWriteItem" => {
            let write = req["RequestItems"]
                .as_object()
                .into_iter()
                .flat_map(|t| t.values())
                .flat_map(|reqs| reqs.as_array().into_iter().flatten())
                .map(|r| write_units(r.get("PutRequest").and_then(|p| p.get("Item"))))
                .sum();
            Units {
                write,
                ..Units::default()
            }
        }
        "TransactWriteItems" => {
            let write = req["TransactItems"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| 2 * write_units(t.get("Put").and_then(|p| p.get("Item"))))
                .sum();
            Units {
                write,
                ..Units::default()
            }
        }
        "GetItem" => Units {
            read_halves: reads(resp.get("Item").map_or(0, size)),
            ..Units::default()
        },
        "BatchGetItem" => {
            let read_halves = resp["Responses"]
                .as_object()
                .into_iter()
                .flat_map(|t| t.values())
                .flat_map(|items| items.as_array().into_iter().flatten())
                .map(|i| reads(size(i)))
                .sum();
            Units {
                read_halves,
                ..Units::default()
            }
        }
        "Query" | "Scan" => {
            let bytes = resp["Items"]
                .as_array()
                .map_or(0, |items| items.iter().map(size).sum());
            Units {
                read_halves: reads(bytes),
                ..Units::default()
            }
        }
        _ => Units::default(),
    }
}

/// The table a DynamoDB request names: `TableName`, else the first key of
/// `RequestItems` (batch calls), else the first action's `TableName` in
/// `TransactItems`.
pub fn dynamodb_table(request: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(request).ok()?;
    if let Some(t) = v["TableName"].as_str() {
        return Some(t.to_owned());
    }
    if let Some(t) = v["RequestItems"].as_object().and_then(|m| m.keys().next()) {
        return Some(t.clone());
    }
    v["TransactItems"]
        .as_array()?
        .first()?
        .as_object()?
        .values()
        .find_map(|a| a["TableName"].as_str().map(str::to_owned))
}

/// The kind of item a DynamoDB request is about, from the partition key
/// (`pk`) of its first item — a write's `Item` or `Key`, a batch's first
/// request, a transaction's first action, a query's `:pk` — with the
/// tenant (its first `#` segment) left out and ids and periods as
/// placeholders: `{tenant}#1234…#rollups#2025-06-02` →
/// `{account}#rollups#{period}`. What the request-cost benchmark splits
/// "who pays" by; `None` where no `pk` is named.
pub fn dynamodb_key_kind(request: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(request).ok()?;
    let of_item = |w: &serde_json::Value| {
        ["Item", "Key"]
            .iter()
            .find_map(|k| w[*k]["pk"]["S"].as_str().map(str::to_owned))
    };
    let pk = of_item(&v)
        .or_else(|| {
            let first = v["RequestItems"].as_object()?.values().next()?;
            let first = first.as_array()?.first()?;
            ["PutRequest", "DeleteRequest"]
                .iter()
                .find_map(|k| of_item(&first[*k]))
        })
        .or_else(|| {
            let first = v["TransactItems"].as_array()?.first()?.as_object()?;
            first.values().find_map(of_item)
        })
        .or_else(|| {
            v["ExpressionAttributeValues"][":pk"]["S"]
                .as_str()
                .map(str::to_owned)
        })?;
    let kind: Vec<String> = pk
        .split('#')
        .skip(1)
        .map(|seg| {
            let digits = seg.bytes().all(|b| b.is_ascii_digit());
            if seg.len() == 12 && digits {
                "{account}".to_owned()
            } else if seg.len() >= 7
                && seg.as_bytes()[4] == b'-'
                && seg[..4].bytes().all(|b| b.is_ascii_digit())
            {
                "{period}".to_owned()
            } else if let Some((prefix, _)) = seg
                .rsplit_once('-')
                .filter(|(_, id)| id.len() >= 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                // `n-01c7…`: a short prefix and a hex id.
                let prefix = if prefix.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                    ""
                } else {
                    prefix
                };
                format!("{prefix}{}{{id}}", if prefix.is_empty() { "" } else { "-" })
            } else if seg.len() >= 16 && seg.bytes().all(|b| b.is_ascii_hexdigit()) {
                "{id}".to_owned()
            } else {
                seg.to_owned()
            }
        })
        .collect();
    Some(if kind.is_empty() {
        "-".to_owned()
    } else {
        kind.join("#")
    })
}

/// The units a DynamoDB answer reports in `ConsumedCapacity` (an object,
/// or a list of them for batch and transaction calls), as reads or writes
/// by the operation; `None` without that field.
pub fn reported_units(operation: &str, response: &[u8]) -> Option<Units> {
    let op = operation.rsplit('.').next().unwrap_or(operation);
    let resp: serde_json::Value = serde_json::from_slice(response).ok()?;
    let consumed = resp.get("ConsumedCapacity")?;
    let units: f64 = match consumed {
        serde_json::Value::Array(all) => {
            all.iter().filter_map(|c| c["CapacityUnits"].as_f64()).sum()
        }
        one => one["CapacityUnits"].as_f64()?,
    };
    let read = matches!(
        op,
        "GetItem" | "BatchGetItem" | "Query" | "Scan" | "TransactGetItems"
    );
    Some(if read {
        Units {
            read_halves: (units * 2.0).round() as u64,
            ..Units::default()
        }
    } else {
        Units {
            write: units.round() as u64,
            ..Units::default()
        }
    })
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1` (a free port) in front of `upstream`
    /// (`http://host:port`), with `plan`.
    pub async fn start(upstream: &str, plan: FaultPlan) -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream, plan).await
    }

    /// Like [`FaultProxy::start`], listening on `listen`.
    pub async fn start_on(
        listen: SocketAddr,
        upstream: &str,
        plan: FaultPlan,
    ) -> anyhow::Result<Self> {
        plan.validate().map_err(anyhow::Error::msg)?;
        let upstream: hyper::Uri = upstream
            .parse()
            .map_err(|e| anyhow::anyhow!("upstream {upstream:?}: {e}"))?;
        anyhow::ensure!(
            upstream.scheme_str() == Some("http") && upstream.authority().is_some(),
            "upstream {upstream} must be an http://host:port URL"
        );
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            client: Client::builder(TokioExecutor::new()).build_http(),
            decider: Mutex::new(Decider::new(plan)),
            counts: Mutex::default(),
            stalled: AtomicBool::new(false),
            log: Mutex::default(),
            refused: Mutex::default(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, shared.clone(), stop.clone()));
        Ok(Self { addr, shared, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, for `KOPTER_AWS__ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the plan; the decision sequence restarts from its seed.
    pub fn set_plan(&self, plan: FaultPlan) {
        plan.validate().expect("valid fault plan");
        *self.shared.decider.lock().unwrap() = Decider::new(plan);
    }

    /// While set, every new call is read and never answered.
    pub fn set_stalled(&self, stalled: bool) {
        self.shared.stalled.store(stalled, Ordering::SeqCst);
    }

    /// From now on, every call whose body contains one of `needles` (an
    /// event id in a DynamoDB item, say) is throttled, whatever the plan
    /// draws — a hot key that never gets through; an empty list ends it.
    /// Such calls are counted as throttles and draw nothing from the plan.
    pub fn throttle_matching(&self, needles: &[&str]) {
        *self.shared.refused.lock().unwrap() =
            needles.iter().map(|n| n.as_bytes().to_vec()).collect();
    }

    pub fn counts(&self) -> FaultCounts {
        self.shared.counts.lock().unwrap().clone()
    }

    /// Every call forwarded to the upstream so far, in order.
    pub fn calls(&self) -> Vec<SignedCall> {
        self.shared.log.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "fault proxy: accept failed");
                    continue;
                }
            },
        };
        let fd = stream.as_raw_fd();
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { handle(req, shared, fd).await }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// Why a connection was ended without an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection reset by the fault proxy")]
struct InjectedReset;

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    fd: RawFd,
) -> Result<Response<Full<Bytes>>, InjectedReset> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(InjectedReset),
    };
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let target = Target::identify(&parts.headers, host.as_deref(), &body);
    let refused = shared
        .refused
        .lock()
        .unwrap()
        .iter()
        .any(|n| contains(&body, n));
    let fault = if shared.stalled.load(Ordering::SeqCst) {
        Fault::Stall
    } else if refused {
        Fault::Throttle
    } else {
        shared.decider.lock().unwrap().next_fault()
    };
    *shared
        .counts
        .lock()
        .unwrap()
        .by_service
        .entry((fault, target.service().to_owned()))
        .or_default() += 1;
    match fault {
        Fault::None => Ok(forward(&shared, parts, body).await),
        Fault::Stall => std::future::pending().await,
        Fault::Reset => {
            reset_on_close(fd);
            Err(InjectedReset)
        }
        Fault::ServerError => Ok(Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"Service Unavailable")))
            .expect("valid response")),
        Fault::Throttle => {
            let (status, content_type, extra, body) = target.throttle_response();
            let mut b = Response::builder()
                .status(status)
                .header("content-type", content_type)
                .header("x-amzn-requestid", "kopter-fault-proxy");
            if let Some((k, v)) = extra {
                b = b.header(k, v);
            }
            Ok(b.body(Full::new(Bytes::from(body)))
                .expect("valid response"))
        }
    }
}

/// Makes the close of `fd` send a TCP RST instead of a FIN.
fn reset_on_close(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is the connection this request arrived on; hyper owns
    // it until the error returned next closes it. setsockopt reads
    // `linger` only during the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

async fn forward(
    shared: &Shared,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let uri = hyper::Uri::builder()
        .scheme("http")
        .authority(
            shared
                .upstream
                .authority()
                .expect("checked at start")
                .clone(),
        )
        .path_and_query(path)
        .build()
        .expect("valid upstream URI");
    let mut req = Request::builder().method(parts.method).uri(uri);
    for (k, v) in &parts.headers {
        req = req.header(k, v);
    }
    let header = |name: &str| parts_headers_get(&parts.headers, name);
    let auth = header("authorization");
    let service = auth
        .as_deref()
        .and_then(sigv4_service)
        .unwrap_or("unknown")
        .to_owned();
    let access_key = auth.as_deref().and_then(sigv4_access_key);
    let form = std::str::from_utf8(&body)
        .ok()
        .filter(|b| b.starts_with("Action=") || b.contains("&Action="))
        .map(str::to_owned);
    let operation = header("x-amz-target")
        .or_else(|| {
            form.as_deref().and_then(|f| {
                form_urlencoded::parse(f.as_bytes())
                    .find(|(k, _)| k == "Action")
                    .map(|(_, v)| v.into_owned())
            })
        })
        .unwrap_or_default();
    let body_copy = if service == "dynamodb" {
        body.clone()
    } else {
        Bytes::new()
    };
    let req = req.body(Full::new(body)).expect("valid request");
    let answer = async {
        let resp = shared.client.request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        anyhow::Ok((parts, body))
    };
    let answer = answer.await;
    let units = match (&answer, service.as_str()) {
        (Ok((p, b)), "dynamodb") if p.status.is_success() => {
            dynamodb_units(&operation, &body_copy, b)
        }
        // A failed conditional write is charged as a write.
        (Ok((_, b)), "dynamodb") if b.windows(23).any(|w| w == b"ConditionalCheckFailedE") => {
            Units {
                write: 1,
                ..Units::default()
            }
        }
        // A throttled or failed request is not charged.
        _ => Units::default(),
    };
    let reported = match (&answer, service.as_str()) {
        (Ok((p, b)), "dynamodb") if p.status.is_success() => reported_units(&operation, b),
        _ => None,
    };
    let empty_receive = operation.ends_with("ReceiveMessage")
        && matches!(&answer, Ok((p, b)) if p.status.is_success()
            && !b.windows(9).any(|w| w == b"MessageId"));
    let table = (service == "dynamodb")
        .then(|| dynamodb_table(&body_copy))
        .flatten();
    let key_kind = (service == "dynamodb")
        .then(|| dynamodb_key_kind(&body_copy))
        .flatten();
    shared.log.lock().unwrap().push(SignedCall {
        table,
        key_kind,
        units,
        reported,
        empty_receive,
        sts_response: match (&answer, service.as_str()) {
            (Ok((_, b)), "sts") => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        },
        service,
        access_key,
        operation,
        form,
    });
    match answer {
        Ok((mut parts, body)) => {
            // The body is whole now; hyper frames it again.
            parts.headers.remove("transfer-encoding");
            parts.headers.remove("connection");
            Response::from_parts(parts, Full::new(body))
        }
        Err(e) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(format!(
                "fault proxy: upstream failed: {e:#}"
            ))))
            .expect("valid response"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamodb_units_follow_the_size_rules() {
        let big = "x".repeat(2500);
        let put = format!(r#"{{"TableName":"t","Item":{{"pk":{{"S":"{big}"}}}}}}"#);
        assert_eq!(
            dynamodb_units("DynamoDB_20120810.PutItem", put.as_bytes(), b"{}").write,
            3
        );
        let batch = format!(
            r#"{{"RequestItems":{{"t":[{{"PutRequest":{{"Item":{{"a":{{"S":"1"}}}}}}}},{{"PutRequest":{{"Item":{{"pk":{{"S":"{big}"}}}}}}}},{{"DeleteRequest":{{"Key":{{"a":{{"S":"1"}}}}}}}}]}}}}"#
        );
        assert_eq!(
            dynamodb_units("DynamoDB_20120810.BatchWriteItem", batch.as_bytes(), b"{}").write,
            1 + 3 + 1
        );
        // 3 items of ~2.5 KB returned: 8 KB → 2 units of 4 KB, eventually consistent: 2 halves.
        let items = format!(
            r#"{{"Items":[{{"a":{{"S":"{big}"}}}},{{"a":{{"S":"{big}"}}}},{{"a":{{"S":"{big}"}}}}]}}"#
        );
        assert_eq!(
            dynamodb_units("DynamoDB_20120810.Query", b"{}", items.as_bytes()).read_halves,
            2
        );
        assert_eq!(
            dynamodb_units(
                "DynamoDB_20120810.Query",
                br#"{"ConsistentRead":true}"#,
                items.as_bytes()
            )
            .read_halves,
            4
        );
        // An empty answer still costs half a unit.
        assert_eq!(
            dynamodb_units("DynamoDB_20120810.GetItem", b"{}", b"{}").read_halves,
            1
        );
        assert_eq!(
            dynamodb_units("AmazonSQS.SendMessage", b"{}", b"{}"),
            Units::default()
        );
    }

    #[test]
    fn the_key_kind_of_a_request_leaves_out_tenant_ids_and_periods() {
        let k = |body: &str| dynamodb_key_kind(body.as_bytes());
        assert_eq!(
            k(r#"{"TableName":"t","Item":{"pk":{"S":"acme#111122223333#rollups#2025-06-02"},"sk":{"S":"x"}}}"#).as_deref(),
            Some("{account}#rollups#{period}")
        );
        assert_eq!(
            k(r#"{"RequestItems":{"t":[{"PutRequest":{"Item":{"pk":{"S":"acme#hour#region"}}}}]}}"#).as_deref(),
            Some("hour#region")
        );
        assert_eq!(
            k(r#"{"TableName":"t","KeyConditionExpression":"pk = :pk","ExpressionAttributeValues":{":pk":{"S":"acme#waste-idle"}}}"#).as_deref(),
            Some("waste-idle")
        );
        assert_eq!(k(r#"{"TableName":"t","Key":{"id":{"S":"x"}}}"#), None);
        assert_eq!(
            k(r#"{"TableName":"t","Item":{"pk":{"S":"notifier#notify-sent#n-01c7814d9d382d1aa9812959a30c6b30#webhook"}}}"#).as_deref(),
            Some("notify-sent#n-{id}#webhook")
        );
    }

    #[test]
    fn the_table_of_a_request_single_batch_or_transaction() {
        let t = |body: &str| dynamodb_table(body.as_bytes());
        assert_eq!(
            t(r#"{"TableName":"e-kopter-audit-log","Key":{}}"#).as_deref(),
            Some("e-kopter-audit-log")
        );
        assert_eq!(
            t(r#"{"RequestItems":{"e-kopter-price-graph":[]}}"#).as_deref(),
            Some("e-kopter-price-graph")
        );
        assert_eq!(
            t(r#"{"TransactItems":[{"Put":{"TableName":"e-kopter-dedup","Item":{}}}]}"#).as_deref(),
            Some("e-kopter-dedup")
        );
        assert_eq!(t("not json"), None);
        assert_eq!(t(r#"{"TransactItems":[]}"#), None);
    }

    #[test]
    fn reported_units_are_reads_or_writes_by_operation() {
        let one = br#"{"Item":{},"ConsumedCapacity":{"TableName":"t","CapacityUnits":1.5}}"#;
        assert_eq!(
            reported_units("DynamoDB_20120810.GetItem", one),
            Some(Units {
                read_halves: 3,
                write: 0
            })
        );
        let many = br#"{"UnprocessedItems":{},"ConsumedCapacity":[
            {"TableName":"a","CapacityUnits":3.0},{"TableName":"b","CapacityUnits":2.0}]}"#;
        assert_eq!(
            reported_units("DynamoDB_20120810.BatchWriteItem", many),
            Some(Units {
                read_halves: 0,
                write: 5
            })
        );
        assert_eq!(reported_units("DynamoDB_20120810.PutItem", b"{}"), None);
        assert_eq!(
            reported_units("DynamoDB_20120810.PutItem", b"not json"),
            None
        );
    }

    fn headers(pairs: &[(&'static str, &str)]) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{svc}/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";

    fn auth(service: &str) -> String {
        AUTH.replace("{svc}", service)
    }

    #[test]
    fn identifies_services_and_protocols() {
        let ddb = headers(&[("x-amz-target", "DynamoDB_20120810.PutItem")]);
        assert_eq!(Target::identify(&ddb, None, b"{}"), Target::DynamoDb);
        let sqs = headers(&[("x-amz-target", "AmazonSQS.ReceiveMessage")]);
        assert_eq!(Target::identify(&sqs, None, b"{}"), Target::SqsJson);
        let sts = headers(&[
            ("authorization", &auth("sts")),
            ("content-type", "application/x-www-form-urlencoded"),
        ]);
        assert_eq!(
            Target::identify(&sts, None, b"Action=AssumeRole&Version=2011-06-15"),
            Target::Query("sts".into())
        );
        let sns = headers(&[
            ("authorization", &auth("sns")),
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
        ]);
        assert_eq!(
            Target::identify(&sns, None, b"Version=2010-03-31&Action=Publish"),
            Target::Query("sns".into())
        );
        let ec2 = headers(&[
            ("authorization", &auth("ec2")),
            ("content-type", "application/x-www-form-urlencoded"),
        ]);
        assert_eq!(
            Target::identify(&ec2, None, b"Action=DescribeInstances"),
            Target::Ec2
        );
        let s3 = headers(&[("authorization", &auth("s3"))]);
        assert_eq!(Target::identify(&s3, None, b""), Target::S3);
        assert_eq!(
            Target::identify(&headers(&[]), Some("sqs.us-east-1.amazonaws.com"), b""),
            Target::Other("sqs".into())
        );
        assert_eq!(
            Target::identify(&headers(&[]), Some("127.0.0.1:5055"), b""),
            Target::Other("unknown".into())
        );
    }

    #[test]
    fn throttle_answers_speak_each_protocol() {
        let (status, ct, _, body) = Target::DynamoDb.throttle_response();
        assert_eq!((status, ct), (400, "application/x-amz-json-1.0"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["__type"]
                .as_str()
                .unwrap()
                .ends_with("#ProvisionedThroughputExceededException")
        );
        let (status, _, extra, _) = Target::SqsJson.throttle_response();
        assert_eq!(status, 400);
        assert_eq!(extra.unwrap().1, "RequestThrottled;Sender");
        let (status, _, _, body) = Target::Query("sts".into()).throttle_response();
        assert_eq!(status, 400);
        assert!(body.contains("<Code>Throttling</Code>"), "{body}");
        let (status, _, _, body) = Target::Ec2.throttle_response();
        assert_eq!(status, 503);
        assert!(
            body.contains("<Errors><Error><Code>RequestLimitExceeded</Code>"),
            "{body}"
        );
        let (status, _, _, body) = Target::S3.throttle_response();
        assert_eq!(status, 503);
        assert!(body.starts_with("<Error><Code>SlowDown</Code>"), "{body}");
    }

    #[test]
    fn decisions_are_deterministic_from_the_seed_and_match_the_shares() {
        let plan = FaultPlan {
            seed: 42,
            throttle: 0.25,
            server_error: 0.05,
            reset: 0.02,
        };
        let run = |plan| {
            let mut d = Decider::new(plan);
            (0..20_000).map(|_| d.next_fault()).collect::<Vec<_>>()
        };
        let a = run(plan);
        assert_eq!(a, run(plan), "same seed, same faults");
        assert_ne!(a, run(FaultPlan { seed: 43, ..plan }));
        let share = |f| a.iter().filter(|&&x| x == f).count() as f64 / a.len() as f64;
        assert!((share(Fault::Throttle) - 0.25).abs() < 0.015);
        assert!((share(Fault::ServerError) - 0.05).abs() < 0.006);
        assert!((share(Fault::Reset) - 0.02).abs() < 0.004);
        let none = run(FaultPlan::none());
        assert!(none.iter().all(|&f| f == Fault::None));
    }

    #[test]
    fn bad_plans_are_refused() {
        let mut p = FaultPlan::none();
        p.throttle = 1.5;
        assert!(p.validate().unwrap_err().contains("throttle"));
        p.throttle = 0.7;
        p.server_error = 0.4;
        assert!(p.validate().unwrap_err().contains("at most 1"));
    }
}

//! One raw CloudTrail record → the fields of an audit-log row.
//!
//! Parsing is the hot loop of trail-ingest (a busy account writes millions
//! of records a day), so a record is deserialised into a borrowed, typed
//! view (`WireRecord`): only the fields the audit row needs are
//! materialised, strings borrow from the input unless they contain escapes,
//! unknown fields are skipped by serde without building anything, and the
//! free-form members (`requestParameters`, `responseElements`,
//! `additionalEventData`, `resources`) are kept as `&RawValue` — validated
//! but unparsed — and only looked into when a field needs them:
//!
//! * `resources[].ARN` when `resources` is present;
//! * EC2 resource ids (`i-`, `vol-`, `snap-`, `sg-`) are picked out of the
//!   raw text of `requestParameters`/`responseElements` of EC2 events by a
//!   string-token scan, whatever the request's shape;
//! * `additionalEventData.MFAUsed` and `responseElements.ConsoleLogin` are
//!   parsed only when their key occurs in the raw text.
//!
//! [`next_normalised`] fuses splitting and parsing: `serde_json` parses the
//! record straight from the stream's read buffer and reports where it ended,
//! which saves the splitter's scan and copy (see
//! [`RecordStream::next_parsed`]).
//!
//! [`ec2_targets`] and the rules in [`crate::rules`] that need request
//! details parse `raw` again, with their own narrow structs, for the few
//! events they are about.
//!
//! Principal (who acted), for every `userIdentity.type` the CloudTrail
//! userIdentity element documents
//! (<https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html>):
//!
//! | `type` | principal |
//! |---|---|
//! | any, with a non-empty `arn` (`IAMUser`, `AssumedRole`, `FederatedUser`, `Role`, `Root`) | `arn`; for an assumed role the session's ARN, not `sessionIssuer.arn`, so the log says who acted |
//! | `Root` without `arn` | `arn:aws:iam::<accountId>:root` |
//! | `SAMLUser` | `saml:<identityProvider>/<userName>` (`principalId` if no user name) |
//! | `WebIdentityUser` | `web-identity:<identityProvider>/<userName>` (`principalId` if no user name) |
//! | `IdentityCenterUser` | `identity-center:<onBehalfOf.identityStoreArn>/<onBehalfOf.userId>` |
//! | `AWSAccount` (another account; also calls through VPC endpoints) | `account:<accountId>/<principalId>`, or `account:<accountId>` when `principalId` is empty |
//! | `AWSService`, or any identity without the above but with `invokedBy` | `invokedBy` (e.g. `ec2.amazonaws.com`, `AWS Internal`) |
//! | `Unknown`, `Directory` and future types | `<type>:<userName or principalId>` |
//!
//! The caller's account (`userIdentity.accountId`) is kept on its own
//! (`user_account`, stored as the row's `caller_account`).
//!
//! A record without `eventID` (seen in old files) gets a deterministic id
//! derived from its content, `kopter-<32 hex digits of SHA-256 of the
//! record's JSON text>`, so the same record read again keeps its key.

use std::borrow::Cow;
use std::fmt;
use std::io::BufRead;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use memchr::{memchr, memchr2, memmem};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;

use crate::records::{Parsed, RecordError, RecordStream};

pub use kopter_store::audit::AuditRecord;

/// Why a record could not be normalised. The message names the field.
#[derive(Debug, thiserror::Error)]
pub enum NormaliseError {
    #[error("record is not UTF-8: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    #[error("record is not a valid CloudTrail record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("record has no {0}")]
    Missing(&'static str),
    #[error("eventTime {0:?} is not RFC 3339")]
    BadTime(String),
}

/// A JSON string, borrowed from the input unless it had escapes.
#[derive(Debug)]
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl Str<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
    fn into_string(self) -> String {
        self.0.into_owned()
    }
}

fn owned(s: Option<Str<'_>>) -> Option<String> {
    s.map(Str::into_string)
}

/// The fields of a record that the audit row is built from.
#[derive(Deserialize)]
struct WireRecord<'a> {
    #[serde(rename = "eventID", borrow)]
    event_id: Option<Str<'a>>,
    #[serde(rename = "eventTime", borrow)]
    event_time: Option<Str<'a>>,
    #[serde(rename = "eventSource", borrow)]
    event_source: Option<Str<'a>>,
    #[serde(rename = "eventName", borrow)]
    event_name: Option<Str<'a>>,
    #[serde(rename = "awsRegion", borrow)]
    aws_region: Option<Str<'a>>,
    #[serde(rename = "recipientAccountId", borrow)]
    recipient_account_id: Option<Str<'a>>,
    #[serde(rename = "sourceIPAddress", borrow)]
    source_ip_address: Option<Str<'a>>,
    #[serde(rename = "userAgent", borrow)]
    user_agent: Option<Str<'a>>,
    #[serde(rename = "errorCode", borrow)]
    error_code: Option<Str<'a>>,
    #[serde(rename = "errorMessage", borrow)]
    error_message: Option<Str<'a>>,
    #[serde(rename = "readOnly")]
    read_only: Option<bool>,
    #[serde(rename = "userIdentity", borrow)]
    user_identity: Option<WireIdentity<'a>>,
    #[serde(rename = "requestParameters", borrow)]
    request_parameters: Option<&'a RawValue>,
    #[serde(rename = "responseElements", borrow)]
    response_elements: Option<&'a RawValue>,
    #[serde(rename = "additionalEventData", borrow)]
    additional_event_data: Option<&'a RawValue>,
    #[serde(borrow)]
    resources: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireIdentity<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    arn: Option<Str<'a>>,
    #[serde(rename = "accountId", borrow)]
    account_id: Option<Str<'a>>,
    #[serde(rename = "invokedBy", borrow)]
    invoked_by: Option<Str<'a>>,
    #[serde(rename = "principalId", borrow)]
    principal_id: Option<Str<'a>>,
    #[serde(rename = "userName", borrow)]
    user_name: Option<Str<'a>>,
    #[serde(rename = "identityProvider", borrow)]
    identity_provider: Option<Str<'a>>,
    #[serde(rename = "onBehalfOf", borrow)]
    on_behalf_of: Option<WireOnBehalfOf<'a>>,
}

/// `userIdentity.onBehalfOf` of an `IdentityCenterUser`.
#[derive(Deserialize)]
struct WireOnBehalfOf<'a> {
    #[serde(rename = "userId", borrow)]
    user_id: Option<Str<'a>>,
    #[serde(rename = "identityStoreArn", borrow)]
    identity_store_arn: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct WireResource<'a> {
    #[serde(rename = "ARN", borrow)]
    arn: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct WireMfa<'a> {
    #[serde(rename = "MFAUsed", borrow)]
    mfa_used: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct WireConsoleLogin<'a> {
    #[serde(rename = "ConsoleLogin", borrow)]
    console_login: Option<Str<'a>>,
}

static MFA_USED: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"MFAUsed\""));
static CONSOLE_LOGIN: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"ConsoleLogin\""));

fn required(field: Option<Str<'_>>, name: &'static str) -> Result<String, NormaliseError> {
    match field {
        Some(s) if !s.as_str().is_empty() => Ok(s.into_string()),
        _ => Err(NormaliseError::Missing(name)),
    }
}

/// Builds the audit row of one record (`raw` is one element of `Records`).
pub fn normalise(raw: &[u8]) -> Result<AuditRecord, NormaliseError> {
    let text = std::str::from_utf8(raw)?;
    from_wire(serde_json::from_str(text)?, text)
}

/// One record of a stream, normalised.
pub type Normalised = Parsed<Result<AuditRecord, Unfiled>>;

/// A record that did not normalise, with its bytes (for the quarantine).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Unfiled {
    pub error: NormaliseError,
    /// The record's JSON text as it was in the file.
    pub raw: Vec<u8>,
}

impl NormaliseError {
    /// The quarantine reason (`kopter_trail_records_quarantined_total`
    /// label) of this error.
    pub fn reason(&self) -> &'static str {
        use kopter_store::audit::quarantine_reason as r;
        match self {
            Self::Utf8(_) | Self::Json(_) => r::INVALID_JSON,
            Self::Missing(_) => r::MISSING_FIELD,
            Self::BadTime(_) => r::BAD_TIME,
        }
    }
}

/// The next record of `stream`, normalised: the same result as
/// [`normalise`] on [`RecordStream::next_record`]'s bytes, but the JSON
/// parser finds where the record ends, in the reader's buffer, so the
/// record is neither scanned nor copied before it is parsed (about a
/// quarter less work per record). Records that span two reads, or that do
/// not parse, take the scanning path.
///
/// The outer error is the stream's (the file cannot be read further, or
/// one record was too large); the inner one is this record's.
pub fn next_normalised<R: BufRead>(
    stream: &mut RecordStream<R>,
) -> Option<Result<Normalised, RecordError>> {
    stream.next_parsed(parse_prefix, |record| {
        normalise(record.bytes).map_err(|error| Unfiled {
            error,
            raw: record.bytes.to_vec(),
        })
    })
}

/// Bytes of the buffer checked as UTF-8 for the first attempt: a little
/// more than most records.
const FIRST_WINDOW: usize = 4 << 10;

/// Parses the record at the start of `rest` (a read buffer that continues
/// past it); returns it and its length, or `None` to fall back to scanning.
///
/// `serde_json` parses a `&str` without checking UTF-8 again (a `&[u8]`
/// would be checked string by string, and `raw` once more), so a window of
/// the buffer is checked once, then grown if the record is longer.
fn parse_prefix(rest: &[u8]) -> Option<(Result<AuditRecord, Unfiled>, usize)> {
    let mut window = FIRST_WINDOW.min(rest.len());
    loop {
        let text = valid_utf8_prefix(&rest[..window]);
        let mut records = serde_json::Deserializer::from_str(text).into_iter::<WireRecord<'_>>();
        match records.next()? {
            Ok(wire) => {
                let len = records.byte_offset();
                let record = text.get(..len)?;
                let normalised = from_wire(wire, record).map_err(|error| Unfiled {
                    error,
                    raw: record.as_bytes().to_vec(),
                });
                return Some((normalised, len));
            }
            Err(e) if e.is_eof() && window < rest.len() => {
                window = window.saturating_mul(8).min(rest.len());
            }
            Err(_) => return None,
        }
    }
}

/// The longest prefix of `bytes` that is valid UTF-8.
fn valid_utf8_prefix(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

fn from_wire(wire: WireRecord<'_>, text: &str) -> Result<AuditRecord, NormaliseError> {
    let event_id = match wire.event_id {
        Some(id) if !id.as_str().is_empty() => id.into_string(),
        _ => derived_event_id(text),
    };
    let event_time = match wire.event_time {
        Some(t) => DateTime::parse_from_rfc3339(t.as_str())
            .map_err(|_| NormaliseError::BadTime(t.as_str().to_owned()))?
            .with_timezone(&Utc),
        None => return Err(NormaliseError::Missing("eventTime")),
    };
    let event_source = required(wire.event_source, "eventSource")?;
    let event_name = required(wire.event_name, "eventName")?;
    let aws_region = required(wire.aws_region, "awsRegion")?;

    let (principal_type, principal_arn, user_account) = match wire.user_identity {
        Some(id) => {
            let principal = principal_of(&id);
            (owned(id.kind), principal, owned(id.account_id))
        }
        None => (None, None, None),
    };

    let mut resources = Vec::new();
    if let Some(list) = wire.resources {
        // `resources` is a list of objects in every record we know of; a
        // different shape is not worth failing the record for.
        if let Ok(list) = serde_json::from_str::<Vec<WireResource<'_>>>(list.get()) {
            for r in list {
                if let Some(arn) = r.arn {
                    push_unique(&mut resources, arn.into_string());
                }
            }
        }
    }
    if event_source == "ec2.amazonaws.com" {
        let mut ids = Vec::new();
        for part in [wire.request_parameters, wire.response_elements]
            .into_iter()
            .flatten()
        {
            for_each_plain_string(part.get(), |s| {
                if ec2_id_kind(s).is_some() && !ids.contains(&s) {
                    ids.push(s);
                }
            });
        }
        ids.sort_unstable();
        for id in ids {
            push_unique(&mut resources, id.to_owned());
        }
    }

    let mfa_used = wire
        .additional_event_data
        .filter(|v| MFA_USED.find(v.get().as_bytes()).is_some())
        .and_then(|v| serde_json::from_str::<WireMfa<'_>>(v.get()).ok())
        .and_then(|m| m.mfa_used)
        .and_then(|m| match m.as_str() {
            s if s.eq_ignore_ascii_case("yes") => Some(true),
            s if s.eq_ignore_ascii_case("no") => Some(false),
            _ => None,
        });
    let console_login = wire
        .response_elements
        .filter(|v| CONSOLE_LOGIN.find(v.get().as_bytes()).is_some())
        .and_then(|v| serde_json::from_str::<WireConsoleLogin<'_>>(v.get()).ok())
        .and_then(|c| owned(c.console_login));

    Ok(AuditRecord {
        event_id,
        event_time,
        event_source,
        event_name,
        aws_region,
        recipient_account: owned(wire.recipient_account_id),
        user_account,
        principal_arn,
        principal_type,
        source_ip: owned(wire.source_ip_address),
        user_agent: owned(wire.user_agent),
        read_only: wire.read_only,
        error_code: owned(wire.error_code),
        error_message: owned(wire.error_message),
        resources,
        raw: text.to_owned(),
        mfa_used,
        console_login,
    })
}

/// The id of a record that has no `eventID`: derived from the record's
/// JSON text, so reading the same record again gives the same id (and the
/// same row key).
pub fn derived_event_id(text: &str) -> String {
    format!(
        "kopter-{}",
        kopter_store::audit::content_hash(text.as_bytes())
    )
}

/// Who acted (see the table in the module docs).
fn principal_of(id: &WireIdentity<'_>) -> Option<String> {
    let nonempty = |s: &Option<Str<'_>>| {
        s.as_ref()
            .map(Str::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    if let Some(arn) = nonempty(&id.arn) {
        return Some(arn);
    }
    let kind = id.kind.as_ref().map_or("", Str::as_str);
    let account = nonempty(&id.account_id);
    let principal_id = nonempty(&id.principal_id);
    let user = nonempty(&id.user_name).or_else(|| principal_id.clone());
    let provider = nonempty(&id.identity_provider).unwrap_or_else(|| "(no provider)".into());
    let principal = match kind {
        "Root" => account.map(|a| format!("arn:aws:iam::{a}:root")),
        "SAMLUser" => user.clone().map(|u| format!("saml:{provider}/{u}")),
        "WebIdentityUser" => user.clone().map(|u| format!("web-identity:{provider}/{u}")),
        "IdentityCenterUser" => id.on_behalf_of.as_ref().and_then(|o| {
            let user = nonempty(&o.user_id)?;
            let store = nonempty(&o.identity_store_arn).unwrap_or_else(|| "(no store)".into());
            Some(format!("identity-center:{store}/{user}"))
        }),
        "AWSAccount" => account.map(|a| match &principal_id {
            Some(p) => format!("account:{a}/{p}"),
            None => format!("account:{a}"),
        }),
        _ => None,
    };
    principal
        .or_else(|| nonempty(&id.invoked_by))
        .or_else(|| match (kind, user) {
            ("" | "AWSService", _) | (_, None) => None,
            (kind, Some(u)) => Some(format!("{kind}:{u}")),
        })
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

/// Calls `f` with every string token (keys and values) of a valid JSON text
/// that contains no escape sequence.
fn for_each_plain_string<'a>(json: &'a str, mut f: impl FnMut(&'a str)) {
    let b = json.as_bytes();
    let mut i = 0;
    while let Some(j) = memchr(b'"', &b[i..]) {
        let start = i + j + 1;
        let mut k = start;
        let mut plain = true;
        loop {
            match memchr2(b'"', b'\\', b.get(k..).unwrap_or_default()) {
                None => return,
                Some(m) if b[k + m] == b'\\' => {
                    plain = false;
                    k += m + 2;
                }
                Some(m) => {
                    let end = k + m;
                    if plain {
                        // Both ends are ASCII quotes, so char boundaries.
                        f(&json[start..end]);
                    }
                    i = end + 1;
                    break;
                }
            }
        }
    }
}

/// Kinds of EC2 resource id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ec2IdKind {
    Instance,
    Volume,
    Snapshot,
    SecurityGroup,
}

/// Classifies `s` if it has the shape of an EC2 id: a known prefix and 8 or
/// 17 lower-case hex digits (`i-0123456789abcdef0`, `vol-1a2b3c4d`).
pub fn ec2_id_kind(s: &str) -> Option<Ec2IdKind> {
    let b = s.as_bytes();
    // Cheapest test first: most strings are not 10 to 22 bytes long.
    if !(10..=22).contains(&b.len()) {
        return None;
    }
    let (kind, hex) = match b {
        [b'i', b'-', hex @ ..] => (Ec2IdKind::Instance, hex),
        [b'v', b'o', b'l', b'-', hex @ ..] => (Ec2IdKind::Volume, hex),
        [b's', b'n', b'a', b'p', b'-', hex @ ..] => (Ec2IdKind::Snapshot, hex),
        [b's', b'g', b'-', hex @ ..] => (Ec2IdKind::SecurityGroup, hex),
        _ => return None,
    };
    let ok = matches!(hex.len(), 8 | 17)
        && hex
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    ok.then_some(kind)
}

/// EC2 instances, volumes and snapshots a successful EC2 write changed: the
/// describer should refresh them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ec2Targets {
    pub region: String,
    pub instance_ids: Vec<String>,
    pub volume_ids: Vec<String>,
    pub snapshot_ids: Vec<String>,
}

/// EC2 API calls that change instances, volumes or snapshots.
pub const EC2_WRITE_EVENTS: &[&str] = &[
    "RunInstances",
    "StartInstances",
    "StopInstances",
    "RebootInstances",
    "TerminateInstances",
    "ModifyInstanceAttribute",
    "CreateVolume",
    "DeleteVolume",
    "AttachVolume",
    "DetachVolume",
    "ModifyVolume",
    "CreateSnapshot",
    "DeleteSnapshot",
    "CreateTags",
    "DeleteTags",
];

/// A record's request and response, left unparsed (shared with `rules`).
#[derive(Deserialize)]
pub(crate) struct Ec2Wire<'a> {
    #[serde(rename = "requestParameters", borrow)]
    pub(crate) request_parameters: Option<&'a RawValue>,
    #[serde(rename = "responseElements", borrow)]
    pub(crate) response_elements: Option<&'a RawValue>,
}

/// EC2's `{"items": [...]}` list wrapper (shared with `rules`).
#[derive(Deserialize)]
pub(crate) struct Items<T> {
    #[serde(default = "Vec::new")]
    pub(crate) items: Vec<T>,
}

#[derive(Deserialize)]
struct InstanceItem<'a> {
    #[serde(rename = "instanceId", borrow)]
    instance_id: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct ResourceItem<'a> {
    #[serde(rename = "resourceId", borrow)]
    resource_id: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct ModifyVolumeRequest<'a> {
    #[serde(rename = "VolumeId", borrow)]
    volume_id: Option<Str<'a>>,
}

/// The id-bearing members of an EC2 request or response.
#[derive(Deserialize)]
struct Ec2Ids<'a> {
    #[serde(rename = "instancesSet", borrow)]
    instances_set: Option<Items<InstanceItem<'a>>>,
    #[serde(rename = "resourcesSet", borrow)]
    resources_set: Option<Items<ResourceItem<'a>>>,
    #[serde(rename = "instanceId", borrow)]
    instance_id: Option<Str<'a>>,
    #[serde(rename = "volumeId", borrow)]
    volume_id: Option<Str<'a>>,
    #[serde(rename = "snapshotId", borrow)]
    snapshot_id: Option<Str<'a>>,
    #[serde(rename = "ModifyVolumeRequest", borrow)]
    modify_volume: Option<ModifyVolumeRequest<'a>>,
}

impl<'a> Ec2Ids<'a> {
    fn all(self) -> impl Iterator<Item = Str<'a>> {
        let instances = self
            .instances_set
            .into_iter()
            .flat_map(|s| s.items)
            .filter_map(|i| i.instance_id);
        let resources = self
            .resources_set
            .into_iter()
            .flat_map(|s| s.items)
            .filter_map(|r| r.resource_id);
        instances
            .chain(resources)
            .chain(self.instance_id)
            .chain(self.volume_id)
            .chain(self.snapshot_id)
            .chain(self.modify_volume.and_then(|m| m.volume_id))
    }
}

fn parse_ec2_ids(v: Option<&RawValue>) -> Option<Ec2Ids<'_>> {
    v.and_then(|v| serde_json::from_str(v.get()).ok())
}

/// For a successful EC2 write (see [`EC2_WRITE_EVENTS`]), the instances,
/// volumes and snapshots it names, each list sorted and deduplicated.
/// Ids come from `requestParameters` (`instancesSet.items[].instanceId`,
/// `instanceId`, `volumeId`, `snapshotId`, `resourcesSet.items[].resourceId`,
/// `ModifyVolumeRequest.VolumeId`) and, for the calls that create them, from
/// `responseElements` (`RunInstances` instances, `CreateVolume` volume,
/// `CreateSnapshot` snapshot). Other kinds of id (AMIs, security groups in
/// `CreateTags`) are ignored. `None` if the event is not such a write or
/// names none.
pub fn ec2_targets(rec: &AuditRecord) -> Option<Ec2Targets> {
    if rec.event_source != "ec2.amazonaws.com"
        || rec.error_code.is_some()
        || !EC2_WRITE_EVENTS.contains(&rec.event_name.as_str())
    {
        return None;
    }
    let wire: Ec2Wire<'_> = serde_json::from_str(&rec.raw).ok()?;

    let mut ids: Vec<Str<'_>> = Vec::new();
    if let Some(req) = parse_ec2_ids(wire.request_parameters) {
        ids.extend(req.all());
    }
    if let Some(resp) = parse_ec2_ids(wire.response_elements) {
        match rec.event_name.as_str() {
            "RunInstances" => ids.extend(
                resp.instances_set
                    .into_iter()
                    .flat_map(|s| s.items)
                    .filter_map(|i| i.instance_id),
            ),
            "CreateVolume" => ids.extend(resp.volume_id),
            "CreateSnapshot" => ids.extend(resp.snapshot_id),
            _ => {}
        }
    }

    let mut t = Ec2Targets {
        region: rec.aws_region.clone(),
        ..Ec2Targets::default()
    };
    for id in ids {
        let s = id.as_str();
        let list = if s.starts_with("i-") {
            &mut t.instance_ids
        } else if s.starts_with("vol-") {
            &mut t.volume_ids
        } else if s.starts_with("snap-") {
            &mut t.snapshot_ids
        } else {
            continue;
        };
        list.push(id.into_string());
    }
    for list in [&mut t.instance_ids, &mut t.volume_ids, &mut t.snapshot_ids] {
        list.sort_unstable();
        list.dedup();
    }
    let empty = t.instance_ids.is_empty() && t.volume_ids.is_empty() && t.snapshot_ids.is_empty();
    (!empty).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    /// The records of an uncompressed fixture, as raw bytes.
    fn fixture_records(name: &str) -> Vec<Vec<u8>> {
        let data = std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture");
        crate::records::json_records(&data[..], crate::records::DEFAULT_MAX_RECORD_BYTES)
            .map(|r| r.expect("record").bytes)
            .collect()
    }

    fn doc_record(i: usize) -> AuditRecord {
        normalise(&fixture_records("doc_example_records.json")[i]).expect("normalise")
    }

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    /// A minimal valid record with `extra` members spliced in.
    fn minimal(extra: &str) -> Vec<u8> {
        let sep = if extra.is_empty() { "" } else { "," };
        format!(
            r#"{{"eventID":"e-1","eventTime":"2024-05-01T12:00:00Z","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"eu-west-1"{sep}{extra}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn doc_console_login_without_mfa() {
        let r = doc_record(0);
        assert_eq!(r.event_id, "3fcfb182-98f8-4744-bd45-10a395ab61cb");
        assert_eq!(r.event_time, ts("2022-11-10T16:24:34Z"));
        assert_eq!(r.event_source, "signin.amazonaws.com");
        assert_eq!(r.event_name, "ConsoleLogin");
        assert_eq!(r.aws_region, "us-east-2");
        assert_eq!(r.principal_type.as_deref(), Some("IAMUser"));
        assert_eq!(
            r.principal_arn.as_deref(),
            Some("arn:aws:iam::111122223333:user/anaya")
        );
        assert_eq!(r.user_account.as_deref(), Some("111122223333"));
        assert_eq!(
            r.recipient_account, None,
            "this doc example has no recipientAccountId"
        );
        assert_eq!(r.source_ip.as_deref(), Some("192.0.2.0"));
        assert!(
            r.user_agent
                .as_deref()
                .is_some_and(|u| u.starts_with("Mozilla/5.0"))
        );
        assert_eq!(r.console_login.as_deref(), Some("Success"));
        assert_eq!(r.mfa_used, Some(false));
        assert_eq!((r.read_only, r.error_code.as_deref()), (None, None));
        assert!(r.resources.is_empty());
        let raw = fixture_records("doc_example_records.json").swap_remove(0);
        assert_eq!(r.raw.as_bytes(), &raw[..], "raw is the record as received");
    }

    #[test]
    fn doc_console_login_variants() {
        // 1: with MFA; 2: failure, IAMUser without arn; 6: root, "YES".
        let r = doc_record(1);
        assert_eq!(
            (r.mfa_used, r.console_login.as_deref()),
            (Some(true), Some("Success"))
        );
        assert_eq!(r.recipient_account.as_deref(), Some("111122223333"));
        let r = doc_record(2);
        assert_eq!(r.console_login.as_deref(), Some("Failure"));
        assert_eq!(r.error_message.as_deref(), Some("Failed authentication"));
        assert_eq!(r.principal_arn.as_deref(), Some("IAMUser:anaya"), "no arn");
        let r = doc_record(6);
        assert_eq!(r.principal_type.as_deref(), Some("Root"));
        assert_eq!(
            r.principal_arn.as_deref(),
            Some("arn:aws:iam::111122223333:root")
        );
        assert_eq!(r.mfa_used, Some(true));
    }

    #[test]
    fn doc_records_that_lack_required_fields() {
        let records = fixture_records("doc_example_records.json");
        // The EC2 and IAM examples have no eventID: each gets one derived
        // from its content, the same every time, different per record.
        let mut ids = Vec::new();
        for record in records.iter().take(15).skip(10) {
            let id = normalise(record).expect("derived id").event_id;
            assert!(id.starts_with("kopter-") && id.len() == 7 + 32, "{id}");
            assert_eq!(normalise(record).expect("again").event_id, id);
            ids.push(id);
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 5);
        for i in [16, 17] {
            let err = normalise(&records[i]).expect_err("insight");
            assert_eq!(err.to_string(), "record has no eventSource");
        }
        let ok = records.iter().filter(|r| normalise(r).is_ok()).count();
        assert_eq!(ok, 19);
    }

    #[test]
    fn doc_read_only_error_and_resources() {
        let r = doc_record(8);
        assert_eq!(
            (r.event_name.as_str(), r.read_only),
            ("EnableMFADevice", Some(false))
        );
        let r = doc_record(15);
        assert_eq!(r.event_name, "UpdateTrail");
        assert_eq!(r.error_code.as_deref(), Some("TrailNotFoundException"));
        assert!(
            r.error_message
                .as_deref()
                .is_some_and(|m| m == "Unknown trail: myTrail2 for the user: 123456789012")
        );
        let r = doc_record(19);
        assert_eq!(r.event_name, "RotateKey");
        assert_eq!(r.principal_type, None);
        assert_eq!(r.principal_arn.as_deref(), Some("AWS Internal"));
        assert_eq!(
            r.resources,
            ["arn:aws:kms:us-east-2:123456789012:key/7944f0ec-EXAMPLE"]
        );
    }

    #[test]
    fn serializer_fixtures_get_derived_event_ids() {
        for name in [
            "SerializerTestFile.json",
            "SerializerVariousUserIdentityTestFile.json",
        ] {
            for raw in fixture_records(name) {
                let r = normalise(&raw).expect("placeholder records");
                let text = std::str::from_utf8(&raw).expect("utf8");
                assert_eq!(r.event_id, derived_event_id(text));
            }
        }
    }

    /// The `userIdentity` shapes of SerializerVariousUserIdentityTestFile
    /// (placeholders; given the eventID they lack) and the sessionIssuer of
    /// SerializerTestFile record 4: the session's own arn is kept.
    #[test]
    fn various_user_identity_shapes() {
        let with_id = |raw: &[u8]| {
            let mut v = raw.to_vec();
            v.splice(1..1, br#""eventID":"x","#.iter().copied());
            normalise(&v).expect("normalise")
        };
        let r = with_id(&fixture_records("SerializerVariousUserIdentityTestFile.json")[0]);
        assert_eq!(r.principal_type.as_deref(), Some("userIdentityType1"));
        assert_eq!(r.principal_arn.as_deref(), Some("userIdentityArn1"));
        assert_eq!(r.user_account.as_deref(), Some("userIdentityAccountId1"));
        assert_eq!(r.event_time, ts("2013-11-01T00:00:00Z"));
        assert_eq!(
            r.resources,
            [
                "arn:aws:iam:sample1",
                "arn:aws:iam:sample2",
                "arn:aws:iam:sample3"
            ]
        );
        let records = fixture_records("SerializerTestFile.json");
        let r = with_id(&records[3]);
        assert_eq!(r.principal_arn.as_deref(), Some("userIdentityArn4"));
        let r = with_id(&records[4]);
        assert_eq!(
            r.principal_arn.as_deref(),
            Some("userIdentityArn5"),
            "arn wins over invokedBy"
        );
        assert_eq!(r.error_code.as_deref(), Some("errorCode5"));
    }

    #[test]
    fn identity_fallbacks() {
        let r = normalise(&minimal(
            r#""userIdentity":{"type":"Root","accountId":"123456789012","principalId":"123456789012"}"#,
        ))
        .expect("ok");
        assert_eq!(
            r.principal_arn.as_deref(),
            Some("arn:aws:iam::123456789012:root")
        );
        let r = normalise(&minimal(
            r#""userIdentity":{"type":"AWSService","invokedBy":"autoscaling.amazonaws.com"}"#,
        ))
        .expect("ok");
        assert_eq!(r.principal_type.as_deref(), Some("AWSService"));
        assert_eq!(
            r.principal_arn.as_deref(),
            Some("autoscaling.amazonaws.com")
        );
        let r = normalise(&minimal(
            r#""userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::123456789012:assumed-role/Ops/alice","sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::123456789012:role/Ops"}}}"#,
        ))
        .expect("ok");
        assert_eq!(
            r.principal_arn.as_deref(),
            Some("arn:aws:sts::123456789012:assumed-role/Ops/alice")
        );
        let r = normalise(&minimal("")).expect("ok");
        assert_eq!(
            (r.principal_arn, r.principal_type, r.user_account),
            (None, None, None)
        );
    }

    /// Every documented `userIdentity.type` names a principal and keeps the
    /// caller's account. Shapes as the CloudTrail userIdentity element page
    /// documents them (examples and field descriptions).
    #[test]
    fn every_identity_type_names_a_principal() {
        let cases = [
            (
                r#"{"type":"SAMLUser","principalId":"SampleUkh1i4+ExamplexL/jEvs=:SamlExample","userName":"SamlExample","identityProvider":"bdGOnTesti4+ExamplexL/jEvs=","accountId":"123456789012"}"#,
                "saml:bdGOnTesti4+ExamplexL/jEvs=/SamlExample",
                Some("123456789012"),
            ),
            (
                r#"{"type":"WebIdentityUser","principalId":"accounts.google.com:application-id.apps.googleusercontent.com:user-id","userName":"user-id","identityProvider":"accounts.google.com"}"#,
                "web-identity:accounts.google.com/user-id",
                None,
            ),
            (
                r#"{"type":"IdentityCenterUser","accountId":"123456789012","onBehalfOf":{"userId":"544894e8-80c1-707f-60e3-3ba6510dfac1","identityStoreArn":"arn:aws:identitystore::123456789012:identitystore/d-9067642ac7"},"credentialId":"EXAMPLEVHULjJdTUdPJfofVa1sufHDoj7aYcOYcxFVllWR_Whr1fEXAMPLE"}"#,
                "identity-center:arn:aws:identitystore::123456789012:identitystore/d-9067642ac7/544894e8-80c1-707f-60e3-3ba6510dfac1",
                Some("123456789012"),
            ),
            (
                r#"{"type":"AWSAccount","principalId":"AIDAEXAMPLEID","accountId":"444455556666"}"#,
                "account:444455556666/AIDAEXAMPLEID",
                Some("444455556666"),
            ),
            // A call through a VPC endpoint from another account.
            (
                r#"{"type":"AWSAccount","principalId":"","accountId":"777788889999"}"#,
                "account:777788889999",
                Some("777788889999"),
            ),
            (
                r#"{"type":"AWSService","invokedBy":"cloudtrail.amazonaws.com"}"#,
                "cloudtrail.amazonaws.com",
                None,
            ),
            (
                r#"{"type":"Unknown","principalId":"","userName":"someone@example.com","accountId":"123456789012"}"#,
                "Unknown:someone@example.com",
                Some("123456789012"),
            ),
            (
                r#"{"type":"FederatedUser","principalId":"123456789012:bob","arn":"arn:aws:sts::123456789012:federated-user/bob","accountId":"123456789012"}"#,
                "arn:aws:sts::123456789012:federated-user/bob",
                Some("123456789012"),
            ),
        ];
        for (identity, principal, account) in cases {
            let r = normalise(&minimal(&format!(r#""userIdentity":{identity}"#)))
                .unwrap_or_else(|e| panic!("{identity}: {e}"));
            assert_eq!(r.principal_arn.as_deref(), Some(principal), "{identity}");
            assert_eq!(r.user_account.as_deref(), account, "{identity}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let err = normalise(br#"{"eventTime":"2024-05-01T12:00:00Z"}"#).expect_err("err");
        assert_eq!(err.to_string(), "record has no eventSource");
        let raw = String::from_utf8(minimal(""))
            .expect("utf8")
            .replace("2024-05-01T12:00:00Z", "yesterday");
        let err = normalise(raw.as_bytes()).expect_err("err");
        assert_eq!(err.to_string(), r#"eventTime "yesterday" is not RFC 3339"#);
        let raw = String::from_utf8(minimal(""))
            .expect("utf8")
            .replace(r#""awsRegion":"eu-west-1""#, r#""awsRegion":"""#);
        assert_eq!(
            normalise(raw.as_bytes()).expect_err("err").to_string(),
            "record has no awsRegion"
        );
        let err = normalise(br#"{"eventID": 5}"#).expect_err("err");
        assert!(matches!(err, NormaliseError::Json(_)), "{err}");
        let err = normalise(br#"{"eventID":"a",}"#).expect_err("err");
        assert!(
            err.to_string()
                .starts_with("record is not a valid CloudTrail record"),
            "{err}"
        );
        let err = normalise(b"{\"eventID\":\"\xff\"}").expect_err("err");
        assert!(matches!(err, NormaliseError::Utf8(_)), "{err}");
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let r = normalise(&minimal(
            r#""userAgent":"a \"quoted\" \u00e9 agent","errorMessage":"line1\nline2""#,
        ))
        .expect("ok");
        assert_eq!(r.user_agent.as_deref(), Some("a \"quoted\" é agent"));
        assert_eq!(r.error_message.as_deref(), Some("line1\nline2"));
    }

    #[test]
    fn ec2_ids_in_resources() {
        let r = normalise(&minimal(
            r#""requestParameters":{"instancesSet":{"items":[{"instanceId":"i-0123456789abcdef0"}]},"groupId":"sg-1a2b3c4d","note":"i-zzzzzzzz","esc":"vol-1a2b3c4d\\"},"responseElements":{"volumeId":"vol-0aaaaaaaaaaaaaaaa","snapshotId":"snap-12345678","ami":"ami-12345678"}"#,
        ))
        .expect("ok");
        assert_eq!(
            r.resources,
            [
                "i-0123456789abcdef0",
                "sg-1a2b3c4d",
                "snap-12345678",
                "vol-0aaaaaaaaaaaaaaaa"
            ]
        );
        // Not for other services.
        let raw = String::from_utf8(minimal(
            r#""requestParameters":{"x":"i-0123456789abcdef0"}"#,
        ))
        .expect("utf8")
        .replace("ec2.amazonaws.com", "ssm.amazonaws.com");
        assert!(normalise(raw.as_bytes()).expect("ok").resources.is_empty());
        assert_eq!(ec2_id_kind("i-ebeaf9e2"), Some(Ec2IdKind::Instance));
        assert_eq!(ec2_id_kind("i-EBEAF9E2"), None);
        assert_eq!(ec2_id_kind("sg-1234567"), None);
    }

    fn ec2_event(name: &str, extra: &str) -> AuditRecord {
        let raw = String::from_utf8(minimal(extra))
            .expect("utf8")
            .replace("DescribeInstances", name);
        normalise(raw.as_bytes()).expect("ok")
    }

    #[test]
    fn ec2_targets_doc_start_and_stop() {
        // The 2014 doc examples lack eventID; give them one.
        let records = fixture_records("doc_example_records.json");
        for (i, name) in [(10, "StartInstances"), (11, "StopInstances")] {
            let mut raw = records[i].clone();
            raw.splice(1..1, br#""eventID":"x","#.iter().copied());
            let r = normalise(&raw).expect("ok");
            assert_eq!(r.event_name, name);
            let t = ec2_targets(&r).expect("targets");
            assert_eq!(t.region, "us-east-2");
            assert_eq!(t.instance_ids, ["i-ebeaf9e2"]);
            assert!(t.volume_ids.is_empty() && t.snapshot_ids.is_empty());
            assert_eq!(r.resources, ["i-ebeaf9e2"]);
        }
    }

    #[test]
    fn ec2_targets_shapes() {
        let r = ec2_event(
            "RunInstances",
            r#""requestParameters":{"instancesSet":{"items":[{"imageId":"ami-12345678","minCount":2,"maxCount":2}]}},"responseElements":{"instancesSet":{"items":[{"instanceId":"i-0000000000000000b"},{"instanceId":"i-0000000000000000a"}]}}"#,
        );
        let t = ec2_targets(&r).expect("targets");
        assert_eq!(
            t.instance_ids,
            ["i-0000000000000000a", "i-0000000000000000b"]
        );
        let r = ec2_event(
            "AttachVolume",
            r#""requestParameters":{"volumeId":"vol-1","instanceId":"i-1","device":"/dev/sdf"}"#,
        );
        let t = ec2_targets(&r).expect("targets");
        assert_eq!(
            (t.instance_ids, t.volume_ids),
            (vec!["i-1".to_owned()], vec!["vol-1".to_owned()])
        );
        let r = ec2_event(
            "CreateSnapshot",
            r#""requestParameters":{"volumeId":"vol-1","description":"x"},"responseElements":{"snapshotId":"snap-1","volumeId":"vol-1"}"#,
        );
        let t = ec2_targets(&r).expect("targets");
        assert_eq!(
            (t.volume_ids.len(), t.snapshot_ids.as_slice()),
            (1, &["snap-1".to_owned()][..])
        );
        let r = ec2_event(
            "CreateVolume",
            r#""responseElements":{"volumeId":"vol-9","size":"8"}"#,
        );
        assert_eq!(ec2_targets(&r).expect("targets").volume_ids, ["vol-9"]);
        let r = ec2_event(
            "ModifyVolume",
            r#""requestParameters":{"ModifyVolumeRequest":{"VolumeId":"vol-7","Size":20}}"#,
        );
        assert_eq!(ec2_targets(&r).expect("targets").volume_ids, ["vol-7"]);
        let r = ec2_event(
            "CreateTags",
            r#""requestParameters":{"resourcesSet":{"items":[{"resourceId":"i-2"},{"resourceId":"i-2"},{"resourceId":"snap-3"},{"resourceId":"ami-4"}]},"tagSet":{"items":[{"key":"a","value":"b"}]}}"#,
        );
        let t = ec2_targets(&r).expect("targets");
        assert_eq!(
            (t.instance_ids.as_slice(), t.snapshot_ids.as_slice()),
            (&["i-2".to_owned()][..], &["snap-3".to_owned()][..])
        );
    }

    #[test]
    fn ec2_targets_none() {
        // Tags on an AMI only; a read; a failed write; another service.
        let r = ec2_event(
            "CreateTags",
            r#""requestParameters":{"resourcesSet":{"items":[{"resourceId":"ami-4"}]}}"#,
        );
        assert_eq!(ec2_targets(&r), None);
        let r = ec2_event(
            "DescribeInstances",
            r#""requestParameters":{"instanceId":"i-1"}"#,
        );
        assert_eq!(ec2_targets(&r), None);
        let r = ec2_event(
            "StopInstances",
            r#""errorCode":"Client.UnauthorizedOperation","requestParameters":{"instancesSet":{"items":[{"instanceId":"i-1"}]}}"#,
        );
        assert_eq!(ec2_targets(&r), None);
        let mut r = ec2_event(
            "StopInstances",
            r#""requestParameters":{"instanceId":"i-1"}"#,
        );
        assert!(ec2_targets(&r).is_some());
        r.event_source = "rds.amazonaws.com".into();
        assert_eq!(ec2_targets(&r), None);
    }

    type Outcome = Result<(u64, usize, Result<AuditRecord, String>), String>;

    fn fused(data: &[u8], capacity: usize, limit: usize) -> Vec<Outcome> {
        let reader = std::io::BufReader::with_capacity(capacity, data);
        let mut stream = crate::records::json_records(reader, limit);
        let mut out = Vec::new();
        while let Some(r) = next_normalised(&mut stream) {
            out.push(
                r.map(|p| (p.offset, p.index, p.value.map_err(|e| e.to_string())))
                    .map_err(|e| e.to_string()),
            );
        }
        out
    }

    fn split_then_normalise(data: &[u8], limit: usize) -> Vec<Outcome> {
        crate::records::json_records(data, limit)
            .map(|r| {
                r.map(|r| {
                    (
                        r.offset,
                        r.index,
                        normalise(&r.bytes).map_err(|e| e.to_string()),
                    )
                })
                .map_err(|e| e.to_string())
            })
            .collect()
    }

    /// The fused path gives exactly what splitting then normalising gives,
    /// whether records fit the read buffer (parsed in place) or not
    /// (scanned), good or bad.
    #[test]
    fn next_normalised_matches_split_then_normalise() {
        let big = "x".repeat(300);
        let mixed = format!(
            r#"{{"Records":[{},{{"eventID":"e-2"}},{{"bad":,}},{},{{"big":"{big}"}},{}]}}"#,
            String::from_utf8(minimal("")).expect("utf8"),
            String::from_utf8(minimal(r#""userAgent":"q\"}}""#)).expect("utf8"),
            String::from_utf8(minimal(r#""readOnly":true"#)).expect("utf8"),
        );
        let mut files: Vec<(String, Vec<u8>)> =
            ["doc_example_records.json", "SerializerTestFile.json"]
                .iter()
                .map(|n| {
                    (
                        n.to_string(),
                        std::fs::read(format!("{FIXTURES}/{n}")).expect("fixture"),
                    )
                })
                .collect();
        files.push(("mixed".into(), mixed.into_bytes()));
        files.push(("truncated".into(), files[0].1[..5000].to_vec()));
        // Longer than the first UTF-8 window (the parse is retried on a
        // larger one), and a record that is not UTF-8 between good ones.
        let long = format!(r#""errorMessage":"{}""#, "é".repeat(20_000));
        let mut odd = b"{\"Records\":[".to_vec();
        odd.extend(minimal(&long));
        odd.extend(b",");
        // `@` becomes 0xff, which is never UTF-8.
        odd.extend(
            minimal(r#""userAgent":"@""#)
                .into_iter()
                .map(|b| if b == b'@' { 0xff } else { b }),
        );
        odd.extend(b",");
        odd.extend(minimal(""));
        odd.extend(b"]}");
        files.push(("odd".into(), odd));
        for (name, data) in &files {
            let limit = if name == "mixed" { 250 } else { 1 << 20 };
            let want = split_then_normalise(data, limit);
            assert!(want.len() > 2, "{name}");
            for capacity in [1, 100, 1000, 1 << 20] {
                assert_eq!(
                    fused(data, capacity, limit),
                    want,
                    "{name} with a {capacity}-byte buffer"
                );
            }
        }
        let odd = split_then_normalise(&files[4].1, 1 << 20);
        assert!(
            matches!(&odd[0], Ok((_, 0, Ok(r))) if r.error_message.as_ref().is_some_and(|m| m.len() == 40_000))
        );
        assert!(
            matches!(&odd[1], Ok((_, 1, Err(e))) if e.starts_with("record is not UTF-8")),
            "{:?}",
            odd[1]
        );
        assert!(matches!(&odd[2], Ok((_, 2, Ok(_)))));
        let mixed = split_then_normalise(&files[2].1, 250);
        let errors: Vec<_> = mixed
            .iter()
            .map(|r| match r {
                Ok((_, _, Ok(_))) => "ok".to_owned(),
                Ok((_, _, Err(e))) => e.clone(),
                Err(e) => e.clone(),
            })
            .collect();
        assert_eq!(errors[0], "ok");
        assert_eq!(errors[1], "record has no eventTime");
        assert!(
            errors[2].starts_with("record is not a valid CloudTrail record"),
            "{}",
            errors[2]
        );
        assert_eq!(errors[3], "ok");
        assert!(
            errors[4].contains("larger than the 250-byte limit"),
            "{}",
            errors[4]
        );
        assert_eq!(errors[5], "ok");
    }

    #[test]
    fn plain_string_scan_skips_escaped_strings() {
        let mut seen = Vec::new();
        for_each_plain_string(r#"{"a":"b\"c","d":["e","\\"],"f":"g"}"#, |s| seen.push(s));
        assert_eq!(seen, ["a", "d", "e", "f", "g"]);
    }
}

//! An account-hour's resource costs packed into as few items as DynamoDB
//! allows: the hour's lines as one JSON array, deflated, split into
//! chunks of at most [`CHUNK_BYTES`] (sort keys `packed#0000`, `packed#0001`
//! … in the account-hour's partition). Why and how readers stay
//! consistent: `design.md` beside this file.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

use anyhow::{Context, bail, ensure};
use aws_sdk_dynamodb::types::AttributeValue;
use kopter_schema::{AccountId, TenantId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{CostLine, ResourceHourRow};

/// Most deflated bytes in one chunk item. DynamoDB's item limit is
/// 400 KB (names and values together); a quarter of it leaves room for
/// the key and attributes, and no account-hour below ~1,000 resources
/// needs a second chunk.
pub const CHUNK_BYTES: usize = 100 * 1024;

/// Most bytes an account-hour's lines may inflate to (about 100,000
/// resources): a damaged or hostile chunk cannot make a reader allocate
/// without end.
pub const MAX_PACKED_BYTES: usize = 64 * 1024 * 1024;

/// Sort-key prefix of the chunks; resource kinds (`instance`, `volume`,
/// `snapshot`) never equal it, so old per-resource rows and chunks can
/// share a partition while an hour is rewritten.
pub const CHUNK_PREFIX: &str = "packed#";

const LINES_DEFLATED: &str = "lines_z";

/// The sort key of chunk `index`.
pub fn chunk_sk(index: usize) -> String {
    format!("{CHUNK_PREFIX}{index:04}")
}

/// One resource's cost in a packed hour: a [`ResourceHourRow`] without
/// what the item's key already says (tenant, account, hour, expiry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PackedLine {
    kind: String,
    resource_id: String,
    region: String,
    usage: f64,
    unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reserved_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    price_missing: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    price_missing_part: Option<String>,
    family: String,
    detail: String,
    #[serde(default)]
    lifecycle: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// An account-hour packed for writing: its chunks and the digest of what
/// they hold (so an unchanged recompute can be recognised without
/// inflating the stored result).
#[derive(Debug, Clone, PartialEq)]
pub struct PackedHour {
    /// Hex SHA-256 (first 16 bytes) of the uncompressed lines and the
    /// expiry.
    pub digest: String,
    /// Deflated bytes, each at most the chunk size; none for an hour
    /// without lines.
    pub chunks: Vec<Vec<u8>>,
}

/// Packs an hour's lines, sorted by resource (`{kind}#{id}`) so the same
/// lines in any order give the same digest and bytes.
pub fn pack(lines: &[CostLine], expires_at: i64, chunk_bytes: usize) -> anyhow::Result<PackedHour> {
    ensure!(chunk_bytes > 0, "chunk size 0");
    let mut packed: Vec<PackedLine> = lines
        .iter()
        .map(|l| PackedLine {
            kind: l.kind.into(),
            resource_id: l.resource_id.to_string(),
            region: l.region.to_string(),
            usage: l.usage,
            unit: l.unit.into(),
            cost_usd: l.cost_usd,
            reserved_usd: l.reserved_usd,
            price_missing: l.missing.clone(),
            price_missing_part: l.missing_part.clone(),
            family: l.family.to_string(),
            detail: l.detail.to_string(),
            lifecycle: l.lifecycle.to_string(),
            tags: (*l.tags).clone(),
            note: l.note.as_deref().map(str::to_owned),
        })
        .collect();
    packed.sort_by(|a, b| (&a.kind, &a.resource_id).cmp(&(&b.kind, &b.resource_id)));
    let json = serde_json::to_vec(&packed).context("encode the hour's cost lines")?;
    ensure!(
        json.len() <= MAX_PACKED_BYTES,
        "{} lines encode to {} bytes, more than a packed hour holds ({MAX_PACKED_BYTES})",
        packed.len(),
        json.len()
    );
    let mut hash = Sha256::new();
    hash.update(&json);
    hash.update(expires_at.to_be_bytes());
    let digest = hex(&hash.finalize()[..16]);
    let mut z =
        flate2::write::DeflateEncoder::new(Vec::with_capacity(json.len() / 8), Default::default());
    z.write_all(&json)
        .context("deflate the hour's cost lines")?;
    let bytes = z.finish().context("deflate the hour's cost lines")?;
    // An hour without resources is stored as nothing at all: an account
    // with an empty estate costs no writes.
    let chunks = if packed.is_empty() {
        Vec::new()
    } else {
        bytes.chunks(chunk_bytes).map(<[u8]>::to_vec).collect()
    };
    Ok(PackedHour { digest, chunks })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The chunk items of a packed hour in partition `pk`.
pub fn chunk_items(
    pk: &str,
    tenant: &TenantId,
    account: &AccountId,
    hour_key: &str,
    packed: &PackedHour,
    expires_at: i64,
) -> Vec<HashMap<String, AttributeValue>> {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: String| AttributeValue::N(v);
    packed
        .chunks
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            HashMap::from([
                ("pk".to_owned(), s(pk)),
                ("sk".to_owned(), s(&chunk_sk(i))),
                ("tenant".to_owned(), s(tenant.as_str())),
                ("account".to_owned(), s(account.as_str())),
                ("hour".to_owned(), s(hour_key)),
                ("parts".to_owned(), n(packed.chunks.len().to_string())),
                ("digest".to_owned(), s(&packed.digest)),
                (
                    LINES_DEFLATED.to_owned(),
                    AttributeValue::B(aws_smithy_types::Blob::new(bytes.clone())),
                ),
                ("expires_at".to_owned(), n(expires_at.to_string())),
            ])
        })
        .collect()
}

/// One stored chunk, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChunk {
    pub pk: String,
    pub index: usize,
    pub parts: usize,
    pub digest: String,
    pub tenant: String,
    pub account: String,
    pub hour: String,
    pub expires_at: i64,
    pub bytes: Vec<u8>,
}

/// A chunk item decoded; errors name the item and the attribute.
pub fn stored_chunk(item: &HashMap<String, AttributeValue>) -> anyhow::Result<StoredChunk> {
    let pk = str_attr(item, "pk", "?")?;
    let sk = str_attr(item, "sk", &pk)?;
    let at = format!("{pk} {sk}");
    let index = sk
        .strip_prefix(CHUNK_PREFIX)
        .and_then(|i| i.parse().ok())
        .with_context(|| format!("{at}: not a chunk's sort key"))?;
    let num = |name: &str| -> anyhow::Result<i64> {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{at}: attribute {name} missing or not a number"))
    };
    let parts = usize::try_from(num("parts")?).with_context(|| format!("{at}: parts < 0"))?;
    let bytes = match item.get(LINES_DEFLATED) {
        Some(AttributeValue::B(b)) => b.as_ref().to_vec(),
        _ => bail!("{at}: attribute {LINES_DEFLATED} missing or not binary"),
    };
    Ok(StoredChunk {
        index,
        parts,
        digest: str_attr(item, "digest", &at)?,
        tenant: str_attr(item, "tenant", &at)?,
        account: str_attr(item, "account", &at)?,
        hour: str_attr(item, "hour", &at)?,
        expires_at: num("expires_at")?,
        bytes,
        pk,
    })
}

fn str_attr(
    item: &HashMap<String, AttributeValue>,
    name: &str,
    at: &str,
) -> anyhow::Result<String> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .with_context(|| format!("{at}: attribute {name} missing or not a string"))
}

/// An account-hour whose stored chunks hold no whole result: a reader
/// caught a multi-chunk rewrite between its puts and deletes (a retry reads
/// the new result), or a chunk is missing. Readers may tell it from other
/// failures (`anyhow::Error::downcast_ref`), e.g. to answer "retry".
#[derive(Debug, thiserror::Error)]
#[error("packed cost lines of {pk}: {why}")]
pub struct IncompleteHour {
    /// The account-hour's partition key.
    pub pk: String,
    /// Which chunks of which results were found.
    pub why: String,
}

/// The chunks of the one whole result among `chunks` (one partition's,
/// any order): those of one digest, `parts` of them with indexes
/// `0..parts`, sorted by index. A rewrite puts the new chunks before it
/// deletes stale ones, so chunks of an earlier result may sit beside a
/// whole new one (ignored); `Err` says why no result is whole.
pub fn whole(chunks: Vec<StoredChunk>) -> Result<Vec<StoredChunk>, String> {
    let mut by_digest: BTreeMap<String, Vec<StoredChunk>> = BTreeMap::new();
    for c in chunks {
        by_digest.entry(c.digest.clone()).or_default().push(c);
    }
    let mut why = Vec::new();
    for (digest, mut group) in by_digest {
        group.sort_by_key(|c| c.index);
        let parts = group[0].parts;
        let complete = group.len() == parts
            && group
                .iter()
                .enumerate()
                .all(|(i, c)| c.index == i && c.parts == parts);
        if complete {
            return Ok(group);
        }
        let have: Vec<String> = group.iter().map(|c| c.index.to_string()).collect();
        why.push(format!(
            "result {digest}: chunks [{}] of {parts}",
            have.join(", ")
        ));
    }
    if why.is_empty() {
        return Err("no chunks".into());
    }
    Err(format!(
        "no whole result ({}); a chunk is missing, or the hour is being rewritten",
        why.join("; ")
    ))
}

/// The rows of a packed hour from its chunks (one partition's, any
/// order), as [`ResourceHourRow`]s keyed like the per-resource rows they
/// replace (`pk` the partition, `sk` `{kind}#{id}`), sorted by `sk`.
///
/// Errors: chunks that are not one whole result (a missing chunk — a
/// read during a rewrite of a multi-chunk hour; retrying reads the new
/// result), bytes that do not inflate or decode, or more than
/// [`MAX_PACKED_BYTES`]; each names the partition.
pub fn unpack(chunks: Vec<StoredChunk>) -> anyhow::Result<Vec<ResourceHourRow>> {
    let Some(first) = chunks.first() else {
        return Ok(Vec::new());
    };
    let pk = first.pk.clone();
    if let Some(c) = chunks.iter().find(|c| c.pk != pk) {
        bail!("packed cost lines of {pk}: a chunk of {} among them", c.pk);
    }
    let chunks = whole(chunks).map_err(|why| IncompleteHour {
        pk: pk.clone(),
        why,
    })?;
    let deflated: Vec<u8> = chunks
        .iter()
        .flat_map(|c| c.bytes.iter().copied())
        .collect();
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(deflated.as_slice())
        .take(MAX_PACKED_BYTES as u64 + 1)
        .read_to_end(&mut json)
        .with_context(|| format!("inflate the packed cost lines of {pk} ({LINES_DEFLATED})"))?;
    ensure!(
        json.len() <= MAX_PACKED_BYTES,
        "packed cost lines of {pk} inflate beyond {MAX_PACKED_BYTES} bytes"
    );
    let lines: Vec<PackedLine> = serde_json::from_slice(&json)
        .with_context(|| format!("decode the packed cost lines of {pk}"))?;
    let c = &chunks[0];
    let tenant: TenantId = c
        .tenant
        .parse()
        .with_context(|| format!("{pk}: tenant {:?}", c.tenant))?;
    let account: AccountId = c
        .account
        .parse()
        .with_context(|| format!("{pk}: account {:?}", c.account))?;
    // The key is what a reader chose; attributes that disagree with it
    // are a damaged (or forged) item, not rows of this partition.
    ensure!(
        pk == super::resource_hour_pk_of(&tenant, &account, &c.hour),
        "packed cost lines of {pk}: the item says tenant {tenant}, account {account}, hour {}",
        c.hour
    );
    Ok(lines
        .into_iter()
        .map(|l| ResourceHourRow {
            pk: pk.clone(),
            sk: super::resource_hour_sk(&l.kind, &l.resource_id),
            tenant: tenant.clone(),
            account: account.clone(),
            region: l.region,
            resource_id: l.resource_id,
            kind: l.kind,
            hour: c.hour.clone(),
            usage: l.usage,
            unit: l.unit,
            cost_usd: l.cost_usd,
            reserved_usd: l.reserved_usd,
            price_missing: l.price_missing,
            price_missing_part: l.price_missing_part,
            family: l.family,
            detail: l.detail,
            lifecycle: l.lifecycle,
            tags: l.tags,
            note: l.note,
            expires_at: c.expires_at,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};

    use super::*;

    fn line(i: usize, team: &str) -> CostLine {
        CostLine {
            resource_id: format!("i-{i:017x}").into(),
            kind: if i % 2 == 0 { "instance" } else { "volume" },
            region: "eu-west-1".into(),
            hour: Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap(),
            usage: 1.0,
            unit: "Hrs",
            cost_usd: (i % 7 != 0).then_some(0.096 + i as f64 / 1000.0),
            reserved_usd: Some(0.06),
            missing: (i % 7 == 0).then(|| "no price for m5.large".to_owned()),
            missing_part: None,
            family: "m5".into(),
            detail: "m5.large".into(),
            lifecycle: "on-demand".into(),
            tags: Arc::new(BTreeMap::from([
                ("team".to_owned(), team.to_owned()),
                ("Name".to_owned(), format!("web-{i}")),
            ])),
            note: (i == 3).then(|| "on a Dedicated Host".into()),
        }
    }

    const PK: &str = "acme#111111111111#res#2026-11-30T10";

    fn stored(packed: &PackedHour) -> Vec<StoredChunk> {
        chunk_items(
            PK,
            &"acme".parse().unwrap(),
            &"111111111111".parse().unwrap(),
            "2026-11-30T10",
            packed,
            1_800_000_000,
        )
        .iter()
        .map(|i| stored_chunk(i).unwrap())
        .collect()
    }

    #[test]
    fn an_hour_round_trips_in_one_chunk_and_in_many() {
        let lines: Vec<CostLine> = (0..300).map(|i| line(i, "web")).collect();
        let one = pack(&lines, 1_800_000_000, CHUNK_BYTES).unwrap();
        assert_eq!(one.chunks.len(), 1);
        let rows = unpack(stored(&one)).unwrap();
        assert_eq!(rows.len(), 300);
        let r = rows
            .iter()
            .find(|r| r.resource_id == "i-00000000000000003")
            .unwrap();
        assert_eq!(r.sk, "volume#i-00000000000000003");
        assert_eq!(r.pk, PK);
        assert_eq!(r.tenant.as_str(), "acme");
        assert_eq!(r.hour, "2026-11-30T10");
        assert_eq!(r.cost_usd, Some(0.096 + 3.0 / 1000.0));
        assert_eq!(r.note.as_deref(), Some("on a Dedicated Host"));
        assert_eq!(r.tags["Name"], "web-3");
        assert_eq!(r.expires_at, 1_800_000_000);
        let missing = rows
            .iter()
            .find(|r| r.resource_id == "i-00000000000000007")
            .unwrap();
        assert_eq!(missing.cost_usd, None);
        assert_eq!(
            missing.price_missing.as_deref(),
            Some("no price for m5.large")
        );
        assert!(rows.windows(2).all(|w| w[0].sk < w[1].sk), "sorted by sk");

        // The same lines split into small chunks give the same rows.
        let many = pack(&lines, 1_800_000_000, 256).unwrap();
        assert!(many.chunks.len() > 3, "{} chunks", many.chunks.len());
        assert!(many.chunks.iter().all(|c| c.len() <= 256));
        assert_eq!(many.digest, one.digest);
        let mut chunks = stored(&many);
        chunks.reverse();
        assert_eq!(unpack(chunks).unwrap(), rows);
    }

    #[test]
    fn an_hour_without_lines_has_no_chunks() {
        let packed = pack(&[], 1, CHUNK_BYTES).unwrap();
        assert!(packed.chunks.is_empty());
        assert_eq!(unpack(stored(&packed)).unwrap(), vec![]);
    }

    #[test]
    fn the_digest_ignores_line_order_and_sees_content_and_expiry() {
        let lines: Vec<CostLine> = (0..20).map(|i| line(i, "web")).collect();
        let mut shuffled = lines.clone();
        shuffled.reverse();
        let a = pack(&lines, 1, CHUNK_BYTES).unwrap();
        assert_eq!(a, pack(&shuffled, 1, CHUNK_BYTES).unwrap());
        assert_ne!(a.digest, pack(&lines, 2, CHUNK_BYTES).unwrap().digest);
        let mut changed = lines.clone();
        changed[4].cost_usd = Some(1.0);
        assert_ne!(a.digest, pack(&changed, 1, CHUNK_BYTES).unwrap().digest);
    }

    #[test]
    fn tags_that_repeat_compress() {
        let lines: Vec<CostLine> = (0..100).map(|i| line(i, "platform-engineering")).collect();
        let packed = pack(&lines, 1, CHUNK_BYTES).unwrap();
        let json = serde_json::to_vec(&unpack(stored(&packed)).unwrap()).unwrap();
        assert!(
            packed.chunks[0].len() * 5 < json.len(),
            "{} deflated bytes for {} bytes of rows",
            packed.chunks[0].len(),
            json.len()
        );
    }

    #[test]
    fn a_missing_truncated_or_corrupt_chunk_is_a_clear_error() {
        let lines: Vec<CostLine> = (0..300).map(|i| line(i, "web")).collect();
        let packed = pack(&lines, 1, 256).unwrap();

        let mut missing = stored(&packed);
        missing.remove(2);
        let err = unpack(missing).unwrap_err();
        assert!(format!("{err:#}").contains("chunks [0, 1, 3"), "{err:#}");
        assert!(format!("{err:#}").contains("a chunk is missing"), "{err:#}");
        assert!(format!("{err:#}").contains(PK), "{err:#}");

        let mut truncated = stored(&packed);
        truncated.last_mut().unwrap().bytes.truncate(3);
        let err = unpack(truncated).unwrap_err();
        assert!(format!("{err:#}").contains(PK), "{err:#}");

        let mut corrupt = stored(&packed);
        corrupt[0].bytes[0] ^= 0xff;
        corrupt[0].bytes[1] ^= 0xff;
        let err = unpack(corrupt).unwrap_err();
        assert!(
            format!("{err:#}").contains("packed cost lines of"),
            "{err:#}"
        );

        // A chunk of another result in place of one of this: a torn read.
        let other = pack(&lines[..10], 1, 256).unwrap();
        let mut torn = stored(&packed);
        torn[1] = stored(&other)[0].clone();
        torn[1].index = 1;
        let err = unpack(torn).unwrap_err();
        assert!(format!("{err:#}").contains("being rewritten"), "{err:#}");

        // A stale chunk of an earlier, longer result beside a whole new
        // one (a rewrite between its puts and its deletes): ignored.
        let small = pack(&lines[..10], 1, CHUNK_BYTES).unwrap();
        let mut beside = stored(&small);
        let mut stale = stored(&packed)[3].clone();
        stale.pk = PK.into();
        beside.push(stale);
        assert_eq!(unpack(beside).unwrap().len(), 10);

        let mut item = chunk_items(
            PK,
            &"acme".parse().unwrap(),
            &"111111111111".parse().unwrap(),
            "2026-11-30T10",
            &packed,
            1,
        )
        .remove(0);
        item.insert(LINES_DEFLATED.into(), AttributeValue::S("x".into()));
        let err = stored_chunk(&item).unwrap_err();
        assert!(format!("{err:#}").contains("lines_z"), "{err:#}");
    }
}

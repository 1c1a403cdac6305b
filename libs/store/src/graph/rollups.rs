//! One account's roll-ups of one hour, every dimension, as one small item:
//! what the account's day rows are summed from, without reading the
//! tenant's shared roll-up partitions.
//!
//! | pk | sk | attributes |
//! |---|---|---|
//! | `{tenant}#{account}#rollups#{yyyy-mm-dd}` | `{yyyy-mm-ddThh}` | `z`: the hour's [`Part`]s as deflated JSON; `expires_at` |
//!
//! An account-hour recompute reads its day's entries with one `Query`
//! (at most 24 items of ~0.5 KB), replaces the hour's entry, and derives
//! both the hour rows it replaces (the old entry says which rows it wrote)
//! and the account's day rows (the sum of the day's entries). Before
//! these entries, the same two reads were `Query`s of the tenant-wide
//! partitions `{tenant}#hour#{dimension}` and `{tenant}#day#{dimension}`,
//! which hold every account's rows: a tenant of N accounts read N×
//! (groups) rows per account-hour, and N²× per hour over the tenant. See
//! `design.md` ("Roll-ups").

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use aws_sdk_dynamodb::types::AttributeValue;
use kopter_schema::{AccountId, TenantId};
use serde::{Deserialize, Serialize};

use super::{CostLine, ResourceHourRow, RollupRow, dimensions};

/// Partition key of an account-day's roll-up entries.
pub fn entries_pk(tenant: &TenantId, account: &AccountId, day: &str) -> String {
    format!("{tenant}#{account}#rollups#{day}")
}

/// One group's figures in one hour (field names kept short: the entry is
/// billed by its size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// Dimension (`account`, `region`, `family`, `tag:{key}`).
    pub d: String,
    /// Group.
    pub g: String,
    /// Cost, USD.
    pub c: f64,
    /// Cost at reserved rates, USD.
    pub r: f64,
    /// Resources without a price.
    pub m: u64,
    /// Resources priced in part.
    pub p: u64,
    /// Resources.
    pub n: u64,
}

/// The facts of one resource-hour a roll-up needs.
pub struct Fact<'a> {
    pub region: &'a str,
    pub family: &'a str,
    pub tags: &'a BTreeMap<String, String>,
    pub cost_usd: Option<f64>,
    pub reserved_usd: Option<f64>,
    pub partial: bool,
}

impl<'a> From<&'a CostLine> for Fact<'a> {
    fn from(l: &'a CostLine) -> Self {
        Fact {
            region: &l.region,
            family: &l.family,
            tags: &l.tags,
            cost_usd: l.cost_usd,
            reserved_usd: l.reserved_usd,
            partial: l.missing_part.is_some(),
        }
    }
}

impl<'a> From<&'a ResourceHourRow> for Fact<'a> {
    fn from(r: &'a ResourceHourRow) -> Self {
        Fact {
            region: &r.region,
            family: &r.family,
            tags: &r.tags,
            cost_usd: r.cost_usd,
            reserved_usd: r.reserved_usd,
            partial: r.price_missing_part.is_some(),
        }
    }
}

/// The group of a resource-hour under a dimension: the account, the
/// region, the family, or the tag's value (`(untagged)` without the tag).
pub fn group(f: &Fact<'_>, account: &AccountId, dim: &str) -> String {
    match dim {
        "account" => account.to_string(),
        "region" => f.region.to_owned(),
        "family" => f.family.to_owned(),
        d => {
            let key = d.strip_prefix("tag:").unwrap_or(d);
            f.tags
                .get(key)
                .cloned()
                .unwrap_or_else(|| "(untagged)".into())
        }
    }
}

/// An hour's parts: every dimension of `tag_keys`, groups sorted, figures
/// summed in the order of `facts` (the order [`super::GraphStore::replace_hour`]
/// always summed them in).
pub fn hour_parts<'a>(
    facts: impl IntoIterator<Item = Fact<'a>>,
    account: &AccountId,
    tag_keys: &[String],
) -> Vec<Part> {
    let dims = dimensions(tag_keys);
    let mut out: BTreeMap<(usize, String), Part> = BTreeMap::new();
    for f in facts {
        for (i, dim) in dims.iter().enumerate() {
            let g = group(&f, account, dim);
            let p = out.entry((i, g.clone())).or_insert_with(|| Part {
                d: dim.clone(),
                g,
                c: 0.0,
                r: 0.0,
                m: 0,
                p: 0,
                n: 0,
            });
            p.n += 1;
            match f.cost_usd {
                Some(c) => p.c += c,
                None => p.m += 1,
            }
            if f.cost_usd.is_some() && f.partial {
                p.p += 1;
            }
            // Without a reserved alternative (spot, volumes…) the resource
            // costs the same either way.
            p.r += f.reserved_usd.or(f.cost_usd).unwrap_or(0.0);
        }
    }
    out.into_values().collect()
}

/// An hour's parts as the tenant-wide hour rows
/// (`{tenant}#hour#{dimension}`, `{hour}#{group}#{account}`).
pub fn hour_rows(
    tenant: &TenantId,
    account: &AccountId,
    hour_key: &str,
    parts: &[Part],
    expires_at: i64,
) -> Vec<RollupRow> {
    parts
        .iter()
        .map(|p| RollupRow {
            pk: format!("{tenant}#hour#{}", p.d),
            sk: format!("{hour_key}#{}#{account}", p.g),
            tenant: tenant.clone(),
            account: account.clone(),
            dimension: p.d.clone(),
            period: hour_key.to_owned(),
            group: p.g.clone(),
            cost_usd: p.c,
            reserved_usd: p.r,
            price_missing: p.m,
            price_partial: p.p,
            resources: p.n,
            expires_at,
        })
        .collect()
}

/// Hour rows back to parts (an hour stored before entries existed).
pub fn parts_of_rows(rows: &[RollupRow]) -> Vec<Part> {
    rows.iter().map(Part::from).collect()
}

impl From<&RollupRow> for Part {
    fn from(r: &RollupRow) -> Self {
        Part {
            d: r.dimension.clone(),
            g: r.group.clone(),
            c: r.cost_usd,
            r: r.reserved_usd,
            m: r.price_missing,
            p: r.price_partial,
            n: r.resources,
        }
    }
}

/// One hour's entry: its parts and the expiry its hour rows carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub parts: Vec<Part>,
    pub expires_at: i64,
}

/// The account's day rows (`{tenant}#day#{dimension}`,
/// `{day}#{group}#{account}`) from the day's entries (hour key → entry):
/// costs and counts of price-missing / partly-priced resources summed over
/// the hours, resources the most in any hour, expiry the latest.
pub fn day_rows(
    tenant: &TenantId,
    account: &AccountId,
    day: &str,
    entries: &BTreeMap<String, Entry>,
) -> Vec<RollupRow> {
    let mut out: BTreeMap<(String, String), RollupRow> = BTreeMap::new();
    // Hours in order, so the sums are the same whatever order entries
    // were written in.
    for e in entries.values() {
        for p in &e.parts {
            let row = out
                .entry((p.d.clone(), p.g.clone()))
                .or_insert_with(|| RollupRow {
                    pk: format!("{tenant}#day#{}", p.d),
                    sk: format!("{day}#{}#{account}", p.g),
                    tenant: tenant.clone(),
                    account: account.clone(),
                    dimension: p.d.clone(),
                    period: day.to_owned(),
                    group: p.g.clone(),
                    cost_usd: 0.0,
                    reserved_usd: 0.0,
                    price_missing: 0,
                    price_partial: 0,
                    resources: 0,
                    expires_at: e.expires_at,
                });
            row.cost_usd += p.c;
            row.reserved_usd += p.r;
            row.price_missing += p.m;
            row.price_partial += p.p;
            row.resources = row.resources.max(p.n);
            row.expires_at = row.expires_at.max(e.expires_at);
        }
    }
    out.into_values().collect()
}

/// The entry's item.
pub fn entry_item(
    tenant: &TenantId,
    account: &AccountId,
    day: &str,
    hour_key: &str,
    entry: &Entry,
) -> anyhow::Result<HashMap<String, AttributeValue>> {
    let z = deflate_parts(&entry.parts)?;
    Ok(HashMap::from([
        (
            "pk".to_owned(),
            AttributeValue::S(entries_pk(tenant, account, day)),
        ),
        ("sk".to_owned(), AttributeValue::S(hour_key.to_owned())),
        (
            "z".to_owned(),
            AttributeValue::B(aws_smithy_types::Blob::new(z)),
        ),
        (
            "expires_at".to_owned(),
            AttributeValue::N(entry.expires_at.to_string()),
        ),
    ]))
}

/// Set on an entry whose hour's stored roll-up rows may not be its parts:
/// one filled in from the hour's resource costs (`true`), one a recompute
/// has claimed to write rows (its lease, [`new_lease`]; removed when it is
/// done), or one two recomputes overlapped on, or whose recompute failed
/// after its claim (`contended-…`). A recompute of the hour that finds a
/// live lease stops ([`is_live_lease`]); one that finds any other mark
/// claims it and reads the hour's rows themselves instead of trusting the
/// entry. The next recompute of
/// that hour reads the rows themselves (once) instead of trusting it.
pub const UNSURE: &str = "unsure";

/// How long a recompute's claim on an hour's entry (its lease in
/// [`UNSURE`]) keeps other recomputes of the hour off. A recompute takes
/// well under a second, a few seconds under throttling; one whose lease is
/// older is taken for dead, and the hour is recomputed from its rows
/// themselves (if the holder was only slow, its own final put fails and it
/// computes again: a short lease costs work, never correctness). Short,
/// because every change message of the hour waits out a dead holder's
/// lease: at 2 minutes, the chaos test's SIGKILLs (every few seconds)
/// caught waiting messages on every receive and dead-lettered 7 of them.
pub const CLAIM_LEASE: std::time::Duration = std::time::Duration::from_secs(15);

/// A fresh lease for [`UNSURE`]: `"{unix ms}.{random hex}"`.
pub fn new_lease() -> AttributeValue {
    AttributeValue::S(format!(
        "{}.{:032x}",
        chrono::Utc::now().timestamp_millis(),
        rand::random::<u128>()
    ))
}

/// True if `mark` is a lease taken less than [`CLAIM_LEASE`] ago (not
/// `true`, not `contended-…`: those nobody holds).
pub fn is_live_lease(mark: &AttributeValue) -> bool {
    let Some(ms) = mark
        .as_s()
        .ok()
        .and_then(|t| t.split_once('.'))
        .and_then(|(ms, _)| ms.parse::<i64>().ok())
    else {
        return false;
    };
    let age = chrono::Utc::now().timestamp_millis() - ms;
    age < CLAIM_LEASE.as_millis() as i64
}

/// The [`UNSURE`] mark of an entry item, if it has one: `true` (an entry
/// filled in, or marked before marks were leases), a recompute's lease
/// (`{unix ms}.{hex}`) or `contended-{hex}`.
pub fn unsure_mark(item: &HashMap<String, AttributeValue>) -> Option<AttributeValue> {
    match item.get(UNSURE)? {
        v @ AttributeValue::Bool(true) => Some(v.clone()),
        AttributeValue::S(t) if !t.is_empty() => Some(AttributeValue::S(t.clone())),
        _ => None,
    }
}

/// An entry item back: `(hour key, entry)`. Errors name the item.
pub fn read_entry(item: &HashMap<String, AttributeValue>) -> anyhow::Result<(String, Entry)> {
    let pk = item.get("pk").and_then(|v| v.as_s().ok());
    let sk = item
        .get("sk")
        .and_then(|v| v.as_s().ok())
        .with_context(|| format!("roll-up entry without sk in {pk:?}"))?;
    let at = || format!("roll-up entry {pk:?} {sk}");
    let z = item
        .get("z")
        .and_then(|v| v.as_b().ok())
        .with_context(|| format!("{}: no `z`", at()))?;
    let expires_at = item
        .get("expires_at")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{}: no `expires_at`", at()))?;
    let parts = inflate_parts(z.as_ref(), &at())?;
    Ok((sk.clone(), Entry { parts, expires_at }))
}

/// Sort key of an account's packed roll-up item of a period in a
/// `{tenant}#{hour|day}#{dimension}` partition: `{period}#{account}`, and
/// `{period}#{account}#{nnnn}` for its chunk `nnnn` ≥ 1 ([`chunk_parts`]).
/// Rows written before packing have `{period}#{group}#{account}` in the
/// same partition; the attributes tell them apart (a packed item has `z`).
pub fn packed_sk(period: &str, account: &AccountId) -> String {
    chunk_sk(period, account, 0)
}

/// Sort key of chunk `chunk` of an account's packed roll-up of a period.
pub fn chunk_sk(period: &str, account: &AccountId, chunk: usize) -> String {
    match chunk {
        0 => format!("{period}#{account}"),
        n => format!("{period}#{account}#{n:04}"),
    }
}

/// JSON bytes of one packed roll-up chunk's groups at most. Deflate adds
/// at most a few bytes per 16 KB block to data it cannot shrink, so a
/// chunk's `z` stays far under DynamoDB's 400 KB item. One chunk holds
/// ~2,500 groups; only a tag dimension with more values than that in one
/// account-day (a `Name` tag of an autoscaling fleet) needs a second.
pub const CHUNK_JSON_BYTES: usize = 256 * 1024;

/// `rows` (one partition, period and account) as [`Part`]s sorted by
/// group, cut in order into chunks of at most [`CHUNK_JSON_BYTES`] of
/// JSON; always at least one chunk (empty for no rows). The same rows
/// always cut the same way.
pub fn chunk_parts<'a>(rows: impl IntoIterator<Item = &'a RollupRow>) -> Vec<Vec<Part>> {
    let mut parts: Vec<Part> = rows.into_iter().map(Part::from).collect();
    parts.sort_by(|a, b| a.g.cmp(&b.g));
    let mut chunks: Vec<Vec<Part>> = vec![Vec::new()];
    let mut bytes = 2;
    for part in parts {
        let len = serde_json::to_vec(&part).map_or(0, |j| j.len()) + 1;
        if bytes + len > CHUNK_JSON_BYTES && !chunks.last().is_some_and(Vec::is_empty) {
            chunks.push(Vec::new());
            bytes = 2;
        }
        bytes += len;
        chunks.last_mut().expect("one chunk at least").push(part);
    }
    chunks
}

/// Most bytes a roll-up's parts inflate to (entries and packed items): a
/// damaged or hostile item cannot make a reader allocate without end. An
/// account's groups of a period are a few hundred bytes each; 16 MiB is
/// ~100,000 groups, far past DynamoDB's 400 KB item of deflated ones.
pub const MAX_PARTS_BYTES: u64 = 16 * 1024 * 1024;

/// `parts` as deflated JSON (the `z` of entries and packed items).
pub fn deflate_parts(parts: &[Part]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    let json = serde_json::to_vec(parts).context("encode roll-up parts")?;
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), Default::default());
    z.write_all(&json).context("deflate roll-up parts")?;
    z.finish().context("deflate roll-up parts")
}

/// [`deflate_parts`] back; errors name `at`.
pub fn inflate_parts(z: &[u8], at: &str) -> anyhow::Result<Vec<Part>> {
    use std::io::Read;
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(z)
        .take(MAX_PARTS_BYTES + 1)
        .read_to_end(&mut json)
        .with_context(|| format!("{at}: inflate"))?;
    anyhow::ensure!(
        json.len() as u64 <= MAX_PARTS_BYTES,
        "{at}: inflates to more than {MAX_PARTS_BYTES} bytes"
    );
    serde_json::from_slice(&json).with_context(|| format!("{at}: decode"))
}

/// One stored item of a roll-up partition (`{tenant}#{hour|day}#{dimension}`):
/// a chunk of an account's **packed** groups of a period (usually the only
/// one; `rows` may be empty: the account had rows of that period and has
/// none now), or one row written before packing (`packed` false, one row).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRollup {
    pub pk: String,
    pub sk: String,
    /// Hour or day key.
    pub period: String,
    pub account: AccountId,
    pub packed: bool,
    /// Which chunk of how many (0 of 1 for rows of before).
    pub chunk: usize,
    pub chunks: usize,
    /// The groups, sorted by group. Rows of a packed item carry the item's
    /// `pk`, the sort key a row of before would have
    /// (`{period}#{group}#{account}`) and the item's `expires_at`.
    pub rows: Vec<RollupRow>,
}

/// The packed items of one account's groups of one period in one
/// dimension: `rows` all of partition `pk`, period `period` and account
/// `account` (possibly none: one empty item then, which replaces rows of
/// before and says the account has no cost there), cut by
/// [`chunk_parts`]. Attributes: `pk`, `sk` ([`chunk_sk`]), `tenant`,
/// `account`, `dimension`, `period`, `chunk` and `chunks` (index, count),
/// `z` (the chunk's groups as deflated JSON [`Part`]s), `expires_at`.
pub fn packed_items<'a>(
    tenant: &TenantId,
    account: &AccountId,
    pk: &str,
    dimension: &str,
    period: &str,
    rows: impl IntoIterator<Item = &'a RollupRow>,
    expires_at: i64,
) -> anyhow::Result<Vec<HashMap<String, AttributeValue>>> {
    let chunks = chunk_parts(rows);
    let n = chunks.len();
    let s = |v: &str| AttributeValue::S(v.to_owned());
    chunks
        .iter()
        .enumerate()
        .map(|(i, parts)| {
            let z = deflate_parts(parts)?;
            Ok(HashMap::from([
                ("pk".to_owned(), s(pk)),
                ("sk".to_owned(), s(&chunk_sk(period, account, i))),
                ("tenant".to_owned(), s(tenant.as_str())),
                ("account".to_owned(), s(account.as_str())),
                ("dimension".to_owned(), s(dimension)),
                ("period".to_owned(), s(period)),
                ("chunk".to_owned(), AttributeValue::N(i.to_string())),
                ("chunks".to_owned(), AttributeValue::N(n.to_string())),
                (
                    "z".to_owned(),
                    AttributeValue::B(aws_smithy_types::Blob::new(z)),
                ),
                (
                    "expires_at".to_owned(),
                    AttributeValue::N(expires_at.to_string()),
                ),
            ]))
        })
        .collect()
}

/// A roll-up partition's item back: packed (has `z`) or a row of before.
/// Errors name the item.
pub fn read_stored(item: HashMap<String, AttributeValue>) -> anyhow::Result<StoredRollup> {
    let str_of = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let pk = str_of("pk").context("roll-up item without pk")?;
    let sk = str_of("sk").with_context(|| format!("roll-up item of {pk} without sk"))?;
    let at = format!("roll-up item {pk} {sk}");
    let Some(z) = item.get("z") else {
        let row: RollupRow =
            serde_dynamo::from_item(item).with_context(|| format!("{at}: decode"))?;
        return Ok(StoredRollup {
            pk,
            sk,
            period: row.period.clone(),
            account: row.account.clone(),
            packed: false,
            chunk: 0,
            chunks: 1,
            rows: vec![row],
        });
    };
    let z = z
        .as_b()
        .map_err(|_| anyhow::anyhow!("{at}: `z` is not binary"))?;
    let field = |k: &str| str_of(k).with_context(|| format!("{at}: no `{k}`"));
    let number = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .with_context(|| format!("{at}: no `{k}`"))
    };
    let tenant = TenantId::new(field("tenant")?).with_context(|| format!("{at}: tenant"))?;
    let account = AccountId::new(field("account")?).with_context(|| format!("{at}: account"))?;
    let dimension = field("dimension")?;
    let period = field("period")?;
    let expires_at = number("expires_at")?;
    // Items packed before chunks existed have neither: one chunk of one.
    let chunk = match item.get("chunk") {
        None => 0,
        Some(_) => usize::try_from(number("chunk")?).with_context(|| format!("{at}: chunk"))?,
    };
    let chunks = match item.get("chunks") {
        None => 1,
        Some(_) => usize::try_from(number("chunks")?).with_context(|| format!("{at}: chunks"))?,
    };
    let rows = inflate_parts(z.as_ref(), &at)?
        .into_iter()
        .map(|p| RollupRow {
            pk: pk.clone(),
            sk: format!("{period}#{}#{account}", p.g),
            tenant: tenant.clone(),
            account: account.clone(),
            dimension: dimension.clone(),
            period: period.clone(),
            group: p.g,
            cost_usd: p.c,
            reserved_usd: p.r,
            price_missing: p.m,
            price_partial: p.p,
            resources: p.n,
            expires_at,
        })
        .collect();
    Ok(StoredRollup {
        pk,
        sk,
        period,
        account,
        packed: true,
        chunk,
        chunks,
        rows,
    })
}

/// The rows `items` stand for. An account's period is packed when its
/// first chunk is there (in the same partition): then its rows of before
/// are left out (they are what it replaced; they expire with their TTL),
/// and so are chunks past the count the first chunk gives (left by a
/// longer result). Chunks without a first chunk (put before it on a first
/// write, or outliving it under TTL) are left out, and the rows of before
/// stand.
pub fn resolve(items: Vec<StoredRollup>) -> Vec<RollupRow> {
    let key = |i: &StoredRollup| (i.pk.clone(), i.period.clone(), i.account.clone());
    let packed: HashMap<(String, String, AccountId), usize> = items
        .iter()
        .filter(|i| i.packed && i.chunk == 0)
        .map(|i| (key(i), i.chunks))
        .collect();
    items
        .into_iter()
        .filter(|i| match packed.get(&key(i)) {
            None => !i.packed,
            Some(n) => i.packed && i.chunk < *n,
        })
        .flat_map(|i| i.rows)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};

    use super::*;

    fn line(region: &str, family: &str, team: Option<&str>, cost: Option<f64>) -> CostLine {
        let mut tags = BTreeMap::new();
        if let Some(t) = team {
            tags.insert("team".to_owned(), t.to_owned());
        }
        CostLine {
            resource_id: Arc::from("i-1"),
            kind: "instance",
            region: Arc::from(region),
            hour: Utc.with_ymd_and_hms(2025, 6, 2, 10, 0, 0).unwrap(),
            usage: 1.0,
            unit: "Hrs",
            cost_usd: cost,
            reserved_usd: cost.map(|c| c * 0.6),
            missing: cost.is_none().then(|| "no price".to_owned()),
            missing_part: None,
            family: Arc::from(family),
            detail: Arc::from("m5.large"),
            lifecycle: Arc::from("on-demand"),
            tags: Arc::new(tags),
            note: None,
        }
    }

    fn region_row(account: &AccountId, period: &str, region: &str, cost: f64) -> RollupRow {
        RollupRow {
            pk: "acme#hour#region".into(),
            sk: format!("{period}#{region}#{account}"),
            tenant: TenantId::new("acme").unwrap(),
            account: account.clone(),
            dimension: "region".into(),
            period: period.into(),
            group: region.into(),
            cost_usd: cost,
            reserved_usd: cost / 2.0,
            price_missing: 1,
            price_partial: 2,
            resources: 3,
            expires_at: 1_700_000_000,
        }
    }

    fn stored_row(r: &RollupRow) -> StoredRollup {
        read_stored(serde_dynamo::to_item(r).unwrap()).unwrap()
    }

    #[test]
    fn a_packed_item_round_trips_to_the_rows_it_was_made_of() {
        let t = TenantId::new("acme").unwrap();
        let a = AccountId::new("111122223333").unwrap();
        let rows = [
            region_row(&a, "2025-06-02T10", "us-east-1", 0.25),
            region_row(&a, "2025-06-02T10", "eu-west-1", 0.5),
        ];
        let mut items = packed_items(
            &t,
            &a,
            "acme#hour#region",
            "region",
            "2025-06-02T10",
            &rows,
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(items.len(), 1);
        let item = items.remove(0);
        assert_eq!(item["sk"].as_s().unwrap(), "2025-06-02T10#111122223333");
        let back = read_stored(item).unwrap();
        assert!(back.packed);
        assert_eq!((back.period.as_str(), &back.account), ("2025-06-02T10", &a));
        // Sorted by group, each row as it was (its key the one a row of
        // before would have).
        assert_eq!(back.rows, vec![rows[1].clone(), rows[0].clone()]);
        // A row of before reads as itself, not packed.
        let old = stored_row(&rows[0]);
        assert!(!old.packed);
        assert_eq!(old.rows, vec![rows[0].clone()]);
    }

    #[test]
    fn a_packed_item_hides_its_accounts_rows_of_before_and_no_other() {
        let t = TenantId::new("acme").unwrap();
        let a = AccountId::new("111122223333").unwrap();
        let b = AccountId::new("444455556666").unwrap();
        let packed = |account: &AccountId, period: &str, rows: &[RollupRow]| {
            let mut items = packed_items(
                &t,
                account,
                "acme#hour#region",
                "region",
                period,
                rows,
                1_700_000_000,
            )
            .unwrap();
            read_stored(items.remove(0)).unwrap()
        };
        let items = vec![
            // a, 10:00: rows of before only.
            stored_row(&region_row(&a, "2025-06-02T10", "eu-west-1", 1.0)),
            // a, 11:00: a row of before and the packed item that replaced it.
            stored_row(&region_row(&a, "2025-06-02T11", "eu-west-1", 8.0)),
            packed(
                &a,
                "2025-06-02T11",
                &[region_row(&a, "2025-06-02T11", "eu-west-1", 0.5)],
            ),
            // b, 11:00: a row of before and an empty packed item.
            stored_row(&region_row(&b, "2025-06-02T11", "us-east-1", 16.0)),
            packed(&b, "2025-06-02T11", &[]),
            // b, 10:00: a row of before only.
            stored_row(&region_row(&b, "2025-06-02T10", "us-east-1", 2.0)),
        ];
        let costs: Vec<(String, String, f64)> = resolve(items)
            .into_iter()
            .map(|r| (r.period, r.account.to_string(), r.cost_usd))
            .collect();
        assert_eq!(
            costs,
            vec![
                ("2025-06-02T10".into(), a.to_string(), 1.0),
                ("2025-06-02T11".into(), a.to_string(), 0.5),
                ("2025-06-02T10".into(), b.to_string(), 2.0),
            ]
        );
    }

    #[test]
    fn many_groups_are_cut_into_chunks_and_read_back_whole() {
        let t = TenantId::new("acme").unwrap();
        let a = AccountId::new("111122223333").unwrap();
        let period = "2025-06-02";
        // 6,000 tag values in one account-day: more than one chunk holds.
        let rows: Vec<RollupRow> = (0..6000)
            .map(|i| RollupRow {
                dimension: "tag:Name".into(),
                ..region_row(
                    &a,
                    period,
                    &format!("web-{i:05}-{:x}", i * 7919),
                    0.1 * f64::from(i),
                )
            })
            .collect();
        let items =
            packed_items(&t, &a, "acme#day#tag:Name", "tag:Name", period, &rows, 1).unwrap();
        assert!(items.len() >= 2, "{} chunks", items.len());
        for (i, item) in items.iter().enumerate() {
            let z = item["z"].as_b().unwrap().as_ref().len();
            assert!(z < 300 * 1024, "chunk {i}: {z} bytes");
        }
        assert_eq!(items[0]["sk"].as_s().unwrap(), "2025-06-02#111122223333");
        assert_eq!(
            items[1]["sk"].as_s().unwrap(),
            "2025-06-02#111122223333#0001"
        );
        let stored: Vec<StoredRollup> =
            items.into_iter().map(|i| read_stored(i).unwrap()).collect();
        let mut back = resolve(stored.clone());
        back.sort_by(|x, y| x.group.cmp(&y.group));
        let mut want = rows.clone();
        want.sort_by(|x, y| x.group.cmp(&y.group));
        assert_eq!(back.len(), 6000);
        assert!(
            back.iter()
                .zip(&want)
                .all(|(b, w)| b.group == w.group && b.cost_usd == w.cost_usd)
        );
        // A shorter result's first chunk says how many count: a chunk of
        // the longer result before, not yet deleted, is left out.
        let short = packed_items(
            &t,
            &a,
            "acme#day#tag:Name",
            "tag:Name",
            period,
            &rows[..10],
            1,
        )
        .unwrap()
        .into_iter()
        .map(|i| read_stored(i).unwrap());
        let mixed: Vec<StoredRollup> = short.chain(stored.iter().skip(1).cloned()).collect();
        assert_eq!(resolve(mixed).len(), 10);
        // Chunks without their first (put first on a first write, or
        // outliving it): left out, and a row of before of the key stands.
        let old = stored_row(&RollupRow {
            pk: "acme#day#tag:Name".into(),
            dimension: "tag:Name".into(),
            ..region_row(&a, period, "web-old", 7.0)
        });
        let orphans: Vec<StoredRollup> = stored
            .into_iter()
            .skip(1)
            .chain(std::iter::once(old))
            .collect();
        let left = resolve(orphans);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].group, "web-old");
    }

    #[test]
    fn stored_figures_read_back_to_the_same_bits() {
        // An unchanged recompute writes nothing only if what it reads back
        // equals what it computes to the bit: serde_json parses floats
        // exactly only with its `float_roundtrip` feature (the workspace
        // turns it on).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let parts: Vec<Part> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let c = (x >> 11) as f64 / (1u64 << 53) as f64 * 1000.0;
                Part {
                    d: "account".into(),
                    g: "g".into(),
                    c: c + 0.1,
                    r: c * 0.6,
                    m: 0,
                    p: 0,
                    n: 1,
                }
            })
            .collect();
        let back = inflate_parts(&deflate_parts(&parts).unwrap(), "test").unwrap();
        let off = parts
            .iter()
            .zip(&back)
            .filter(|(a, b)| a.c.to_bits() != b.c.to_bits() || a.r.to_bits() != b.r.to_bits())
            .count();
        assert_eq!(off, 0, "{off} of {} figures changed", parts.len());
    }

    #[test]
    fn a_damaged_packed_item_names_itself() {
        let t = TenantId::new("acme").unwrap();
        let a = AccountId::new("111122223333").unwrap();
        let mut item = packed_items(&t, &a, "acme#day#family", "family", "2025-06-02", [], 1)
            .unwrap()
            .remove(0);
        item.insert(
            "z".into(),
            AttributeValue::B(aws_smithy_types::Blob::new(b"not deflate".to_vec())),
        );
        let err = format!("{:#}", read_stored(item).unwrap_err());
        assert!(
            err.contains("acme#day#family") && err.contains("2025-06-02#111122223333"),
            "{err}"
        );
    }

    #[test]
    fn parts_group_every_dimension_and_mark_missing_prices() {
        let a = AccountId::new("111122223333").unwrap();
        let lines = [
            line("us-east-1", "m5", Some("web"), Some(0.096)),
            line("us-east-1", "m5", None, Some(0.096)),
            line("eu-west-1", "c5", Some("web"), None),
        ];
        let parts = hour_parts(lines.iter().map(Fact::from), &a, &["team".into()]);
        let find = |d: &str, g: &str| parts.iter().find(|p| p.d == d && p.g == g).unwrap();
        let acct = find("account", "111122223333");
        assert_eq!((acct.n, acct.m), (3, 1));
        assert!((acct.c - 0.192).abs() < 1e-12);
        assert!((acct.r - 0.192 * 0.6).abs() < 1e-12);
        assert_eq!(find("region", "eu-west-1").m, 1);
        assert_eq!(find("tag:team", "(untagged)").n, 1);
        assert_eq!(find("tag:team", "web").n, 2);
        // account 1 + regions 2 + families 2 + team 2
        assert_eq!(parts.len(), 7);
    }

    #[test]
    fn day_rows_sum_hours_and_keep_the_largest_estate() {
        let t = TenantId::new("acme").unwrap();
        let a = AccountId::new("111122223333").unwrap();
        let part = |c: f64, n: u64| Part {
            d: "account".into(),
            g: a.to_string(),
            c,
            r: c,
            m: 0,
            p: 0,
            n,
        };
        let entries = BTreeMap::from([
            (
                "2025-06-02T10".to_owned(),
                Entry {
                    parts: vec![part(0.5, 2)],
                    expires_at: 10,
                },
            ),
            (
                "2025-06-02T11".to_owned(),
                Entry {
                    parts: vec![part(0.25, 3)],
                    expires_at: 11,
                },
            ),
            (
                "2025-06-02T12".to_owned(),
                Entry {
                    parts: vec![],
                    expires_at: 12,
                },
            ),
        ]);
        let rows = day_rows(&t, &a, "2025-06-02", &entries);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.pk, "acme#day#account");
        assert_eq!(r.sk, "2025-06-02#111122223333#111122223333");
        assert_eq!((r.cost_usd, r.resources, r.expires_at), (0.75, 3, 11));
    }

    #[test]
    fn an_entry_round_trips_and_a_corrupt_one_names_itself() {
        let t = TenantId::new("acme").unwrap();
        let a = AccountId::new("111122223333").unwrap();
        let e = Entry {
            parts: vec![Part {
                d: "tag:team".into(),
                g: "web".into(),
                c: 0.1 + 0.2,
                r: 0.1,
                m: 1,
                p: 2,
                n: 3,
            }],
            expires_at: 1_700_000_000,
        };
        let mut item = entry_item(&t, &a, "2025-06-02", "2025-06-02T10", &e).unwrap();
        assert_eq!(
            item["pk"].as_s().unwrap(),
            "acme#111122223333#rollups#2025-06-02"
        );
        let (hk, back) = read_entry(&item).unwrap();
        assert_eq!((hk.as_str(), &back), ("2025-06-02T10", &e));
        item.insert(
            "z".into(),
            AttributeValue::B(aws_smithy_types::Blob::new(b"not deflate".to_vec())),
        );
        let err = format!("{:#}", read_entry(&item).unwrap_err());
        assert!(
            err.contains("acme#111122223333#rollups#2025-06-02") && err.contains("2025-06-02T10"),
            "{err}"
        );
    }
}

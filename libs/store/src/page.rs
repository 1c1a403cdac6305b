//! Keyset paging over DynamoDB queries: what the api's lists (and their
//! CSV/NDJSON exports) use instead of offsets or scans.
//!
//! A page is one `Query` with `Limit` and `ExclusiveStartKey`; where a page
//! resumes is DynamoDB's `LastEvaluatedKey`, carried as JSON (`PageKey`).
//! The api seals a `PageKey` in an HMAC cursor bound to the tenant, so a
//! client cannot forge one; [`start_key`] still checks that a key names
//! exactly the table's key attributes, as strings, so even a key that got
//! through could only position a query inside the partition the store
//! already chose (the partition key of the query is never taken from it).
//!
//! Source: DynamoDB paginating query results,
//! <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Query.Pagination.html>
//! — a page may hold fewer than `Limit` items when a filter expression
//! drops some, and a non-empty `LastEvaluatedKey` means "there may be more".

use std::collections::HashMap;

use anyhow::{Context, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

/// Where the next page of a list starts: the store's own position (for
/// DynamoDB queries a `LastEvaluatedKey` as a JSON object of string
/// attributes, possibly with extra store-defined fields such as the day
/// partition a multi-partition walk has reached).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageKey(pub serde_json::Value);

/// One page of a list: at most the requested number of items, and where
/// the next page starts (`None` on the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PageKey>,
}

impl<T> Page<T> {
    /// The last page of nothing.
    pub fn empty() -> Self {
        Self {
            items: Vec::new(),
            next: None,
        }
    }

    /// The same page with each item mapped.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

/// A page request: at most `limit` items (1–1000) after `after`.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub after: Option<PageKey>,
    pub limit: u32,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }
}

/// DynamoDB's `LastEvaluatedKey` as a [`PageKey`]. Only string attributes
/// occur in Kopter's keys; any other type is an error (a schema change this
/// code does not know).
pub fn page_key(last: &HashMap<String, AttributeValue>) -> anyhow::Result<PageKey> {
    let mut map = serde_json::Map::new();
    for (name, value) in last {
        let AttributeValue::S(s) = value else {
            bail!("LastEvaluatedKey attribute {name} is not a string: {value:?}");
        };
        map.insert(name.clone(), serde_json::Value::String(s.clone()));
    }
    Ok(PageKey(serde_json::Value::Object(map)))
}

/// The `ExclusiveStartKey` of `key`: exactly the attributes `attrs` (the
/// table's or index's key attributes, in any order), each a string. The
/// partition key value must equal `partition` (`(name, value)`), so a key
/// can only move a query within the partition the caller chose.
///
/// Errors name what is wrong: a missing, extra or non-string attribute, or
/// a partition other than the query's.
pub fn start_key(
    key: &PageKey,
    attrs: &[&str],
    partition: (&str, &str),
) -> anyhow::Result<HashMap<String, AttributeValue>> {
    let obj = key.0.as_object().context("page key is not a JSON object")?;
    let mut out = HashMap::with_capacity(attrs.len());
    for name in attrs {
        let v = obj
            .get(*name)
            .and_then(|v| v.as_str())
            .with_context(|| format!("page key lacks string attribute {name}"))?;
        out.insert((*name).to_owned(), AttributeValue::S(v.to_owned()));
    }
    if let Some(extra) = obj.keys().find(|k| !attrs.contains(&k.as_str())) {
        bail!("page key has unexpected attribute {extra}");
    }
    let (pname, pvalue) = partition;
    match out.get(pname) {
        Some(AttributeValue::S(v)) if v == pvalue => Ok(out),
        _ => bail!("page key belongs to another partition than {pname} = {pvalue}"),
    }
}

/// A `Query` response's items decoded as `T` (errors name `what`), with
/// its `LastEvaluatedKey` as the next page's key.
pub fn page_of<T: serde::de::DeserializeOwned>(
    items: Option<Vec<HashMap<String, AttributeValue>>>,
    last: Option<HashMap<String, AttributeValue>>,
    what: &str,
) -> anyhow::Result<Page<T>> {
    let items = items
        .unwrap_or_default()
        .into_iter()
        .map(|i| serde_dynamo::from_item(i).with_context(|| format!("decode {what}")))
        .collect::<anyhow::Result<Vec<T>>>()?;
    let next = match last {
        Some(k) if !k.is_empty() => Some(page_key(&k)?),
        _ => None,
    };
    Ok(Page { items, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pairs: &[(&str, &str)]) -> HashMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), AttributeValue::S((*v).to_owned())))
            .collect()
    }

    #[test]
    fn a_last_evaluated_key_round_trips() {
        let last = key(&[("pk", "acme#2026-11-29"), ("sk", "2026-11-29T10:00:00Z#e1")]);
        let pk = page_key(&last).unwrap();
        let back = start_key(&pk, &["pk", "sk"], ("pk", "acme#2026-11-29")).unwrap();
        assert_eq!(back, last);
    }

    #[test]
    fn keys_of_another_partition_or_shape_are_refused() {
        let pk = page_key(&key(&[("pk", "globex#2026-11-29"), ("sk", "x")])).unwrap();
        let err = start_key(&pk, &["pk", "sk"], ("pk", "acme#2026-11-29")).unwrap_err();
        assert!(err.to_string().contains("another partition"), "{err}");

        let extra = PageKey(serde_json::json!({"pk": "acme", "sk": "x", "gsi": "y"}));
        let err = start_key(&extra, &["pk", "sk"], ("pk", "acme")).unwrap_err();
        assert!(
            err.to_string().contains("unexpected attribute gsi"),
            "{err}"
        );

        let missing = PageKey(serde_json::json!({"pk": "acme"}));
        let err = start_key(&missing, &["pk", "sk"], ("pk", "acme")).unwrap_err();
        assert!(
            err.to_string().contains("lacks string attribute sk"),
            "{err}"
        );

        let number = PageKey(serde_json::json!({"pk": "acme", "sk": 3}));
        assert!(start_key(&number, &["pk", "sk"], ("pk", "acme")).is_err());

        let mut last = key(&[("pk", "acme")]);
        last.insert("n".into(), AttributeValue::N("1".into()));
        assert!(page_key(&last).is_err());
    }
}

//! List endpoints: the query extractor (strict, canonical) and the
//! response in JSON (one page with `next_cursor`), CSV or NDJSON (every
//! page from the cursor on, streamed: pages are pulled from the store as
//! the client reads, so an export's memory is one page).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::BoxFuture;
use kopter_schema::TenantId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::cursor::{CursorCodec, Scope};
use crate::data::{DataError, Page, PageKey, PageRequest, TenantData};
use crate::error::ApiError;

/// Default and largest page size.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// Response formats of every list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `application/json`: one page, `{"items": [...], "next_cursor": ...}`.
    Json,
    /// `text/csv`: every row from the cursor on, header first.
    Csv,
    /// `application/x-ndjson`: every row from the cursor on, one JSON
    /// object a line.
    Ndjson,
}

/// Paging and format parameters of every list (documented once).
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read by `ListQuery`, declared here for the OpenAPI document
pub struct PageParams {
    /// Page size, 1–1000 (default 100). For CSV/NDJSON, the size of the
    /// store pages the export pulls.
    limit: Option<u32>,
    /// `next_cursor` of the previous page, unchanged, with the same
    /// filters.
    cursor: Option<String>,
    /// `json` (default), `csv` or `ndjson`; overrides `Accept`
    /// (`text/csv`, `application/x-ndjson`).
    format: Option<Format>,
}

/// A page of a list in JSON.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ListResponse<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The parsed query of a list endpoint: its filters `F` (unknown
/// parameters refused), paging, format (from `format` or `Accept`), and
/// the filters' canonical encoding that cursors are bound to.
#[derive(Debug)]
pub struct ListQuery<F> {
    pub filter: F,
    pub limit: u32,
    pub cursor: Option<String>,
    pub format: Format,
    pub canonical: String,
}

impl<S: Send + Sync, F: DeserializeOwned> FromRequestParts<S> for ListQuery<F> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or("");
        let mut filters = BTreeMap::new();
        let (mut limit, mut cursor, mut format) = (None, None, None);
        for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
            let slot = match name.as_ref() {
                "limit" => &mut limit,
                "cursor" => &mut cursor,
                "format" => &mut format,
                _ => {
                    if filters
                        .insert(name.to_string(), value.to_string())
                        .is_some()
                    {
                        return Err(ApiError::bad_parameter(name, "is given more than once"));
                    }
                    continue;
                }
            };
            if slot.replace(value.to_string()).is_some() {
                return Err(ApiError::bad_parameter(name, "is given more than once"));
            }
        }
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    ApiError::bad_parameter(
                        "limit",
                        format!("{l:?} is not a whole number from 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        let format = match format.as_deref() {
            Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some("ndjson") => Format::Ndjson,
            Some(other) => {
                return Err(ApiError::bad_parameter(
                    "format",
                    format!("{other:?} is not one of json, csv, ndjson"),
                ));
            }
            None => negotiate(&parts.headers),
        };
        let canonical = {
            let mut s = form_urlencoded::Serializer::new(String::new());
            s.extend_pairs(&filters);
            s.finish()
        };
        let filter = decode_filters(&canonical)?;
        Ok(Self {
            filter,
            limit,
            cursor,
            format,
            canonical,
        })
    }
}

/// Deserialises the filters, naming the parameter in every error.
pub fn decode_filters<F: DeserializeOwned>(canonical: &str) -> Result<F, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(canonical.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let message = e.inner().to_string();
        if let Some(name) = quoted_after(&message, "unknown field `") {
            return ApiError::UnknownParameter(name);
        }
        if let Some(name) = quoted_after(&message, "missing field `") {
            return ApiError::bad_parameter(name, "is required");
        }
        ApiError::bad_parameter(e.path().to_string(), message)
    })
}

fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest.split('`').next()?.to_owned())
}

fn negotiate(headers: &HeaderMap) -> Format {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The first listed type we serve wins (q-values are not weighed: the
    // three formats are alternatives a client asks for by name).
    for part in accept.split(',') {
        let media = part.split(';').next().unwrap_or("").trim();
        match media {
            "application/json" | "application/problem+json" => return Format::Json,
            "text/csv" => return Format::Csv,
            "application/x-ndjson" | "application/ndjson" => return Format::Ndjson,
            _ => {}
        }
    }
    Format::Json
}

/// Fetches one page of a list for the tenant.
pub type Fetch<T> =
    Arc<dyn Fn(PageRequest) -> BoxFuture<'static, Result<Page<T>, ApiError>> + Send + Sync>;

/// How a list route reads one page: from the data source, for the tenant,
/// with the route's checked arguments (filter, series, selection…).
pub type ReadPage<T, A> = for<'a> fn(
    &'a dyn TenantData,
    &'a TenantId,
    &'a A,
    PageRequest,
) -> BoxFuture<'a, Result<Page<T>, DataError>>;

/// The [`Fetch`] of a list route: every page is read with `read` for
/// `tenant` (the verified token's — never one from the request) and the
/// same `args`.
pub fn fetch_pages<T, A>(
    data: Arc<dyn TenantData>,
    tenant: TenantId,
    args: A,
    read: ReadPage<T, A>,
) -> Fetch<T>
where
    T: Send + 'static,
    A: Send + Sync + 'static,
{
    let shared = Arc::new((data, tenant, args));
    Arc::new(move |page| {
        let shared = shared.clone();
        async move {
            let (data, tenant, args) = &*shared;
            Ok(read(data.as_ref(), tenant, args, page).await?)
        }
        .boxed()
    })
}

/// The response of a list endpoint: `query` decides the format; `fetch`
/// pulls pages. Errors before the first byte (bad cursor, store failure on
/// the first page) are problem responses; a store failure later in an
/// export ends the stream early (the client sees a truncated body).
pub async fn respond<F, T>(
    codec: Arc<CursorCodec>,
    tenant: TenantId,
    endpoint: &'static str,
    query: ListQuery<F>,
    fetch: Fetch<T>,
) -> Result<Response, ApiError>
where
    T: Serialize + Send + 'static,
{
    let scope = Scope {
        tenant: &tenant,
        endpoint,
        query: &query.canonical,
    };
    let after = match &query.cursor {
        Some(c) => Some(codec.open(scope, c)?),
        None => None,
    };
    let limit = query.limit;
    let first = fetch(PageRequest { after, limit }).await?;
    match query.format {
        Format::Json => {
            let next_cursor = first.next.as_ref().map(|k| codec.seal(scope, k));
            let body = serde_json::to_vec(&ListResponse {
                items: first.items,
                next_cursor,
            })
            .map_err(|e| ApiError::Internal(e.into()))?;
            Ok(with_type(body.into(), "application/json"))
        }
        format => {
            let stream = export(first, fetch, limit, format);
            let content_type = if format == Format::Csv {
                "text/csv; charset=utf-8"
            } else {
                "application/x-ndjson"
            };
            Ok(with_type(Body::from_stream(stream), content_type))
        }
    }
}

fn with_type(body: Body, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Authorization"),
    );
    r
}

/// Every page from `first` on, encoded page by page; the next page is
/// fetched only when the client has taken the previous one.
fn export<T: Serialize + Send + 'static>(
    first: Page<T>,
    fetch: Fetch<T>,
    limit: u32,
    format: Format,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    enum Next<T> {
        Page(Page<T>),
        After(PageKey),
        Done,
    }
    futures::stream::unfold((Next::Page(first), false), move |(next, header_done)| {
        let fetch = fetch.clone();
        async move {
            let page = match next {
                Next::Done => return None,
                Next::Page(p) => p,
                Next::After(after) => match fetch(PageRequest {
                    after: Some(after),
                    limit,
                })
                .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        // The head is sent; failing the body is the only
                        // way left to tell the client the export is cut.
                        tracing::warn!(error = %e, "export stopped: a page failed");
                        return Some((
                            Err(std::io::Error::other(format!("export stopped: {e}"))),
                            (Next::Done, header_done),
                        ));
                    }
                },
            };
            let bytes = match encode(&page.items, format, !header_done) {
                Ok(b) => b,
                Err(e) => return Some((Err(e), (Next::Done, header_done))),
            };
            let header_done = header_done || !page.items.is_empty();
            let following = page.next.map_or(Next::Done, Next::After);
            Some((Ok(bytes), (following, header_done)))
        }
    })
}

fn encode<T: Serialize>(
    items: &[T],
    format: Format,
    header: bool,
) -> Result<Bytes, std::io::Error> {
    let mut out = Vec::with_capacity(items.len() * 128);
    match format {
        Format::Csv => {
            let mut w = csv::WriterBuilder::new().from_writer(&mut out);
            let mut columns: Option<Vec<String>> = None;
            for item in items {
                let (keys, cells) = csv_row(item)?;
                match &columns {
                    None => {
                        if header {
                            w.write_record(&keys)?;
                        }
                        columns = Some(keys);
                    }
                    Some(c) if *c != keys => {
                        return Err(std::io::Error::other(format!(
                            "CSV row with columns {keys:?} after rows with {c:?}"
                        )));
                    }
                    Some(_) => {}
                }
                w.write_record(&cells)?;
            }
            w.flush()?;
        }
        _ => {
            for item in items {
                serde_json::to_writer(&mut out, item)?;
                out.push(b'\n');
            }
        }
    }
    Ok(Bytes::from(out))
}

/// One list item as a CSV row: its JSON object's fields in name order
/// (every row of a list has the same fields: list item types serialize
/// absent values as `null`, never skip them); strings as they are, `null`
/// empty, numbers and booleans in their JSON form, arrays and objects
/// (tags, regions) as JSON text in their one cell.
/// One list item as a CSV row: its JSON object's keys (the header) and
/// cells (`null` empty, strings as is, anything else as JSON text). Errors
/// when the item is not a JSON object.
pub fn csv_row<T: Serialize>(item: &T) -> Result<(Vec<String>, Vec<String>), std::io::Error> {
    let serde_json::Value::Object(map) = serde_json::to_value(item)? else {
        return Err(std::io::Error::other("a list item is not a JSON object"));
    };
    let mut keys = Vec::with_capacity(map.len());
    let mut cells = Vec::with_capacity(map.len());
    for (k, v) in map {
        keys.push(k);
        cells.push(match v {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
    }
    Ok((keys, cells))
}

//! `GET /docs`: the OpenAPI document rendered as one HTML page on the
//! server — no JavaScript, no CDN, nothing fetched by the browser — so it
//! works offline and under a strict Content-Security-Policy. It walks the
//! same document `/openapi.json` serves (operations, parameters,
//! responses, schemas), so the two cannot disagree.
//!
//! utoipa's ready-made viewers were not used: utoipa-redoc, -rapidoc and
//! -scalar load their JavaScript from a CDN at view time, and
//! utoipa-swagger-ui downloads its assets from GitHub at build time.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// The page for an OpenAPI document (as JSON).
pub fn render(spec: &Value) -> String {
    let title = spec["info"]["title"].as_str().unwrap_or("API");
    let version = spec["info"]["version"].as_str().unwrap_or("");
    let empty = serde_json::Map::new();
    let paths = spec["paths"].as_object().unwrap_or(&empty);
    let schemas = spec["components"]["schemas"].as_object().unwrap_or(&empty);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " " (version) }
                style { (STYLE) }
            }
            body {
                header {
                    h1 { (title) " " small { (version) } }
                    @if let Some(d) = spec["info"]["description"].as_str() { p { (d) } }
                    p { "OpenAPI " (spec["openapi"].as_str().unwrap_or("")) " document: " a href="/openapi.json" { "/openapi.json" } }
                    p { "Every /v1 endpoint takes " code { "Authorization: Bearer <token>" } ". Lists take "
                        code { "limit" } ", " code { "cursor" } " and " code { "format" } " (json, csv, ndjson)." }
                }
                nav {
                    h2 { "Endpoints" }
                    ul {
                        @for (path, item) in paths {
                            @for m in METHODS {
                                @if let Some(op) = item.get(m) {
                                    li { a href={ "#" (anchor(m, path)) } { code { (m.to_uppercase()) " " (path) } }
                                         @if let Some(s) = op["summary"].as_str() { " — " (s) } }
                                }
                            }
                        }
                    }
                }
                main {
                    @for (path, item) in paths {
                        @for m in METHODS {
                            @if let Some(op) = item.get(m) { (operation(m, path, op)) }
                        }
                    }
                    h2 { "Schemas" }
                    @for (name, schema) in schemas {
                        section id={ "schema-" (name) } {
                            h3 { (name) }
                            @if let Some(d) = schema["description"].as_str() { p { (d) } }
                            pre { (serde_json::to_string_pretty(schema).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    };
    page.into_string()
}

fn operation(method: &str, path: &str, op: &Value) -> Markup {
    html! {
        section id=(anchor(method, path)) {
            h2 { code { (method.to_uppercase()) " " (path) } }
            @if let Some(s) = op["summary"].as_str() { p { strong { (s) } } }
            @if let Some(d) = op["description"].as_str() { p { (d) } }
            @if let Some(params) = op["parameters"].as_array() {
                table {
                    thead { tr { th { "parameter" } th { "in" } th { "required" } th { "type" } th { "description" } } }
                    tbody {
                        @for p in params {
                            tr {
                                td { code { (p["name"].as_str().unwrap_or("")) } }
                                td { (p["in"].as_str().unwrap_or("")) }
                                td { @if p["required"].as_bool() == Some(true) { "yes" } @else { "no" } }
                                td { code { (type_of(&p["schema"])) } }
                                td { (p["description"].as_str().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            @if let Some(body) = op["requestBody"]["content"].as_object() {
                p { "Request body: " @for (media, c) in body { code { (media) } " " (schema_link(&c["schema"])) " " } }
            }
            @if let Some(responses) = op["responses"].as_object() {
                table {
                    thead { tr { th { "status" } th { "description" } th { "content" } } }
                    tbody {
                        @for (status, r) in responses {
                            tr {
                                td { (status) }
                                td { (r["description"].as_str().unwrap_or("")) }
                                td {
                                    @if let Some(content) = r["content"].as_object() {
                                        @for (media, c) in content { code { (media) } " " (schema_link(&c["schema"])) br; }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn anchor(method: &str, path: &str) -> String {
    let slug: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{method}{slug}")
}

/// `type` or the referenced schema's name, short.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        return r.rsplit('/').next().unwrap_or(r).to_owned();
    }
    match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
        _ => schema
            .get("oneOf")
            .or_else(|| schema.get("allOf"))
            .and_then(|v| v.as_array())
            .map(|alts| alts.iter().map(type_of).collect::<Vec<_>>().join(" | "))
            .unwrap_or_else(|| "object".into()),
    }
}

fn schema_link(schema: &Value) -> Markup {
    let name = type_of(schema);
    let linked = schema["$ref"].as_str().is_some() || schema["items"]["$ref"].as_str().is_some();
    html! {
        @if linked { a href={ "#schema-" (name) } { (name) } } @else { code { (name) } }
    }
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;color:#111}\
code,pre{font-family:ui-monospace,monospace}pre{background:#f4f4f4;padding:.5rem;overflow:auto}\
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}\
section{border-top:1px solid #ddd;margin-top:1.5rem}a{color:#0645ad}";

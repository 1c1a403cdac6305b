//! Where kopterctl talks to: the environment (`--env`, `KOPTER_ENV`) and
//! the AWS endpoint (`--endpoint`, `aws.endpoint_url`, `AWS_ENDPOINT_URL`,
//! else real AWS). A new user's first failures were silent about both:
//! an unset endpoint went to real AWS, a stopped moto took the SDK's
//! retries (7–9 s) to end in "Connection refused", and a missing table
//! said "Requested resource not found" without naming it. So:
//!
//! - [`Target::check_reachable`] connects to a configured endpoint once
//!   (2 s) before any AWS call and fails at once when nothing listens;
//! - [`Target::explain`] adds the environment and endpoint to every
//!   failure, and for DynamoDB's `ResourceNotFoundException` names the
//!   environment's tables that do not exist there;
//! - `bootstrap` and `onboard` print [`Target::describe`] first.

use std::time::Duration;

use kopter_runtime::aws::{ErrorClass, classify_anyhow};
use kopter_runtime::{AwsContext, Config};
use kopter_schema::{Names, Table};

/// How long the reachability check waits for a TCP connection.
const CONNECT_PROBE: Duration = Duration::from_secs(2);

/// The environment and endpoints of this invocation.
#[derive(Debug, Clone)]
pub struct Target {
    pub env: String,
    /// The endpoint of every AWS service; `None`: real AWS.
    pub endpoint: Option<String>,
    /// DynamoDB's own endpoint when it differs (DynamoDB Local).
    pub dynamodb_endpoint: Option<String>,
    pub region: String,
}

impl Target {
    pub fn new(config: &Config, aws: &AwsContext) -> Self {
        let endpoint = config
            .aws
            .endpoint_url
            .clone()
            .or_else(|| aws.sdk.endpoint_url().map(str::to_owned))
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .filter(|u| !u.is_empty());
        let dynamodb_endpoint = config
            .aws
            .dynamodb_endpoint_url
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_DYNAMODB").ok())
            .filter(|u| !u.is_empty() && Some(u) != endpoint.as_ref());
        Self {
            env: config.env.clone(),
            endpoint,
            dynamodb_endpoint,
            region: aws
                .sdk
                .region()
                .map_or_else(|| "us-east-1".to_owned(), |r| r.to_string()),
        }
    }

    /// `environment demo at http://127.0.0.1:5055 (us-east-1)`, or
    /// `environment prod on real AWS (us-east-1)`.
    pub fn describe(&self) -> String {
        let mut s = match &self.endpoint {
            Some(e) => format!("environment {} at {e} ({})", self.env, self.region),
            None => format!(
                "environment {} on real AWS ({}; no endpoint set: --endpoint or \
                 KOPTER_AWS__ENDPOINT_URL for a local AWS)",
                self.env, self.region
            ),
        };
        if let Some(d) = &self.dynamodb_endpoint {
            s.push_str(&format!(", DynamoDB at {d}"));
        }
        s
    }

    /// Fails at once, naming the endpoint, when a configured endpoint
    /// refuses connections or does not answer within 2 s. Real AWS is not
    /// probed (its endpoints differ per service and region).
    pub async fn check_reachable(&self) -> Result<(), String> {
        for url in self.endpoint.iter().chain(&self.dynamodb_endpoint) {
            let parsed =
                url::Url::parse(url).map_err(|e| format!("endpoint {url:?} is not a URL: {e}"))?;
            let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default())
            else {
                return Err(format!("endpoint {url:?} names no host"));
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let why = match tokio::time::timeout(
                CONNECT_PROBE,
                tokio::net::TcpStream::connect((host, port)),
            )
            .await
            {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer in {CONNECT_PROBE:?}"),
            };
            return Err(format!(
                "cannot reach {url} ({why}) for environment {}: is the local AWS running? \
                 (`make moto-start` starts moto on 127.0.0.1:5055; `make demo` starts its own)",
                self.env
            ));
        }
        Ok(())
    }

    /// `error` with the environment and endpoint, and what is missing when
    /// DynamoDB said a resource was not found.
    pub async fn explain(&self, aws: &AwsContext, names: &Names, error: &anyhow::Error) -> String {
        let mut out = format!("{error:#}\n  (talking to {})", self.describe());
        let text = format!("{error:#}");
        if text.contains("ResourceNotFoundException") || text.contains("resource not found") {
            match missing_tables(aws, names).await {
                Ok(missing) if !missing.is_empty() => out.push_str(&format!(
                    "\n  tables missing in environment {}: {}\n  create them: kopterctl --env {}{} bootstrap",
                    self.env,
                    missing.join(", "),
                    self.env,
                    self.endpoint
                        .as_deref()
                        .map(|e| format!(" --endpoint {e}"))
                        .unwrap_or_default()
                )),
                Ok(_) => {}
                Err(e) => out.push_str(&format!("\n  (listing the tables failed too: {e:#})")),
            }
        } else if matches!(
            classify_anyhow(error),
            Some(ErrorClass::Connection | ErrorClass::Timeout)
        ) {
            out.push_str("\n  the endpoint stopped answering: is the local AWS still running?");
        }
        out
    }
}

/// The environment's table names that `ListTables` does not return.
async fn missing_tables(aws: &AwsContext, names: &Names) -> anyhow::Result<Vec<String>> {
    let ddb = aws.dynamodb();
    let mut existing = std::collections::HashSet::new();
    let mut pages = ddb.list_tables().into_paginator().send();
    while let Some(page) = pages.next().await {
        existing.extend(page?.table_names.unwrap_or_default());
    }
    Ok(Table::ALL
        .iter()
        .map(|t| names.table(*t))
        .filter(|n| !existing.contains(n))
        .collect())
}

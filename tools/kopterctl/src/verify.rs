//! `kopterctl accounts verify`: assume each account's role as the
//! describer does (with its ExternalId) and try every permission Kopter
//! needs with a call that changes nothing, one row per check.
//!
//! EC2 calls go with `DryRun=true` where the API has it: AWS answers
//! `DryRunOperation` when the call would have been allowed and
//! `UnauthorizedOperation` when not, without doing anything
//! (<https://docs.aws.amazon.com/AWSEC2/latest/APIReference/CommonParameters.html>).
//! An endpoint that ignores `DryRun` (moto does for reads) answers the
//! read itself, which proves the same. `DescribeHosts` has no `DryRun`:
//! it is a read of at most 5 hosts. `CreateSnapshot`/`DeleteSnapshot`
//! need an existing volume or snapshot to say anything, so they are not
//! tried (row `skipped`); the first backup shows them. A customer-owned
//! trail bucket is checked with a `GetObject` of a probe key under the
//! account's `AWSLogs/` prefix (see the comment there for what S3's
//! answers can and cannot tell).
//!
//! The account's health is then set: `ok` when every tried check passed,
//! `failing` with the first refusal as reason. A transient failure (STS or
//! EC2 unreachable, throttled) leaves the health as it was.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use kopter_runtime::{AssumeRoleError, AwsContext, Config, CredentialCache, CustomerRole};
use kopter_schema::items::AccountRecord;
use serde::Serialize;

/// One check of one account.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    pub tenant: String,
    pub account: String,
    /// The permission tried (`ec2:DescribeInstances`), or `regions`.
    pub check: String,
    pub region: String,
    pub outcome: Outcome,
    /// AWS's error code and message, or why it was skipped.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// The customer's side refused: the role or its policy needs a fix.
    Denied,
    /// Could not tell (throttled, unreachable): try again.
    Error,
    /// Not tried (see the module doc).
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
            Outcome::Skipped => "skipped",
        }
    }
}

/// The checks of one account and the health they imply: `Some(true)` all
/// passed, `Some(false)` with the reason, `None` inconclusive.
pub struct Verdict {
    pub rows: Vec<CheckRow>,
    pub health: Option<(bool, Option<String>)>,
}

/// Runs every check of `account`.
pub async fn verify(
    aws: &AwsContext,
    config: &Config,
    credentials: &CredentialCache,
    account: &AccountRecord,
) -> Verdict {
    // The describer lists regions in the first chosen region, else in the
    // SDK's own (every account has it enabled).
    let region = account
        .regions
        .first()
        .cloned()
        .or_else(|| aws.sdk.region().map(|r| r.to_string()))
        .or_else(|| config.aws.region.clone())
        .unwrap_or_else(|| "us-east-1".into());
    let mut rows = Vec::new();
    let mut row = |check: &str, outcome: Outcome, detail: String| {
        rows.push(CheckRow {
            tenant: account.tenant_id.to_string(),
            account: account.account_id.to_string(),
            check: check.to_owned(),
            region: region.clone(),
            outcome,
            detail,
        });
    };
    let role = CustomerRole::from(account);
    let sdk = match credentials.sdk_config(&aws.sdk, &role, &region).await {
        Ok(sdk) => {
            row("sts:AssumeRole", Outcome::Ok, account.role_arn.clone());
            sdk
        }
        Err(e @ AssumeRoleError::Denied { .. }) => {
            row("sts:AssumeRole", Outcome::Denied, e.to_string());
            return verdict(rows);
        }
        Err(e) => {
            row("sts:AssumeRole", Outcome::Error, e.to_string());
            return verdict(rows);
        }
    };
    let ec2 = kopter_runtime::aws::ec2_client_for_account(&sdk, &account.account_id);

    let (o, d) = dry_run(ec2.describe_regions().dry_run(true).send().await);
    row("ec2:DescribeRegions", o, d);
    let (o, d) = dry_run(
        ec2.describe_instances()
            .dry_run(true)
            .max_results(5)
            .send()
            .await,
    );
    row("ec2:DescribeInstances", o, d);
    let (o, d) = dry_run(
        ec2.describe_volumes()
            .dry_run(true)
            .max_results(5)
            .send()
            .await,
    );
    row("ec2:DescribeVolumes", o, d);
    let (o, d) = dry_run(
        ec2.describe_snapshots()
            .dry_run(true)
            .owner_ids("self")
            .max_results(5)
            .send()
            .await,
    );
    row("ec2:DescribeSnapshots", o, d);
    let (o, d) = dry_run(ec2.describe_availability_zones().dry_run(true).send().await);
    row("ec2:DescribeAvailabilityZones", o, d);
    let (o, d) = dry_run(ec2.describe_hosts().max_results(5).send().await);
    row("ec2:DescribeHosts", o, d);
    row(
        "ec2:CreateSnapshot",
        Outcome::Skipped,
        "needs an existing volume; the first scheduled backup shows it".into(),
    );

    // The regions chosen at onboarding must be enabled, as the describer
    // requires.
    if !account.regions.is_empty() {
        // As the describer reads it: every region, enabled meaning
        // `opt-in-not-required` or `opted-in`.
        match ec2.describe_regions().all_regions(true).send().await {
            Ok(out) => {
                let enabled: Vec<&str> = out
                    .regions()
                    .iter()
                    .filter(|r| {
                        r.opt_in_status()
                            .is_none_or(|s| s == "opt-in-not-required" || s == "opted-in")
                    })
                    .filter_map(|r| r.region_name())
                    .collect();
                let off: Vec<&str> = account
                    .regions
                    .iter()
                    .map(String::as_str)
                    .filter(|r| !enabled.contains(r))
                    .collect();
                if off.is_empty() {
                    row("regions", Outcome::Ok, account.regions.join(","));
                } else {
                    row(
                        "regions",
                        Outcome::Denied,
                        format!("not enabled in the account: {}", off.join(",")),
                    );
                }
            }
            Err(e) => {
                let (o, d) = classify(&e);
                row("regions", o, d);
            }
        }
    }

    if let Some(trail) = account.trail.as_ref().filter(|t| t.customer_owned) {
        let s3 = aws_sdk_s3::Client::new(&sdk);
        let prefix = if trail.prefix.is_empty() {
            format!("AWSLogs/{}/", account.account_id)
        } else {
            format!(
                "{}/AWSLogs/{}/",
                trail.prefix.trim_end_matches('/'),
                account.account_id
            )
        };
        // The role may read files (s3:GetObject) but not list them, as
        // modules/customer-role grants: a read of a key that is never a
        // file answers NoSuchKey when listing is allowed too, NoSuchBucket
        // for a wrong bucket, and 403 both for a denied read and for a
        // missing key without s3:ListBucket, which cannot be told apart.
        let key = format!("{prefix}kopter-verify-probe");
        let read = s3.get_object().bucket(&trail.bucket).key(&key).send().await;
        let at = format!("s3://{}/{prefix}", trail.bucket);
        match read {
            Ok(_) => row("s3:GetObject", Outcome::Ok, at),
            Err(e) if e.code() == Some("NoSuchKey") => row("s3:GetObject", Outcome::Ok, at),
            Err(e) if e.code() == Some("AccessDenied") => row(
                "s3:GetObject",
                Outcome::Skipped,
                format!(
                    "{at}: 403 for a probe key (a denied read and a missing key without s3:ListBucket look alike); the first ingested file shows it"
                ),
            ),
            Err(e) => {
                let (o, d) = classify(&e);
                row("s3:GetObject", o, format!("{at}: {d}"));
            }
        }
    }
    verdict(rows)
}

fn verdict(rows: Vec<CheckRow>) -> Verdict {
    let health = if let Some(r) = rows.iter().find(|r| r.outcome == Outcome::Denied) {
        Some((
            false,
            Some(format!("verify: {} refused: {}", r.check, r.detail)),
        ))
    } else if rows.iter().any(|r| r.outcome == Outcome::Error) {
        None
    } else {
        Some((true, None))
    };
    Verdict { rows, health }
}

/// A dry-run's answer: `DryRunOperation` (or a plain answer) is allowed.
fn dry_run<T, E, R>(
    r: Result<T, aws_smithy_runtime_api::client::result::SdkError<E, R>>,
) -> (Outcome, String)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match r {
        Ok(_) => (Outcome::Ok, "allowed".into()),
        Err(e) if e.code() == Some("DryRunOperation") => (Outcome::Ok, "allowed (dry run)".into()),
        Err(e) => classify(&e),
    }
}

/// A refusal by the customer's side is `Denied`; anything else `Error`.
fn classify<E, R>(e: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> (Outcome, String)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = e.code().unwrap_or("");
    let detail = format!(
        "{} ({})",
        e.message().unwrap_or("no message"),
        if code.is_empty() {
            "no error code"
        } else {
            code
        }
    );
    let denied = matches!(
        code,
        "UnauthorizedOperation"
            | "AccessDenied"
            | "AccessDeniedException"
            | "AuthFailure"
            | "OptInRequired"
            | "NoSuchBucket"
            | "AllAccessDisabled"
    );
    if denied {
        (Outcome::Denied, detail)
    } else {
        (
            Outcome::Error,
            format!(
                "{detail}: {}",
                aws_smithy_types::error::display::DisplayErrorContext(e)
            ),
        )
    }
}

//! Settings (admins only; a viewer gets 403): the monthly budget, the
//! delivery channels and the EBS backup policy. Each is a POST form with
//! the session's CSRF token, checked by the same checks as the api's PUTs
//! (`check_budget`, `WebhookUrl::parse` under the api's address policy,
//! `valid_email`, `BackupPolicyBody::to_policy`); an error is shown next
//! to its field (400) with what was typed kept, a success redirects back
//! (303) with a note.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect};
use chrono::Utc;
use kopter_schema::messages::Severity;
use kopter_store::channels::{ChannelUpdate, valid_email};
use kopter_store::webhook_url::WebhookUrl;
use maud::{Markup, html};

use super::{form, params};
use crate::ApiState;
use crate::auth::Role;
use crate::console::layout::{self, PageError, PageResult, Section, csrf_field, href, usd, utc};
use crate::console::session::{CSRF_FIELD, ConsoleSession};
use crate::data::cost::BudgetInput;
use crate::data::settings::{BackupPolicyBody, Channels};
use crate::error::ApiError;
use crate::routes::settings::MAX_EMAIL_RECIPIENTS;

/// What the three forms show: the stored values, or what was typed.
#[derive(Debug, Default)]
struct Forms {
    budget: BTreeMap<&'static str, String>,
    channels: BTreeMap<&'static str, String>,
    backup: BTreeMap<&'static str, String>,
    /// Field → why it was refused.
    errors: BTreeMap<&'static str, String>,
    saved: Option<String>,
}

fn admin(session: &ConsoleSession) -> Result<(), PageError> {
    if session.principal.role == Role::Admin {
        Ok(())
    } else {
        Err(PageError::forbidden(
            "settings are for the tenant's admins; your role is viewer",
        ))
    }
}

/// Admin, then the CSRF token of the form `body`.
fn checked_form(
    session: &ConsoleSession,
    body: &str,
) -> Result<BTreeMap<String, String>, PageError> {
    admin(session)?;
    let f = form(body);
    if !session.check_csrf(f.get(CSRF_FIELD).map(String::as_str)) {
        return Err(layout::csrf_refused());
    }
    Ok(f)
}

pub(super) async fn page(
    session: ConsoleSession,
    State(state): State<ApiState>,
    uri: Uri,
) -> PageResult {
    admin(&session)?;
    let p = params(uri.query(), &["saved"])?;
    let mut forms = stored(&state, &session).await?;
    forms.saved = p.get("saved").and_then(|s| match s.as_str() {
        "budget" => Some("The budget is saved.".to_owned()),
        "channels" => Some("The channels are saved.".to_owned()),
        "backup-policy" => Some("The backup policy is saved.".to_owned()),
        _ => None,
    });
    render(&state, &session, forms, StatusCode::OK).await
}

async fn stored(state: &ApiState, session: &ConsoleSession) -> Result<Forms, PageError> {
    let data = state.data();
    let tenant = &session.principal.tenant;
    let mut f = Forms::default();
    if let Some(b) = data.budget(tenant, Utc::now()).await? {
        f.budget
            .insert("monthly_usd", layout::amount(b.monthly_usd));
        f.budget.insert("thresholds", join(&b.thresholds));
    } else {
        f.budget.insert("thresholds", "50, 80, 100".into());
    }
    let c = Channels::from(&data.channels(tenant).await?);
    f.channels
        .insert("webhook_min_severity", sev(c.webhook_min_severity).into());
    f.channels
        .insert("email_min_severity", sev(c.email_min_severity).into());
    f.channels.insert("email", c.email.join(", "));
    if c.digest {
        f.channels.insert("digest", "on".into());
    }
    let b = BackupPolicyBody::from(&data.backup_policy(tenant).await?);
    if b.enabled {
        f.backup.insert("enabled", "on".into());
    }
    f.backup.insert("tag_key", b.tag_key);
    f.backup.insert("tag_value", b.tag_value);
    f.backup.insert("interval", b.interval);
    f.backup.insert(
        "keep_count",
        b.keep_count.map(|k| k.to_string()).unwrap_or_default(),
    );
    f.backup.insert("keep_for", b.keep_for.unwrap_or_default());
    Ok(f)
}

fn join(t: &[u32]) -> String {
    t.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

fn sev(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// `POST /settings/budget`: `monthly_usd`, `thresholds` (percentages,
/// comma-separated).
pub(super) async fn budget(
    session: ConsoleSession,
    State(state): State<ApiState>,
    body: String,
) -> PageResult {
    let f = checked_form(&session, &body)?;
    let field = |k: &str| f.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let (monthly, thresholds) = (field("monthly_usd"), field("thresholds"));
    let mut errors = BTreeMap::new();
    let monthly_usd = monthly.parse::<f64>().map_err(|_| {
        errors.insert(
            "monthly_usd",
            format!("{monthly:?} is not an amount of USD like 1200.50"),
        );
    });
    let list: Result<Vec<u32>, _> = thresholds
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().map_err(|_| s.to_owned()))
        .collect();
    let list = list.map_err(|bad| {
        errors.insert("thresholds", format!("{bad:?} is not a whole percentage"));
    });
    if let (Ok(monthly_usd), Ok(thresholds)) = (monthly_usd, list) {
        match crate::routes::cost::check_budget(BudgetInput {
            monthly_usd,
            thresholds,
        }) {
            Ok(input) => {
                state
                    .data()
                    .put_budget(&session.principal.tenant, &input, Utc::now())
                    .await?;
                tracing::info!(tenant = %session.principal.tenant, subject = %session.principal.subject, "budget changed (console)");
                return Ok(Redirect::to(&href("/settings?saved=budget")).into_response());
            }
            Err(ApiError::BadBody(why)) => {
                let (name, msg) = field_of(&why);
                let name = if name.starts_with("thresholds") {
                    "thresholds"
                } else {
                    "monthly_usd"
                };
                errors.insert(name, msg);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut forms = stored(&state, &session).await?;
    forms.budget = BTreeMap::from([("monthly_usd", monthly), ("thresholds", thresholds)]);
    forms.errors = errors;
    render(&state, &session, forms, StatusCode::BAD_REQUEST).await
}

/// The api's body errors read "`field`: why": the field and the why.
fn field_of(why: &str) -> (String, String) {
    why.strip_prefix('`')
        .and_then(|r| r.split_once("`: "))
        .map_or_else(
            || (String::new(), why.to_owned()),
            |(f, m)| (f.to_owned(), m.to_owned()),
        )
}

/// `POST /settings/channels`: the whole form (absent checkboxes are
/// off); an empty `webhook_url` keeps the webhook unless
/// `remove_webhook` is checked.
pub(super) async fn channels(
    session: ConsoleSession,
    State(state): State<ApiState>,
    body: String,
) -> PageResult {
    let f = checked_form(&session, &body)?;
    let field = |k: &str| f.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let mut errors = BTreeMap::new();
    let webhook = if f.contains_key("remove_webhook") {
        Some(None)
    } else if field("webhook_url").is_empty() {
        None
    } else {
        match WebhookUrl::parse(&field("webhook_url"), state.webhook_policy()) {
            Ok(u) => Some(Some(u)),
            Err(e) => {
                errors.insert("webhook_url", e.to_string());
                None
            }
        }
    };
    let severity = |name: &'static str, errors: &mut BTreeMap<&'static str, String>| match field(
        name,
    )
    .as_str()
    {
        "info" => Some(Severity::Info),
        "warning" => Some(Severity::Warning),
        "critical" => Some(Severity::Critical),
        other => {
            errors.insert(
                name,
                format!("{other:?} is not one of info, warning, critical"),
            );
            None
        }
    };
    let webhook_min_severity = severity("webhook_min_severity", &mut errors);
    let email_min_severity = severity("email_min_severity", &mut errors);
    let email: Vec<String> = field("email")
        .split([',', ' ', '\n', '\r'])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if email.len() > MAX_EMAIL_RECIPIENTS {
        errors.insert(
            "email",
            format!("at most {MAX_EMAIL_RECIPIENTS} recipients"),
        );
    } else if let Some(bad) = email.iter().find(|a| !valid_email(a)) {
        errors.insert("email", format!("{bad:?} is not an email address"));
    }
    if errors.is_empty() {
        let update = ChannelUpdate {
            webhook,
            webhook_min_severity,
            email: Some(email),
            email_min_severity,
            digest: Some(f.contains_key("digest")),
            reset: f.contains_key("reset_failing"),
        };
        state
            .data()
            .update_channels(&session.principal.tenant, &update)
            .await?;
        tracing::info!(tenant = %session.principal.tenant, subject = %session.principal.subject, "channels changed (console)");
        return Ok(Redirect::to(&href("/settings?saved=channels")).into_response());
    }
    let mut forms = stored(&state, &session).await?;
    forms.channels = [
        "webhook_url",
        "webhook_min_severity",
        "email",
        "email_min_severity",
        "digest",
        "remove_webhook",
        "reset_failing",
    ]
    .into_iter()
    .filter_map(|k| f.get(k).map(|v| (k, v.clone())))
    .collect();
    forms.errors = errors;
    render(&state, &session, forms, StatusCode::BAD_REQUEST).await
}

/// `POST /settings/backup-policy`: the whole policy.
pub(super) async fn backup_policy(
    session: ConsoleSession,
    State(state): State<ApiState>,
    body: String,
) -> PageResult {
    let f = checked_form(&session, &body)?;
    let field = |k: &str| f.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let mut errors = BTreeMap::new();
    let keep_count = match field("keep_count").as_str() {
        "" => None,
        v => match v.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.insert("keep_count", format!("{v:?} is not a whole number"));
                None
            }
        },
    };
    let body = BackupPolicyBody {
        enabled: f.contains_key("enabled"),
        tag_key: field("tag_key"),
        tag_value: field("tag_value"),
        interval: field("interval"),
        keep_count,
        keep_for: Some(field("keep_for")).filter(|v| !v.is_empty()),
    };
    if errors.is_empty() {
        match body.to_policy() {
            Ok(policy) => {
                state
                    .data()
                    .set_backup_policy(&session.principal.tenant, &policy)
                    .await?;
                tracing::info!(tenant = %session.principal.tenant, subject = %session.principal.subject, "backup policy changed (console)");
                return Ok(Redirect::to(&href("/settings?saved=backup-policy")).into_response());
            }
            Err((name, why)) => {
                errors.insert(name, why);
            }
        }
    }
    let mut forms = stored(&state, &session).await?;
    forms.backup = [
        "enabled",
        "tag_key",
        "tag_value",
        "interval",
        "keep_count",
        "keep_for",
    ]
    .into_iter()
    .filter_map(|k| f.get(k).map(|v| (k, v.clone())))
    .collect();
    forms.errors = errors;
    render(&state, &session, forms, StatusCode::BAD_REQUEST).await
}

async fn render(
    state: &ApiState,
    session: &ConsoleSession,
    f: Forms,
    status: StatusCode,
) -> PageResult {
    let data = state.data();
    let tenant = &session.principal.tenant;
    let budget = data.budget(tenant, Utc::now()).await?;
    let channels = Channels::from(&data.channels(tenant).await?);
    let v = |m: &BTreeMap<&'static str, String>, k: &str| m.get(k).cloned().unwrap_or_default();
    let err = |k: &str| -> Markup {
        html! { @if let Some(e) = f.errors.get(k) { span.field-error id={"err-" (k)} { (e) } } }
    };
    let described = |k: &str| f.errors.contains_key(k).then(|| format!("err-{k}"));
    let sev_select = |name: &'static str, current: String| {
        html! {
            select name=(name) id=(name) aria-describedby=[described(name)] {
                @for s in ["info", "warning", "critical"] { option value=(s) selected[current == s] { (s) } }
            }
        }
    };
    let body = html! {
        @if let Some(s) = &f.saved { p.saved role="status" { (s) } }
        @if !f.errors.is_empty() { p.error role="alert" { "Not saved: see the marked fields." } }
        form.settings #budget-form method="post" action=(href("/settings/budget") ) {
            (csrf_field(session))
            fieldset {
                legend { "Monthly budget" }
                @if let Some(b) = &budget {
                    p.note { "Month to date (" (b.month) "): " (usd(b.month_to_date_usd)) }
                }
                label for="monthly_usd" { "Budget per calendar month (USD)" }
                input #monthly_usd name="monthly_usd" inputmode="decimal" value=(v(&f.budget, "monthly_usd")) aria-describedby=[described("monthly_usd")];
                (err("monthly_usd"))
                label for="thresholds" { "Notify at these percentages (comma-separated, 1–1000)" }
                input #thresholds name="thresholds" value=(v(&f.budget, "thresholds")) aria-describedby=[described("thresholds")];
                (err("thresholds"))
                button type="submit" { "Save budget" }
            }
        }
        form.settings #channels-form method="post" action=(href("/settings/channels")) {
            (csrf_field(session))
            fieldset {
                legend { "Delivery channels" }
                p.note {
                    "Webhook: "
                    @match &channels.webhook_host { Some(h) => { "set, to host " code { (h) } }, None => { "none" } }
                    " (the URL is a secret and is not shown)."
                }
                @for fail in &channels.failing {
                    p.error { (fail.channel) " failing since " (utc(&crate::data::inventory::rfc3339(fail.since))) ": " (fail.reason) }
                }
                label for="webhook_url" { "New webhook URL (https; empty keeps the current one)" }
                input #webhook_url name="webhook_url" type="url" value=(v(&f.channels, "webhook_url")) aria-describedby=[described("webhook_url")];
                (err("webhook_url"))
                label { input type="checkbox" name="remove_webhook" checked[f.channels.contains_key("remove_webhook")]; " Remove the webhook" }
                label for="webhook_min_severity" { "Lowest severity sent to the webhook" }
                (sev_select("webhook_min_severity", v(&f.channels, "webhook_min_severity")))
                (err("webhook_min_severity"))
                label for="email" { "Email recipients (comma-separated, at most " (MAX_EMAIL_RECIPIENTS) ")" }
                input #email name="email" value=(v(&f.channels, "email")) aria-describedby=[described("email")];
                (err("email"))
                label for="email_min_severity" { "Lowest severity emailed" }
                (sev_select("email_min_severity", v(&f.channels, "email_min_severity")))
                (err("email_min_severity"))
                label { input type="checkbox" name="digest" checked[f.channels.contains_key("digest")]; " Send the daily digest" }
                label { input type="checkbox" name="reset_failing" checked[f.channels.contains_key("reset_failing")]; " Clear the failing marks" }
                button type="submit" { "Save channels" }
            }
        }
        form.settings #backup-form method="post" action=(href("/settings/backup-policy")) {
            (csrf_field(session))
            fieldset {
                legend { "EBS backup policy" }
                (err("body"))
                label { input type="checkbox" name="enabled" checked[f.backup.contains_key("enabled")]; " Take scheduled snapshots" }
                label for="tag_key" { "Instances with the tag key" }
                input #tag_key name="tag_key" value=(v(&f.backup, "tag_key")) aria-describedby=[described("tag_key")];
                (err("tag_key"))
                label for="tag_value" { "and the value" }
                input #tag_value name="tag_value" value=(v(&f.backup, "tag_value")) aria-describedby=[described("tag_value")];
                (err("tag_value"))
                label for="interval" { "One snapshot per volume every (e.g. 12h, at least 1h)" }
                input #interval name="interval" value=(v(&f.backup, "interval")) aria-describedby=[described("interval")];
                (err("interval"))
                label for="keep_count" { "Keep at most this many snapshots per volume (empty: no limit)" }
                input #keep_count name="keep_count" inputmode="numeric" value=(v(&f.backup, "keep_count")) aria-describedby=[described("keep_count")];
                (err("keep_count"))
                label for="keep_for" { "Delete snapshots older than (e.g. 30days; empty: never)" }
                input #keep_for name="keep_for" value=(v(&f.backup, "keep_for")) aria-describedby=[described("keep_for")];
                (err("keep_for"))
                button type="submit" { "Save backup policy" }
            }
        }
    };
    Ok((
        status,
        layout::page(session, Section::Settings, "Settings", body),
    )
        .into_response())
}

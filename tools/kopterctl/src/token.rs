//! `kopterctl token`: a bearer token from the local development issuer,
//! for the api started with `api.dev_issuer = true` (same configuration:
//! `api.dev_issuer_key_file`, `api.public_url`, `api.audience`, claim
//! names). Prints the token alone on stdout, so
//! `curl -H "Authorization: Bearer $(kopterctl token --tenant acme)" …` works.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use kopter_dev_issuer::{DevIssuer, TokenRequest};
use kopter_runtime::Config;
use kopter_schema::TenantId;

#[derive(Args)]
pub struct TokenArgs {
    /// The tenant the token is for.
    #[arg(long)]
    tenant: String,
    /// `viewer` (reads) or `admin` (also settings).
    #[arg(long, value_enum, default_value = "viewer")]
    role: TokenRole,
    /// Lifetime (humantime: 15m, 1h, 12h); at most 24h.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// The token's `sub`.
    #[arg(long, default_value = "dev-user")]
    subject: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum TokenRole {
    Viewer,
    Admin,
}

pub fn run(config: &Config, args: TokenArgs) -> anyhow::Result<ExitCode> {
    let api = &config.api;
    if !api.dev_issuer {
        eprintln!(
            "kopterctl: api.dev_issuer is off: tokens come from the configured OIDC issuer (set KOPTER_API__DEV_ISSUER=true for local use)"
        );
        return Ok(ExitCode::from(2));
    }
    if let Err(e) = TenantId::new(args.tenant.clone()) {
        eprintln!("kopterctl: --tenant: {e}");
        return Ok(ExitCode::from(2));
    }
    if args.ttl.is_zero() || args.ttl > Duration::from_secs(24 * 3600) {
        eprintln!("kopterctl: --ttl: must be between 1s and 24h");
        return Ok(ExitCode::from(2));
    }
    let key = DevIssuer::load_or_create(&api.dev_issuer_key_file)?;
    let roles = match args.role {
        TokenRole::Viewer => Vec::new(),
        TokenRole::Admin => vec![api.admin_role.clone()],
    };
    let token = key.mint(&TokenRequest {
        tenant: args.tenant,
        roles,
        ttl: args.ttl,
        subject: args.subject,
        issuer: kopter_dev_issuer::issuer_url(&api.public_url),
        audience: api.audience.clone(),
        tenant_claim: api.tenant_claim.clone(),
        roles_claim: api.roles_claim.clone(),
    })?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

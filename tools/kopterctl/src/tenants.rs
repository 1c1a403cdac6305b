//! `kopterctl tenants create|list|show`, and the one check that every
//! other verb's `--tenant` names a tenant that exists.
//!
//! The check reads the parsed command line generically (any argument
//! called `tenant`, at any depth of subcommands) rather than verb by verb,
//! so a verb added later is checked without anyone remembering to.

use std::process::ExitCode;

use clap::parser::MatchesError;
use clap::{ArgMatches, Subcommand};
use kopter_runtime::AwsContext;
use kopter_runtime::accounts::AccountStore;
use kopter_schema::{Names, TenantId};
use kopter_store::tenants::{Created, TenantStore, UnknownTenant};

use crate::output;

#[derive(Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant (idempotent: an existing one is left as it is).
    Create {
        /// Tenant id: 1-64 of lowercase letters, digits and '-'.
        id: String,
    },
    /// Every tenant with its number of accounts.
    List {
        #[command(flatten)]
        format: output::FormatArg,
    },
    /// One tenant: creation date and its accounts' health.
    Show {
        id: String,
        #[command(flatten)]
        format: output::FormatArg,
    },
}

/// One tenant as `list` and `show` print it.
#[derive(serde::Serialize)]
struct TenantRow {
    id: TenantId,
    created_at: chrono::DateTime<chrono::Utc>,
    accounts: usize,
    /// Accounts whose last check or describe failed.
    failing: usize,
    /// Accounts neither verified nor described yet.
    unchecked: usize,
}

pub async fn run(aws: &AwsContext, names: &Names, cmd: TenantsCommand) -> anyhow::Result<ExitCode> {
    let tenants = TenantStore::new(aws.dynamodb(), names);
    let accounts = AccountStore::new(aws.dynamodb(), names);
    match cmd {
        TenantsCommand::Create { id } => {
            let id = match TenantId::new(id) {
                Ok(t) => t,
                Err(e) => return Ok(crate::refuse(e)),
            };
            let (t, created) = tenants.create(&id).await?;
            match created {
                Created::New => println!("created tenant {}", t.id),
                Created::Existing => println!(
                    "tenant {} exists already (created {}): nothing changed",
                    t.id,
                    t.created_at.format("%Y-%m-%dT%H:%M:%SZ")
                ),
            }
        }
        TenantsCommand::List { format } => {
            let all = accounts.list(None).await?;
            let mut rows = Vec::new();
            for t in tenants.list().await? {
                let mine: Vec<_> = all.iter().filter(|a| a.tenant_id == t.id).collect();
                rows.push(row(t, &mine));
            }
            print(format, &rows)?;
        }
        TenantsCommand::Show { id, format } => {
            let id = match TenantId::new(id) {
                Ok(t) => t,
                Err(e) => return Ok(crate::refuse(e)),
            };
            let t = match tenants.require(&id).await {
                Ok(t) => t,
                Err(e) if e.is::<UnknownTenant>() => return Ok(crate::refuse(e)),
                Err(e) => return Err(e),
            };
            let mine = accounts.list(Some(&id)).await?;
            let rows = [row(t, &mine.iter().collect::<Vec<_>>())];
            print(format, &rows)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn row(
    t: kopter_store::tenants::Tenant,
    accounts: &[&kopter_schema::items::AccountRecord],
) -> TenantRow {
    TenantRow {
        id: t.id,
        created_at: t.created_at,
        accounts: accounts.len(),
        failing: accounts
            .iter()
            .filter(|a| crate::accounts::health(a) == "failing")
            .count(),
        unchecked: accounts
            .iter()
            .filter(|a| crate::accounts::health(a) == "unchecked")
            .count(),
    }
}

fn print(format: output::FormatArg, rows: &[TenantRow]) -> anyhow::Result<()> {
    let mut table =
        output::Listing::new(&["TENANT", "CREATED", "ACCOUNTS", "FAILING", "UNCHECKED"])
            .right_aligned(&[2, 3, 4]);
    for r in rows {
        table.row(vec![
            r.id.to_string(),
            r.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            r.accounts.to_string(),
            r.failing.to_string(),
            r.unchecked.to_string(),
        ]);
    }
    table.note(format!("{} tenant(s)", rows.len()));
    output::print(format.get(), &table, &rows)
}

/// The value of the first `--tenant` anywhere in the parsed command line.
pub fn tenant_flag(matches: &ArgMatches) -> Option<String> {
    let mut level = matches;
    loop {
        match level.try_get_one::<String>("tenant") {
            Ok(Some(t)) => return Some(t.clone()),
            Ok(None) | Err(MatchesError::UnknownArgument { .. }) => {}
            Err(e) => panic!("--tenant is declared with another type than String: {e}"),
        }
        level = level.subcommand()?.1;
    }
}

/// Refuses (exit 2, nothing written) a `--tenant` that is not a valid id
/// or names no created tenant. `None` when the command may go on.
pub async fn check_flag(
    aws: &AwsContext,
    names: &Names,
    matches: &ArgMatches,
) -> anyhow::Result<Option<ExitCode>> {
    let Some(raw) = tenant_flag(matches) else {
        return Ok(None);
    };
    let tenant = match TenantId::new(raw) {
        Ok(t) => t,
        Err(e) => return Ok(Some(crate::refuse(format!("--tenant: {e}")))),
    };
    match TenantStore::new(aws.dynamodb(), names)
        .require(&tenant)
        .await
    {
        Ok(_) => Ok(None),
        Err(e) if e.is::<UnknownTenant>() => Ok(Some(crate::refuse(e))),
        Err(e) => Err(e),
    }
}

//! Every DynamoDB table: name suffix, keys, global secondary indexes, TTL.
//!
//! All key attributes are strings. Tenant-owned tables put the tenant id
//! first in the partition key (`{tenant}#...`) so that an IAM policy with
//! `dynamodb:LeadingKeys` = `["${tenant}#*", "${tenant}"]` confines a
//! tenant's credentials to its own rows (slides 14-16 of the talk).
//! Index partition keys of tenant-owned tables begin with the tenant id too,
//! except `accounts/by-account`, a service-only index used to find which
//! tenant onboarded an account id (never granted to tenant credentials).

/// Partition/sort key attribute names shared by every table.
pub const PK: &str = "pk";
pub const SK: &str = "sk";
/// Epoch-seconds TTL attribute, where a table has one.
pub const EXPIRES_AT: &str = "expires_at";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Onboarded customer accounts (role, ExternalId, regions, health) and
    /// per-tenant settings (`sk = "_tenant"`).
    Accounts,
    /// Current EC2 inventory: instances, volumes, snapshots as last seen.
    Inventory,
    /// Append-only EC2 state history (the talk's "EC2 Events").
    Ec2Events,
    /// Snapshots taken by Kopter's backup job (the talk's "EC2 Snapshots").
    Snapshots,
    /// Prices from the AWS Price List and spot history (not tenant-owned).
    Prices,
    /// Hourly/daily cost series (the talk's "Price Graph Data").
    PriceGraph,
    /// Per-tenant CloudTrail audit log.
    AuditLog,
    /// Per-tenant notification feed (the talk's "Frontend Notifications").
    Notifications,
    /// Idempotency keys with a TTL.
    Dedup,
}

/// Key attribute of a table or index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAttr(pub &'static str);

/// A global secondary index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gsi {
    pub name: &'static str,
    pub partition_key: &'static str,
    pub sort_key: Option<&'static str>,
    /// What the index copies of each item.
    pub projection: Projection,
}

/// The attributes a global secondary index copies of each item
/// (DynamoDB's `Projection.ProjectionType`,
/// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_Projection.html>).
/// Every write of an item is billed once more per index it has a key of,
/// at one write unit per KB of the *projected* item
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.ThroughputConsiderations.Writes>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// Every attribute: a query of the index returns whole items.
    All,
    /// The table's and the index's keys only (one write unit per copy
    /// whatever the item's size); a reader fetches the items it needs
    /// from the table by key.
    KeysOnly,
}

impl Projection {
    /// DynamoDB's (and Terraform's `projection_type`) name: `ALL`,
    /// `KEYS_ONLY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Projection::All => "ALL",
            Projection::KeysOnly => "KEYS_ONLY",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    pub suffix: &'static str,
    pub partition_key: &'static str,
    pub sort_key: Option<&'static str>,
    pub gsis: &'static [Gsi],
    pub ttl_attribute: Option<&'static str>,
    /// Partition keys begin with the tenant id.
    pub tenant_owned: bool,
}

impl TableSpec {
    /// Every attribute that appears in the table's or an index's key schema
    /// (DynamoDB needs exactly these in `AttributeDefinitions`).
    pub fn key_attributes(&self) -> Vec<&'static str> {
        let mut out = vec![self.partition_key];
        out.extend(self.sort_key);
        for g in self.gsis {
            out.push(g.partition_key);
            out.extend(g.sort_key);
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl Table {
    pub const ALL: [Table; 9] = [
        Table::Accounts,
        Table::Inventory,
        Table::Ec2Events,
        Table::Snapshots,
        Table::Prices,
        Table::PriceGraph,
        Table::AuditLog,
        Table::Notifications,
        Table::Dedup,
    ];

    pub const fn spec(self) -> TableSpec {
        match self {
            Table::Accounts => TableSpec {
                suffix: "accounts",
                partition_key: PK,
                sort_key: Some(SK),
                gsis: &[Gsi {
                    name: "by-account",
                    partition_key: "account_id",
                    sort_key: None,
                    projection: Projection::All,
                }],
                ttl_attribute: None,
                tenant_owned: true,
            },
            Table::Inventory => TableSpec {
                suffix: "inventory",
                partition_key: PK,
                sort_key: Some(SK),
                gsis: &[],
                ttl_attribute: None,
                tenant_owned: true,
            },
            Table::Ec2Events => TableSpec {
                suffix: "ec2-events",
                partition_key: PK,
                sort_key: Some(SK),
                gsis: &[Gsi {
                    name: "by-resource",
                    partition_key: "resource_key",
                    sort_key: Some(SK),
                    projection: Projection::All,
                }],
                ttl_attribute: None,
                tenant_owned: true,
            },
            Table::Snapshots => TableSpec {
                suffix: "ec2-snapshots",
                partition_key: PK,
                sort_key: Some(SK),
                gsis: &[Gsi {
                    name: "by-volume",
                    partition_key: "volume_key",
                    sort_key: Some("created_at"),
                    projection: Projection::All,
                }],
                ttl_attribute: None,
                tenant_owned: true,
            },
            Table::Prices => TableSpec {
                suffix: "prices",
                partition_key: PK,
                sort_key: Some(SK),
                gsis: &[],
                ttl_attribute: None,
                tenant_owned: false,
            },
            Table::PriceGraph => TableSpec {
                suffix: "price-graph",
                partition_key: PK,
                sort_key: Some(SK),
                gsis: &[],
                ttl_attribute: Some(EXPIRES_AT),
                tenant_owned: true,
            },
            Table::AuditLog => TableSpec {
                suffix: "audit-log",
                partition_key: PK,
                sort_key: Some(SK),
                // No indexes: records are packed in segments, and a
                // search by principal, event or resource reads the
                // segments' summaries (`kopter_store::audit`, its
                // design.md). Three per-record index copies were most of
                // Kopter's DynamoDB bill (issue 23).
                gsis: &[],
                ttl_attribute: Some(EXPIRES_AT),
                tenant_owned: true,
            },
            Table::Notifications => TableSpec {
                suffix: "notifications",
                partition_key: PK,
                sort_key: Some(SK),
                gsis: &[Gsi {
                    // Sparse: `unread_key` is set only while unread.
                    name: "unread",
                    partition_key: "unread_key",
                    sort_key: Some(SK),
                    projection: Projection::All,
                }],
                ttl_attribute: Some(EXPIRES_AT),
                tenant_owned: true,
            },
            Table::Dedup => TableSpec {
                suffix: "dedup",
                partition_key: PK,
                sort_key: None,
                gsis: &[],
                ttl_attribute: Some(EXPIRES_AT),
                tenant_owned: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_and_index_names_are_unique() {
        let mut suffixes: Vec<_> = Table::ALL.iter().map(|t| t.spec().suffix).collect();
        suffixes.sort_unstable();
        suffixes.dedup();
        assert_eq!(suffixes.len(), Table::ALL.len());
        for t in Table::ALL {
            let mut names: Vec<_> = t.spec().gsis.iter().map(|g| g.name).collect();
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "{t:?}");
        }
    }

    #[test]
    fn key_attributes_cover_indexes() {
        let attrs = Table::Notifications.spec().key_attributes();
        assert_eq!(attrs, vec!["pk", "sk", "unread_key"]);
        assert_eq!(Table::AuditLog.spec().key_attributes(), vec!["pk", "sk"]);
    }
}

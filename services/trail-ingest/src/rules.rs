//! Security-notable CloudTrail events, as one table of rules.
//!
//! Every rule is a row of [`RULES`]: an id (stable, used in alerts and
//! metrics), a severity, a one-line summary and a matcher. Adding a rule is
//! adding a row; nothing else in trail-ingest branches on event names.
//!
//! [`evaluate`] runs every matcher on every record, so matchers are written
//! to be cheap on the common path: each starts by comparing `eventName`
//! (and `eventSource`) and returns before looking at anything else. The one
//! rule that needs request details (security-group ingress) parses the
//! record's raw JSON only after the event name matched.
//!
//! Rules that report a change (trail stopped, user created, …) require the
//! call to have succeeded (`errorCode` absent): a refused attempt is not a
//! change, and when it was refused for lack of permission the
//! `unauthorized-api-call` rule reports it. The root-activity and
//! failed-sign-in rules do not.
//!
//! The set covers the CIS AWS Foundations Benchmark's monitoring section
//! (v1.4–v3.0, controls 4.1–4.15; the same filters as AWS Security Hub's
//! CloudWatch.1–14, <https://docs.aws.amazon.com/securityhub/latest/userguide/cloudwatch-controls.html>):
//! each rule's doc names the control and its filter. A tenant can turn any
//! rule off ([`evaluate_enabled`], `kopterctl audit rules disable`).

use kopter_schema::messages::Severity;
use serde::Deserialize;

use crate::normalise::{AuditRecord, Ec2Wire, Items};

/// One security rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
    pub matches: fn(&AuditRecord) -> bool,
}

/// A rule that matched a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    /// The rule's summary, the event and who made it, e.g. `CloudTrail
    /// logging stopped or trail deleted: cloudtrail.amazonaws.com StopLogging
    /// by arn:aws:iam::111122223333:user/alice in us-east-1`.
    pub summary: String,
}

/// All rules, in the order findings are reported.
pub static RULES: &[Rule] = &[
    Rule {
        id: "root-activity",
        severity: Severity::Critical,
        summary: "Root user activity",
        matches: root_activity,
    },
    Rule {
        id: "console-login-without-mfa",
        severity: Severity::Warning,
        summary: "Console sign-in without MFA",
        matches: console_login_without_mfa,
    },
    Rule {
        id: "console-login-failed",
        severity: Severity::Info,
        summary: "Failed console sign-in",
        matches: console_login_failed,
    },
    Rule {
        id: "unauthorized-api-call",
        severity: Severity::Info,
        summary: "API call refused for lack of permission",
        matches: unauthorized_api_call,
    },
    Rule {
        id: "cloudtrail-stopped",
        severity: Severity::Critical,
        summary: "CloudTrail logging stopped or trail deleted",
        matches: cloudtrail_stopped,
    },
    Rule {
        id: "cloudtrail-updated",
        severity: Severity::Warning,
        summary: "CloudTrail trail created, changed or started",
        matches: cloudtrail_updated,
    },
    Rule {
        id: "security-group-open-to-world",
        severity: Severity::Critical,
        summary: "Security group ingress opened to the whole internet",
        matches: security_group_open_to_world,
    },
    Rule {
        id: "security-group-changed",
        severity: Severity::Info,
        summary: "Security group changed",
        matches: security_group_changed,
    },
    Rule {
        id: "network-acl-changed",
        severity: Severity::Info,
        summary: "Network ACL changed",
        matches: network_acl_changed,
    },
    Rule {
        id: "network-gateway-changed",
        severity: Severity::Warning,
        summary: "Network gateway changed",
        matches: network_gateway_changed,
    },
    Rule {
        id: "route-table-changed",
        severity: Severity::Info,
        summary: "Route table changed",
        matches: route_table_changed,
    },
    Rule {
        id: "vpc-changed",
        severity: Severity::Warning,
        summary: "VPC changed",
        matches: vpc_changed,
    },
    Rule {
        id: "iam-access-key-created",
        severity: Severity::Warning,
        summary: "IAM access key created",
        matches: iam_access_key_created,
    },
    Rule {
        id: "iam-user-created",
        severity: Severity::Warning,
        summary: "IAM user created",
        matches: iam_user_created,
    },
    Rule {
        id: "iam-policy-changed",
        severity: Severity::Warning,
        summary: "IAM policy changed",
        matches: iam_policy_changed,
    },
    Rule {
        id: "kms-key-disabled-or-deleted",
        severity: Severity::Critical,
        summary: "Customer-managed KMS key disabled or scheduled for deletion",
        matches: kms_key_disabled_or_deleted,
    },
    Rule {
        id: "s3-bucket-policy-changed",
        severity: Severity::Warning,
        summary: "S3 bucket policy, ACL or replication changed",
        matches: s3_bucket_policy_changed,
    },
    Rule {
        id: "config-changed",
        severity: Severity::Critical,
        summary: "AWS Config recording or delivery changed",
        matches: config_changed,
    },
    Rule {
        id: "organizations-changed",
        severity: Severity::Warning,
        summary: "AWS Organizations changed",
        matches: organizations_changed,
    },
];

/// The findings of every rule that matches `rec`, in [`RULES`] order.
pub fn evaluate(rec: &AuditRecord) -> Vec<Finding> {
    evaluate_enabled(rec, &std::collections::BTreeSet::new())
}

/// [`evaluate`] without the rules a tenant turned off (`disabled` holds
/// rule ids; unknown ids are ignored).
pub fn evaluate_enabled(
    rec: &AuditRecord,
    disabled: &std::collections::BTreeSet<String>,
) -> Vec<Finding> {
    RULES
        .iter()
        .filter(|rule| (rule.matches)(rec) && !disabled.contains(rule.id))
        .map(|rule| Finding {
            rule: rule.id,
            severity: rule.severity,
            summary: format!(
                "{}: {} {} by {} in {}",
                rule.summary,
                rec.event_source,
                rec.event_name,
                rec.principal_arn
                    .as_deref()
                    .unwrap_or("an unknown principal"),
                rec.aws_region,
            ),
        })
        .collect()
}

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

fn is(rec: &AuditRecord, source: &str, names: &[&str]) -> bool {
    names.contains(&rec.event_name.as_str()) && rec.event_source == source
}

fn succeeded(rec: &AuditRecord) -> bool {
    rec.error_code.is_none()
}

/// CIS 4.3: `userIdentity.type = "Root" && userIdentity.invokedBy NOT
/// EXISTS && eventType != "AwsServiceEvent"` — what AWS services do on
/// root's behalf is not root activity. Both fields are read from the raw
/// record, only for root's records.
fn root_activity(rec: &AuditRecord) -> bool {
    #[derive(Deserialize)]
    struct Identity<'a> {
        #[serde(rename = "invokedBy", borrow)]
        invoked_by: Option<&'a serde_json::value::RawValue>,
    }
    #[derive(Deserialize)]
    struct RootWire<'a> {
        #[serde(rename = "eventType", borrow)]
        event_type: Option<std::borrow::Cow<'a, str>>,
        #[serde(rename = "userIdentity", borrow)]
        user_identity: Option<Identity<'a>>,
    }
    if rec.principal_type.as_deref() != Some("Root") {
        return false;
    }
    match serde_json::from_str::<RootWire<'_>>(&rec.raw) {
        Ok(w) => {
            w.event_type.as_deref() != Some("AwsServiceEvent")
                && w.user_identity.is_none_or(|i| i.invoked_by.is_none())
        }
        // The row was built from this text, so it parses; if it ever did
        // not, reporting root is the safe side.
        Err(_) => true,
    }
}

/// Federated sign-ins (`AssumedRole`, …) always log `MFAUsed: No` because MFA
/// happens at the identity provider, so only IAM users and root count.
fn console_login_without_mfa(rec: &AuditRecord) -> bool {
    is(rec, "signin.amazonaws.com", &["ConsoleLogin"])
        && rec.console_login.as_deref() == Some("Success")
        && rec.mfa_used != Some(true)
        && matches!(rec.principal_type.as_deref(), Some("IAMUser" | "Root"))
}

/// CIS 4.6: `eventName = ConsoleLogin && errorMessage = "Failed
/// authentication"` (and the `ConsoleLogin: Failure` response of the same).
fn console_login_failed(rec: &AuditRecord) -> bool {
    is(rec, "signin.amazonaws.com", &["ConsoleLogin"])
        && (rec.console_login.as_deref() == Some("Failure")
            || rec.error_message.as_deref() == Some("Failed authentication"))
}

/// CIS 4.1: `errorCode = "*UnauthorizedOperation" || errorCode =
/// "AccessDenied*"`, without the noise CIS v3 excludes (`HeadBucket`, and
/// calls from `delivery.logs.amazonaws.com`).
fn unauthorized_api_call(rec: &AuditRecord) -> bool {
    let Some(code) = rec.error_code.as_deref() else {
        return false;
    };
    (code.ends_with("UnauthorizedOperation") || code.starts_with("AccessDenied"))
        && rec.event_name != "HeadBucket"
        && rec.source_ip.as_deref() != Some("delivery.logs.amazonaws.com")
}

fn cloudtrail_stopped(rec: &AuditRecord) -> bool {
    is(
        rec,
        "cloudtrail.amazonaws.com",
        &["StopLogging", "DeleteTrail"],
    ) && succeeded(rec)
}

/// With `cloudtrail-stopped`, CIS 4.5: `CreateTrail || UpdateTrail ||
/// DeleteTrail || StartLogging || StopLogging`.
fn cloudtrail_updated(rec: &AuditRecord) -> bool {
    is(
        rec,
        "cloudtrail.amazonaws.com",
        &["CreateTrail", "UpdateTrail", "StartLogging"],
    ) && succeeded(rec)
}

/// CIS 4.10.
fn security_group_changed(rec: &AuditRecord) -> bool {
    is(
        rec,
        "ec2.amazonaws.com",
        &[
            "AuthorizeSecurityGroupIngress",
            "AuthorizeSecurityGroupEgress",
            "RevokeSecurityGroupIngress",
            "RevokeSecurityGroupEgress",
            "CreateSecurityGroup",
            "DeleteSecurityGroup",
        ],
    ) && succeeded(rec)
}

/// CIS 4.11.
fn network_acl_changed(rec: &AuditRecord) -> bool {
    is(
        rec,
        "ec2.amazonaws.com",
        &[
            "CreateNetworkAcl",
            "CreateNetworkAclEntry",
            "DeleteNetworkAcl",
            "DeleteNetworkAclEntry",
            "ReplaceNetworkAclEntry",
            "ReplaceNetworkAclAssociation",
        ],
    ) && succeeded(rec)
}

/// CIS 4.12.
fn network_gateway_changed(rec: &AuditRecord) -> bool {
    is(
        rec,
        "ec2.amazonaws.com",
        &[
            "CreateCustomerGateway",
            "DeleteCustomerGateway",
            "AttachInternetGateway",
            "CreateInternetGateway",
            "DeleteInternetGateway",
            "DetachInternetGateway",
        ],
    ) && succeeded(rec)
}

/// CIS 4.13.
fn route_table_changed(rec: &AuditRecord) -> bool {
    is(
        rec,
        "ec2.amazonaws.com",
        &[
            "CreateRoute",
            "CreateRouteTable",
            "ReplaceRoute",
            "ReplaceRouteTableAssociation",
            "DeleteRouteTable",
            "DeleteRoute",
            "DisassociateRouteTable",
        ],
    ) && succeeded(rec)
}

/// CIS 4.14.
fn vpc_changed(rec: &AuditRecord) -> bool {
    is(
        rec,
        "ec2.amazonaws.com",
        &[
            "CreateVpc",
            "DeleteVpc",
            "ModifyVpcAttribute",
            "AcceptVpcPeeringConnection",
            "CreateVpcPeeringConnection",
            "DeleteVpcPeeringConnection",
            "RejectVpcPeeringConnection",
            "AttachClassicLinkVpc",
            "DetachClassicLinkVpc",
            "DisableVpcClassicLink",
            "EnableVpcClassicLink",
        ],
    ) && succeeded(rec)
}

/// CIS 4.7: `eventSource = kms.amazonaws.com && (DisableKey ||
/// ScheduleKeyDeletion)` (only customer-managed keys can be disabled or
/// deleted).
fn kms_key_disabled_or_deleted(rec: &AuditRecord) -> bool {
    is(
        rec,
        "kms.amazonaws.com",
        &["DisableKey", "ScheduleKeyDeletion"],
    ) && succeeded(rec)
}

/// CIS 4.8.
fn s3_bucket_policy_changed(rec: &AuditRecord) -> bool {
    is(
        rec,
        "s3.amazonaws.com",
        &[
            "PutBucketAcl",
            "PutBucketPolicy",
            "PutBucketCors",
            "PutBucketLifecycle",
            "PutBucketReplication",
            "DeleteBucketPolicy",
            "DeleteBucketCors",
            "DeleteBucketLifecycle",
            "DeleteBucketReplication",
        ],
    ) && succeeded(rec)
}

/// CIS 4.9.
fn config_changed(rec: &AuditRecord) -> bool {
    is(
        rec,
        "config.amazonaws.com",
        &[
            "StopConfigurationRecorder",
            "DeleteDeliveryChannel",
            "PutDeliveryChannel",
            "PutConfigurationRecorder",
        ],
    ) && succeeded(rec)
}

/// CIS 4.15.
fn organizations_changed(rec: &AuditRecord) -> bool {
    is(
        rec,
        "organizations.amazonaws.com",
        &[
            "AcceptHandshake",
            "AttachPolicy",
            "CreateAccount",
            "CreateOrganizationalUnit",
            "CreatePolicy",
            "DeclineHandshake",
            "DeleteOrganization",
            "DeleteOrganizationalUnit",
            "DeletePolicy",
            "DetachPolicy",
            "DisablePolicyType",
            "EnablePolicyType",
            "InviteAccountToOrganization",
            "LeaveOrganization",
            "MoveAccount",
            "RemoveAccountFromOrganization",
            "UpdatePolicy",
            "UpdateOrganizationalUnit",
        ],
    ) && succeeded(rec)
}

fn iam_access_key_created(rec: &AuditRecord) -> bool {
    is(rec, "iam.amazonaws.com", &["CreateAccessKey"]) && succeeded(rec)
}

fn iam_user_created(rec: &AuditRecord) -> bool {
    is(rec, "iam.amazonaws.com", &["CreateUser"]) && succeeded(rec)
}

/// CIS 4.4: every IAM policy change, on users, groups and roles.
fn iam_policy_changed(rec: &AuditRecord) -> bool {
    is(
        rec,
        "iam.amazonaws.com",
        &[
            "DeleteGroupPolicy",
            "DeleteRolePolicy",
            "DeleteUserPolicy",
            "PutGroupPolicy",
            "PutRolePolicy",
            "PutUserPolicy",
            "CreatePolicy",
            "DeletePolicy",
            "CreatePolicyVersion",
            "DeletePolicyVersion",
            "AttachRolePolicy",
            "DetachRolePolicy",
            "AttachUserPolicy",
            "DetachUserPolicy",
            "AttachGroupPolicy",
            "DetachGroupPolicy",
        ],
    ) && succeeded(rec)
}

fn security_group_open_to_world(rec: &AuditRecord) -> bool {
    is(rec, "ec2.amazonaws.com", &["AuthorizeSecurityGroupIngress"])
        && succeeded(rec)
        && ingress_cidrs(&rec.raw)
            .iter()
            .any(|c| matches!(c.as_str(), "0.0.0.0/0" | "::/0"))
}

/// `requestParameters` of AuthorizeSecurityGroupIngress: the `ipPermissions`
/// list, or the legacy flat `cidrIp`.
#[derive(Deserialize)]
struct SgRequest {
    #[serde(rename = "ipPermissions")]
    ip_permissions: Option<Items<IpPermission>>,
    #[serde(rename = "cidrIp")]
    cidr_ip: Option<String>,
}

#[derive(Deserialize)]
struct IpPermission {
    #[serde(rename = "ipRanges")]
    ip_ranges: Option<Items<Cidr>>,
    #[serde(rename = "ipv6Ranges")]
    ipv6_ranges: Option<Items<Cidr>>,
}

/// A range or a rule: `cidrIp` (ipRanges), `cidrIpv6` (ipv6Ranges, rules),
/// `cidrIpv4` (rules).
#[derive(Deserialize)]
struct Cidr {
    #[serde(rename = "cidrIp")]
    cidr_ip: Option<String>,
    #[serde(rename = "cidrIpv4")]
    cidr_ipv4: Option<String>,
    #[serde(rename = "cidrIpv6")]
    cidr_ipv6: Option<String>,
}

/// The newer response: `securityGroupRuleSet.items[]` with `cidrIpv4` /
/// `cidrIpv6` per rule added.
#[derive(Deserialize)]
struct SgResponse {
    #[serde(rename = "securityGroupRuleSet")]
    rules: Option<Items<Cidr>>,
}

/// The CIDRs an AuthorizeSecurityGroupIngress record opens, from the request
/// and from the rules the response lists.
fn ingress_cidrs(raw: &str) -> Vec<String> {
    let Ok(wire) = serde_json::from_str::<Ec2Wire<'_>>(raw) else {
        return Vec::new();
    };
    let mut ranges: Vec<Cidr> = Vec::new();
    let mut out = Vec::new();
    if let Some(req) = wire
        .request_parameters
        .and_then(|r| serde_json::from_str::<SgRequest>(r.get()).ok())
    {
        out.extend(req.cidr_ip);
        for perm in req.ip_permissions.map(|p| p.items).unwrap_or_default() {
            ranges.extend(perm.ip_ranges.map(|r| r.items).unwrap_or_default());
            ranges.extend(perm.ipv6_ranges.map(|r| r.items).unwrap_or_default());
        }
    }
    if let Some(resp) = wire
        .response_elements
        .and_then(|r| serde_json::from_str::<SgResponse>(r.get()).ok())
    {
        ranges.extend(resp.rules.map(|r| r.items).unwrap_or_default());
    }
    for c in ranges {
        out.extend(c.cidr_ip);
        out.extend(c.cidr_ipv4);
        out.extend(c.cidr_ipv6);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalise::normalise;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    fn record(source: &str, name: &str, identity: &str, extra: &str) -> AuditRecord {
        let raw = format!(
            r#"{{"eventID":"e-1","eventTime":"2024-05-01T12:00:00Z","eventSource":"{source}","eventName":"{name}","awsRegion":"us-east-1","userIdentity":{identity}{extra}}}"#
        );
        normalise(raw.as_bytes()).expect("normalise")
    }

    const USER: &str = r#"{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333"}"#;
    const ROOT: &str =
        r#"{"type":"Root","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"}"#;
    const ROLE: &str = r#"{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/Admin/bob","accountId":"111122223333"}"#;

    fn ids(rec: &AuditRecord) -> Vec<&'static str> {
        evaluate(rec).into_iter().map(|f| f.rule).collect()
    }

    fn doc_record(i: usize) -> AuditRecord {
        let data = std::fs::read(format!("{FIXTURES}/doc_example_records.json")).expect("fixture");
        let raw = crate::records::json_records(&data[..], 1 << 20)
            .nth(i)
            .expect("record")
            .expect("ok");
        normalise(&raw.bytes).expect("normalise")
    }

    #[test]
    fn the_stores_rule_list_is_this_table() {
        let ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
        assert_eq!(ids, kopter_store::audit::RULE_IDS);
    }

    #[test]
    fn rule_ids_are_unique() {
        let mut seen: Vec<_> = RULES.iter().map(|r| r.id).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), RULES.len());
    }

    #[test]
    fn root_activity() {
        let rec = record("s3.amazonaws.com", "ListBuckets", ROOT, "");
        let findings = evaluate(&rec);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule, "root-activity");
        assert_eq!(findings[0].severity, Severity::Critical);
        assert_eq!(
            findings[0].summary,
            "Root user activity: s3.amazonaws.com ListBuckets by arn:aws:iam::111122223333:root in us-east-1"
        );
        assert!(ids(&record("s3.amazonaws.com", "ListBuckets", USER, "")).is_empty());
    }

    #[test]
    fn doc_console_login_without_mfa() {
        // doc record 0: IAM user anaya, Success, MFAUsed "No".
        let findings = evaluate(&doc_record(0));
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule, "console-login-without-mfa");
        assert_eq!(findings[0].severity, Severity::Warning);
        assert!(
            findings[0]
                .summary
                .contains("ConsoleLogin by arn:aws:iam::111122223333:user/anaya")
        );
        // doc record 1: the same with MFA; doc record 5: root without MFA.
        assert!(ids(&doc_record(1)).is_empty());
        assert_eq!(
            ids(&doc_record(5)),
            ["root-activity", "console-login-without-mfa"]
        );
        assert_eq!(
            ids(&doc_record(6)),
            ["root-activity"],
            "root with MFAUsed YES"
        );
    }

    #[test]
    fn console_login_without_mfa() {
        let ok = r#","responseElements":{"ConsoleLogin":"Success"}"#;
        let no_mfa = r#","additionalEventData":{"MFAUsed":"No"}"#;
        let rec = record(
            "signin.amazonaws.com",
            "ConsoleLogin",
            USER,
            &format!("{ok}{no_mfa}"),
        );
        assert_eq!(ids(&rec), ["console-login-without-mfa"]);
        let rec = record("signin.amazonaws.com", "ConsoleLogin", USER, ok);
        assert_eq!(
            ids(&rec),
            ["console-login-without-mfa"],
            "no MFAUsed at all"
        );
        let mfa = r#","additionalEventData":{"MFAUsed":"Yes"}"#;
        let rec = record(
            "signin.amazonaws.com",
            "ConsoleLogin",
            USER,
            &format!("{ok}{mfa}"),
        );
        assert!(ids(&rec).is_empty());
        let rec = record(
            "signin.amazonaws.com",
            "ConsoleLogin",
            ROLE,
            &format!("{ok}{no_mfa}"),
        );
        assert!(ids(&rec).is_empty(), "federated sign-in");
    }

    #[test]
    fn console_login_failed() {
        let rec = doc_record(2);
        let findings = evaluate(&rec);
        assert_eq!(findings.len(), 1);
        assert_eq!(
            (findings[0].rule, findings[0].severity),
            ("console-login-failed", Severity::Info)
        );
        assert!(
            findings[0].summary.contains("by IAMUser:anaya"),
            "{}",
            findings[0].summary
        );
        assert_eq!(
            ids(&doc_record(7)),
            ["root-activity", "console-login-failed"]
        );
        let rec = record(
            "signin.amazonaws.com",
            "ConsoleLogin",
            USER,
            r#","responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"MFAUsed":"Yes"}"#,
        );
        assert!(ids(&rec).is_empty());
    }

    #[test]
    fn cloudtrail_stopped() {
        for name in ["StopLogging", "DeleteTrail"] {
            let rec = record(
                "cloudtrail.amazonaws.com",
                name,
                USER,
                r#","requestParameters":{"name":"t"}"#,
            );
            assert_eq!(ids(&rec), ["cloudtrail-stopped"]);
        }
        let rec = record(
            "cloudtrail.amazonaws.com",
            "StopLogging",
            USER,
            r#","errorCode":"AccessDenied""#,
        );
        assert_eq!(
            ids(&rec),
            ["unauthorized-api-call"],
            "the attempt failed: refused, not stopped"
        );
        assert_eq!(
            ids(&record(
                "cloudtrail.amazonaws.com",
                "StartLogging",
                USER,
                ""
            )),
            ["cloudtrail-updated"],
            "starting is a configuration change, not a stop"
        );
    }

    #[test]
    fn cloudtrail_updated() {
        let rec = record("cloudtrail.amazonaws.com", "UpdateTrail", USER, "");
        assert_eq!(ids(&rec), ["cloudtrail-updated"]);
        // doc record 15 is an UpdateTrail that failed (TrailNotFoundException).
        let rec = doc_record(15);
        assert_eq!(rec.event_name, "UpdateTrail");
        assert!(ids(&rec).is_empty());
    }

    #[test]
    fn security_group_open_to_world() {
        let classic = r#","requestParameters":{"groupId":"sg-1a2b3c4d","ipPermissions":{"items":[{"ipProtocol":"tcp","fromPort":22,"toPort":22,"groups":{},"ipRanges":{"items":[{"cidrIp":"10.0.0.0/8"},{"cidrIp":"0.0.0.0/0"}]},"ipv6Ranges":{},"prefixListIds":{}}]}}"#;
        let rec = record(
            "ec2.amazonaws.com",
            "AuthorizeSecurityGroupIngress",
            USER,
            classic,
        );
        assert_eq!(
            ids(&rec),
            ["security-group-open-to-world", "security-group-changed"]
        );
        let v6 = r#","requestParameters":{"groupId":"sg-1","ipPermissions":{"items":[{"ipProtocol":"-1","ipv6Ranges":{"items":[{"cidrIpv6":"::/0"}]}}]}}"#;
        let rec = record(
            "ec2.amazonaws.com",
            "AuthorizeSecurityGroupIngress",
            USER,
            v6,
        );
        assert_eq!(
            ids(&rec),
            ["security-group-open-to-world", "security-group-changed"]
        );
        let rules = r#","requestParameters":{"groupId":"sg-1"},"responseElements":{"_return":true,"securityGroupRuleSet":{"items":[{"groupId":"sg-1","securityGroupRuleId":"sgr-1","isEgress":false,"ipProtocol":"tcp","fromPort":3389,"toPort":3389,"cidrIpv4":"0.0.0.0/0"}]}}"#;
        let rec = record(
            "ec2.amazonaws.com",
            "AuthorizeSecurityGroupIngress",
            USER,
            rules,
        );
        assert_eq!(
            ids(&rec),
            ["security-group-open-to-world", "security-group-changed"]
        );
        let flat = r#","requestParameters":{"groupName":"web","ipProtocol":"tcp","fromPort":80,"toPort":80,"cidrIp":"0.0.0.0/0"}"#;
        let rec = record(
            "ec2.amazonaws.com",
            "AuthorizeSecurityGroupIngress",
            USER,
            flat,
        );
        assert_eq!(
            ids(&rec),
            ["security-group-open-to-world", "security-group-changed"]
        );

        let private = classic.replace("0.0.0.0/0", "192.168.0.0/16");
        let rec = record(
            "ec2.amazonaws.com",
            "AuthorizeSecurityGroupIngress",
            USER,
            &private,
        );
        assert_eq!(ids(&rec), ["security-group-changed"]);
        let egress = record(
            "ec2.amazonaws.com",
            "AuthorizeSecurityGroupEgress",
            USER,
            classic,
        );
        assert_eq!(ids(&egress), ["security-group-changed"]);
        let failed = format!(r#","errorCode":"InvalidPermission.Duplicate"{classic}"#);
        let rec = record(
            "ec2.amazonaws.com",
            "AuthorizeSecurityGroupIngress",
            USER,
            &failed,
        );
        assert!(ids(&rec).is_empty());
    }

    #[test]
    fn iam_access_key_created() {
        let rec = record(
            "iam.amazonaws.com",
            "CreateAccessKey",
            USER,
            r#","requestParameters":{"userName":"ci"}"#,
        );
        assert_eq!(ids(&rec), ["iam-access-key-created"]);
        assert!(ids(&record("iam.amazonaws.com", "ListAccessKeys", USER, "")).is_empty());
        assert!(ids(&record("sts.amazonaws.com", "CreateAccessKey", USER, "")).is_empty());
    }

    #[test]
    fn iam_user_created() {
        // doc record 13 (2014, no eventID): Alice creates Bob.
        let data = std::fs::read(format!("{FIXTURES}/doc_example_records.json")).expect("fixture");
        let mut raw = crate::records::json_records(&data[..], 1 << 20)
            .nth(13)
            .expect("record")
            .expect("ok")
            .bytes;
        raw.splice(1..1, br#""eventID":"x","#.iter().copied());
        let rec = normalise(&raw).expect("ok");
        let findings = evaluate(&rec);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule, "iam-user-created");
        assert!(
            findings[0].summary.ends_with(
                "iam.amazonaws.com CreateUser by arn:aws:iam::123456789012:user/Alice in us-east-2"
            ),
            "{}",
            findings[0].summary
        );
        let rec = record(
            "iam.amazonaws.com",
            "CreateUser",
            USER,
            r#","errorCode":"EntityAlreadyExists""#,
        );
        assert!(ids(&rec).is_empty());
    }

    #[test]
    fn iam_policy_changed() {
        for name in [
            "AttachUserPolicy",
            "PutUserPolicy",
            "AttachRolePolicy",
            "CreatePolicyVersion",
            "DetachGroupPolicy",
        ] {
            let rec = record("iam.amazonaws.com", name, ROLE, "");
            assert_eq!(ids(&rec), ["iam-policy-changed"], "{name}");
        }
        assert!(ids(&record("iam.amazonaws.com", "GetPolicy", ROLE, "")).is_empty());
    }

    #[test]
    fn doc_records_findings() {
        let data = std::fs::read(format!("{FIXTURES}/doc_example_records.json")).expect("fixture");
        let found: Vec<(usize, Vec<&str>)> = crate::records::json_records(&data[..], 1 << 20)
            .enumerate()
            .filter_map(|(i, r)| {
                let rec = normalise(&r.expect("record").bytes).ok()?;
                let ids = ids(&rec);
                (!ids.is_empty()).then_some((i, ids))
            })
            .collect();
        assert_eq!(
            found,
            [
                (0, vec!["console-login-without-mfa"]),
                (2, vec!["console-login-failed"]),
                (5, vec!["root-activity", "console-login-without-mfa"]),
                (6, vec!["root-activity"]),
                (7, vec!["root-activity", "console-login-failed"]),
                (8, vec!["root-activity"]),
                (9, vec!["root-activity"]),
                (13, vec!["iam-user-created"]),
                (18, vec!["console-login-without-mfa"]),
            ]
        );
    }

    /// CIS 4.3: root's own calls alarm; what AWS services do for root
    /// (`invokedBy` set, or `eventType: AwsServiceEvent`) does not.
    #[test]
    fn root_activity_excludes_service_calls_on_roots_behalf() {
        let by_service = r#"{"type":"Root","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","invokedBy":"cloudformation.amazonaws.com"}"#;
        let rec = record("ec2.amazonaws.com", "DescribeInstances", by_service, "");
        assert!(ids(&rec).is_empty(), "invokedBy");
        let service_event = record(
            "sso.amazonaws.com",
            "ListInstances",
            ROOT,
            r#","eventType":"AwsServiceEvent""#,
        );
        assert!(ids(&service_event).is_empty(), "AwsServiceEvent");
        let own = record(
            "s3.amazonaws.com",
            "ListBuckets",
            ROOT,
            r#","eventType":"AwsApiCall""#,
        );
        assert_eq!(ids(&own), ["root-activity"]);
    }

    /// One record per CIS monitoring control (4.1-4.15), each in the shape
    /// the control's filter describes (source, name, error), and the same
    /// record refused, which only the unauthorized-call rule reports.
    #[test]
    fn cis_monitoring_rules() {
        let denied = r#","errorCode":"AccessDenied","errorMessage":"User is not authorized""#;
        let cases: &[(&str, &str, &str, &str, &[&str])] = &[
            // 4.1
            (
                "ec2.amazonaws.com",
                "RunInstances",
                USER,
                r#","errorCode":"Client.UnauthorizedOperation""#,
                &["unauthorized-api-call"],
            ),
            (
                "s3.amazonaws.com",
                "GetObject",
                USER,
                r#","errorCode":"AccessDenied""#,
                &["unauthorized-api-call"],
            ),
            (
                "s3.amazonaws.com",
                "HeadBucket",
                USER,
                r#","errorCode":"AccessDenied""#,
                &[],
            ),
            (
                "s3.amazonaws.com",
                "PutObject",
                USER,
                r#","errorCode":"AccessDenied","sourceIPAddress":"delivery.logs.amazonaws.com""#,
                &[],
            ),
            // 4.2
            (
                "signin.amazonaws.com",
                "ConsoleLogin",
                USER,
                r#","responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"MFAUsed":"No"}"#,
                &["console-login-without-mfa"],
            ),
            // 4.3
            (
                "iam.amazonaws.com",
                "ListUsers",
                ROOT,
                "",
                &["root-activity"],
            ),
            // 4.4
            (
                "iam.amazonaws.com",
                "PutRolePolicy",
                USER,
                "",
                &["iam-policy-changed"],
            ),
            // 4.5
            (
                "cloudtrail.amazonaws.com",
                "CreateTrail",
                USER,
                "",
                &["cloudtrail-updated"],
            ),
            (
                "cloudtrail.amazonaws.com",
                "StartLogging",
                USER,
                "",
                &["cloudtrail-updated"],
            ),
            (
                "cloudtrail.amazonaws.com",
                "StopLogging",
                USER,
                "",
                &["cloudtrail-stopped"],
            ),
            // 4.6
            (
                "signin.amazonaws.com",
                "ConsoleLogin",
                USER,
                r#","errorMessage":"Failed authentication""#,
                &["console-login-failed"],
            ),
            // 4.7
            (
                "kms.amazonaws.com",
                "DisableKey",
                USER,
                "",
                &["kms-key-disabled-or-deleted"],
            ),
            (
                "kms.amazonaws.com",
                "ScheduleKeyDeletion",
                USER,
                "",
                &["kms-key-disabled-or-deleted"],
            ),
            ("kms.amazonaws.com", "EnableKey", USER, "", &[]),
            // 4.8
            (
                "s3.amazonaws.com",
                "PutBucketPolicy",
                USER,
                "",
                &["s3-bucket-policy-changed"],
            ),
            (
                "s3.amazonaws.com",
                "DeleteBucketReplication",
                USER,
                "",
                &["s3-bucket-policy-changed"],
            ),
            // 4.9
            (
                "config.amazonaws.com",
                "StopConfigurationRecorder",
                USER,
                "",
                &["config-changed"],
            ),
            (
                "config.amazonaws.com",
                "DeleteDeliveryChannel",
                USER,
                "",
                &["config-changed"],
            ),
            // 4.10
            (
                "ec2.amazonaws.com",
                "RevokeSecurityGroupEgress",
                USER,
                "",
                &["security-group-changed"],
            ),
            (
                "ec2.amazonaws.com",
                "CreateSecurityGroup",
                USER,
                "",
                &["security-group-changed"],
            ),
            // 4.11
            (
                "ec2.amazonaws.com",
                "ReplaceNetworkAclEntry",
                USER,
                "",
                &["network-acl-changed"],
            ),
            // 4.12
            (
                "ec2.amazonaws.com",
                "AttachInternetGateway",
                USER,
                "",
                &["network-gateway-changed"],
            ),
            (
                "ec2.amazonaws.com",
                "DeleteCustomerGateway",
                USER,
                "",
                &["network-gateway-changed"],
            ),
            // 4.13
            (
                "ec2.amazonaws.com",
                "ReplaceRoute",
                USER,
                "",
                &["route-table-changed"],
            ),
            (
                "ec2.amazonaws.com",
                "DisassociateRouteTable",
                USER,
                "",
                &["route-table-changed"],
            ),
            // 4.14
            (
                "ec2.amazonaws.com",
                "CreateVpcPeeringConnection",
                USER,
                "",
                &["vpc-changed"],
            ),
            (
                "ec2.amazonaws.com",
                "ModifyVpcAttribute",
                USER,
                "",
                &["vpc-changed"],
            ),
            // 4.15
            (
                "organizations.amazonaws.com",
                "LeaveOrganization",
                USER,
                "",
                &["organizations-changed"],
            ),
            (
                "organizations.amazonaws.com",
                "CreateAccount",
                USER,
                "",
                &["organizations-changed"],
            ),
            // Same names from another service are not these changes.
            ("route53.amazonaws.com", "CreateRoute", USER, "", &[]),
        ];
        for (source, name, identity, extra, want) in cases {
            let rec = record(source, name, identity, extra);
            assert_eq!(&ids(&rec), want, "{source} {name} {extra}");
            // Refused for lack of permission: not a change, but reported as
            // an unauthorized call (root's attempt stays root activity).
            let refused = record(source, name, identity, denied);
            let mut expected: Vec<&str> = Vec::new();
            if *identity == ROOT {
                expected.push("root-activity");
            }
            if name != &"HeadBucket" {
                expected.push("unauthorized-api-call");
            }
            if *name == "ConsoleLogin" {
                continue;
            }
            assert_eq!(ids(&refused), expected, "{source} {name} refused");
        }
        // Every rule is exercised by at least one case above.
        for rule in RULES {
            let covered = cases.iter().any(|c| c.4.contains(&rule.id))
                || [
                    "iam-access-key-created",
                    "iam-user-created",
                    "security-group-open-to-world",
                ]
                .contains(&rule.id);
            assert!(covered, "{} has no case", rule.id);
        }
    }

    #[test]
    fn a_tenant_can_turn_a_rule_off() {
        let rec = record("cloudtrail.amazonaws.com", "StopLogging", ROOT, "");
        assert_eq!(ids(&rec), ["root-activity", "cloudtrail-stopped"]);
        let off: std::collections::BTreeSet<String> =
            ["root-activity".to_owned(), "no-such-rule".to_owned()].into();
        let left: Vec<_> = evaluate_enabled(&rec, &off)
            .into_iter()
            .map(|f| f.rule)
            .collect();
        assert_eq!(left, ["cloudtrail-stopped"]);
        assert!(rule("vpc-changed").is_some() && rule("no-such-rule").is_none());
    }
}

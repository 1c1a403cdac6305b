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
//! call to have succeeded (`errorCode` absent); the root-activity and failed
//! console-login rules do not.

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
        id: "cloudtrail-stopped",
        severity: Severity::Critical,
        summary: "CloudTrail logging stopped or trail deleted",
        matches: cloudtrail_stopped,
    },
    Rule {
        id: "cloudtrail-updated",
        severity: Severity::Warning,
        summary: "CloudTrail trail changed",
        matches: cloudtrail_updated,
    },
    Rule {
        id: "security-group-open-to-world",
        severity: Severity::Critical,
        summary: "Security group ingress opened to the whole internet",
        matches: security_group_open_to_world,
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
        id: "iam-user-policy-changed",
        severity: Severity::Warning,
        summary: "Policy attached to or put on an IAM user",
        matches: iam_user_policy_changed,
    },
];

/// The findings of every rule that matches `rec`, in [`RULES`] order.
pub fn evaluate(rec: &AuditRecord) -> Vec<Finding> {
    RULES
        .iter()
        .filter(|rule| (rule.matches)(rec))
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

fn is(rec: &AuditRecord, source: &str, names: &[&str]) -> bool {
    names.contains(&rec.event_name.as_str()) && rec.event_source == source
}

fn succeeded(rec: &AuditRecord) -> bool {
    rec.error_code.is_none()
}

fn root_activity(rec: &AuditRecord) -> bool {
    rec.principal_type.as_deref() == Some("Root")
}

/// Federated sign-ins (`AssumedRole`, …) always log `MFAUsed: No` because MFA
/// happens at the identity provider, so only IAM users and root count.
fn console_login_without_mfa(rec: &AuditRecord) -> bool {
    is(rec, "signin.amazonaws.com", &["ConsoleLogin"])
        && rec.console_login.as_deref() == Some("Success")
        && rec.mfa_used != Some(true)
        && matches!(rec.principal_type.as_deref(), Some("IAMUser" | "Root"))
}

fn console_login_failed(rec: &AuditRecord) -> bool {
    is(rec, "signin.amazonaws.com", &["ConsoleLogin"])
        && rec.console_login.as_deref() == Some("Failure")
}

fn cloudtrail_stopped(rec: &AuditRecord) -> bool {
    is(
        rec,
        "cloudtrail.amazonaws.com",
        &["StopLogging", "DeleteTrail"],
    ) && succeeded(rec)
}

fn cloudtrail_updated(rec: &AuditRecord) -> bool {
    is(rec, "cloudtrail.amazonaws.com", &["UpdateTrail"]) && succeeded(rec)
}

fn iam_access_key_created(rec: &AuditRecord) -> bool {
    is(rec, "iam.amazonaws.com", &["CreateAccessKey"]) && succeeded(rec)
}

fn iam_user_created(rec: &AuditRecord) -> bool {
    is(rec, "iam.amazonaws.com", &["CreateUser"]) && succeeded(rec)
}

fn iam_user_policy_changed(rec: &AuditRecord) -> bool {
    is(
        rec,
        "iam.amazonaws.com",
        &["AttachUserPolicy", "PutUserPolicy"],
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
            findings[0].summary.contains("by an unknown principal"),
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
        assert!(ids(&rec).is_empty(), "the attempt failed");
        assert!(
            ids(&record(
                "cloudtrail.amazonaws.com",
                "StartLogging",
                USER,
                ""
            ))
            .is_empty()
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
        assert_eq!(ids(&rec), ["security-group-open-to-world"]);
        let v6 = r#","requestParameters":{"groupId":"sg-1","ipPermissions":{"items":[{"ipProtocol":"-1","ipv6Ranges":{"items":[{"cidrIpv6":"::/0"}]}}]}}"#;
        let rec = record(
            "ec2.amazonaws.com",
            "AuthorizeSecurityGroupIngress",
            USER,
            v6,
        );
        assert_eq!(ids(&rec), ["security-group-open-to-world"]);
        let rules = r#","requestParameters":{"groupId":"sg-1"},"responseElements":{"_return":true,"securityGroupRuleSet":{"items":[{"groupId":"sg-1","securityGroupRuleId":"sgr-1","isEgress":false,"ipProtocol":"tcp","fromPort":3389,"toPort":3389,"cidrIpv4":"0.0.0.0/0"}]}}"#;
        let rec = record(
            "ec2.amazonaws.com",
            "AuthorizeSecurityGroupIngress",
            USER,
            rules,
        );
        assert_eq!(ids(&rec), ["security-group-open-to-world"]);
        let flat = r#","requestParameters":{"groupName":"web","ipProtocol":"tcp","fromPort":80,"toPort":80,"cidrIp":"0.0.0.0/0"}"#;
        let rec = record(
            "ec2.amazonaws.com",
            "AuthorizeSecurityGroupIngress",
            USER,
            flat,
        );
        assert_eq!(ids(&rec), ["security-group-open-to-world"]);

        let private = classic.replace("0.0.0.0/0", "192.168.0.0/16");
        let rec = record(
            "ec2.amazonaws.com",
            "AuthorizeSecurityGroupIngress",
            USER,
            &private,
        );
        assert!(ids(&rec).is_empty());
        let egress = record(
            "ec2.amazonaws.com",
            "AuthorizeSecurityGroupEgress",
            USER,
            classic,
        );
        assert!(ids(&egress).is_empty());
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
    fn iam_user_policy_changed() {
        for name in ["AttachUserPolicy", "PutUserPolicy"] {
            let rec = record("iam.amazonaws.com", name, ROLE, "");
            assert_eq!(ids(&rec), ["iam-user-policy-changed"]);
        }
        assert!(ids(&record("iam.amazonaws.com", "AttachRolePolicy", ROLE, "")).is_empty());
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
                (18, vec!["console-login-without-mfa"]),
            ]
        );
    }
}

//! deploy/cloudformation gives the customer the same role as the Terraform
//! module: every statement of modules/customer-role's access policy, with
//! the same actions and conditions, is in the CloudFormation templates,
//! and the trust requires the ExternalId and Kopter's task roles. Parses
//! the files only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hcl::{Block, Body, Expression};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn src(expr: &Expression) -> String {
    hcl::format::to_string(expr).expect("format expression")
}

fn attr<'a>(body: &'a Body, name: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|a| a.key() == name)
        .map(|a| a.expr())
}

fn blocks<'a>(body: &'a Body, kind: &'a str) -> impl Iterator<Item = &'a Block> {
    body.blocks().filter(move |b| b.identifier() == kind)
}

/// What a statement allows: actions, and conditions as
/// `(operator, variable, values)` with Terraform's local tag name resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    actions: BTreeSet<String>,
    conditions: BTreeSet<(String, String, String)>,
}

/// `sid → grant` of a `data "aws_iam_policy_document" name` block.
fn terraform_statements(name: &str) -> BTreeMap<String, Grant> {
    let path = root().join("deploy/terraform/modules/customer-role/main.tf");
    let body: Body = hcl::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let doc = blocks(&body, "data")
        .find(|b| {
            b.labels()
                .iter()
                .map(|l| l.as_str())
                .eq(["aws_iam_policy_document", name])
        })
        .unwrap_or_else(|| panic!("no policy document {name}"));
    let mut out = BTreeMap::new();
    for b in doc.body().blocks() {
        let st = match (b.identifier(), b.labels().first().map(|l| l.as_str())) {
            ("statement", _) => b.body().clone(),
            ("dynamic", Some("statement")) => {
                blocks(b.body(), "content").next().unwrap().body().clone()
            }
            _ => continue,
        };
        let sid = attr(&st, "sid")
            .map(|e| src(e).trim_matches('"').to_owned())
            .unwrap_or_default();
        let actions = strings(attr(&st, "actions").unwrap());
        let conditions = blocks(&st, "condition")
            .map(|c| {
                let b = c.body();
                let values = strings(attr(b, "values").unwrap());
                (
                    src(attr(b, "test").unwrap()).trim_matches('"').to_owned(),
                    src(attr(b, "variable").unwrap())
                        .trim_matches('"')
                        .replace("${local.managed_tag}", "kopter:managed"),
                    values.join(","),
                )
            })
            .collect();
        out.insert(
            sid,
            Grant {
                actions: actions.into_iter().collect(),
                conditions,
            },
        );
    }
    out
}

/// A list of string literals; a string with an interpolation (the trail
/// resource ARNs) is kept as its source.
fn strings(e: &Expression) -> Vec<String> {
    match e {
        Expression::Array(items) => items
            .iter()
            .map(|i| match i {
                Expression::String(s) => s.clone(),
                other => src(other).trim_matches('"').to_owned(),
            })
            .collect(),
        other => vec![src(other)],
    }
}

fn template(name: &str) -> Value {
    let path = root().join("deploy/cloudformation").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn the_role(t: &Value) -> &Value {
    let roles: Vec<&Value> = t["Resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["Type"] == "AWS::IAM::Role")
        .collect();
    assert_eq!(roles.len(), 1, "one role per template");
    &roles[0]["Properties"]
}

fn conditions_of(st: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    if let Some(ops) = st["Condition"].as_object() {
        for (op, vars) in ops {
            for (var, val) in vars.as_object().unwrap() {
                let val = match val {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.insert((op.clone(), var.clone(), val));
            }
        }
    }
    out
}

/// `sid → grant` of the role's inline policies; a statement under
/// `Fn::If [cond, statement, AWS::NoValue]` counts (it is there when the
/// parameter is given, like Terraform's dynamic statements).
fn template_statements(t: &Value) -> BTreeMap<String, Grant> {
    let mut out = BTreeMap::new();
    for p in the_role(t)["Policies"].as_array().unwrap() {
        for st in p["PolicyDocument"]["Statement"].as_array().unwrap() {
            let st = match st.get("Fn::If") {
                Some(branches) => &branches[1],
                None => st,
            };
            assert_eq!(st["Effect"], "Allow");
            let actions = match &st["Action"] {
                Value::String(a) => BTreeSet::from([a.clone()]),
                Value::Array(a) => a.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
                other => panic!("Action {other}"),
            };
            out.insert(
                st["Sid"].as_str().unwrap().to_owned(),
                Grant {
                    actions,
                    conditions: conditions_of(st),
                },
            );
        }
    }
    out
}

fn assert_trust(t: &Value) {
    let trust = &the_role(t)["AssumeRolePolicyDocument"]["Statement"];
    assert_eq!(trust.as_array().unwrap().len(), 1);
    let st = &trust[0];
    assert_eq!(st["Action"], "sts:AssumeRole");
    assert_eq!(
        st["Condition"]["StringEquals"]["sts:ExternalId"]["Ref"],
        "ExternalId"
    );
    let pattern = st["Condition"]["ArnLike"]["aws:PrincipalArn"]["Fn::Sub"]
        .as_str()
        .unwrap();
    assert!(pattern.ends_with(":role/*-kopter-*-task"), "{pattern}");
    // Kopter assumes only roles named KopterAccess… (its task policy).
    let name = &t["Parameters"]["RoleName"];
    assert!(
        name["Default"]
            .as_str()
            .unwrap()
            .starts_with("KopterAccess")
    );
    assert!(
        name["AllowedPattern"]
            .as_str()
            .unwrap()
            .starts_with("^KopterAccess")
    );
}

#[test]
fn the_member_role_template_grants_exactly_what_the_terraform_module_grants() {
    let terraform = terraform_statements("access");
    assert!(terraform.len() >= 7, "{terraform:?}");
    let member = template("kopter-member-role.json");
    assert_eq!(template_statements(&member), terraform);
    assert_trust(&member);
    let tf_trust = terraform_statements("trust");
    let tf_trust = &tf_trust["KopterWithExternalId"];
    assert_eq!(
        tf_trust.actions,
        BTreeSet::from(["sts:AssumeRole".to_owned()])
    );
    let vars: BTreeSet<_> = tf_trust
        .conditions
        .iter()
        .map(|(op, var, _)| (op.as_str(), var.as_str()))
        .collect();
    assert_eq!(
        vars,
        BTreeSet::from([
            ("StringEquals", "sts:ExternalId"),
            ("ArnLike", "aws:PrincipalArn")
        ])
    );
}

#[test]
fn the_stackset_variant_has_the_estate_permissions_without_trail_statements() {
    let mut terraform = terraform_statements("access");
    terraform.retain(|sid, _| !sid.contains("CloudTrail"));
    let stackset = template("kopter-member-stackset.json");
    assert_eq!(template_statements(&stackset), terraform);
    assert_trust(&stackset);
    // One ExternalId parameter for every account of the organization.
    assert!(stackset["Parameters"]["ExternalId"].is_object());
    assert!(stackset["Parameters"].get("TrailBucketName").is_none());
}

#[test]
fn the_management_role_only_reads_the_organization() {
    let org = template("kopter-org-read-role.json");
    assert_trust(&org);
    let grants = template_statements(&org);
    let actions: BTreeSet<&str> = grants
        .values()
        .flat_map(|g| g.actions.iter().map(String::as_str))
        .collect();
    // What kopter_runtime::org calls, nothing more.
    assert_eq!(
        actions,
        BTreeSet::from([
            "organizations:DescribeOrganization",
            "organizations:ListAccounts"
        ])
    );
    let calls = std::fs::read_to_string(root().join("libs/runtime/src/org.rs")).unwrap();
    assert!(calls.contains(".describe_organization()") && calls.contains(".list_accounts()"));
    assert_eq!(
        org["Parameters"]["RoleName"]["Default"],
        "KopterAccess-OrgRead"
    );
}

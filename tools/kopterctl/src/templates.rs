//! The customer's CloudFormation templates (`deploy/cloudformation`),
//! compiled in, and the policies `kopterctl onboard` prints resolved from
//! them: one source for the quick-create stack, the hand-made role and the
//! Terraform module (tests/tests/cloudformation.rs holds the template to
//! the module).

use std::collections::BTreeMap;

use serde_json::Value;

/// The member role of one account.
pub const MEMBER_ROLE: &str =
    include_str!("../../../deploy/cloudformation/kopter-member-role.json");

/// The template's parameters and conditions as `onboard` fills them.
pub struct Fill<'a> {
    pub partition: &'a str,
    pub customer_account: &'a str,
    pub params: BTreeMap<&'a str, String>,
}

impl Fill<'_> {
    /// The role's trust policy and its inline permissions policy.
    pub fn policies(&self) -> (Value, Value) {
        let t: Value = serde_json::from_str(MEMBER_ROLE).expect("the compiled-in template is JSON");
        let role = t["Resources"]
            .as_object()
            .expect("Resources")
            .values()
            .find(|r| r["Type"] == "AWS::IAM::Role")
            .expect("one role")["Properties"]
            .clone();
        let trust = self.resolve(&t, &role["AssumeRolePolicyDocument"]);
        let permissions = self.resolve(&t, &role["Policies"][0]["PolicyDocument"]);
        (trust, permissions)
    }

    /// `Fn::Sub`, `Fn::If`, `Ref` (parameters, `AWS::NoValue`) and the
    /// template's `Fn::Not [Fn::Equals [Ref, ""]]` conditions.
    fn resolve(&self, t: &Value, v: &Value) -> Value {
        match v {
            Value::Object(o) if o.len() == 1 && o.contains_key("Fn::Sub") => {
                Value::String(self.sub(o["Fn::Sub"].as_str().expect("Fn::Sub of a string")))
            }
            Value::Object(o) if o.len() == 1 && o.contains_key("Ref") => {
                match o["Ref"].as_str().expect("Ref of a name") {
                    "AWS::NoValue" => Value::Null,
                    name => Value::String(self.param(name)),
                }
            }
            Value::Object(o) if o.len() == 1 && o.contains_key("Fn::If") => {
                let [cond, yes, no] = o["Fn::If"].as_array().expect("Fn::If list").as_slice()
                else {
                    panic!("Fn::If takes three items");
                };
                let holds = self.condition(t, cond.as_str().expect("condition name"));
                self.resolve(t, if holds { yes } else { no })
            }
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), self.resolve(t, v)))
                    .filter(|(_, v)| !v.is_null())
                    .collect(),
            ),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|v| self.resolve(t, v))
                    .filter(|v| !v.is_null())
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn condition(&self, t: &Value, name: &str) -> bool {
        let c = &t["Conditions"][name]["Fn::Not"][0]["Fn::Equals"];
        let param = c[0]["Ref"].as_str().expect("a parameter condition");
        self.param(param) != c[1].as_str().unwrap_or_default()
    }

    fn param(&self, name: &str) -> String {
        match name {
            "AWS::Partition" => self.partition.to_owned(),
            "AWS::AccountId" => self.customer_account.to_owned(),
            p => self.params.get(p).cloned().unwrap_or_default(),
        }
    }

    fn sub(&self, s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("closed ${") + start;
            out.push_str(&self.param(&rest[start + 2..end]));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// The CloudFormation console's quick-create link of the member role with
/// every parameter filled in.
pub fn quick_create_link(
    template_url: &str,
    region: &str,
    params: &BTreeMap<&str, String>,
) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut link = format!(
        "https://console.aws.amazon.com/cloudformation/home?region={region}#/stacks/quickcreate?templateURL={}&stackName=KopterAccess",
        enc(template_url)
    );
    for (k, v) in params {
        if !v.is_empty() {
            link.push_str(&format!("&param_{k}={}", enc(v)));
        }
    }
    link
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(trail: bool) -> Fill<'static> {
        let mut params = BTreeMap::from([
            ("KopterAccountId", "123456789012".to_owned()),
            ("ExternalId", "kopter-abc".to_owned()),
            ("RoleName", "KopterAccess".to_owned()),
        ]);
        if trail {
            params.insert("TrailBucketName", "trail-bucket".into());
            params.insert("TrailPrefix", "org".into());
        }
        Fill {
            partition: "aws",
            customer_account: "111122223333",
            params,
        }
    }

    #[test]
    fn policies_resolve_from_the_template() {
        let (trust, perms) = fill(false).policies();
        let st = &trust["Statement"][0];
        assert_eq!(st["Principal"]["AWS"], "arn:aws:iam::123456789012:root");
        assert_eq!(
            st["Condition"]["StringEquals"]["sts:ExternalId"],
            "kopter-abc"
        );
        assert_eq!(
            st["Condition"]["ArnLike"]["aws:PrincipalArn"],
            "arn:aws:iam::123456789012:role/*-kopter-*-task"
        );
        let sids: Vec<&str> = perms["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().unwrap())
            .collect();
        assert!(sids.contains(&"DescribeEstate"), "{sids:?}");
        assert!(!sids.contains(&"ReadCloudTrailFiles"), "no trail: {sids:?}");
        assert!(!perms.to_string().contains("${"), "{perms}");

        let (_, perms) = fill(true).policies();
        let read = perms["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == "ReadCloudTrailFiles")
            .expect("trail statement");
        assert_eq!(
            read["Resource"],
            "arn:aws:s3:::trail-bucket/org/AWSLogs/111122223333/*"
        );
    }

    #[test]
    fn the_link_carries_the_external_id() {
        let link = quick_create_link(
            "https://bucket.s3.amazonaws.com/kopter-member-role.json",
            "eu-west-1",
            &fill(false).params,
        );
        assert!(link.contains("param_ExternalId=kopter-abc"), "{link}");
        assert!(link.contains("templateURL=https%3A%2F%2Fbucket"), "{link}");
        assert!(link.contains("region=eu-west-1"), "{link}");
    }
}

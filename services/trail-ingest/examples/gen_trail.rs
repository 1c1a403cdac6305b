//! Writes a synthetic, realistic CloudTrail log file for benchmarks:
//!
//! ```sh
//! cargo run --release -p trail-ingest --example gen_trail -- out.json.gz 1024
//! ```
//!
//! writes `{"Records":[…]}` of about 1024 MB (10^6 bytes) uncompressed,
//! gzipped. Records mix the services Kopter cares about (EC2, S3 data
//! events, IAM, STS, console sign-in, CloudTrail, KMS, Lambda) and identity
//! types (IAM users, assumed roles, root, AWS services), with nested request
//! and response elements, escaped strings (IAM policy documents, user
//! agents) and the usual envelope fields, about 1–2 KB each. The output is
//! the same for the same size (a seeded PRNG) and is streamed: memory stays
//! flat whatever the size.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

/// SplitMix64: tiny, seeded, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn hex(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            let _ = write!(s, "{:016x}", self.next());
        }
        s.truncate(n);
        s
    }
    fn upper(&mut self, n: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        (0..n).map(|_| A[self.below(A.len())] as char).collect()
    }
    fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
    fn ip(&mut self) -> String {
        let n = self.next();
        format!(
            "{}.{}.{}.{}",
            1 + n % 223,
            (n >> 8) % 256,
            (n >> 16) % 256,
            1 + (n >> 24) % 254
        )
    }
}

/// A JSON string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

const ACCOUNTS: &[&str] = &["111111111111", "222222222222", "333333333333"];
const REGIONS: &[&str] = &["us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2"];
const USERS: &[&str] = &["alice", "bob", "ci-deploy", "terraform", "mary.major"];
const ROLES: &[&str] = &[
    "OrganizationAccountAccessRole",
    "KopterAccess",
    "AWSReservedSSO_Admin_0a1b2c",
    "ecsTaskRole",
];
const AGENTS: &[&str] = &[
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1014-aws exe/x86_64.ubuntu.22 prompt/off command/ec2.describe-instances",
    "aws-sdk-go-v2/1.25.2 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.150.0",
    "Boto3/1.34.61 md/Botocore#1.34.61 ua/2.0 os/linux#5.10.210 md/arch#x86_64 lang/python#3.12.2 cfg/retry-mode#legacy Botocore/1.34.61",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Terraform/1.7.4 (+https://www.terraform.io) terraform-provider-aws/5.40.0 (+https://registry.terraform.io/providers/hashicorp/aws) \"quoted\\path\"",
    "AWS Internal",
];

struct Gen {
    rng: Rng,
    seconds: u64,
    n: u64,
}

struct Identity {
    json: String,
    service: bool,
}

impl Gen {
    fn identity(&mut self, account: &str, kind: usize) -> Identity {
        let r = &mut self.rng;
        let created = format!(
            "2024-05-01T0{}:{:02}:{:02}Z",
            r.below(9),
            r.below(60),
            r.below(60)
        );
        let json = match kind {
            0 => {
                let user = r.pick(USERS);
                format!(
                    r#"{{"type":"IAMUser","principalId":"AIDA{}","arn":"arn:aws:iam::{account}:user/{user}","accountId":"{account}","accessKeyId":"AKIA{}","userName":"{user}","sessionContext":{{"sessionIssuer":{{}},"webIdFederationData":{{}},"attributes":{{"creationDate":"{created}","mfaAuthenticated":"{}"}}}}}}"#,
                    r.upper(17),
                    r.upper(16),
                    r.chance(50)
                )
            }
            1 => {
                let role = r.pick(ROLES);
                let id = r.upper(17);
                let session = r.pick(USERS);
                format!(
                    r#"{{"type":"AssumedRole","principalId":"AROA{id}:{session}","arn":"arn:aws:sts::{account}:assumed-role/{role}/{session}","accountId":"{account}","accessKeyId":"ASIA{}","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"AROA{id}","arn":"arn:aws:iam::{account}:role/{role}","accountId":"{account}","userName":"{role}"}},"webIdFederationData":{{}},"attributes":{{"creationDate":"{created}","mfaAuthenticated":"false"}}}}}}"#,
                    r.upper(16)
                )
            }
            2 => format!(
                r#"{{"type":"Root","principalId":"{account}","arn":"arn:aws:iam::{account}:root","accountId":"{account}","accessKeyId":"ASIA{}","sessionContext":{{"sessionIssuer":{{}},"webIdFederationData":{{}},"attributes":{{"creationDate":"{created}","mfaAuthenticated":"true"}}}}}}"#,
                r.upper(16)
            ),
            _ => {
                let by = r.pick(&[
                    "autoscaling.amazonaws.com",
                    "ec2.amazonaws.com",
                    "lambda.amazonaws.com",
                    "cloudformation.amazonaws.com",
                ]);
                return Identity {
                    json: format!(r#"{{"type":"AWSService","invokedBy":"{by}"}}"#),
                    service: true,
                };
            }
        };
        Identity {
            json,
            service: false,
        }
    }

    /// `(source, name, readOnly, requestParameters, responseElements,
    /// additionalEventData, resources)` of one event.
    fn event(
        &mut self,
        account: &str,
        region: &str,
    ) -> (
        &'static str,
        &'static str,
        bool,
        String,
        String,
        String,
        String,
    ) {
        let r = &mut self.rng;
        let pick = r.below(100);
        let null = || "null".to_owned();
        match pick {
            0..=17 => {
                let ids: Vec<String> = (0..1 + r.below(3))
                    .map(|_| format!(r#"{{"instanceId":"i-0{}"}}"#, r.hex(16)))
                    .collect();
                let req = format!(
                    r#"{{"instancesSet":{{"items":[{}]}},"filterSet":{{"items":[{{"name":"tag:Environment","valueSet":{{"items":[{{"value":"prod"}}]}}}},{{"name":"instance-state-name","valueSet":{{"items":[{{"value":"running"}},{{"value":"stopped"}}]}}}}]}}}}"#,
                    ids.join(",")
                );
                (
                    "ec2.amazonaws.com",
                    "DescribeInstances",
                    true,
                    req,
                    null(),
                    null(),
                    null(),
                )
            }
            18..=22 => {
                let iid = format!("i-0{}", r.hex(16));
                let sg = format!("sg-0{}", r.hex(16));
                let subnet = format!("subnet-0{}", r.hex(16));
                let req = format!(
                    r#"{{"instancesSet":{{"items":[{{"imageId":"ami-0{}","minCount":1,"maxCount":1,"keyName":"ops"}}]}},"instanceType":"{}","blockDeviceMapping":{{}},"monitoring":{{"enabled":false}},"disableApiTermination":false,"clientToken":"{}","tagSpecificationSet":{{"items":[{{"resourceType":"instance","tags":[{{"key":"Name","value":"web \"blue\" {{canary}}"}}]}}]}}}}"#,
                    r.hex(16),
                    r.pick(&["t3.micro", "m6i.large", "c7g.xlarge"]),
                    r.uuid()
                );
                let resp = format!(
                    r#"{{"requestId":"{}","reservationId":"r-0{}","ownerId":"{account}","groupSet":{{}},"instancesSet":{{"items":[{{"instanceId":"{iid}","imageId":"ami-0{}","currentInstanceBootMode":"uefi","instanceState":{{"code":0,"name":"pending"}},"privateDnsName":"ip-10-0-{}-{}.{region}.compute.internal","amiLaunchIndex":0,"productCodes":{{}},"instanceType":"t3.micro","launchTime":1714550400000,"placement":{{"availabilityZone":"{region}a","tenancy":"default"}},"monitoring":{{"state":"disabled"}},"subnetId":"{subnet}","vpcId":"vpc-0{}","privateIpAddress":"10.0.1.23","stateReason":{{"code":"pending","message":"pending"}},"architecture":"x86_64","rootDeviceType":"ebs","rootDeviceName":"/dev/xvda","blockDeviceMapping":{{}},"virtualizationType":"hvm","hypervisor":"xen","groupSet":{{"items":[{{"groupId":"{sg}","groupName":"web"}}]}},"sourceDestCheck":true,"networkInterfaceSet":{{"items":[{{"networkInterfaceId":"eni-0{}","subnetId":"{subnet}","status":"in-use","privateIpAddress":"10.0.1.23"}}]}},"ebsOptimized":false,"enaSupport":true,"metadataOptions":{{"state":"pending","httpTokens":"required","httpPutResponseHopLimit":2,"httpEndpoint":"enabled"}}}}]}}}}"#,
                    r.uuid(),
                    r.hex(16),
                    r.hex(16),
                    r.below(255),
                    r.below(255),
                    r.hex(16),
                    r.hex(16)
                );
                (
                    "ec2.amazonaws.com",
                    "RunInstances",
                    false,
                    req,
                    resp,
                    null(),
                    null(),
                )
            }
            23..=26 => {
                let iid = format!("i-0{}", r.hex(16));
                let (name, from, to) = if r.chance(50) {
                    ("StopInstances", ("running", 16), ("stopping", 64))
                } else {
                    ("StartInstances", ("stopped", 80), ("pending", 0))
                };
                let req = format!(
                    r#"{{"instancesSet":{{"items":[{{"instanceId":"{iid}"}}]}},"force":false}}"#
                );
                let resp = format!(
                    r#"{{"requestId":"{}","instancesSet":{{"items":[{{"instanceId":"{iid}","currentState":{{"code":{},"name":"{}"}},"previousState":{{"code":{},"name":"{}"}}}}]}}}}"#,
                    r.uuid(),
                    to.1,
                    to.0,
                    from.1,
                    from.0
                );
                ("ec2.amazonaws.com", name, false, req, resp, null(), null())
            }
            27..=29 => {
                let vol = format!("vol-0{}", r.hex(16));
                if r.chance(50) {
                    let req = format!(
                        r#"{{"size":{},"zone":"{region}b","volumeType":"gp3","encrypted":true,"tagSpecificationSet":{{"items":[{{"resourceType":"volume","tags":[{{"key":"Backup","value":"daily"}}]}}]}}}}"#,
                        8 + r.below(500)
                    );
                    let resp = format!(
                        r#"{{"requestId":"{}","volumeId":"{vol}","size":"100","zone":"{region}b","status":"creating","createTime":1714550400000,"volumeType":"gp3","iops":3000,"encrypted":true,"kmsKeyId":"arn:aws:kms:{region}:{account}:key/{}","throughput":125,"multiAttachEnabled":false}}"#,
                        r.uuid(),
                        r.uuid()
                    );
                    (
                        "ec2.amazonaws.com",
                        "CreateVolume",
                        false,
                        req,
                        resp,
                        null(),
                        null(),
                    )
                } else {
                    let snap = format!("snap-0{}", r.hex(16));
                    let req = format!(
                        r#"{{"volumeId":"{vol}","description":"Kopter backup of {vol} \u00e0 02:00"}}"#
                    );
                    let resp = format!(
                        r#"{{"requestId":"{}","snapshotId":"{snap}","volumeId":"{vol}","status":"pending","startTime":1714550400000,"progress":"","ownerId":"{account}","volumeSize":100,"encrypted":true}}"#,
                        r.uuid()
                    );
                    (
                        "ec2.amazonaws.com",
                        "CreateSnapshot",
                        false,
                        req,
                        resp,
                        null(),
                        null(),
                    )
                }
            }
            30..=31 => {
                let cidr = if r.chance(30) {
                    "0.0.0.0/0"
                } else {
                    "10.20.0.0/16"
                };
                let port = r.pick(&["22", "443", "3389", "5432"]);
                let sg = format!("sg-0{}", r.hex(16));
                let req = format!(
                    r#"{{"groupId":"{sg}","ipPermissions":{{"items":[{{"ipProtocol":"tcp","fromPort":{port},"toPort":{port},"groups":{{}},"ipRanges":{{"items":[{{"cidrIp":"{cidr}","description":"added by {}"}}]}},"ipv6Ranges":{{}},"prefixListIds":{{}}}}]}}}}"#,
                    r.pick(USERS)
                );
                let resp = format!(
                    r#"{{"requestId":"{}","_return":true,"securityGroupRuleSet":{{"items":[{{"groupOwnerId":"{account}","groupId":"{sg}","securityGroupRuleId":"sgr-0{}","isEgress":false,"ipProtocol":"tcp","fromPort":{port},"toPort":{port},"cidrIpv4":"{cidr}"}}]}}}}"#,
                    r.uuid(),
                    r.hex(16)
                );
                (
                    "ec2.amazonaws.com",
                    "AuthorizeSecurityGroupIngress",
                    false,
                    req,
                    resp,
                    null(),
                    null(),
                )
            }
            32..=33 => {
                let id = format!("i-0{}", r.hex(16));
                let req = format!(
                    r#"{{"resourcesSet":{{"items":[{{"resourceId":"{id}"}}]}},"tagSet":{{"items":[{{"key":"Owner","value":"{}"}},{{"key":"CostCenter","value":"cc-{}"}}]}}}}"#,
                    r.pick(USERS),
                    r.below(1000)
                );
                (
                    "ec2.amazonaws.com",
                    "CreateTags",
                    false,
                    req,
                    format!(r#"{{"requestId":"{}","_return":true}}"#, r.uuid()),
                    null(),
                    null(),
                )
            }
            34..=61 => {
                let bucket = r.pick(&["acme-logs", "acme-data-lake", "kopter-backups"]);
                let key = format!(
                    "year=2024/month=05/part-{:05}-{}.snappy.parquet",
                    r.below(99999),
                    r.uuid()
                );
                let (name, ro) = if r.chance(70) {
                    ("GetObject", true)
                } else {
                    ("PutObject", false)
                };
                let req = format!(
                    r#"{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","key":"{key}"}}"#
                );
                let extra = format!(
                    r#"{{"SignatureVersion":"SigV4","CipherSuite":"TLS_AES_128_GCM_SHA256","bytesTransferredIn":0.0,"AuthenticationMethod":"AuthHeader","x-amz-id-2":"{}","bytesTransferredOut":{}.0}}"#,
                    r.hex(76),
                    r.below(10_000_000)
                );
                let res = format!(
                    r#"[{{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::{bucket}/{key}"}},{{"accountId":"{account}","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::{bucket}"}}]"#
                );
                ("s3.amazonaws.com", name, ro, req, null(), extra, res)
            }
            62..=69 => {
                let role = r.pick(ROLES);
                let req = format!(
                    r#"{{"roleArn":"arn:aws:iam::{account}:role/{role}","roleSessionName":"{}-{}","durationSeconds":3600,"externalId":"kopter-{}"}}"#,
                    r.pick(USERS),
                    r.below(100000),
                    r.hex(12)
                );
                let resp = format!(
                    r#"{{"credentials":{{"accessKeyId":"ASIA{}","sessionToken":"IQoJb3JpZ2luX2VjE{}","expiration":"May 1, 2024, 1:00:00 PM"}},"assumedRoleUser":{{"assumedRoleId":"AROA{}:session","arn":"arn:aws:sts::{account}:assumed-role/{role}/session"}},"packedPolicySize":6}}"#,
                    r.upper(16),
                    r.hex(120),
                    r.upper(17)
                );
                let res = format!(
                    r#"[{{"accountId":"{account}","type":"AWS::IAM::Role","ARN":"arn:aws:iam::{account}:role/{role}"}}]"#
                );
                (
                    "sts.amazonaws.com",
                    "AssumeRole",
                    true,
                    req,
                    resp,
                    null(),
                    res,
                )
            }
            70..=79 => {
                let key = r.uuid();
                let name = r.pick(&["Decrypt", "GenerateDataKey", "Encrypt"]);
                let req = format!(
                    r#"{{"encryptionContext":{{"aws:s3:arn":"arn:aws:s3:::acme-data-lake/obj-{}","aws:ebs:id":"vol-0{}"}},"encryptionAlgorithm":"SYMMETRIC_DEFAULT","keyId":"arn:aws:kms:{region}:{account}:key/{key}"}}"#,
                    r.below(100000),
                    r.hex(16)
                );
                let res = format!(
                    r#"[{{"accountId":"{account}","type":"AWS::KMS::Key","ARN":"arn:aws:kms:{region}:{account}:key/{key}"}}]"#
                );
                ("kms.amazonaws.com", name, true, req, null(), null(), res)
            }
            80..=86 => {
                let f = r.pick(&["thumbnailer", "kopter-notifier", "etl-step"]);
                let req = format!(
                    r#"{{"functionName":"arn:aws:lambda:{region}:{account}:function:{f}","invocationType":"Event","payload":"{{\"Records\":[{{\"s3\":{{\"object\":{{\"key\":\"img/{}.png\"}}}}}}]}}"}}"#,
                    r.below(100000)
                );
                let res = format!(
                    r#"[{{"accountId":"{account}","type":"AWS::Lambda::Function","ARN":"arn:aws:lambda:{region}:{account}:function:{f}"}}]"#
                );
                (
                    "lambda.amazonaws.com",
                    "Invoke",
                    false,
                    req,
                    null(),
                    null(),
                    res,
                )
            }
            87..=91 => {
                let user = r.pick(USERS);
                match r.below(4) {
                    0 => (
                        "iam.amazonaws.com",
                        "GetUser",
                        true,
                        format!(r#"{{"userName":"{user}"}}"#),
                        null(),
                        null(),
                        null(),
                    ),
                    1 => (
                        "iam.amazonaws.com",
                        "CreateAccessKey",
                        false,
                        format!(r#"{{"userName":"{user}"}}"#),
                        format!(
                            r#"{{"accessKey":{{"accessKeyId":"AKIA{}","status":"Active","userName":"{user}","createDate":"May 1, 2024, 12:00:00 PM"}}}}"#,
                            r.upper(16)
                        ),
                        null(),
                        null(),
                    ),
                    2 => {
                        let doc = format!(
                            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::acme-data-lake/{user}/*","Condition":{{"StringEquals":{{"aws:RequestedRegion":"{region}"}}}}}}]}}"#
                        );
                        let req = format!(
                            r#"{{"userName":"{user}","policyName":"inline-{}","policyDocument":{}}}"#,
                            r.below(100),
                            js(&doc)
                        );
                        (
                            "iam.amazonaws.com",
                            "PutUserPolicy",
                            false,
                            req,
                            null(),
                            null(),
                            null(),
                        )
                    }
                    _ => (
                        "iam.amazonaws.com",
                        "CreateUser",
                        false,
                        format!(r#"{{"userName":"{user}-{}","path":"/"}}"#, r.below(1000)),
                        format!(
                            r#"{{"user":{{"path":"/","userName":"{user}","userId":"AIDA{}","arn":"arn:aws:iam::{account}:user/{user}","createDate":"May 1, 2024, 12:00:00 PM"}}}}"#,
                            r.upper(17)
                        ),
                        null(),
                        null(),
                    ),
                }
            }
            92..=95 => {
                let ok = r.chance(85);
                let mfa = if r.chance(60) { "Yes" } else { "No" };
                let extra = format!(
                    r#"{{"LoginTo":"https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgsFromTB_{region}_{}","MobileVersion":"No","MFAUsed":"{mfa}"}}"#,
                    r.hex(16)
                );
                let resp = format!(
                    r#"{{"ConsoleLogin":"{}"}}"#,
                    if ok { "Success" } else { "Failure" }
                );
                (
                    "signin.amazonaws.com",
                    "ConsoleLogin",
                    false,
                    null(),
                    resp,
                    extra,
                    null(),
                )
            }
            _ => {
                let name = r.pick(&[
                    "DescribeTrails",
                    "GetTrailStatus",
                    "LookupEvents",
                    "StopLogging",
                    "UpdateTrail",
                ]);
                let ro = !matches!(name, "StopLogging" | "UpdateTrail");
                let req = format!(
                    r#"{{"name":"arn:aws:cloudtrail:{region}:{account}:trail/org-trail","trailNameList":[],"includeShadowTrails":true}}"#
                );
                let res = format!(
                    r#"[{{"accountId":"{account}","type":"AWS::CloudTrail::Trail","ARN":"arn:aws:cloudtrail:{region}:{account}:trail/org-trail"}}]"#
                );
                (
                    "cloudtrail.amazonaws.com",
                    name,
                    ro,
                    req,
                    null(),
                    null(),
                    res,
                )
            }
        }
    }

    fn record(&mut self, out: &mut String) {
        self.n += 1;
        self.seconds += self.rng.below(3) as u64;
        let account = self.rng.pick(ACCOUNTS);
        let region = self.rng.pick(REGIONS);
        let (source, name, read_only, req, resp, extra, resources) = self.event(account, region);
        let kind = match source {
            "signin.amazonaws.com" => {
                if self.rng.chance(10) {
                    2
                } else {
                    0
                }
            }
            "kms.amazonaws.com" if self.rng.chance(50) => 3,
            _ => match self.rng.below(100) {
                0..=29 => 0,
                30..=94 => 1,
                95..=96 => 2,
                _ => 3,
            },
        };
        let id = self.identity(account, kind);
        let r = &mut self.rng;
        let (ip, agent) = if id.service {
            (
                js(r.pick(&["autoscaling.amazonaws.com", "AWS Internal"])),
                js("AWS Internal"),
            )
        } else {
            (js(&r.ip()), js(r.pick(AGENTS)))
        };
        let t = 1_714_521_600 + self.seconds; // 2024-05-01T00:00:00Z
        let (d, s) = (t / 86_400, t % 86_400);
        let time = format!(
            "2024-05-{:02}T{:02}:{:02}:{:02}Z",
            1 + (d - 19_844) % 28,
            s / 3600,
            s % 3600 / 60,
            s % 60
        );
        let error = if r.chance(3) {
            r#","errorCode":"AccessDenied","errorMessage":"User: arn:aws:sts::111111111111:assumed-role/ecsTaskRole/x is not authorized to perform: this action because no identity-based policy allows the \"action\"""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"{{"eventVersion":"1.09","userIdentity":{},"eventTime":"{time}","eventSource":"{source}","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":{ip},"userAgent":{agent}{error},"requestParameters":{req},"responseElements":{resp}"#,
            id.json
        );
        if extra != "null" {
            let _ = write!(out, r#","additionalEventData":{extra}"#);
        }
        let _ = write!(
            out,
            r#","requestID":"{}","eventID":"{}","readOnly":{read_only}"#,
            r.uuid(),
            r.uuid()
        );
        if resources != "null" {
            let _ = write!(out, r#","resources":{resources}"#);
        }
        let category = if source == "s3.amazonaws.com" || name == "Invoke" {
            "Data"
        } else {
            "Management"
        };
        let _ = write!(
            out,
            r#","eventType":"{}","managementEvent":{},"recipientAccountId":"{account}","eventCategory":"{category}","tlsDetails":{{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"{}.{region}.amazonaws.com"}}}}"#,
            if source == "signin.amazonaws.com" {
                "AwsConsoleSignIn"
            } else {
                "AwsApiCall"
            },
            category == "Management",
            source.trim_end_matches(".amazonaws.com"),
        );
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(mb)) = (args.get(1), args.get(2).and_then(|s| s.parse::<u64>().ok()))
    else {
        eprintln!("usage: gen_trail <out.json.gz> <uncompressed-MB>");
        return ExitCode::from(2);
    };
    match generate(path, mb * 1_000_000) {
        Ok((records, bytes)) => {
            println!("{path}: {records} records, {bytes} bytes uncompressed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_trail: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(path: &str, target: u64) -> std::io::Result<(u64, u64)> {
    let file = File::create(path)?;
    let gz = flate2::write::GzEncoder::new(
        BufWriter::with_capacity(1 << 20, file),
        flate2::Compression::default(),
    );
    let mut out = BufWriter::with_capacity(1 << 20, gz);
    let mut g = Gen {
        rng: Rng(0x6b6f_7074_6572),
        seconds: 0,
        n: 0,
    };
    let mut rec = String::with_capacity(4096);
    out.write_all(b"{\"Records\":[")?;
    let mut bytes = 12u64;
    while bytes < target {
        rec.clear();
        if g.n > 0 {
            rec.push(',');
        }
        g.record(&mut rec);
        out.write_all(rec.as_bytes())?;
        bytes += rec.len() as u64;
    }
    out.write_all(b"]}\n")?;
    bytes += 3;
    let gz = out.into_inner().map_err(|e| e.into_error())?;
    gz.finish()?.flush()?;
    Ok((g.n, bytes))
}

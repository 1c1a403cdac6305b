//! The demo's customer accounts and what runs in them: each account gets
//! its `KopterAccess` role (trusting Kopter's account with the account's
//! ExternalId), and a small but believable EC2 estate made through that
//! role, as a customer's own tooling would: several instance types, Linux
//! and Windows, spot and on-demand, three regions, some stopped, extra EBS
//! volumes and an instance tagged for scheduled backups.

use aws_sdk_ec2::types::{
    InstanceMarketOptionsRequest, InstanceType, MarketType, ResourceType, Tag, TagSpecification,
    VolumeType,
};
use kopter_runtime::accounts::trust_policy;
use kopter_runtime::{CustomerRole, ServiceContext};
use kopter_schema::items::AccountRecord;

/// Amazon Linux and Windows Server images that moto knows in every region.
pub const LINUX_AMI: &str = "ami-760aaa0f";
pub const WINDOWS_AMI: &str = "ami-1ecc1e67";

/// One instance of the estate.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub region: &'static str,
    pub instance_type: &'static str,
    pub windows: bool,
    pub spot: bool,
    pub stopped: bool,
    pub backup: bool,
    pub team: &'static str,
    /// An extra data volume: (type, GiB).
    pub data_volume: Option<(&'static str, i32)>,
}

const fn spec(
    name: &'static str,
    region: &'static str,
    instance_type: &'static str,
    team: &'static str,
) -> Spec {
    Spec {
        name,
        region,
        instance_type,
        windows: false,
        spot: false,
        stopped: false,
        backup: false,
        team,
        data_volume: None,
    }
}

impl Spec {
    const fn windows(mut self) -> Self {
        self.windows = true;
        self
    }
    const fn spot(mut self) -> Self {
        self.spot = true;
        self
    }
    const fn stopped(mut self) -> Self {
        self.stopped = true;
        self
    }
    const fn backup(mut self) -> Self {
        self.backup = true;
        self
    }
    const fn data(mut self, kind: &'static str, gib: i32) -> Self {
        self.data_volume = Some((kind, gib));
        self
    }
}

/// The estate of the n-th demo account (0, 1, 2; cycles after that).
pub fn estate_of(n: usize) -> &'static [Spec] {
    const PROD: &[Spec] = &[
        spec("web-1", "us-east-1", "m5.large", "web"),
        spec("web-2", "us-east-1", "m5.large", "web"),
        spec("db-1", "us-east-1", "r5.xlarge", "data")
            .backup()
            .data("gp3", 200),
        spec("ad-1", "us-east-1", "m5.xlarge", "corp").windows(),
        spec("batch-1", "eu-west-1", "c5.2xlarge", "batch").spot(),
        spec("web-eu-1", "eu-west-1", "m6i.large", "web"),
    ];
    const STAGING: &[Spec] = &[
        spec("stg-web", "eu-west-1", "t3.large", "web"),
        spec("stg-win", "eu-west-1", "t3.medium", "corp")
            .windows()
            .stopped(),
        spec("stg-api", "ap-southeast-2", "c5.large", "api").data("st1", 500),
        spec("stg-old", "ap-southeast-2", "m5.large", "api").stopped(),
    ];
    const GLOBEX: &[Spec] = &[
        spec("api-1", "ap-southeast-2", "c5.xlarge", "api"),
        spec("api-2", "ap-southeast-2", "c5.xlarge", "api"),
        spec("etl-1", "ap-southeast-2", "r5.large", "data").spot(),
        spec("erp-1", "us-east-1", "m5.2xlarge", "erp")
            .windows()
            .backup()
            .data("io1", 100),
        spec("jump-1", "us-east-1", "t3.small", "ops").stopped(),
        spec("cache-1", "eu-west-1", "r6i.large", "api"),
    ];
    match n % 3 {
        0 => PROD,
        1 => STAGING,
        _ => GLOBEX,
    }
}

/// What was made in one account.
#[derive(Debug, Clone, Default)]
pub struct Made {
    /// (region, instance id, spec name)
    pub instances: Vec<(String, String, &'static str)>,
    pub volumes: usize,
}

/// Creates the account's `KopterAccess` role with Kopter's trust policy
/// (ExternalId condition), entering the account through that same role
/// (moto does not check trust policies, so it can be assumed first).
pub async fn create_role(
    ctx: &ServiceContext,
    rec: &AccountRecord,
    kopter_account: &str,
) -> anyhow::Result<()> {
    create_customer_role(ctx, &CustomerRole::from(rec), kopter_account).await
}

/// Creates `role` (its ARN names account and role) with Kopter's trust
/// policy and the role's ExternalId, unless it exists: the member role
/// of an account, or an organization's management role.
pub async fn create_customer_role(
    ctx: &ServiceContext,
    role: &CustomerRole,
    kopter_account: &str,
) -> anyhow::Result<()> {
    let sdk = ctx
        .credentials
        .sdk_config(&ctx.aws.sdk, role, "us-east-1")
        .await?;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let name = role
        .role_arn
        .rsplit('/')
        .next()
        .unwrap_or("KopterAccess")
        .to_owned();
    match iam.get_role().role_name(&name).send().await {
        Ok(_) => return Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_no_such_entity_exception()) => {}
        Err(e) => return Err(anyhow::anyhow!("iam:GetRole {name}: {e:?}")),
    }
    iam.create_role()
        .role_name(&name)
        .description("Kopter reads EC2/EBS inventory and takes scheduled EBS backups")
        .assume_role_policy_document(trust_policy(kopter_account, &role.external_id).to_string())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("iam:CreateRole {name} in {}: {e:?}", role.account))?;
    Ok(())
}

fn tags(pairs: &[(&str, &str)]) -> Vec<Tag> {
    pairs
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
        .collect()
}

/// Makes `specs` in the account through its role, `copies` instances of
/// each (one `RunInstances` per spec; each copy gets its own data volume).
pub async fn create_estate(
    ctx: &ServiceContext,
    rec: &AccountRecord,
    env_tag: &str,
    specs: &[Spec],
    copies: usize,
) -> anyhow::Result<Made> {
    let role = CustomerRole::from(rec);
    let copies = i32::try_from(copies.max(1))
        .map_err(|_| anyhow::anyhow!("{copies} copies of an instance: too many"))?;
    let mut made = Made::default();
    for s in specs {
        let sdk = ctx
            .credentials
            .sdk_config(&ctx.aws.sdk, &role, s.region)
            .await?;
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let mut instance_tags = vec![("Name", s.name), ("team", s.team), ("env", env_tag)];
        if s.backup {
            instance_tags.push(("kopter:backup", "true"));
        }
        let mut req = ec2
            .run_instances()
            .image_id(if s.windows { WINDOWS_AMI } else { LINUX_AMI })
            .instance_type(InstanceType::from(s.instance_type))
            .min_count(copies)
            .max_count(copies)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags(&instance_tags)))
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tags(&[("team", s.team), ("env", env_tag)])))
                    .build(),
            );
        if s.spot {
            req = req.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .build(),
            );
        }
        let out = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("RunInstances {} in {}: {e:?}", s.name, s.region))?;
        if out.instances().is_empty() {
            anyhow::bail!("RunInstances {} returned no instance", s.name);
        }
        for inst in out.instances() {
            let id = inst.instance_id().unwrap_or_default().to_owned();
            let az = inst
                .placement()
                .and_then(|p| p.availability_zone())
                .unwrap_or("")
                .to_owned();
            made.volumes += inst.block_device_mappings().len().max(1);
            if let Some((kind, gib)) = s.data_volume {
                let mut vreq = ec2
                    .create_volume()
                    .availability_zone(&az)
                    .size(gib)
                    .volume_type(VolumeType::from(kind))
                    .tag_specifications(
                        TagSpecification::builder()
                            .resource_type(ResourceType::Volume)
                            .set_tags(Some(tags(&[
                                ("Name", &format!("{}-data", s.name)),
                                ("team", s.team),
                                ("env", env_tag),
                            ])))
                            .build(),
                    );
                if kind == "io1" {
                    vreq = vreq.iops(3000);
                }
                let vol = vreq
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("CreateVolume for {}: {e:?}", s.name))?;
                // st1 stays unattached (a forgotten volume); others are mounted.
                if kind != "st1" {
                    ec2.attach_volume()
                        .volume_id(vol.volume_id().unwrap_or_default())
                        .instance_id(&id)
                        .device("/dev/sdf")
                        .send()
                        .await
                        .map_err(|e| anyhow::anyhow!("AttachVolume for {}: {e:?}", s.name))?;
                }
                made.volumes += 1;
            }
            if s.stopped {
                ec2.stop_instances()
                    .instance_ids(&id)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("StopInstances {}: {e:?}", s.name))?;
            }
            made.instances.push((s.region.to_owned(), id, s.name));
        }
    }
    Ok(made)
}

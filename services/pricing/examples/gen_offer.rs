//! Writes a realistic synthetic EC2 offer file (one region) of about the
//! requested size, for benchmarks:
//!
//! ```sh
//! cargo run --release -p pricing --example gen_offer -- out.json 512   # MB = 10^6 bytes
//! ```
//!
//! Same layout and pretty-printing as AWS's `index.json` (`"key" : "value"`,
//! two-space indent, `{ }` for empty objects), products first, then
//! `terms.OnDemand` and `terms.Reserved`. The product mix mirrors a real
//! region: instance types × operating system / license / pre-installed
//! software × tenancy × capacity status (`Used`, `AllocatedCapacityReservation`,
//! `UnusedCapacityReservation`; only `Used` ones have reserved terms, 12
//! each: 1yr/3yr × No/Partial/All Upfront × standard/convertible), ~35
//! attributes per instance product, EBS volume/IOPS/throughput/snapshot
//! products, On-Demand Dedicated Hosts, and other families (data transfer,
//! IP addresses, NAT gateway…).
//!
//! Deterministic (inline SplitMix64, fixed seed), streamed: memory stays
//! small whatever the size. A first pass only measures, to pick how many
//! products reach the size; the second writes. Prints a summary line.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

const REGION: &str = "us-east-1";
const LOCATION: &str = "US East (N. Virginia)";
const SEED: u64 = 0x6b6f_7074_6572_2121;

/// SplitMix64: tiny, fast, good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn code(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())] as char)
            .collect()
    }
}

struct Family {
    name: &'static str,
    kind: &'static str,
    processor: &'static str,
    arch: &'static str,
    /// USD per vCPU-hour, Linux, shared.
    rate: f64,
    gib_per_vcpu: f64,
}

const FAMILIES: &[Family] = &[
    fam(
        "m5",
        "General purpose",
        "Intel Xeon Platinum 8175 (Skylake)",
        "64-bit",
        0.048,
        4.0,
    ),
    fam(
        "m5a",
        "General purpose",
        "AMD EPYC 7571",
        "64-bit",
        0.043,
        4.0,
    ),
    fam(
        "m6i",
        "General purpose",
        "Intel Xeon 8375C (Ice Lake)",
        "64-bit",
        0.048,
        4.0,
    ),
    fam(
        "m6a",
        "General purpose",
        "AMD EPYC 7R13 Processor",
        "64-bit",
        0.0432,
        4.0,
    ),
    fam(
        "m6g",
        "General purpose",
        "AWS Graviton2 Processor",
        "64-bit",
        0.0385,
        4.0,
    ),
    fam(
        "m7i",
        "General purpose",
        "Intel Xeon Scalable (Sapphire Rapids)",
        "64-bit",
        0.0504,
        4.0,
    ),
    fam(
        "m7g",
        "General purpose",
        "AWS Graviton3 Processor",
        "64-bit",
        0.0408,
        4.0,
    ),
    fam(
        "m7a",
        "General purpose",
        "AMD EPYC 9R14 Processor",
        "64-bit",
        0.05796,
        4.0,
    ),
    fam(
        "c5",
        "Compute optimized",
        "Intel Xeon Platinum 8124M",
        "64-bit",
        0.0425,
        2.0,
    ),
    fam(
        "c6i",
        "Compute optimized",
        "Intel Xeon 8375C (Ice Lake)",
        "64-bit",
        0.0425,
        2.0,
    ),
    fam(
        "c6g",
        "Compute optimized",
        "AWS Graviton2 Processor",
        "64-bit",
        0.034,
        2.0,
    ),
    fam(
        "c7g",
        "Compute optimized",
        "AWS Graviton3 Processor",
        "64-bit",
        0.03625,
        2.0,
    ),
    fam(
        "c7i",
        "Compute optimized",
        "Intel Xeon Scalable (Sapphire Rapids)",
        "64-bit",
        0.04463,
        2.0,
    ),
    fam(
        "r5",
        "Memory optimized",
        "Intel Xeon Platinum 8175 (Skylake)",
        "64-bit",
        0.063,
        8.0,
    ),
    fam(
        "r6i",
        "Memory optimized",
        "Intel Xeon 8375C (Ice Lake)",
        "64-bit",
        0.063,
        8.0,
    ),
    fam(
        "r6g",
        "Memory optimized",
        "AWS Graviton2 Processor",
        "64-bit",
        0.0504,
        8.0,
    ),
    fam(
        "r7g",
        "Memory optimized",
        "AWS Graviton3 Processor",
        "64-bit",
        0.05355,
        8.0,
    ),
    fam(
        "x2idn",
        "Memory optimized",
        "Intel Xeon 8375C (Ice Lake)",
        "64-bit",
        0.20841,
        16.0,
    ),
    fam(
        "i3",
        "Storage optimized",
        "Intel Xeon E5-2686 v4 (Broadwell)",
        "64-bit",
        0.078,
        7.625,
    ),
    fam(
        "i4i",
        "Storage optimized",
        "Intel Xeon 8375C (Ice Lake)",
        "64-bit",
        0.0858,
        8.0,
    ),
    fam(
        "d3",
        "Storage optimized",
        "Intel Xeon Platinum 8259 (Cascade Lake)",
        "64-bit",
        0.12475,
        8.0,
    ),
    fam(
        "t3",
        "General purpose",
        "Intel Skylake E5 2686 v5",
        "64-bit",
        0.0416,
        4.0,
    ),
    fam(
        "t3a",
        "General purpose",
        "AMD EPYC 7571",
        "64-bit",
        0.0376,
        4.0,
    ),
    fam(
        "t4g",
        "General purpose",
        "AWS Graviton2 Processor",
        "64-bit",
        0.0336,
        4.0,
    ),
    fam("g5", "GPU instance", "AMD EPYC 7R32", "64-bit", 0.2515, 4.0),
    fam(
        "g4dn",
        "GPU instance",
        "Intel Xeon Family",
        "64-bit",
        0.1315,
        4.0,
    ),
    fam(
        "p3",
        "GPU instance",
        "Intel Xeon E5-2686 v4 (Broadwell)",
        "64-bit",
        0.765,
        7.625,
    ),
    fam(
        "inf2",
        "Machine Learning ASIC Instances",
        "AMD EPYC 7R13 Processor",
        "64-bit",
        0.18975,
        4.0,
    ),
    fam(
        "z1d",
        "Memory optimized",
        "Intel Xeon Platinum 8151",
        "64-bit",
        0.093,
        8.0,
    ),
    fam(
        "hpc7g",
        "Compute optimized",
        "AWS Graviton3E Processor",
        "64-bit",
        0.0265,
        2.0,
    ),
];

const fn fam(
    name: &'static str,
    kind: &'static str,
    processor: &'static str,
    arch: &'static str,
    rate: f64,
    gib_per_vcpu: f64,
) -> Family {
    Family {
        name,
        kind,
        processor,
        arch,
        rate,
        gib_per_vcpu,
    }
}

/// (size, vCPUs)
const SIZES: &[(&str, u32)] = &[
    ("large", 2),
    ("xlarge", 4),
    ("2xlarge", 8),
    ("4xlarge", 16),
    ("8xlarge", 32),
    ("12xlarge", 48),
    ("16xlarge", 64),
    ("24xlarge", 96),
    ("metal", 96),
];

/// (operatingSystem, licenseModel, preInstalledSw, operation, USD/vCPU-hour
/// added, description word)
const PLATFORMS: &[(&str, &str, &str, &str, f64, &str)] = &[
    (
        "Linux",
        "No License required",
        "NA",
        "RunInstances",
        0.0,
        "Linux",
    ),
    (
        "RHEL",
        "No License required",
        "NA",
        "RunInstances:0010",
        0.0145,
        "RHEL",
    ),
    (
        "Red Hat Enterprise Linux with HA",
        "No License required",
        "NA",
        "RunInstances:1010",
        0.031,
        "RHEL HA",
    ),
    (
        "SUSE",
        "No License required",
        "NA",
        "RunInstances:000g",
        0.0125,
        "SUSE",
    ),
    (
        "Ubuntu Pro",
        "No License required",
        "NA",
        "RunInstances:0g00",
        0.0035,
        "Ubuntu Pro",
    ),
    (
        "Windows",
        "No License required",
        "NA",
        "RunInstances:0002",
        0.046,
        "Windows",
    ),
    (
        "Windows",
        "Bring your own license",
        "NA",
        "RunInstances:0800",
        0.0,
        "Windows BYOL",
    ),
    (
        "Windows",
        "No License required",
        "SQL Std",
        "RunInstances:0006",
        0.166,
        "Windows with SQL Std",
    ),
    (
        "Windows",
        "No License required",
        "SQL Web",
        "RunInstances:0202",
        0.0585,
        "Windows with SQL Web",
    ),
    (
        "Windows",
        "No License required",
        "SQL Ent",
        "RunInstances:0102",
        0.421,
        "Windows with SQL Ent",
    ),
    (
        "Linux",
        "No License required",
        "SQL Std",
        "RunInstances:0004",
        0.12,
        "Linux with SQL Std",
    ),
    (
        "Linux",
        "No License required",
        "SQL Web",
        "RunInstances:0200",
        0.0125,
        "Linux with SQL Web",
    ),
    (
        "Linux",
        "No License required",
        "SQL Ent",
        "RunInstances:0100",
        0.375,
        "Linux with SQL Ent",
    ),
    (
        "RHEL",
        "No License required",
        "SQL Std",
        "RunInstances:0014",
        0.1345,
        "RHEL with SQL Std",
    ),
];

const TENANCIES: &[(&str, &str, f64)] = &[
    ("Shared", "BoxUsage", 1.0),
    ("Dedicated", "DedicatedUsage", 1.1),
    ("Host", "HostBoxUsage", 0.0),
];

const CAPACITY: &[&str] = &[
    "Used",
    "AllocatedCapacityReservation",
    "UnusedCapacityReservation",
];

/// EBS products: (family, volumeApiName, usagetype, unit, USD).
const EBS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "Storage",
        "gp2",
        "EBS:VolumeUsage.gp2",
        "GB-Mo",
        "0.1000000000",
    ),
    (
        "Storage",
        "gp3",
        "EBS:VolumeUsage.gp3",
        "GB-Mo",
        "0.0800000000",
    ),
    (
        "Storage",
        "io1",
        "EBS:VolumeUsage.piops",
        "GB-Mo",
        "0.1250000000",
    ),
    (
        "Storage",
        "io2",
        "EBS:VolumeUsage.io2",
        "GB-Mo",
        "0.1250000000",
    ),
    (
        "Storage",
        "st1",
        "EBS:VolumeUsage.st1",
        "GB-Mo",
        "0.0450000000",
    ),
    (
        "Storage",
        "sc1",
        "EBS:VolumeUsage.sc1",
        "GB-Mo",
        "0.0150000000",
    ),
    (
        "Storage",
        "standard",
        "EBS:VolumeUsage",
        "GB-Mo",
        "0.0500000000",
    ),
    (
        "System Operation",
        "gp3",
        "EBS:VolumeP-IOPS.gp3",
        "IOPS-Mo",
        "0.0050000000",
    ),
    (
        "Provisioned Throughput",
        "gp3",
        "EBS:VolumeP-Throughput.gp3",
        "GiBps-mo",
        "40.9600000000",
    ),
    (
        "System Operation",
        "io1",
        "EBS:VolumeP-IOPS.piops",
        "IOPS-Mo",
        "0.0650000000",
    ),
    (
        "System Operation",
        "io2",
        "EBS:VolumeP-IOPS.io2",
        "IOPS-Mo",
        "0.0650000000",
    ),
    (
        "System Operation",
        "io2",
        "EBS:VolumeP-IOPS.io2.tier2",
        "IOPS-Mo",
        "0.0455000000",
    ),
    (
        "System Operation",
        "io2",
        "EBS:VolumeP-IOPS.io2.tier3",
        "IOPS-Mo",
        "0.0318500000",
    ),
    (
        "Storage Snapshot",
        "",
        "EBS:SnapshotUsage",
        "GB-Mo",
        "0.0500000000",
    ),
    (
        "Storage Snapshot",
        "",
        "EBS:SnapshotArchiveStorage",
        "GB-Mo",
        "0.0125000000",
    ),
];

/// Other families: (family, usagetype, unit, USD). The parser skips all
/// but the On-Demand Dedicated Host, which it prices per host-hour.
const OTHER: &[(&str, &str, &str, &str)] = &[
    (
        "Data Transfer",
        "DataTransfer-Out-Bytes",
        "GB",
        "0.0900000000",
    ),
    (
        "IP Address",
        "PublicIPv4:InUseAddress",
        "Hrs",
        "0.0050000000",
    ),
    ("NAT Gateway", "NatGateway-Hours", "Hrs", "0.0450000000"),
    (
        "Load Balancer-Network",
        "LCUUsage",
        "LCU-Hrs",
        "0.0060000000",
    ),
    ("Dedicated Host", "HostUsage:m5", "Hrs", "5.0690000000"),
    ("CPU Credits", "CPUCredits:t3", "vCPU-Hours", "0.0500000000"),
    ("Fee", "ElasticIP:AdditionalAddress", "Hrs", "0.0050000000"),
];

/// What product `i` is.
enum Spec {
    Instance {
        family: usize,
        size: usize,
        platform: usize,
        tenancy: usize,
        capacity: usize,
    },
    Ebs(usize),
    Other(usize),
}

fn spec(i: usize) -> Spec {
    // One product in 25 is not an instance: the EBS ones first, then
    // other families (real regions have a few dozen EBS products).
    if i % 25 == 24 {
        let j = i / 25;
        return if j < EBS.len() {
            Spec::Ebs(j)
        } else {
            Spec::Other(j % OTHER.len())
        };
    }
    let mut c = i - i / 25;
    let capacity = c % CAPACITY.len();
    c /= CAPACITY.len();
    let tenancy = c % TENANCIES.len();
    c /= TENANCIES.len();
    let platform = c % PLATFORMS.len();
    c /= PLATFORMS.len();
    let size = c % SIZES.len();
    c /= SIZES.len();
    Spec::Instance {
        family: c % FAMILIES.len(),
        size,
        platform,
        tenancy,
        capacity,
    }
}

fn sku(i: usize) -> String {
    Rng::new(SEED ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)).code(16)
}

fn usd(v: f64) -> String {
    format!("{v:.10}")
}

/// Pretty-printer state: AWS's style.
struct Out {
    text: String,
}

impl Out {
    fn line(&mut self, indent: usize, s: &str) {
        for _ in 0..indent {
            self.text.push_str("  ");
        }
        self.text.push_str(s);
        self.text.push('\n');
    }
    fn kv(&mut self, indent: usize, k: &str, v: &str, last: bool) {
        for _ in 0..indent {
            self.text.push_str("  ");
        }
        let _ = write!(
            self.text,
            "\"{k}\" : \"{v}\"{}",
            if last { "\n" } else { ",\n" }
        );
    }
    fn attrs(&mut self, attrs: &[(&str, String)]) {
        self.line(3, "\"attributes\" : {");
        for (n, (k, v)) in attrs.iter().enumerate() {
            self.kv(4, k, v, n + 1 == attrs.len());
        }
        self.line(3, "}");
    }
}

fn instance_price(i: usize) -> Option<(f64, u32)> {
    match spec(i) {
        Spec::Instance {
            family,
            size,
            platform,
            tenancy,
            ..
        } => {
            let f = &FAMILIES[family];
            let (_, vcpu) = SIZES[size];
            let p = PLATFORMS[platform];
            let t = TENANCIES[tenancy];
            Some(((f.rate + p.4) * f64::from(vcpu) * t.2, vcpu))
        }
        _ => None,
    }
}

/// Product `i`'s entry under `products` (without the separator).
fn product(out: &mut Out, i: usize) {
    let sku = sku(i);
    let _ = writeln!(out.text, "    \"{sku}\" : {{");
    out.kv(3, "sku", &sku, false);
    match spec(i) {
        Spec::Instance {
            family,
            size,
            platform,
            tenancy,
            capacity,
        } => {
            let f = &FAMILIES[family];
            let (size_name, vcpu) = SIZES[size];
            let itype = format!("{}.{size_name}", f.name);
            let (os, license, sw, operation, _, _) = PLATFORMS[platform];
            let (tenancy_name, usage_prefix, _) = TENANCIES[tenancy];
            let cap = CAPACITY[capacity];
            let usage = match cap {
                "Used" => format!("{usage_prefix}:{itype}"),
                "AllocatedCapacityReservation" => format!("Reservation:{itype}"),
                _ => format!("UnusedBox:{itype}"),
            };
            let metal = size_name == "metal";
            let family_name = if metal {
                "Compute Instance (bare metal)"
            } else {
                "Compute Instance"
            };
            out.kv(3, "productFamily", family_name, false);
            let mem = f64::from(vcpu) * f.gib_per_vcpu;
            let attrs: Vec<(&str, String)> = vec![
                ("instanceType", itype.clone()),
                ("currentGeneration", "Yes".into()),
                ("instanceFamily", f.kind.into()),
                ("vcpu", vcpu.to_string()),
                ("physicalProcessor", f.processor.into()),
                ("clockSpeed", "3.5 GHz".into()),
                ("memory", format!("{mem} GiB")),
                ("storage", "EBS only".into()),
                (
                    "networkPerformance",
                    format!("Up to {} Gigabit", 10 + vcpu / 4),
                ),
                ("processorArchitecture", f.arch.into()),
                ("tenancy", tenancy_name.into()),
                ("operatingSystem", os.into()),
                ("licenseModel", license.into()),
                ("usagetype", usage),
                ("operation", operation.into()),
                ("availabilityzone", "NA".into()),
                ("capacitystatus", cap.into()),
                ("classicnetworkingsupport", "false".into()),
                (
                    "dedicatedEbsThroughput",
                    format!("Up to {} Mbps", 650 * vcpu),
                ),
                ("ecu", (vcpu * 5).to_string()),
                ("enhancedNetworkingSupported", "Yes".into()),
                ("gpuMemory", "NA".into()),
                ("intelAvxAvailable", "Yes".into()),
                ("intelAvx2Available", "Yes".into()),
                ("intelTurboAvailable", "Yes".into()),
                ("marketoption", "OnDemand".into()),
                ("normalizationSizeFactor", (vcpu * 2).to_string()),
                ("preInstalledSw", sw.into()),
                (
                    "processorFeatures",
                    "Intel AVX; Intel AVX2; Intel AVX512; Intel Turbo".into(),
                ),
                ("regionCode", REGION.into()),
                ("servicecode", "AmazonEC2".into()),
                ("servicename", "Amazon Elastic Compute Cloud".into()),
                ("vpcnetworkingsupport", "true".into()),
                ("location", LOCATION.into()),
                ("locationType", "AWS Region".into()),
            ];
            out.attrs(&attrs);
        }
        Spec::Ebs(j) => {
            let (family, volume, usage, _, _) = EBS[j];
            out.kv(3, "productFamily", family, false);
            let mut attrs: Vec<(&str, String)> = vec![
                ("servicecode", "AmazonEC2".into()),
                ("location", LOCATION.into()),
                ("locationType", "AWS Region".into()),
                ("storageMedia", "SSD-backed".into()),
                ("usagetype", usage.into()),
                ("operation", String::new()),
                ("regionCode", REGION.into()),
                ("servicename", "Amazon Elastic Compute Cloud".into()),
            ];
            if !volume.is_empty() {
                attrs.push(("volumeApiName", volume.into()));
            }
            out.attrs(&attrs);
        }
        Spec::Other(j) => {
            let (family, usage, _, _) = OTHER[j];
            out.kv(3, "productFamily", family, false);
            let attrs: Vec<(&str, String)> = match usage.strip_prefix("HostUsage:") {
                // An On-Demand Dedicated Host, with the attributes the
                // real files give one (the parser prices it per host-hour
                // under its instance family).
                Some(host_family) => vec![
                    ("servicecode", "AmazonEC2".into()),
                    ("location", LOCATION.into()),
                    ("locationType", "AWS Region".into()),
                    ("instanceType", host_family.into()),
                    ("instanceFamily", "General purpose".into()),
                    ("tenancy", "Dedicated".into()),
                    ("capacitystatus", "AllocatedHost".into()),
                    ("operatingSystem", "Linux".into()),
                    ("licenseModel", "No License required".into()),
                    ("preInstalledSw", "NA".into()),
                    ("usagetype", usage.into()),
                    ("operation", "RunInstances".into()),
                    ("regionCode", REGION.into()),
                    ("servicename", "Amazon Elastic Compute Cloud".into()),
                ],
                None => vec![
                    ("servicecode", "AmazonEC2".into()),
                    ("location", LOCATION.into()),
                    ("locationType", "AWS Region".into()),
                    ("group", family.into()),
                    ("usagetype", usage.into()),
                    ("operation", String::new()),
                    ("regionCode", REGION.into()),
                    ("servicename", "Amazon Elastic Compute Cloud".into()),
                ],
            };
            out.attrs(&attrs);
        }
    }
    out.text.push_str("    }");
}

struct Dim<'a> {
    rate: &'a str,
    unit: &'a str,
    usd: String,
    description: String,
    ranged: bool,
}

/// One offer term, indented for its place under `terms.X.SKU`.
fn term(
    out: &mut Out,
    sku: &str,
    code: &str,
    date: &str,
    dims: &[Dim<'_>],
    attrs: &[(&str, &str)],
) {
    let _ = writeln!(out.text, "        \"{sku}.{code}\" : {{");
    out.kv(5, "offerTermCode", code, false);
    out.kv(5, "sku", sku, false);
    out.kv(5, "effectiveDate", date, false);
    out.line(5, "\"priceDimensions\" : {");
    for (n, d) in dims.iter().enumerate() {
        let _ = writeln!(out.text, "            \"{sku}.{code}.{}\" : {{", d.rate);
        out.kv(7, "rateCode", &format!("{sku}.{code}.{}", d.rate), false);
        out.kv(7, "description", &d.description, false);
        if d.ranged {
            out.kv(7, "beginRange", "0", false);
            out.kv(7, "endRange", "Inf", false);
        }
        out.kv(7, "unit", d.unit, false);
        out.line(7, "\"pricePerUnit\" : {");
        out.kv(8, "USD", &d.usd, true);
        out.line(7, "},");
        out.line(7, "\"appliesTo\" : [ ]");
        out.line(6, if n + 1 == dims.len() { "}" } else { "}," });
    }
    out.line(5, "},");
    if attrs.is_empty() {
        out.line(5, "\"termAttributes\" : { }");
    } else {
        out.line(5, "\"termAttributes\" : {");
        for (n, (k, v)) in attrs.iter().enumerate() {
            out.kv(6, k, v, n + 1 == attrs.len());
        }
        out.line(5, "}");
    }
    out.text.push_str("        }");
}

/// Product `i`'s entry under `terms.OnDemand`.
fn on_demand(out: &mut Out, i: usize) {
    let sku = sku(i);
    let (unit, price, description) = match spec(i) {
        Spec::Instance { platform, .. } => {
            let (hourly, _) = instance_price(i).unwrap_or((0.0, 0));
            let word = PLATFORMS[platform].5;
            (
                "Hrs",
                usd(hourly),
                format!("${hourly:.4} per On Demand {word} Instance Hour"),
            )
        }
        Spec::Ebs(j) => {
            let (_, volume, _, unit, price) = EBS[j];
            (
                unit,
                price.to_owned(),
                format!("${price} per {unit} of {volume} - {LOCATION}"),
            )
        }
        Spec::Other(j) => {
            let (family, _, unit, price) = OTHER[j];
            (
                unit,
                price.to_owned(),
                format!("${price} per {unit} for {family} in {LOCATION}"),
            )
        }
    };
    let _ = writeln!(out.text, "      \"{sku}\" : {{");
    let dim = Dim {
        rate: "6YS6EN2CT7",
        unit,
        usd: price,
        description,
        ranged: true,
    };
    term(out, &sku, "JRTCKXETXF", "2025-05-01T00:00:00Z", &[dim], &[]);
    out.text.push_str("\n      }");
}

/// The 12 reserved offerings: (code, years, class, option).
const OFFERINGS: &[(&str, u32, &str, &str)] = &[
    ("4NA7Y494T4", 1, "standard", "No Upfront"),
    ("HU7G6KETJZ", 1, "standard", "Partial Upfront"),
    ("6QCMYABX3D", 1, "standard", "All Upfront"),
    ("7NE97W5U4E", 1, "convertible", "No Upfront"),
    ("CUZHX8X6JH", 1, "convertible", "Partial Upfront"),
    ("VJWZNREJX2", 1, "convertible", "All Upfront"),
    ("BPH4J8HBKS", 3, "standard", "No Upfront"),
    ("38NPMPTW36", 3, "standard", "Partial Upfront"),
    ("NQ3QZPMQV9", 3, "standard", "All Upfront"),
    ("Z2E3P23VKM", 3, "convertible", "No Upfront"),
    ("R5XV2EPZQZ", 3, "convertible", "Partial Upfront"),
    ("MZU6U2429S", 3, "convertible", "All Upfront"),
];

/// Whether product `i` has reserved terms (used instances, not on hosts).
fn has_reserved(i: usize) -> bool {
    matches!(spec(i), Spec::Instance { capacity: 0, tenancy, .. } if tenancy != 2)
}

/// Product `i`'s entry under `terms.Reserved`.
fn reserved(out: &mut Out, i: usize) {
    let sku = sku(i);
    let (hourly, _) = instance_price(i).unwrap_or((0.0, 0));
    let word = match spec(i) {
        Spec::Instance { platform, .. } => PLATFORMS[platform].5,
        _ => "Linux",
    };
    let _ = writeln!(out.text, "      \"{sku}\" : {{");
    for (n, &(code, years, class, option)) in OFFERINGS.iter().enumerate() {
        let discount =
            if years == 1 { 0.62 } else { 0.40 } * if class == "convertible" { 1.15 } else { 1.0 };
        let total = hourly * discount * 8760.0 * f64::from(years);
        let (upfront, per_hour) = match option {
            "No Upfront" => (None, total * 1.04 / (8760.0 * f64::from(years))),
            "Partial Upfront" => (
                Some((total / 2.0).round()),
                total / 2.0 / (8760.0 * f64::from(years)),
            ),
            _ => (Some(total.round()), 0.0),
        };
        let description = format!("{word} (Amazon VPC), reserved instance applied");
        let mut dims = Vec::new();
        if let Some(u) = upfront {
            dims.push(Dim {
                rate: "2TG2D8R56U",
                unit: "Quantity",
                usd: format!("{u}"),
                description: "Upfront Fee".into(),
                ranged: false,
            });
        }
        dims.push(Dim {
            rate: "6YS6EN2CT7",
            unit: "Hrs",
            usd: usd(per_hour),
            description,
            ranged: true,
        });
        let lease = format!("{years}yr");
        let attrs = [
            ("LeaseContractLength", lease.as_str()),
            ("OfferingClass", class),
            ("PurchaseOption", option),
        ];
        term(out, &sku, code, "2024-04-01T00:00:00Z", &dims, &attrs);
        out.text.push_str(if n + 1 == OFFERINGS.len() {
            "\n"
        } else {
            ",\n"
        });
    }
    out.text.push_str("      }");
}

const HEADER: &str = "{\n  \"formatVersion\" : \"v1.0\",\n  \"disclaimer\" : \"This pricing list is for informational purposes only. All prices are subject to the additional terms included in the pricing pages on http://aws.amazon.com. All Free Tier prices are also subject to the terms included at https://aws.amazon.com/free/\",\n  \"offerCode\" : \"AmazonEC2\",\n  \"version\" : \"20250523232744\",\n  \"publicationDate\" : \"2025-05-23T23:27:44Z\",\n  \"products\" : {\n";

/// Bytes of products `0..n` and all their terms, per product (to size).
fn entry_bytes(out: &mut Out, i: usize) -> u64 {
    out.text.clear();
    product(out, i);
    on_demand(out, i);
    if has_reserved(i) {
        reserved(out, i);
    }
    out.text.len() as u64 + 8
}

fn write_file(path: &str, n: usize) -> std::io::Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut out = Out {
        text: String::with_capacity(1 << 16),
    };
    let mut bytes = 0u64;
    let mut put = |w: &mut BufWriter<File>, s: &str| -> std::io::Result<()> {
        bytes += s.len() as u64;
        w.write_all(s.as_bytes())
    };
    put(&mut w, HEADER)?;
    for i in 0..n {
        out.text.clear();
        product(&mut out, i);
        out.text.push_str(if i + 1 == n { "\n" } else { ",\n" });
        put(&mut w, &out.text)?;
    }
    put(&mut w, "  },\n  \"terms\" : {\n    \"OnDemand\" : {\n")?;
    for i in 0..n {
        out.text.clear();
        on_demand(&mut out, i);
        out.text.push_str(if i + 1 == n { "\n" } else { ",\n" });
        put(&mut w, &out.text)?;
    }
    put(&mut w, "    },\n    \"Reserved\" : {\n")?;
    let last = (0..n).rev().find(|&i| has_reserved(i));
    for i in (0..n).filter(|&i| has_reserved(i)) {
        out.text.clear();
        reserved(&mut out, i);
        out.text
            .push_str(if Some(i) == last { "\n" } else { ",\n" });
        put(&mut w, &out.text)?;
    }
    put(&mut w, "    }\n  }\n}")?;
    w.flush()?;
    Ok(bytes)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(mb)) = (args.get(1), args.get(2).and_then(|s| s.parse::<f64>().ok()))
    else {
        eprintln!("usage: gen_offer <out.json> <MB>");
        return ExitCode::from(2);
    };
    let target = (mb * 1e6) as u64;
    // Pass 1: how many products reach the size.
    let mut out = Out {
        text: String::with_capacity(1 << 16),
    };
    let (mut n, mut total) = (0usize, HEADER.len() as u64 + 64);
    while total < target || n == 0 {
        total += entry_bytes(&mut out, n);
        n += 1;
    }
    match write_file(path, n) {
        Ok(bytes) => {
            let reserved = (0..n).filter(|&i| has_reserved(i)).count();
            println!(
                "{path}: {bytes} bytes, {n} products ({reserved} with reserved terms, {} reserved offers)",
                reserved * OFFERINGS.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_offer: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}

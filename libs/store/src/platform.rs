//! Mapping DescribeInstances onto the offer file's instance attributes.
//!
//! An instance's price is found by `(region, InstanceType,
//! Placement.Tenancy, UsageOperation)`: the offer file's `operation`
//! attribute *is* the instance's `UsageOperation` (AWS documents it as the
//! CUR `lineitem/Operation` and the Price List `operation`), and it already
//! encodes the operating system, the bundled SQL Server edition and
//! BYOL. `PlatformDetails` is the human name of the same code; the table
//! below (from the EC2 User Guide, "AMI billing information fields") is
//! for display and for checking the two agree.

/// The offer file's `tenancy` for DescribeInstances' `Placement.Tenancy`.
pub fn offer_tenancy(placement_tenancy: &str) -> Option<&'static str> {
    match placement_tenancy {
        "default" => Some("Shared"),
        "dedicated" => Some("Dedicated"),
        "host" => Some("Host"),
        _ => None,
    }
}

/// The tenancy under which pricing stores `Dedicated Host` products, with
/// the host's instance family (`mac1`, `m5`) as the instance type. Kopter's
/// convention, not the file's attribute: it keeps host rates apart from the
/// Host-tenancy *instance* rows (`mac1.metal`, whose rate is 0.00 because
/// the host carries the charge), whatever tenancy the file gives the host
/// product.
pub const HOST_PRICE_TENANCY: &str = "Host";

/// `(PlatformDetails, UsageOperation)` as AWS documents them.
pub const PLATFORMS: &[(&str, &str)] = &[
    ("Linux/UNIX", "RunInstances"),
    ("Red Hat BYOL Linux", "RunInstances:00g0"),
    ("Red Hat Enterprise Linux", "RunInstances:0010"),
    ("Red Hat Enterprise Linux with HA", "RunInstances:1010"),
    (
        "Red Hat Enterprise Linux with SQL Server Standard and HA",
        "RunInstances:1014",
    ),
    (
        "Red Hat Enterprise Linux with SQL Server Enterprise and HA",
        "RunInstances:1110",
    ),
    (
        "Red Hat Enterprise Linux with SQL Server Standard",
        "RunInstances:0014",
    ),
    (
        "Red Hat Enterprise Linux with SQL Server Web",
        "RunInstances:0210",
    ),
    (
        "Red Hat Enterprise Linux with SQL Server Enterprise",
        "RunInstances:0110",
    ),
    ("SQL Server Enterprise", "RunInstances:0100"),
    ("SQL Server Standard", "RunInstances:0004"),
    ("SQL Server Web", "RunInstances:0200"),
    ("SUSE Linux", "RunInstances:000g"),
    ("Ubuntu Pro", "RunInstances:0g00"),
    ("Windows", "RunInstances:0002"),
    ("Windows BYOL", "RunInstances:0800"),
    ("Windows with SQL Server Enterprise", "RunInstances:0102"),
    ("Windows with SQL Server Standard", "RunInstances:0006"),
    ("Windows with SQL Server Web", "RunInstances:0202"),
];

/// `PlatformDetails` for a `UsageOperation` / offer `operation`.
pub fn platform_details(usage_operation: &str) -> Option<&'static str> {
    PLATFORMS
        .iter()
        .find(|(_, op)| *op == usage_operation)
        .map(|(name, _)| *name)
}

/// `UsageOperation` for a `PlatformDetails`.
pub fn usage_operation(platform_details: &str) -> Option<&'static str> {
    PLATFORMS
        .iter()
        .find(|(name, _)| *name == platform_details)
        .map(|(_, op)| *op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_both_ways() {
        assert_eq!(offer_tenancy("default"), Some("Shared"));
        assert_eq!(offer_tenancy("host"), Some("Host"));
        assert_eq!(offer_tenancy("other"), None);
        assert_eq!(platform_details("RunInstances:0002"), Some("Windows"));
        assert_eq!(platform_details("RunInstances"), Some("Linux/UNIX"));
        assert_eq!(usage_operation("SUSE Linux"), Some("RunInstances:000g"));
        assert_eq!(platform_details("RunInstances:9999"), None);
    }
}

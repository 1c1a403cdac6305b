//! Kopter's pricing service: what EC2 instances and EBS volumes cost.
//!
//! [`offer`] streams the AWS Price List bulk EC2 offer file into prices.

pub mod offer;

//! The Route 53 DNS provider of the clustersitter: to be written.
//!
//! Only this crate, `cerebro-ec2` and the `cerebrod` binaries link the AWS SDK.

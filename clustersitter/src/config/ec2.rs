//! The EC2 part of the cluster config (`[provider.ec2]`), and the facts
//! about EC2 that the config check and the EC2 provider share: instance
//! types, regions, zone names. Free of the AWS SDK on purpose: the
//! clustersitter library never links it (only `cerebro-ec2` does).

use cerebro_types::machine::Resources;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use toml::Spanned;

/// An EC2 instance type: its vCPUs and memory, as the EC2 User Guide's
/// "Amazon EC2 instance type specifications" lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceType {
    /// e.g. `t3.small`.
    pub name: &'static str,
    pub vcpus: u32,
    /// MiB.
    pub memory_mib: u64,
}

impl InstanceType {
    /// What a machine of this type offers: one core per vCPU, its memory
    /// in MB (Cerebro's MB are MiB).
    pub fn resources(&self) -> Resources {
        Resources {
            cpu: f64::from(self.vcpus),
            mem_mb: self.memory_mib as f64,
        }
    }

    /// Whether a machine of this type holds `need` (cores, MB).
    pub fn holds(&self, need: Resources) -> bool {
        let size = self.resources();
        need.cpu <= size.cpu && need.mem_mb <= size.mem_mb
    }
}

const fn t(name: &'static str, vcpus: u32, memory_mib: u64) -> InstanceType {
    InstanceType {
        name,
        vcpus,
        memory_mib,
    }
}

/// The instance types Cerebro knows (x86_64 only: the machinesitter and
/// tasksitter a machine downloads are the clustersitter's own binaries, so
/// Graviton types would not run them): the burstable t2/t3/t3a, general
/// purpose m5/m6i, compute c5/c6i and memory r5/r6i families.
pub const INSTANCE_TYPES: &[InstanceType] = &[
    t("t2.nano", 1, 512),
    t("t2.micro", 1, 1024),
    t("t2.small", 1, 2048),
    t("t2.medium", 2, 4096),
    t("t2.large", 2, 8192),
    t("t2.xlarge", 4, 16384),
    t("t2.2xlarge", 8, 32768),
    t("t3.nano", 2, 512),
    t("t3.micro", 2, 1024),
    t("t3.small", 2, 2048),
    t("t3.medium", 2, 4096),
    t("t3.large", 2, 8192),
    t("t3.xlarge", 4, 16384),
    t("t3.2xlarge", 8, 32768),
    t("t3a.nano", 2, 512),
    t("t3a.micro", 2, 1024),
    t("t3a.small", 2, 2048),
    t("t3a.medium", 2, 4096),
    t("t3a.large", 2, 8192),
    t("t3a.xlarge", 4, 16384),
    t("t3a.2xlarge", 8, 32768),
    t("m5.large", 2, 8192),
    t("m5.xlarge", 4, 16384),
    t("m5.2xlarge", 8, 32768),
    t("m5.4xlarge", 16, 65536),
    t("m5.8xlarge", 32, 131072),
    t("m5.12xlarge", 48, 196608),
    t("m5.16xlarge", 64, 262144),
    t("m5.24xlarge", 96, 393216),
    t("m6i.large", 2, 8192),
    t("m6i.xlarge", 4, 16384),
    t("m6i.2xlarge", 8, 32768),
    t("m6i.4xlarge", 16, 65536),
    t("m6i.8xlarge", 32, 131072),
    t("m6i.12xlarge", 48, 196608),
    t("m6i.16xlarge", 64, 262144),
    t("m6i.24xlarge", 96, 393216),
    t("m6i.32xlarge", 128, 524288),
    t("c5.large", 2, 4096),
    t("c5.xlarge", 4, 8192),
    t("c5.2xlarge", 8, 16384),
    t("c5.4xlarge", 16, 32768),
    t("c5.9xlarge", 36, 73728),
    t("c5.12xlarge", 48, 98304),
    t("c5.18xlarge", 72, 147456),
    t("c5.24xlarge", 96, 196608),
    t("c6i.large", 2, 4096),
    t("c6i.xlarge", 4, 8192),
    t("c6i.2xlarge", 8, 16384),
    t("c6i.4xlarge", 16, 32768),
    t("c6i.8xlarge", 32, 65536),
    t("c6i.12xlarge", 48, 98304),
    t("c6i.16xlarge", 64, 131072),
    t("c6i.24xlarge", 96, 196608),
    t("c6i.32xlarge", 128, 262144),
    t("r5.large", 2, 16384),
    t("r5.xlarge", 4, 32768),
    t("r5.2xlarge", 8, 65536),
    t("r5.4xlarge", 16, 131072),
    t("r5.8xlarge", 32, 262144),
    t("r5.12xlarge", 48, 393216),
    t("r5.16xlarge", 64, 524288),
    t("r5.24xlarge", 96, 786432),
    t("r6i.large", 2, 16384),
    t("r6i.xlarge", 4, 32768),
    t("r6i.2xlarge", 8, 65536),
    t("r6i.4xlarge", 16, 131072),
    t("r6i.8xlarge", 32, 262144),
    t("r6i.12xlarge", 48, 393216),
    t("r6i.16xlarge", 64, 524288),
    t("r6i.24xlarge", 96, 786432),
    t("r6i.32xlarge", 128, 1048576),
];

/// The type named `name` in [`INSTANCE_TYPES`], if Cerebro knows it.
pub fn instance_type(name: &str) -> Option<&'static InstanceType> {
    INSTANCE_TYPES.iter().find(|t| t.name == name)
}

/// Allowed types when no level of the config lists any.
pub const DEFAULT_INSTANCE_TYPES: &[&str] = &[
    "t3.micro",
    "t3.small",
    "t3.medium",
    "t3.large",
    "m5.xlarge",
    "m5.2xlarge",
];

/// The AWS regions (commercial, GovCloud and China) a zone may be in.
pub const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// A Cerebro zone of EC2, `aws-<availability zone>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsZone {
    /// e.g. `us-west-2`.
    pub region: String,
    /// e.g. `us-west-2a`.
    pub availability_zone: String,
}

/// Splits `aws-us-west-2a` into region `us-west-2` and availability zone
/// `us-west-2a`.
///
/// # Errors
/// A message when `zone` is not `aws-` + a region of [`REGIONS`] + one
/// lowercase letter.
pub fn parse_zone(zone: &str) -> Result<AwsZone, String> {
    let bad = || {
        format!("zone '{zone}' is not aws-<region><letter> with a known AWS region (e.g. aws-us-west-2a)")
    };
    let az = zone.strip_prefix("aws-").ok_or_else(bad)?;
    let mut chars = az.chars();
    let letter = chars.next_back().ok_or_else(bad)?;
    let region = chars.as_str();
    if !letter.is_ascii_lowercase() || !REGIONS.contains(&region) {
        return Err(bad());
    }
    Ok(AwsZone {
        region: region.to_string(),
        availability_zone: az.to_string(),
    })
}

/// `[provider.ec2]` as written: the defaults of every zone, then the
/// per-region and per-zone tables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2Section {
    /// The AMI (`ami-...`). AMIs are regional: usually set per region or zone.
    pub ami: Option<Spanned<String>>,
    /// The types a machine may be (names of [`INSTANCE_TYPES`]).
    pub instance_types: Option<Spanned<Vec<Spanned<String>>>>,
    /// `subnet-...`; else the AZ's default subnet.
    pub subnet: Option<String>,
    /// Security group ids (`sg-...`).
    pub security_groups: Option<Vec<String>>,
    /// EC2 key pair name (for a person's SSH; Cerebro itself never logs in).
    pub key_name: Option<String>,
    /// IAM instance profile: a name, or an ARN (`arn:aws:iam::...`).
    pub iam_instance_profile: Option<String>,
    /// Size of the root volume (GiB); else the AMI's.
    pub root_volume_gb: Option<Spanned<u32>>,
    /// Extra tags on every instance.
    pub tags: Option<BTreeMap<Spanned<String>, String>>,
    /// `[provider.ec2.regions.<region>]`: overrides for every zone of a region.
    #[serde(default)]
    pub regions: BTreeMap<Spanned<String>, Ec2Overrides>,
    /// `[provider.ec2.zones.aws-<az>]`: the zones served, each with its overrides.
    #[serde(default)]
    pub zones: BTreeMap<Spanned<String>, Ec2Overrides>,
}

/// A region's or a zone's table: the keys of [`Ec2Section`]'s defaults,
/// each overriding the level above (zone > region > defaults; `tags` are
/// merged key by key).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2Overrides {
    pub ami: Option<Spanned<String>>,
    pub instance_types: Option<Spanned<Vec<Spanned<String>>>>,
    pub subnet: Option<String>,
    pub security_groups: Option<Vec<String>>,
    pub key_name: Option<String>,
    pub iam_instance_profile: Option<String>,
    pub root_volume_gb: Option<Spanned<u32>>,
    pub tags: Option<BTreeMap<Spanned<String>, String>>,
}

impl Ec2Section {
    fn defaults(&self) -> Ec2Overrides {
        Ec2Overrides {
            ami: self.ami.clone(),
            instance_types: self.instance_types.clone(),
            subnet: self.subnet.clone(),
            security_groups: self.security_groups.clone(),
            key_name: self.key_name.clone(),
            iam_instance_profile: self.iam_instance_profile.clone(),
            root_volume_gb: self.root_volume_gb.clone(),
            tags: self.tags.clone(),
        }
    }
}

/// The EC2 settings, checked and resolved zone by zone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ec2Config {
    /// The zones served, by Cerebro zone name (`aws-us-west-2a`).
    pub zones: BTreeMap<String, Ec2Zone>,
}

impl Ec2Config {
    /// The regions of the zones served.
    pub fn regions(&self) -> BTreeSet<&str> {
        self.zones.values().map(|z| z.region.as_str()).collect()
    }
}

/// Everything needed to launch a machine in one zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Ec2Zone {
    /// e.g. `us-west-2`.
    pub region: String,
    /// e.g. `us-west-2a`.
    pub availability_zone: String,
    pub ami: String,
    /// The allowed types, smallest first (by memory, then vCPUs); never empty.
    pub instance_types: Vec<&'static InstanceType>,
    pub subnet: Option<String>,
    pub security_groups: Vec<String>,
    pub key_name: Option<String>,
    pub iam_instance_profile: Option<String>,
    /// GiB.
    pub root_volume_gb: Option<u32>,
    pub tags: BTreeMap<String, String>,
}

impl Ec2Zone {
    /// The largest machine the zone can start: the allowed type with the
    /// most vCPUs and the most memory (the config refuses a list without
    /// one such type, so this is a real type and everything that fits it
    /// can be launched).
    pub fn largest(&self) -> Resources {
        largest_of(&self.instance_types)
    }

    /// The smallest allowed type (by memory, then vCPUs) holding `need`,
    /// or `None` when none does.
    pub fn smallest_holding(&self, need: Resources) -> Option<&'static InstanceType> {
        self.instance_types.iter().copied().find(|t| t.holds(need))
    }
}

/// Component-wise the most vCPUs and memory of `types`.
fn largest_of(types: &[&'static InstanceType]) -> Resources {
    types.iter().fold(
        Resources {
            cpu: 0.0,
            mem_mb: 0.0,
        },
        |most, t| Resources {
            cpu: most.cpu.max(f64::from(t.vcpus)),
            mem_mb: most.mem_mb.max(t.memory_mib as f64),
        },
    )
}

/// A config problem at a byte range of the file.
pub(crate) type Problem = (Range<usize>, String);

/// Tag keys Cerebro sets itself, or AWS reserves.
fn reserved_tag(key: &str) -> bool {
    key == "Name" || key.starts_with("cerebro:") || key.starts_with("aws:")
}

/// Checks `section` and resolves each zone's settings; `at` is the span
/// of the `[provider.ec2]` table, for problems of the whole section.
pub(crate) fn resolve(section: &Ec2Section, at: Range<usize>) -> (Ec2Config, Vec<Problem>) {
    let mut problems = Vec::new();
    let defaults = section.defaults();
    let levels_checked: Vec<&Ec2Overrides> = std::iter::once(&defaults)
        .chain(section.regions.values())
        .chain(section.zones.values())
        .collect();
    for level in levels_checked {
        check_level(level, &mut problems);
    }
    for region in section.regions.keys() {
        if !REGIONS.contains(&region.get_ref().as_str()) {
            problems.push((
                region.span(),
                format!("'{}' is not a known AWS region", region.get_ref()),
            ));
        }
    }
    if section.zones.is_empty() {
        problems.push((
            at,
            "serves no zone: add a [provider.ec2.zones.aws-<availability zone>] table (e.g. aws-us-west-2a)".into(),
        ));
    }
    let mut config = Ec2Config::default();
    for (name, zone_table) in &section.zones {
        let aws = match parse_zone(name.get_ref()) {
            Ok(aws) => aws,
            Err(message) => {
                problems.push((name.span(), message));
                continue;
            }
        };
        let region_table = section.regions.get(aws.region.as_str());
        let levels: Vec<&Ec2Overrides> = [Some(zone_table), region_table, Some(&defaults)]
            .into_iter()
            .flatten()
            .collect();
        let ami: Option<&Spanned<String>> = levels.iter().find_map(|l| l.ami.as_ref());
        let Some(ami) = ami else {
            problems.push((
                name.span(),
                format!(
                    "zone {zone} has no AMI: set ami in [provider.ec2.zones.{zone}], [provider.ec2.regions.{region}] or [provider.ec2] (AMIs are regional)",
                    zone = name.get_ref(),
                    region = aws.region
                ),
            ));
            continue;
        };
        let types: Option<&Spanned<Vec<Spanned<String>>>> =
            levels.iter().find_map(|l| l.instance_types.as_ref());
        let mut instance_types: Vec<&'static InstanceType> = match types {
            Some(list) => list
                .get_ref()
                .iter()
                .filter_map(|name| instance_type(name.get_ref()))
                .collect(),
            None => DEFAULT_INSTANCE_TYPES
                .iter()
                .filter_map(|name| instance_type(name))
                .collect(),
        };
        if instance_types.is_empty() {
            // Reported by check_level (an empty list or unknown names).
            continue;
        }
        instance_types.sort_by_key(|t| (t.memory_mib, t.vcpus));
        instance_types.dedup();
        // The zone's largest machine must be one real type: with mixed
        // families (c5.2xlarge and r5.xlarge) the most vCPUs and the most
        // memory belong to different types, and a job or a bundle of
        // instances sized for both would be accepted yet fit no type.
        let most = largest_of(&instance_types);
        if !instance_types.iter().any(|t| t.holds(most)) {
            let at = types.map_or_else(|| name.span(), Spanned::span);
            problems.push((
                at,
                format!(
                    "zone {}: no allowed instance type has both the most vCPUs ({}) and the most memory ({} MiB) of the list; add one that does (e.g. an m5 or m6i of that size), so the zone's largest machine is a real type",
                    name.get_ref(),
                    most.cpu,
                    most.mem_mb
                ),
            ));
            continue;
        }
        // Tags merge: a zone's tag overrides its region's, which overrides the default's.
        let mut tags = BTreeMap::new();
        for level in levels.iter().rev() {
            for (key, value) in level.tags.iter().flatten() {
                tags.insert(key.get_ref().clone(), value.clone());
            }
        }
        let subnet: Option<&String> = levels.iter().find_map(|l| l.subnet.as_ref());
        let groups: Option<&Vec<String>> = levels.iter().find_map(|l| l.security_groups.as_ref());
        let key_name: Option<&String> = levels.iter().find_map(|l| l.key_name.as_ref());
        let profile: Option<&String> = levels.iter().find_map(|l| l.iam_instance_profile.as_ref());
        let volume: Option<&Spanned<u32>> = levels.iter().find_map(|l| l.root_volume_gb.as_ref());
        config.zones.insert(
            name.get_ref().clone(),
            Ec2Zone {
                region: aws.region,
                availability_zone: aws.availability_zone,
                ami: ami.get_ref().clone(),
                instance_types,
                subnet: subnet.cloned(),
                security_groups: groups.cloned().unwrap_or_default(),
                key_name: key_name.cloned(),
                iam_instance_profile: profile.cloned(),
                root_volume_gb: volume.map(|v| *v.get_ref()),
                tags,
            },
        );
    }
    (config, problems)
}

/// The checks of one table's own values, whatever zone uses them.
fn check_level(level: &Ec2Overrides, problems: &mut Vec<Problem>) {
    if let Some(ami) = &level.ami {
        if !ami.get_ref().starts_with("ami-") {
            problems.push((
                ami.span(),
                format!("'{}' is not an AMI id (ami-...)", ami.get_ref()),
            ));
        }
    }
    if let Some(list) = &level.instance_types {
        if list.get_ref().is_empty() {
            problems.push((
                list.span(),
                "instance_types must name at least one instance type".into(),
            ));
        }
        for name in list.get_ref() {
            if instance_type(name.get_ref()).is_none() {
                problems.push((
                    name.span(),
                    format!(
                        "unknown instance type '{}' (known: the t2, t3, t3a, m5, m6i, c5, c6i and r5, r6i types)",
                        name.get_ref()
                    ),
                ));
            }
        }
    }
    if let Some(size) = &level.root_volume_gb {
        if !(1..=16384).contains(size.get_ref()) {
            problems.push((
                size.span(),
                "root_volume_gb must be 1 to 16384 (GiB)".into(),
            ));
        }
    }
    for (key, value) in level.tags.iter().flatten() {
        // EC2's tag limits (CreateTags): keys 1 to 128 characters, values at most 256.
        if key.get_ref().is_empty() || key.get_ref().chars().count() > 128 {
            problems.push((key.span(), "a tag key must be 1 to 128 characters".into()));
        }
        if value.chars().count() > 256 {
            problems.push((
                key.span(),
                format!("tag '{}': its value is over 256 characters", key.get_ref()),
            ));
        }
        if reserved_tag(key.get_ref()) {
            problems.push((
                key.span(),
                format!(
                    "tag '{}' is reserved (Cerebro sets Name and cerebro:*, AWS reserves aws:*)",
                    key.get_ref()
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_split_into_region_and_availability_zone() {
        assert_eq!(
            parse_zone("aws-us-west-2a").unwrap(),
            AwsZone {
                region: "us-west-2".into(),
                availability_zone: "us-west-2a".into()
            }
        );
        assert_eq!(
            parse_zone("aws-eu-central-1c").unwrap().region,
            "eu-central-1"
        );
        for bad in [
            "us-west-2a",
            "aws-us-west-2",
            "aws-us-west-9a",
            "aws-",
            "aws-us-west-2A",
            "local-a",
        ] {
            assert!(parse_zone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_table_is_consistent() {
        let mut names = BTreeSet::new();
        for t in INSTANCE_TYPES {
            assert!(names.insert(t.name), "{} twice", t.name);
            assert!(t.vcpus > 0 && t.memory_mib >= 512, "{}", t.name);
        }
        for name in DEFAULT_INSTANCE_TYPES {
            assert!(instance_type(name).is_some(), "{name}");
        }
    }

    fn zone(types: &[&str]) -> Ec2Zone {
        let mut instance_types: Vec<_> = types.iter().map(|n| instance_type(n).unwrap()).collect();
        instance_types.sort_by_key(|t| (t.memory_mib, t.vcpus));
        Ec2Zone {
            region: "us-west-2".into(),
            availability_zone: "us-west-2a".into(),
            ami: "ami-1".into(),
            instance_types,
            subnet: None,
            security_groups: vec![],
            key_name: None,
            iam_instance_profile: None,
            root_volume_gb: None,
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn sizing_takes_the_smallest_type_holding_the_need() {
        let z = zone(DEFAULT_INSTANCE_TYPES);
        let need = |cpu, mem_mb| Resources { cpu, mem_mb };
        assert_eq!(
            z.smallest_holding(need(0.5, 1200.0)).unwrap().name,
            "t3.small"
        );
        assert_eq!(
            z.smallest_holding(need(0.1, 1024.0)).unwrap().name,
            "t3.micro"
        );
        assert_eq!(
            z.smallest_holding(need(3.0, 1000.0)).unwrap().name,
            "m5.xlarge"
        );
        assert_eq!(
            z.smallest_holding(need(5.0, 12000.0)).unwrap().name,
            "m5.2xlarge"
        );
        assert!(z.smallest_holding(need(9.0, 100.0)).is_none());
        // Memory first, then vCPUs: t2.small (1 vCPU) before t3.small (2).
        let z = zone(&["t3.small", "t2.small", "t2.medium"]);
        assert_eq!(
            z.smallest_holding(need(1.0, 2000.0)).unwrap().name,
            "t2.small"
        );
        assert_eq!(
            z.smallest_holding(need(1.5, 2000.0)).unwrap().name,
            "t3.small"
        );
    }

    #[test]
    fn the_largest_machine_is_the_largest_type() {
        let z = zone(&["t3.micro", "m5.2xlarge", "c5.xlarge"]);
        assert_eq!(
            z.largest(),
            instance_type("m5.2xlarge").unwrap().resources()
        );
    }
}

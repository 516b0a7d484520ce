//! The user data an instance boots from: `user-data.sh`, a POSIX `sh`
//! script cloud-init runs once, with this machine's values filled in.

/// The script, with `@NAME@` placeholders.
pub const TEMPLATE: &str = include_str!("user-data.sh");

/// EC2's limit on user data, before base64 (EC2 User Guide, "Run commands
/// when you launch an EC2 instance with user data input": 16 KB).
pub const USER_DATA_LIMIT: usize = 16 * 1024;

/// What one machine's script says.
#[derive(Debug, Clone)]
pub struct UserData<'a> {
    /// Where the machine downloads its binaries and registers (no trailing `/`).
    pub cluster_url: &'a str,
    /// The cluster's bearer token; empty for a cluster run `--insecure`.
    pub token: &'a str,
    pub machine_id: &'a str,
    pub zone: &'a str,
    /// The instance type's vCPUs, declared as the machine's cores.
    pub vcpus: u32,
    /// The instance type's memory in MiB, declared as the machine's MB.
    pub memory_mib: u64,
    /// Lowercase hex SHA-256 of the machinesitter the cluster serves.
    pub machinesitter_sha256: &'a str,
    /// Lowercase hex SHA-256 of the tasksitter the cluster serves.
    pub tasksitter_sha256: &'a str,
}

impl UserData<'_> {
    /// The script, every value shell-quoted.
    pub fn render(&self) -> String {
        let values: [(&str, String); 8] = [
            ("CLUSTER_URL", self.cluster_url.to_string()),
            ("TOKEN", self.token.to_string()),
            ("MACHINE_ID", self.machine_id.to_string()),
            ("ZONE", self.zone.to_string()),
            ("CAPACITY_CPU", self.vcpus.to_string()),
            ("CAPACITY_MEM", self.memory_mib.to_string()),
            (
                "MACHINESITTER_SHA256",
                self.machinesitter_sha256.to_string(),
            ),
            ("TASKSITTER_SHA256", self.tasksitter_sha256.to_string()),
        ];
        values
            .iter()
            .fold(TEMPLATE.to_string(), |script, (name, value)| {
                script.replace(&format!("@{name}@"), &shell_quote(value))
            })
    }
}

/// `value` as one `sh` word that expands to exactly it: single-quoted,
/// each `'` written as `'\''`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> UserData<'static> {
        UserData {
            cluster_url: "http://10.0.0.5:30000",
            token: "s3cr'et $(reboot)",
            machine_id: "m-aws-us-west-2a-1",
            zone: "aws-us-west-2a",
            vcpus: 2,
            memory_mib: 2048,
            machinesitter_sha256:
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            tasksitter_sha256: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
        }
    }

    #[test]
    fn every_placeholder_is_filled_and_quoted() {
        let script = example().render();
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(!script.contains("@CLUSTER_URL@") && !script.contains("@TASKSITTER_SHA256@"));
        assert!(
            script.contains("TOKEN='s3cr'\\''et $(reboot)'\n"),
            "{script}"
        );
        assert!(script.contains("CAPACITY_MEM='2048'\n"));
        assert!(script.len() < USER_DATA_LIMIT / 2, "{} bytes", script.len());
    }

    /// A restarted machinesitter re-adopts its running tasks: the unit
    /// must not kill the tasksitters and workloads in its cgroup.
    #[test]
    fn the_unit_stops_only_the_machinesitter() {
        let script = example().render();
        let modes: Vec<&str> = script
            .lines()
            .filter(|l| l.starts_with("KillMode="))
            .collect();
        assert_eq!(modes, ["KillMode=process"], "{script}");
    }

    #[test]
    fn the_rendered_script_parses_and_quotes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user-data");
        std::fs::write(&path, example().render()).unwrap();
        let status = std::process::Command::new("sh")
            .arg("-n")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        // The quoted token reads back as itself.
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "printf %s {}",
                shell_quote("s3cr'et $(reboot) \\n")
            ))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            "s3cr'et $(reboot) \\n"
        );
    }
}

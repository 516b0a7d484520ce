//! What a cloud provider tells of its machines (instance id, type,
//! region / AZ, addresses) reaches people: a clustersitter served in this
//! process adopts at start a machine its provider discovers with details;
//! the real `cerebro` CLI lists them (table and JSON), the pages show them
//! escaped, and the saved state keeps them.

use async_trait::async_trait;
use cerebro_tests::{bin, wait_for_async};
use cerebro_types::cluster::ProviderDetails;
use cerebro_types::machine::Resources;
use cerebro_web::daemon::shutdown_channel;
use clap::Parser;
use clustersitter::provider::{
    FoundMachine, MachineProvider, NewMachine, ProviderError, ProviderStatus, Provisioned,
};
use std::time::Duration;

const TOKEN: &str = "details-token";

fn details() -> ProviderDetails {
    ProviderDetails {
        // Markup in a provider's answer is shown, never run.
        instance_type: Some("t3.small<b>".into()),
        region: Some("us-west-2".into()),
        availability_zone: Some("us-west-2a".into()),
        private_address: Some("10.0.0.7".into()),
        public_address: Some("54.1.2.3".into()),
        provider_state: Some("running".into()),
    }
}

/// A provider with one machine running when the cluster starts, and
/// nothing more to give.
struct OneFound;

#[async_trait]
impl MachineProvider for OneFound {
    fn kind(&self) -> &'static str {
        "cloud-like"
    }

    async fn provision(&self, _machine: &NewMachine) -> Result<Provisioned, ProviderError> {
        Err(ProviderError::Config("this test provisions nothing".into()))
    }

    async fn status(&self, _provider_id: &str) -> Result<ProviderStatus, ProviderError> {
        Ok(ProviderStatus::Exists {
            state: "running".into(),
        })
    }

    async fn terminate(&self, _machine_id: &str, _provider_id: &str) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn discover(&self) -> Result<Vec<FoundMachine>, ProviderError> {
        Ok(vec![FoundMachine {
            machine_id: "zone-a-7".into(),
            zone: "zone-a".into(),
            provider_id: "i-0123456789abcdef0".into(),
            address: None,
            size: Some(Resources {
                cpu: 2.0,
                mem_mb: 2048.0,
            }),
            details: details(),
        }])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_pages_show_what_the_provider_told_of_a_machine() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let config_path = dir.path().join("cluster.toml");
    std::fs::write(
        &config_path,
        format!(
            "cluster_name = \"details\"\nstate_dir = \"{}\"\ntoken_file = \"token\"\non_exit = \"leave\"\n\
             [provider]\nkind = \"local\"\nzones = [\"zone-a\"]\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let config = clustersitter::config::Cli::try_parse_from([
        "clustersitter",
        "--config",
        config_path.to_str().unwrap(),
    ])
    .unwrap()
    .into_config()
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, shutdown) = shutdown_channel();
    let cluster = tokio::spawn(clustersitter::serve_with(
        config,
        std::sync::Arc::new(OneFound),
        listener,
        shutdown,
    ));
    let http = reqwest::Client::new();
    wait_for_async("the clustersitter to serve", || async {
        http.get(format!("{base}/api/v1/status"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;

    let cli = |args: &'static [&'static str]| {
        let base = base.clone();
        let home = dir.path().join("config");
        async move {
            tokio::task::spawn_blocking(move || {
                let output = std::process::Command::new(bin("cerebro"))
                    .arg("--cluster")
                    .arg(&base)
                    .args(args)
                    .env("XDG_CONFIG_HOME", home)
                    .env("CEREBRO_TOKEN", TOKEN)
                    .env_remove("CEREBRO_CLUSTER")
                    .output()
                    .expect("run cerebro");
                assert!(output.status.success(), "{output:?}");
                String::from_utf8(output.stdout).unwrap()
            })
            .await
            .unwrap()
        }
    };
    let table = cli(&["listmachines"]).await;
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in ["PROVIDER ID", "TYPE", "REGION/AZ", "PRIVATE", "PUBLIC"] {
        assert!(header.contains(column), "{table}");
    }
    let row = lines.next().unwrap();
    for value in [
        "zone-a-7",
        "i-0123456789abcdef0",
        "t3.small<b>",
        "us-west-2 / us-west-2a",
        "10.0.0.7",
        "54.1.2.3",
    ] {
        assert!(row.contains(value), "{value} in {table}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&cli(&["--json", "listmachines"]).await).expect("the CLI's JSON");
    assert_eq!(json[0]["provider_id"], "i-0123456789abcdef0");
    assert_eq!(json[0]["details"], serde_json::to_value(details()).unwrap());

    for page in ["/overview", "/machines/zone-a-7"] {
        let html = http
            .get(format!("{base}{page}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for value in [
            "i-0123456789abcdef0",
            "t3.small&lt;b&gt;",
            "us-west-2 / us-west-2a",
            "10.0.0.7",
            "54.1.2.3",
        ] {
            assert!(html.contains(value), "{value} on {page}");
        }
        assert!(!html.contains("t3.small<b>"), "escaped on {page}");
    }

    stop.request();
    tokio::time::timeout(Duration::from_secs(60), cluster)
        .await
        .expect("the clustersitter stops in time")
        .unwrap()
        .unwrap();
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state").join("cluster.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        saved["machines"]["zone-a-7"]["details"],
        serde_json::to_value(details()).unwrap(),
        "the saved state keeps the details"
    );
}

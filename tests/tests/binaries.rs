//! The binaries a cloud machine downloads at boot, from the real
//! clustersitter: listed with their digests, served byte for byte, and only
//! to holders of the cluster's token.

use cerebro_tests::*;
use clustersitter::binaries::hex_sha256;

#[test]
fn the_cluster_serves_its_machine_binaries_to_token_holders_only() {
    let cluster = Cluster::start(ClusterOptions {
        token: Some("binaries-secret"),
        ..ClusterOptions::default()
    });
    let listed = cluster
        .api(|c| async move { c.binaries().await })
        .expect("the list");
    let names: Vec<&str> = listed.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["machinesitter", "tasksitter"]);

    for binary in &listed {
        let url = format!("{}/api/v1/binaries/{}", cluster.base_url, binary.name);
        let response = cluster
            .http
            .get(&url)
            .bearer_auth("binaries-secret")
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{url}");
        assert_eq!(content_type(response.headers()), "application/octet-stream");
        let header = response.headers()["x-cerebro-sha256"]
            .to_str()
            .unwrap()
            .to_string();
        let bytes = response.bytes().unwrap();
        let digest = hex_sha256(&bytes);
        assert_eq!(
            digest, binary.sha256,
            "{}: the bytes are the listed ones",
            binary.name
        );
        assert_eq!(header, binary.sha256);
        assert_eq!(bytes.len() as u64, binary.size);
        // The clustersitter serves the programs beside it.
        let beside = std::fs::read(bin(&binary.name)).unwrap();
        assert_eq!(
            hex_sha256(&beside),
            digest,
            "{} beside the binary",
            binary.name
        );

        // A read, yet refused without the token, and with a wrong one.
        let anonymous = cluster.http.get(&url).send().unwrap();
        assert_eq!(anonymous.status().as_u16(), 401);
        let body: serde_json::Value = anonymous.json().unwrap();
        assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
        let wrong = cluster.http.get(&url).bearer_auth("nope").send().unwrap();
        assert_eq!(wrong.status().as_u16(), 401);
    }
    let list = format!("{}/api/v1/binaries", cluster.base_url);
    assert_eq!(
        cluster.http.get(&list).send().unwrap().status().as_u16(),
        401
    );

    let (code, body) = cluster.request("GET", "/api/v1/binaries/sh", None);
    assert_eq!(code, 404, "{body}");
    assert_eq!(
        body["error"],
        "no binary named 'sh' (served: machinesitter, tasksitter)"
    );
    // The other reads stay public.
    let status = format!("{}/api/v1/status", cluster.base_url);
    assert_eq!(
        cluster.http.get(&status).send().unwrap().status().as_u16(),
        200
    );
}

#[test]
fn a_local_cluster_without_the_binaries_starts_and_says_what_is_missing() {
    // The harness's config has no `tasksitter_bin`: this one names a
    // file that does not exist.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-tasksitter");
    let config = dir.path().join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            "cluster_name = \"test\"\nport = 0\nstate_dir = \"state\"\ninsecure = true\n\
             [provider]\nkind = \"local\"\nzones = [\"zone-a\"]\nmachinesitter_bin = \"{}\"\ntasksitter_bin = \"{}\"\n",
            bin("machinesitter").display(),
            missing.display()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::default();
    let address = daemon.start(
        std::process::Command::new(bin("clustersitter"))
            .arg("--config")
            .arg(&config),
        &dir.path().join("address"),
        "the clustersitter",
    );
    let response = reqwest::blocking::get(format!("http://{address}/api/v1/binaries")).unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("no-such-tasksitter"), "{error}");
    daemon.kill9();
}

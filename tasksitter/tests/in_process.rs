//! The tasksitter booted inside the test (`tasksitter::serve` on a listener
//! the test bound), stopped through its shutdown handle. Alone in its test
//! binary: the supervisor reaps every child of the process (waitpid(-1)), so
//! it must not share one with tests that wait for children of their own.

mod common;

use cerebro_client::{HttpClient, TaskClient};
use cerebro_host::layout::RuntimeRecord;
use cerebro_types::StateKind;
use cerebro_web::daemon::shutdown_channel;
use clap::Parser;
use common::*;
use std::time::Duration;
use tasksitter::cli::Cli;

#[tokio::test(flavor = "current_thread")]
async fn serve_announces_once_ready_and_stops_its_http_server_when_it_returns() {
    let dir = scratch_dir();
    let address_file = dir.path().join("address");
    let runtime_file = dir.path().join("runtime.json");
    let config = Cli::try_parse_from([
        "tasksitter",
        "--command",
        "sleep 30",
        "--limits-backend",
        "poll",
        "--http-monitoring",
        "--http-address-file",
        address_file.to_str().unwrap(),
        "--runtime-file",
        runtime_file.to_str().unwrap(),
    ])
    .unwrap()
    .into_config()
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, shutdown) = shutdown_channel();
    // The checks run beside serve, on a thread of their own: serve needs
    // this (the test's) thread. A failed check drops `stop`, which stops serve.
    let checks = tokio::task::spawn_blocking(move || {
        let client = TaskClient::new(
            HttpClient::new(Duration::from_secs(10), 1),
            &address.to_string(),
            None,
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let announced = wait_for(TIMEOUT, "the address file", || {
            std::fs::read_to_string(&address_file).ok()
        });
        assert_eq!(announced, address.to_string());
        let workload = wait_for(TIMEOUT, "the workload to run", || {
            let status = runtime.block_on(client.status()).ok()?;
            (status.state.kind() == StateKind::Running).then_some(status.pid?)
        });
        // The runtime record says who serves the task and what it runs.
        let record = RuntimeRecord::read(&runtime_file).unwrap();
        assert_eq!(record.pid, std::process::id() as i32);
        assert_eq!(
            Some(record.start_ticks),
            cerebro_host::process::start_ticks(record.pid)
        );
        assert_eq!(record.address, Some(address.to_string()));
        assert_eq!(record.workload_pid, Some(workload));
        stop.request();
    });
    let code = tasksitter::serve(config, Some(listener), shutdown).await;
    checks.await.unwrap();
    // SIGTERM from the stop: 128 + 15.
    assert_eq!(code.unwrap(), 143);
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "nothing listens on {address} once serve has returned"
    );
}

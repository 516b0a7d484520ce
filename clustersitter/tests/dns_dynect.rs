//! The `dynect` DNS provider against the Dyn REST API contract server
//! (`cerebro_tests::dynect`; Dyn itself was retired in 2023): one session
//! for many passes, the token on every call, one publish per pass with
//! changes and none without, foreign records left alone, logout at close,
//! one login again after the server forgot the session.

use cerebro_tests::dynect::{DynAuth, DynRequest, DynServer};
use cerebro_types::dns::ownership_text;
use clustersitter::config::dns::{DynectSettings, Secret};
use clustersitter::dns::dynect::DynectProvider;
use clustersitter::dns::{Change, DnsError, DnsProvider, RecordSet, RecordType};
use std::collections::BTreeSet;

const ZONE: &str = "cerebro.test";
const BASENAME: &str = "ticker.cerebro.test";

fn server() -> DynServer {
    DynServer::start("acme", "ops", "s3cret", &[ZONE])
}

fn provider(server: &DynServer, password: &str) -> DynectProvider {
    DynectProvider::new(
        ZONE.into(),
        DynectSettings {
            api_url: format!("{}/", server.url()),
            customer: "acme".into(),
            user: "ops".into(),
            password: Secret(password.as_bytes().to_vec()),
        },
    )
    .expect("a Dyn provider")
}

fn set(name: &str, rtype: RecordType, ttl: u32, values: &[&str]) -> RecordSet {
    RecordSet {
        name: name.into(),
        rtype,
        ttl,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn lines(requests: &[DynRequest]) -> Vec<String> {
    requests.iter().map(DynRequest::line).collect()
}

fn logins(requests: &[DynRequest]) -> usize {
    requests
        .iter()
        .filter(|r| r.line() == "POST /REST/Session")
        .count()
}

fn publishes(requests: &[DynRequest]) -> usize {
    requests
        .iter()
        .filter(|r| r.line() == format!("PUT /REST/Zone/{ZONE}"))
        .count()
}

/// The names Cerebro would write for machine 0 of a job in zone local-a.
fn machine(owner: &str) -> (RecordSet, RecordSet) {
    let name = "0.local-a.ticker.cerebro.test";
    (
        set(name, RecordType::Txt, 60, &[owner]),
        set(name, RecordType::A, 60, &["10.0.0.1"]),
    )
}

fn as_set(sets: Vec<RecordSet>) -> BTreeSet<RecordSet> {
    sets.into_iter().collect()
}

#[tokio::test]
async fn one_session_serves_every_pass_and_close_logs_out() {
    let server = server();
    server.seed(
        ZONE,
        "admin.ticker.cerebro.test",
        RecordType::A,
        "192.0.2.7",
        300,
    );
    server.seed(ZONE, "www.cerebro.test", RecordType::A, "192.0.2.8", 300);
    let foreign = set(
        "admin.ticker.cerebro.test",
        RecordType::A,
        300,
        &["192.0.2.7"],
    );
    let dns = provider(&server, "s3cret");
    assert_eq!(dns.kind(), "dynect");
    assert!(
        server.requests().is_empty(),
        "no login before the first use"
    );

    // Pass 1: a listing logs in.
    assert_eq!(
        dns.list(BASENAME).await.expect("list"),
        vec![foreign.clone()]
    );
    let requests = server.requests();
    assert_eq!(requests[0].line(), "POST /REST/Session");
    assert_eq!(requests[0].auth, DynAuth::Missing);
    assert_eq!(requests[0].body["customer_name"], "acme");
    assert_eq!(requests[0].body["user_name"], "ops");
    assert_eq!(requests[0].body["password"], "s3cret");
    assert_eq!(
        requests[1].line(),
        format!("GET /REST/AllRecord/{ZONE}/{BASENAME}")
    );

    // Pass 2: a new name, TXT first, then one publish.
    let owner = ownership_text("prod");
    let (txt, a) = machine(&owner);
    let pool = set(
        "local-a.ticker.cerebro.test",
        RecordType::A,
        60,
        &["10.0.0.1", "10.0.0.2"],
    );
    let pool_txt = set(
        "local-a.ticker.cerebro.test",
        RecordType::Txt,
        60,
        &[&owner],
    );
    let v6 = set(
        "1.local-a.ticker.cerebro.test",
        RecordType::Aaaa,
        60,
        &["fd00::1"],
    );
    server.clear_requests();
    let changes = [
        Change::Upsert(txt.clone()),
        Change::Upsert(a.clone()),
        Change::Upsert(pool_txt.clone()),
        Change::Upsert(pool.clone()),
        Change::Upsert(v6.clone()),
    ];
    dns.apply(&changes).await.expect("apply");
    let requests = server.requests();
    assert_eq!(
        lines(&requests),
        vec![
            format!("PUT /REST/TXTRecord/{ZONE}/0.local-a.ticker.cerebro.test"),
            format!("PUT /REST/ARecord/{ZONE}/0.local-a.ticker.cerebro.test"),
            format!("PUT /REST/TXTRecord/{ZONE}/local-a.ticker.cerebro.test"),
            format!("PUT /REST/ARecord/{ZONE}/local-a.ticker.cerebro.test"),
            format!("PUT /REST/AAAARecord/{ZONE}/1.local-a.ticker.cerebro.test"),
            format!("PUT /REST/Zone/{ZONE}"),
        ]
    );
    assert_eq!(
        requests[0].body,
        serde_json::json!({"TXTRecords": [{"rdata": {"txtdata": owner}, "ttl": 60}]})
    );
    assert_eq!(
        requests[3].body["ARecords"],
        serde_json::json!([
            {"rdata": {"address": "10.0.0.1"}, "ttl": 60},
            {"rdata": {"address": "10.0.0.2"}, "ttl": 60}
        ])
    );
    assert_eq!(requests[5].body, serde_json::json!({"publish": true}));
    let mut expected = as_set(vec![
        txt.clone(),
        a.clone(),
        pool_txt.clone(),
        pool.clone(),
        v6.clone(),
        foreign.clone(),
    ]);
    assert_eq!(as_set(dns.list(BASENAME).await.expect("list")), expected);
    expected.insert(set("www.cerebro.test", RecordType::A, 300, &["192.0.2.8"]));
    assert_eq!(as_set(server.published(ZONE)), expected);

    // Pass 3: nothing to change, nothing sent, no publish.
    server.clear_requests();
    dns.apply(&[]).await.expect("an empty pass");
    assert!(
        server.requests().is_empty(),
        "{:?}",
        lines(&server.requests())
    );

    // Pass 4: the same changes again leave the zone as it was.
    dns.apply(&changes).await.expect("apply again");
    assert_eq!(publishes(&server.requests()), 1);
    assert_eq!(as_set(server.published(ZONE)), expected);

    // Pass 5: removing the machine's name, addresses first.
    server.clear_requests();
    dns.apply(&[Change::Delete(a.clone()), Change::Delete(txt.clone())])
        .await
        .expect("delete");
    assert_eq!(
        lines(&server.requests()),
        vec![
            format!("DELETE /REST/ARecord/{ZONE}/0.local-a.ticker.cerebro.test"),
            format!("DELETE /REST/TXTRecord/{ZONE}/0.local-a.ticker.cerebro.test"),
            format!("PUT /REST/Zone/{ZONE}"),
        ]
    );
    let listed = as_set(dns.list(BASENAME).await.expect("list"));
    assert_eq!(
        listed,
        as_set(vec![pool_txt, pool, v6, foreign.clone()]),
        "the foreign record survives"
    );
    // Deleting what is gone is no error.
    dns.apply(&[Change::Delete(a), Change::Delete(txt)])
        .await
        .expect("delete again");

    // Every pass in the one session, its token on every call.
    dns.close().await;
    let all = server.requests();
    let last = all.last().expect("the logout");
    assert_eq!(last.line(), "DELETE /REST/Session");
    assert_eq!(last.auth, DynAuth::Live);
    assert_eq!(server.live_sessions(), 0);
    let token = last.token.clone().expect("a token");
    for request in &all {
        assert_eq!(request.auth, DynAuth::Live, "{request:?}");
        assert_eq!(request.token.as_ref(), Some(&token), "{request:?}");
    }
    // Closing twice sends nothing more.
    dns.close().await;
    assert_eq!(server.requests().len(), all.len());
}

#[tokio::test]
async fn a_forgotten_session_costs_one_login_and_loses_no_change() {
    let server = server();
    let dns = provider(&server, "s3cret");
    assert_eq!(dns.list(BASENAME).await.expect("list"), vec![]);
    assert_eq!(logins(&server.requests()), 1);

    // The server forgets the session between passes.
    server.expire_sessions();
    server.clear_requests();
    let (txt, a) = machine(&ownership_text("prod"));
    dns.apply(&[Change::Upsert(txt.clone()), Change::Upsert(a.clone())])
        .await
        .expect("apply in a new session");
    let requests = server.requests();
    assert_eq!(
        requests[0].auth,
        DynAuth::Unknown,
        "the old token is refused"
    );
    assert_eq!(logins(&requests), 1, "{:?}", lines(&requests));
    assert_eq!(publishes(&requests), 1);
    let new_token = requests.last().unwrap().token.clone();
    assert!(requests[2..]
        .iter()
        .all(|r| r.auth == DynAuth::Live && r.token == new_token));
    assert_eq!(as_set(server.published(ZONE)), as_set(vec![txt, a]));

    // The new session serves the next passes.
    server.clear_requests();
    dns.list(BASENAME).await.expect("list");
    assert_eq!(logins(&server.requests()), 0);

    // Forgotten again before a listing: one login, then the listing.
    server.expire_sessions();
    server.clear_requests();
    assert_eq!(dns.list(BASENAME).await.expect("list").len(), 2);
    assert_eq!(logins(&server.requests()), 1);
}

#[tokio::test]
async fn a_session_lost_mid_pass_redoes_the_whole_pass_in_the_new_one() {
    let server = server();
    let dns = provider(&server, "s3cret");
    dns.list(BASENAME).await.expect("list");
    // The TXT goes into the old session's changeset, which dies with it
    // before the A: the new session must get the TXT too, or the A would
    // be published without its owner.
    server.expire_sessions_after(1);
    server.clear_requests();
    let (txt, a) = machine(&ownership_text("prod"));
    dns.apply(&[Change::Upsert(txt.clone()), Change::Upsert(a.clone())])
        .await
        .expect("apply");
    let requests = server.requests();
    let txt_path = format!("PUT /REST/TXTRecord/{ZONE}/0.local-a.ticker.cerebro.test");
    assert_eq!(
        lines(&requests),
        vec![
            txt_path.clone(),
            format!("PUT /REST/ARecord/{ZONE}/0.local-a.ticker.cerebro.test"),
            "POST /REST/Session".to_string(),
            txt_path,
            format!("PUT /REST/ARecord/{ZONE}/0.local-a.ticker.cerebro.test"),
            format!("PUT /REST/Zone/{ZONE}"),
        ]
    );
    assert_eq!(requests[1].auth, DynAuth::Unknown);
    assert_eq!(as_set(server.published(ZONE)), as_set(vec![txt, a]));
}

#[tokio::test]
async fn a_publish_that_runs_as_a_job_is_polled_until_done() {
    let server = server();
    server.publish_as_job(2);
    let dns = provider(&server, "s3cret");
    let (txt, a) = machine(&ownership_text("prod"));
    dns.apply(&[Change::Upsert(txt.clone()), Change::Upsert(a.clone())])
        .await
        .expect("apply");
    let requests = server.requests();
    let polls: Vec<&DynRequest> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/REST/Job/"))
        .collect();
    assert_eq!(polls.len(), 3, "{:?}", lines(&requests));
    assert!(polls.iter().all(|r| r.auth == DynAuth::Live));
    assert_eq!(as_set(server.published(ZONE)), as_set(vec![txt, a]));
}

#[tokio::test]
async fn refusals_are_server_errors_with_the_api_code() {
    let server = server();
    // Wrong password: one login attempt, its words in the error.
    let dns = provider(&server, "wrong");
    match dns.list(BASENAME).await {
        Err(DnsError::Server { code, message, .. }) => {
            assert_eq!(code, "INVALID_DATA");
            assert!(message.starts_with("login:"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(logins(&server.requests()), 1);
    dns.close().await;
    assert_eq!(
        logins(&server.requests()),
        1,
        "close without a session sends nothing"
    );

    // A record the API refuses: the pass fails, its pending changes are
    // discarded, nothing is published.
    server.clear_requests();
    let dns = provider(&server, "s3cret");
    let (txt, _) = machine(&ownership_text("prod"));
    let bad = set(
        "0.local-a.ticker.cerebro.test",
        RecordType::A,
        60,
        &["not-an-address"],
    );
    match dns.apply(&[Change::Upsert(txt), Change::Upsert(bad)]).await {
        Err(DnsError::Server { code, message, .. }) => {
            assert_eq!(code, "INVALID_DATA");
            assert!(message.contains("not-an-address"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let requests = server.requests();
    assert_eq!(publishes(&requests), 0, "{:?}", lines(&requests));
    assert_eq!(
        requests.last().unwrap().line(),
        format!("DELETE /REST/ZoneChanges/{ZONE}")
    );
    assert!(server.published(ZONE).is_empty());
    // The next (good) pass publishes only its own changes.
    let (txt, a) = machine(&ownership_text("prod"));
    dns.apply(&[Change::Upsert(txt.clone()), Change::Upsert(a.clone())])
        .await
        .expect("apply");
    assert_eq!(as_set(server.published(ZONE)), as_set(vec![txt, a]));
    dns.close().await;
}

//! The rfc2136 provider against a real BIND 9 `named` (scripts/install-bind.sh):
//! what it applies is what named answers and what an AXFR lists.

use cerebro_tests::bind::BindServer;
use cerebro_tests::dns::query;
use cerebro_types::dns::{RecordSet, RecordType};
use clustersitter::config::dns::{Rfc2136Settings, Secret};
use clustersitter::dns::rfc2136::Rfc2136Provider;
use clustersitter::dns::{Change, DnsError, DnsProvider};
use std::collections::BTreeSet;
use std::time::Duration;

const OWNER: &str = "heritage=cerebro,cerebro/owner=test";

fn provider(bind: &BindServer, secret: Vec<u8>) -> Rfc2136Provider {
    Rfc2136Provider::new(
        bind.zone().to_string(),
        Rfc2136Settings {
            server: bind.addr(),
            key_name: bind.key_name().to_string(),
            key_algorithm: "hmac-sha256".into(),
            key_secret: Secret(secret),
            timeout: Duration::from_secs(5),
        },
    )
    .unwrap()
}

fn set(name: &str, rtype: RecordType, values: &[&str]) -> RecordSet {
    RecordSet {
        name: name.into(),
        rtype,
        ttl: 60,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn values(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| v.to_string()).collect()
}

async fn apply(p: &Rfc2136Provider, bind: &BindServer, changes: &[Change]) {
    p.apply(changes)
        .await
        .unwrap_or_else(|e| panic!("apply: {e}; named's log:\n{}", bind.log()));
}

async fn list(p: &Rfc2136Provider, bind: &BindServer, basename: &str) -> Vec<RecordSet> {
    p.list(basename)
        .await
        .unwrap_or_else(|e| panic!("list: {e}; named's log:\n{}", bind.log()))
}

#[tokio::test]
async fn upserts_and_deletes_show_in_answers_and_listings() {
    let bind = BindServer::start();
    let p = provider(&bind, bind.key_secret());
    let name = "0.local-a.web.cerebro.test";
    let txt = set(name, RecordType::Txt, &[OWNER]);
    let a = set(name, RecordType::A, &["127.0.0.11"]);
    let changes = [Change::Upsert(txt.clone()), Change::Upsert(a.clone())];
    apply(&p, &bind, &changes).await;

    let answer = query(bind.addr(), name, RecordType::A).await.unwrap();
    assert_eq!(
        (answer.rcode.as_str(), &answer.values),
        ("NOERROR", &values(&["127.0.0.11"]))
    );
    let answer = query(bind.addr(), name, RecordType::Txt).await.unwrap();
    assert_eq!(answer.values, values(&[OWNER]));
    assert_eq!(
        list(&p, &bind, "web.cerebro.test").await,
        vec![a.clone(), txt.clone()]
    );

    // The same changes again change nothing.
    apply(&p, &bind, &changes).await;
    assert_eq!(
        list(&p, &bind, "web.cerebro.test").await,
        vec![a.clone(), txt.clone()]
    );

    // New values replace the RRset's.
    let a2 = set(name, RecordType::A, &["127.0.0.12", "127.0.0.13"]);
    apply(&p, &bind, &[Change::Upsert(a2.clone())]).await;
    let answer = query(bind.addr(), name, RecordType::A).await.unwrap();
    assert_eq!(answer.values, values(&["127.0.0.12", "127.0.0.13"]));

    // AAAA too.
    let aaaa = set(name, RecordType::Aaaa, &["::1"]);
    apply(&p, &bind, &[Change::Upsert(aaaa.clone())]).await;
    let answer = query(bind.addr(), name, RecordType::Aaaa).await.unwrap();
    assert_eq!(answer.values, values(&["::1"]));

    // Address records first, then the owner: the name is gone.
    apply(
        &p,
        &bind,
        &[
            Change::Delete(a2),
            Change::Delete(aaaa),
            Change::Delete(txt.clone()),
        ],
    )
    .await;
    let answer = query(bind.addr(), name, RecordType::A).await.unwrap();
    assert_eq!(
        (answer.rcode.as_str(), answer.values.len()),
        ("NXDOMAIN", 0)
    );
    assert_eq!(list(&p, &bind, "web.cerebro.test").await, vec![]);

    // Deleting what is not there is fine.
    apply(&p, &bind, &[Change::Delete(txt)]).await;
}

#[tokio::test]
async fn foreign_records_are_listed_and_left_alone() {
    let bind = BindServer::start();
    let p = provider(&bind, bind.key_secret());
    bind.nsupdate(
        "update add web.cerebro.test. 300 A 10.9.9.9\n\
         update add admin.web.cerebro.test. 300 TXT \"hand\" \"made\"\n\
         update add alias.web.cerebro.test. 300 CNAME web.cerebro.test.\n\
         update add other.cerebro.test. 300 A 10.8.8.8",
    )
    .unwrap_or_else(|e| panic!("{e}; named's log:\n{}", bind.log()));
    let ours = set("0.z.web.cerebro.test", RecordType::A, &["127.0.0.5"]);
    apply(
        &p,
        &bind,
        &[
            Change::Upsert(set("0.z.web.cerebro.test", RecordType::Txt, &[OWNER])),
            Change::Upsert(ours.clone()),
        ],
    )
    .await;
    let listed = list(&p, &bind, "web.cerebro.test.").await;
    let foreign_a = RecordSet {
        ttl: 300,
        ..set("web.cerebro.test", RecordType::A, &["10.9.9.9"])
    };
    let foreign_txt = RecordSet {
        ttl: 300,
        ..set("admin.web.cerebro.test", RecordType::Txt, &["handmade"])
    };
    assert_eq!(
        listed,
        vec![
            ours.clone(),
            set("0.z.web.cerebro.test", RecordType::Txt, &[OWNER]),
            foreign_txt.clone(),
            foreign_a.clone(),
        ],
        "exactly the A, AAAA and TXT at or under the basename"
    );
    apply(&p, &bind, &[Change::Delete(ours)]).await;
    let listed = list(&p, &bind, "web.cerebro.test").await;
    assert!(
        listed.contains(&foreign_a) && listed.contains(&foreign_txt),
        "{listed:?}"
    );
    let answer = query(bind.addr(), "other.cerebro.test", RecordType::A)
        .await
        .unwrap();
    assert_eq!(answer.values, values(&["10.8.8.8"]));
}

#[tokio::test]
async fn a_large_apply_and_a_multi_message_transfer_keep_everything() {
    let bind = BindServer::start();
    let p = provider(&bind, bind.key_secret());
    let text = "t".repeat(400);
    let sets: Vec<RecordSet> = (0..400)
        .map(|i| {
            set(
                &format!("{i}.z.big.cerebro.test"),
                RecordType::Txt,
                &[&text],
            )
        })
        .collect();
    let changes: Vec<Change> = sets.iter().cloned().map(Change::Upsert).collect();
    apply(&p, &bind, &changes).await;
    let mut listed = list(&p, &bind, "big.cerebro.test").await;
    listed.sort();
    let mut expected = sets;
    expected.sort();
    assert_eq!(listed.len(), expected.len());
    assert!(
        listed == expected,
        "the listing differs from what was applied"
    );
}

#[tokio::test]
async fn a_wrong_key_is_refused_with_the_servers_code() {
    let bind = BindServer::start();
    let p = provider(&bind, vec![1; 32]);
    let error = p
        .apply(&[Change::Upsert(set(
            "x.cerebro.test",
            RecordType::A,
            &["127.0.0.1"],
        ))])
        .await
        .expect_err("an update signed with the wrong key");
    match &error {
        DnsError::Server {
            operation, code, ..
        } => assert_eq!(
            (*operation, code.as_str()),
            ("UPDATE", "NOTAUTH"),
            "{error}"
        ),
        other => panic!("not a server error: {other}"),
    }
    let error = p
        .list("cerebro.test")
        .await
        .expect_err("a transfer with the wrong key");
    assert!(
        matches!(
            &error,
            DnsError::Server {
                operation: "AXFR",
                code,
                ..
            } if code == "NOTAUTH"
        ),
        "{error}"
    );
    // A key the server does not know at all (TSIG error BADKEY).
    let stranger = Rfc2136Provider::new(
        bind.zone().to_string(),
        Rfc2136Settings {
            server: bind.addr(),
            key_name: "nobody-knows".into(),
            key_algorithm: "hmac-sha256".into(),
            key_secret: Secret(bind.key_secret()),
            timeout: Duration::from_secs(5),
        },
    )
    .unwrap();
    let error = stranger
        .apply(&[Change::Delete(set("x.cerebro.test", RecordType::A, &[]))])
        .await
        .expect_err("an update signed with an unknown key");
    assert_eq!(error.code(), "NOTAUTH", "{error}");
    assert!(error.to_string().contains("BADKEY"), "{error}");
    let answer = query(bind.addr(), "x.cerebro.test", RecordType::A)
        .await
        .unwrap();
    assert_eq!(answer.rcode, "NXDOMAIN");
}

#[tokio::test]
async fn an_unanswering_server_is_a_timeout() {
    // A bound UDP socket that never answers, and no TCP listener.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = Rfc2136Provider::new(
        "cerebro.test".into(),
        Rfc2136Settings {
            server: silent.local_addr().unwrap(),
            key_name: "k".into(),
            key_algorithm: "hmac-sha256".into(),
            key_secret: Secret(vec![1; 32]),
            timeout: Duration::from_millis(300),
        },
    )
    .unwrap();
    let error = p
        .apply(&[Change::Delete(set("x.cerebro.test", RecordType::A, &[]))])
        .await
        .expect_err("nobody answers");
    assert_eq!(error.code(), "timeout", "{error}");
}

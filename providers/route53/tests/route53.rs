//! The Route 53 DNS provider against moto's Route 53 (issue 14, "Tests"):
//! the hosted zone found by name, UPSERT and DELETE in one batch, a
//! listing that sees exactly what was written, idempotent repeats, foreign
//! records left alone.
//!
//! The tests share one moto server and take turns at it (each starts from
//! a reset server). Run `scripts/install-moto.sh` first (scripts/test.sh
//! does).

use aws_sdk_route53::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_route53::types::{
    Change as AwsChange, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use aws_sdk_route53::Client;
use cerebro_tests::moto::MotoServer;
use cerebro_types::dns::ownership_text;
use clustersitter::config::dns::Route53Settings;
use clustersitter::dns::{Change, DnsError, DnsProvider, RecordSet, RecordType};
use std::collections::BTreeSet;

const ZONE: &str = "cerebro.test";
const BASENAME: &str = "ticker.cerebro.test";

/// A client of moto with static test credentials.
fn client(moto: &MotoServer) -> Client {
    let config = aws_sdk_route53::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto.url())
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .build();
    Client::from_conf(config)
}

/// Creates the hosted zone `name`; answers its id.
async fn create_zone(client: &Client, name: &str) -> String {
    let created = client
        .create_hosted_zone()
        .name(name)
        .caller_reference(format!("cerebro-test-{name}"))
        .send()
        .await
        .expect("CreateHostedZone");
    created
        .hosted_zone()
        .expect("a hosted zone")
        .id()
        .to_string()
}

/// [`clustersitter`]'s way in: `connect` with aws-config's default chain,
/// which finds the test credentials in the environment (the same for
/// every test, set once before any client reads them).
async fn connect(
    moto: &MotoServer,
    zone: &str,
) -> Result<std::sync::Arc<dyn DnsProvider>, DnsError> {
    static ENV: std::sync::Once = std::sync::Once::new();
    ENV.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/cerebro-test-aws-config");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/cerebro-test-aws-credentials",
        );
    });
    cerebro_route53::connect(
        zone.to_string(),
        Route53Settings {
            hosted_zone_id: None,
            endpoint_url: Some(moto.url()),
            region: "us-east-1".into(),
        },
    )
    .await
}

fn set(name: &str, rtype: RecordType, ttl: u32, values: &[&str]) -> RecordSet {
    RecordSet {
        name: name.into(),
        rtype,
        ttl,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

/// Writes an RRset the way another tool would (CREATE, values as given).
async fn create_foreign(
    client: &Client,
    zone_id: &str,
    name: &str,
    rtype: RrType,
    values: &[&str],
) {
    let mut rrset = ResourceRecordSet::builder()
        .name(name)
        .r#type(rtype)
        .ttl(300);
    for value in values {
        rrset = rrset.resource_records(ResourceRecord::builder().value(*value).build().unwrap());
    }
    let change = AwsChange::builder()
        .action(ChangeAction::Create)
        .resource_record_set(rrset.build().unwrap())
        .build()
        .unwrap();
    client
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
        .send()
        .await
        .expect("CREATE a foreign record");
}

/// Every RRset of the zone as moto holds it: (name, type, values), to see
/// duplicates the provider's listing would merge.
async fn raw_rrsets(client: &Client, zone_id: &str) -> Vec<(String, String, Vec<String>)> {
    let page = client
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .send()
        .await
        .expect("ListResourceRecordSets");
    assert!(!page.is_truncated(), "a test zone fits one page");
    page.resource_record_sets()
        .iter()
        .map(|s| {
            (
                s.name().to_string(),
                s.r#type().as_str().to_string(),
                s.resource_records()
                    .iter()
                    .map(|r| r.value().to_string())
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn connect_finds_the_hosted_zone_by_its_exact_name() {
    let moto = MotoServer::shared();
    let client = client(&moto);
    // A zone whose name only starts like the wanted one comes first in
    // ListHostedZonesByName's order and must not be taken.
    create_zone(&client, "a.cerebro.test").await;
    let id = create_zone(&client, ZONE).await;
    create_zone(&client, "other.test").await;

    let provider = connect(&moto, "Cerebro.Test.").await.expect("connect");
    assert_eq!(provider.kind(), "route53");
    assert_eq!(provider.list(BASENAME).await.expect("list"), vec![]);

    let by_id = cerebro_route53::Route53Provider::with_client(
        client.clone(),
        ZONE.into(),
        Some(id.clone()),
    )
    .await
    .expect("the configured hosted zone id");
    assert_eq!(by_id.hosted_zone_id(), id);

    let other = create_zone(&client, "elsewhere.test").await;
    let wrong =
        cerebro_route53::Route53Provider::with_client(client, ZONE.into(), Some(other)).await;
    assert!(
        matches!(&wrong, Err(DnsError::Config(m)) if m.contains("elsewhere.test")),
        "{wrong:?}"
    );
}

#[tokio::test]
async fn an_unknown_zone_is_a_config_error_naming_it() {
    let moto = MotoServer::shared();
    create_zone(&client(&moto), "cerebro.test").await;
    match connect(&moto, "missing.test").await {
        Err(DnsError::Config(message)) => {
            assert!(message.contains("missing.test"), "{message}")
        }
        Err(other) => panic!("not a config error: {other:?}"),
        Ok(_) => panic!("connected to a zone that does not exist"),
    }
}

#[tokio::test]
async fn upserts_are_listed_exactly_and_repeat_harmlessly_and_deletes_remove() {
    let moto = MotoServer::shared();
    let client = client(&moto);
    let zone_id = create_zone(&client, ZONE).await;
    let provider = connect(&moto, ZONE).await.expect("connect");

    let owner = ownership_text("prod");
    let name = "0.local-a.ticker.cerebro.test";
    let txt = set(name, RecordType::Txt, 60, &[&owner]);
    let a = set(name, RecordType::A, 60, &["10.0.0.1"]);
    let pool_txt = set(
        "local-a.ticker.cerebro.test",
        RecordType::Txt,
        60,
        &[&owner],
    );
    let pool = set(
        "local-a.ticker.cerebro.test",
        RecordType::A,
        60,
        &["10.0.0.1", "10.0.0.2"],
    );
    let aaaa = set(
        "1.local-a.ticker.cerebro.test",
        RecordType::Aaaa,
        60,
        &["fd00::1"],
    );
    let changes = vec![
        Change::Upsert(txt.clone()),
        Change::Upsert(a.clone()),
        Change::Upsert(pool_txt.clone()),
        Change::Upsert(pool.clone()),
        Change::Upsert(aaaa.clone()),
    ];
    provider.apply(&changes).await.expect("apply");
    let mut expected = vec![
        txt.clone(),
        a.clone(),
        pool_txt.clone(),
        pool.clone(),
        aaaa.clone(),
    ];
    expected.sort();
    let mut listed = provider.list(BASENAME).await.expect("list");
    listed.sort();
    assert_eq!(listed, expected);

    // On the wire: TXT quoted, one RRset per name and type.
    let raw = raw_rrsets(&client, &zone_id).await;
    let txts: Vec<_> = raw
        .iter()
        .filter(|(n, t, _)| n == &format!("{name}.") && t == "TXT")
        .collect();
    assert_eq!(txts.len(), 1, "{raw:?}");
    assert_eq!(txts[0].2, vec![format!("\"{owner}\"")]);

    // The same pass again changes nothing and duplicates nothing.
    provider.apply(&changes).await.expect("apply again");
    let again = raw_rrsets(&client, &zone_id).await;
    assert_eq!(again.len(), raw.len(), "{again:?}");
    let mut listed = provider.list(BASENAME).await.expect("list");
    listed.sort();
    assert_eq!(listed, expected);

    // A changed RRset replaces the old one (UPSERT, not a second CREATE).
    let moved = set(name, RecordType::A, 60, &["10.0.0.9"]);
    provider
        .apply(&[Change::Upsert(moved.clone())])
        .await
        .expect("upsert a new address");
    let listed = provider.list(name).await.expect("list");
    assert!(
        listed.contains(&moved) && !listed.contains(&a),
        "{listed:?}"
    );

    // Delete: addresses first, then the owner, in one batch.
    provider
        .apply(&[Change::Delete(moved.clone()), Change::Delete(txt.clone())])
        .await
        .expect("delete");
    let listed = provider.list(BASENAME).await.expect("list");
    assert!(listed.iter().all(|s| s.name != name), "{listed:?}");
    assert_eq!(listed.len(), 3, "{listed:?}");

    // Deleting what is already gone is no error.
    provider
        .apply(&[Change::Delete(moved), Change::Delete(txt)])
        .await
        .expect("delete again");
    assert_eq!(provider.list(BASENAME).await.expect("list").len(), 3);
}

#[tokio::test]
async fn foreign_records_and_other_names_are_listed_as_they_are_and_survive() {
    let moto = MotoServer::shared();
    let client = client(&moto);
    let zone_id = create_zone(&client, ZONE).await;
    // Under the basename, but not Cerebro's: an admin's A and TXT.
    create_foreign(
        &client,
        &zone_id,
        "admin.ticker.cerebro.test.",
        RrType::A,
        &["192.0.2.7"],
    )
    .await;
    create_foreign(
        &client,
        &zone_id,
        "admin.ticker.cerebro.test.",
        RrType::Txt,
        &["\"made by\" \" hand\""],
    )
    .await;
    // Beside the basename, sorting among its names in moto's order, and
    // outside it: never listed.
    create_foreign(
        &client,
        &zone_id,
        "ticker-x.cerebro.test.",
        RrType::A,
        &["192.0.2.8"],
    )
    .await;
    create_foreign(
        &client,
        &zone_id,
        "www.cerebro.test.",
        RrType::A,
        &["192.0.2.9"],
    )
    .await;
    // Another type under the basename: not listed.
    create_foreign(
        &client,
        &zone_id,
        "alias.ticker.cerebro.test.",
        RrType::Cname,
        &["www.cerebro.test."],
    )
    .await;
    // A wildcard, escaped as \052 by Route 53.
    create_foreign(
        &client,
        &zone_id,
        "*.ticker.cerebro.test.",
        RrType::A,
        &["192.0.2.10"],
    )
    .await;

    let provider = connect(&moto, ZONE).await.expect("connect");
    let owner = ownership_text("prod");
    let ours = [
        set(
            "0.local-a.ticker.cerebro.test",
            RecordType::Txt,
            60,
            &[&owner],
        ),
        set(
            "0.local-a.ticker.cerebro.test",
            RecordType::A,
            60,
            &["10.0.0.1"],
        ),
    ];
    provider
        .apply(&ours.iter().cloned().map(Change::Upsert).collect::<Vec<_>>())
        .await
        .expect("apply");
    let listed: BTreeSet<RecordSet> = provider
        .list(BASENAME)
        .await
        .expect("list")
        .into_iter()
        .collect();
    let expected: BTreeSet<RecordSet> = [
        ours[0].clone(),
        ours[1].clone(),
        set(
            "admin.ticker.cerebro.test",
            RecordType::A,
            300,
            &["192.0.2.7"],
        ),
        set(
            "admin.ticker.cerebro.test",
            RecordType::Txt,
            300,
            &["made by hand"],
        ),
        set("*.ticker.cerebro.test", RecordType::A, 300, &["192.0.2.10"]),
    ]
    .into_iter()
    .collect();
    assert_eq!(listed, expected);

    provider
        .apply(&[
            Change::Delete(ours[1].clone()),
            Change::Delete(ours[0].clone()),
        ])
        .await
        .expect("delete ours");
    let left: BTreeSet<RecordSet> = provider
        .list(BASENAME)
        .await
        .expect("list")
        .into_iter()
        .collect();
    let foreign: BTreeSet<RecordSet> = expected
        .difference(&ours.iter().cloned().collect())
        .cloned()
        .collect();
    assert_eq!(left, foreign);
    let raw = raw_rrsets(&client, &zone_id).await;
    for name in [
        "ticker-x.cerebro.test.",
        "www.cerebro.test.",
        "alias.ticker.cerebro.test.",
    ] {
        assert!(
            raw.iter().any(|(n, _, _)| n == name),
            "{name} survives: {raw:?}"
        );
    }
}

#[tokio::test]
async fn a_listing_spans_pages() {
    let moto = MotoServer::shared();
    let client = client(&moto);
    create_zone(&client, ZONE).await;
    let provider = connect(&moto, ZONE).await.expect("connect");
    // More RRsets than one page holds (300), so the listing goes on by
    // name and type.
    let sets: Vec<RecordSet> = (0..170)
        .flat_map(|n| {
            let name = format!("{n}.local-a.ticker.cerebro.test");
            [
                set(
                    &name,
                    RecordType::Txt,
                    60,
                    &["heritage=cerebro,cerebro/owner=prod"],
                ),
                set(
                    &name,
                    RecordType::A,
                    60,
                    &[&format!("10.0.{}.{}", n / 200, n % 200 + 1)],
                ),
            ]
        })
        .collect();
    provider
        .apply(&sets.iter().cloned().map(Change::Upsert).collect::<Vec<_>>())
        .await
        .expect("apply");
    let listed: BTreeSet<RecordSet> = provider
        .list(BASENAME)
        .await
        .expect("list")
        .into_iter()
        .collect();
    assert_eq!(listed, sets.into_iter().collect());
}

#[tokio::test]
async fn a_refused_batch_is_a_server_error_with_the_aws_code() {
    let moto = MotoServer::shared();
    let client = client(&moto);
    create_zone(&client, ZONE).await;
    let provider = connect(&moto, ZONE).await.expect("connect");
    // A name outside the hosted zone.
    let outside = set("www.elsewhere.test", RecordType::A, 60, &["10.0.0.1"]);
    match provider.apply(&[Change::Upsert(outside)]).await {
        Err(DnsError::Server {
            operation, code, ..
        }) => {
            assert_eq!(operation, "ChangeResourceRecordSets");
            assert!(!code.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_delete_of_a_stale_or_absent_rrset_still_converges() {
    let moto = MotoServer::shared();
    let client = client(&moto);
    create_zone(&client, ZONE).await;
    let provider = connect(&moto, ZONE).await.expect("connect");
    let name = "0.local-a.ticker.cerebro.test";
    let now = set(name, RecordType::A, 60, &["10.0.0.1"]);
    provider
        .apply(&[Change::Upsert(now.clone())])
        .await
        .expect("apply");
    // Listed before someone changed it: the DELETE does not match, is
    // read again and sent as the RRset now is.
    let stale = set(name, RecordType::A, 60, &["10.0.0.5"]);
    // Never there at all: dropped from the batch.
    let absent = set(
        "9.local-a.ticker.cerebro.test",
        RecordType::A,
        60,
        &["10.0.0.9"],
    );
    provider
        .apply(&[Change::Delete(stale), Change::Delete(absent)])
        .await
        .expect("delete");
    assert_eq!(provider.list(BASENAME).await.expect("list"), vec![]);
}

/// A cluster config as the clustersitter builds it from no file and no
/// flags but `--insecure`, with `[dns]` replaced by `dns`.
fn cluster_config(
    dns: clustersitter::config::dns::DnsConfig,
) -> clustersitter::config::ClusterConfig {
    let cli = clustersitter::config::Cli {
        config: None,
        cluster_name: Some("prod".into()),
        bind: None,
        port: None,
        state_dir: None,
        token_file: None,
        poll_interval: None,
        failure_threshold: None,
        idle_limit: None,
        on_exit: None,
        insecure: true,
        ui_login_required: false,
        address_file: None,
        jobs: Vec::new(),
    };
    let mut config = cli.into_config().expect("a default config");
    config.dns = dns;
    config
}

#[tokio::test]
async fn the_factory_builds_route53_names_and_nothing_else() {
    use clustersitter::config::dns::{DnsConfig, DnsKind};
    use clustersitter::config::ProviderKind;
    use clustersitter::{ProviderContext, ProviderFactory};
    let moto = MotoServer::shared();
    create_zone(&client(&moto), ZONE).await;
    // Sets the test credentials in the environment for the default chain.
    connect(&moto, ZONE).await.expect("connect");
    let factory = cerebro_route53::Route53Factory;
    let binaries = Err(std::sync::Arc::new(
        clustersitter::binaries::BinariesError::NotFound("machinesitter"),
    ));

    for other in [ProviderKind::Local, ProviderKind::Ec2] {
        let config = cluster_config(DnsConfig::default_for(other));
        let context = ProviderContext {
            config: &config,
            binaries: binaries.clone(),
        };
        assert!(factory.make_dns(&context).await.is_none(), "{other:?}");
        assert!(factory.make(&context).await.is_none(), "{other:?}");
    }

    let mut dns = DnsConfig::default_for(ProviderKind::Ec2);
    dns.kind = DnsKind::Route53;
    dns.zone = Some(ZONE.into());
    dns.route53 = Some(Route53Settings {
        hosted_zone_id: None,
        endpoint_url: Some(moto.url()),
        region: "us-east-1".into(),
    });
    let config = cluster_config(dns);
    let context = ProviderContext {
        config: &config,
        binaries: binaries.clone(),
    };
    let provider = factory
        .make_dns(&context)
        .await
        .expect("route53 is this factory's")
        .expect("connected");
    assert_eq!(provider.kind(), "route53");
    assert!(factory.make(&context).await.is_none());

    let mut dns = config.dns.clone();
    dns.zone = Some("missing.test".into());
    let config = cluster_config(dns);
    let context = ProviderContext {
        config: &config,
        binaries,
    };
    assert!(matches!(
        factory.make_dns(&context).await,
        Some(Err(DnsError::Config(_)))
    ));
}

//! [`Route53Provider`]: one hosted zone, read with ListResourceRecordSets
//! and written with ChangeResourceRecordSets.

use crate::wire::{decode_name, encode_name, quote_txt, unquote_txt};
use async_trait::async_trait;
use aws_sdk_route53::config::http::HttpResponse;
use aws_sdk_route53::config::timeout::TimeoutConfig;
use aws_sdk_route53::config::{BehaviorVersion, Region};
use aws_sdk_route53::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_route53::types::{
    Change as AwsChange, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use aws_sdk_route53::Client;
use cerebro_types::dns::{is_in_zone, normalize_name, RecordSets};
use clustersitter::config::dns::Route53Settings;
use clustersitter::dns::{Change, DnsError, DnsProvider, RecordSet, RecordType};
use std::collections::BTreeSet;
use std::time::Duration;

/// The error codes of a batch refused as a whole because a DELETE does not
/// match the zone: Route 53's `InvalidChangeBatch`, and moto's
/// `InvalidInput` (which checks a DELETE against the changes it was sent).
const REFUSED_BATCH: &[&str] = &["InvalidChangeBatch", "InvalidInput"];

/// ListResourceRecordSets pages one listing may read: a bound against a
/// server that keeps answering "truncated" (300 RRsets a page: 3 M RRsets).
const MAX_PAGES: usize = 10_000;

/// One hosted zone of Route 53.
pub struct Route53Provider {
    client: Client,
    /// The hosted zone's id as Route 53 gives it (`/hostedzone/Z...` or `Z...`).
    hosted_zone_id: String,
    /// The zone's name, normalized.
    zone: String,
}

impl Route53Provider {
    /// A client from aws-config's default chain (credentials from the
    /// environment, the profile, SSO or the instance role), with
    /// `settings.region` and `settings.endpoint_url` when set (else
    /// `AWS_ENDPOINT_URL_ROUTE_53`, `AWS_ENDPOINT_URL`, AWS itself), calls
    /// timing out after 20 s per attempt and 2 minutes in all, as EC2's;
    /// then the hosted zone (see [`crate::connect`]).
    ///
    /// # Errors
    /// As [`crate::connect`].
    pub async fn connect(zone: String, settings: Route53Settings) -> Result<Self, DnsError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_millis(3100))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .operation_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk_config = loader.load().await;
        Self::with_client(Client::new(&sdk_config), zone, settings.hosted_zone_id).await
    }

    /// The provider over a client made elsewhere (e.g. with static test
    /// credentials): finds the hosted zone as [`crate::connect`] does.
    ///
    /// # Errors
    /// As [`crate::connect`].
    pub async fn with_client(
        client: Client,
        zone: String,
        hosted_zone_id: Option<String>,
    ) -> Result<Self, DnsError> {
        let zone = normalize_name(&zone);
        let hosted_zone_id = match hosted_zone_id {
            Some(id) => {
                let found = client
                    .get_hosted_zone()
                    .id(&id)
                    .send()
                    .await
                    .map_err(|e| server_error("GetHostedZone", e))?;
                let name = found
                    .hosted_zone()
                    .map(|z| decode_name(z.name()))
                    .unwrap_or_default();
                if name != zone {
                    return Err(DnsError::Config(format!(
                        "Route 53 hosted zone {id} is {name:?}, not the [dns] zone {zone:?}"
                    )));
                }
                id
            }
            None => find_zone(&client, &zone).await?,
        };
        tracing::info!(zone, hosted_zone_id, "Route 53 hosted zone");
        Ok(Self {
            client,
            hosted_zone_id,
            zone,
        })
    }

    /// The hosted zone's id.
    pub fn hosted_zone_id(&self) -> &str {
        &self.hosted_zone_id
    }

    /// The RRset at (`name`, `rtype`) now, if any (one ListResourceRecordSets).
    async fn current(&self, name: &str, rtype: RecordType) -> Result<Option<RecordSet>, DnsError> {
        let page = self
            .client
            .list_resource_record_sets()
            .hosted_zone_id(&self.hosted_zone_id)
            .start_record_name(encode_name(name))
            .start_record_type(aws_type(rtype))
            .max_items(1)
            .send()
            .await
            .map_err(|e| server_error("ListResourceRecordSets", e))?;
        let sets = group(page.resource_record_sets().iter(), |n| n == name);
        Ok(sets.into_iter().find(|s| s.rtype == rtype))
    }

    async fn send(&self, changes: &[Change]) -> Result<(), DnsError> {
        let batch = changes
            .iter()
            .map(aws_change)
            .collect::<Result<Vec<_>, _>>()?;
        let batch = ChangeBatch::builder()
            .comment("cerebro")
            .set_changes(Some(batch))
            .build()
            .map_err(|e| DnsError::Config(format!("a Route 53 change batch: {e}")))?;
        // The answer's change is INSYNC on moto and PENDING for a few
        // seconds on Route 53; nothing waits for it (GetChange): the next
        // pass reads the zone anyway.
        self.client
            .change_resource_record_sets()
            .hosted_zone_id(&self.hosted_zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| server_error("ChangeResourceRecordSets", e))?;
        Ok(())
    }
}

/// The id of the one hosted zone named exactly `zone` (ListHostedZonesByName
/// starts at that name, in Route 53's order; the matches come first).
async fn find_zone(client: &Client, zone: &str) -> Result<String, DnsError> {
    let page = client
        .list_hosted_zones_by_name()
        .dns_name(encode_name(zone))
        .max_items(100)
        .send()
        .await
        .map_err(|e| server_error("ListHostedZonesByName", e))?;
    let matching: Vec<&str> = page
        .hosted_zones()
        .iter()
        .filter(|z| decode_name(z.name()) == zone)
        .map(|z| z.id())
        .collect();
    match matching.as_slice() {
        [id] => Ok(id.to_string()),
        [] => Err(DnsError::Config(format!(
            "no Route 53 hosted zone is named {zone:?} (set [dns] zone to a hosted zone's name, or hosted_zone_id)"
        ))),
        ids => Err(DnsError::Config(format!(
            "several Route 53 hosted zones are named {zone:?} ({}): set [dns] hosted_zone_id",
            ids.join(", ")
        ))),
    }
}

#[async_trait]
impl DnsProvider for Route53Provider {
    fn kind(&self) -> &'static str {
        "route53"
    }

    /// ListResourceRecordSets from `basename` on, page by page (by name
    /// and type: moto does not implement StartRecordIdentifier), until a
    /// name past its subtree (see [`past_subtree`]).
    async fn list(&self, basename: &str) -> Result<Vec<RecordSet>, DnsError> {
        let basename = normalize_name(basename);
        let mut start: (String, Option<RrType>) = (encode_name(&basename), None);
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .list_resource_record_sets()
                .hosted_zone_id(&self.hosted_zone_id)
                .start_record_name(&start.0)
                .set_start_record_type(start.1.clone())
                .send()
                .await
                .map_err(|e| server_error("ListResourceRecordSets", e))?;
            let sets = page.resource_record_sets();
            let past = sets
                .iter()
                .any(|s| past_subtree(&decode_name(s.name()), &basename));
            all.extend(
                sets.iter()
                    .filter(|s| is_in_zone(&decode_name(s.name()), &basename))
                    .cloned(),
            );
            if past || !page.is_truncated() {
                break;
            }
            let next = (
                page.next_record_name().unwrap_or_default().to_string(),
                page.next_record_type().cloned(),
            );
            if next.0.is_empty() || next == start {
                break;
            }
            start = next;
        }
        Ok(group(all.iter(), |_| true))
    }

    /// One ChangeResourceRecordSets with every change, in order (more only
    /// past Route 53's limits on one request, see [`batches`]). When Route
    /// 53 refuses the batch (`InvalidChangeBatch`) because a DELETE does not
    /// match (the RRset is gone, or changed since it was listed), each
    /// DELETE is read again and the batch sent once more without the
    /// missing ones and with the others as they now are: a Delete removes
    /// the RRset whatever it holds, and one of an absent RRset is no error.
    async fn apply(&self, changes: &[Change]) -> Result<(), DnsError> {
        for batch in batches(changes) {
            self.apply_batch(batch).await?;
        }
        Ok(())
    }
}

impl Route53Provider {
    async fn apply_batch(&self, changes: &[Change]) -> Result<(), DnsError> {
        if changes.is_empty() {
            return Ok(());
        }
        let error = match self.send(changes).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let has_delete = changes.iter().any(|c| matches!(c, Change::Delete(_)));
        if !REFUSED_BATCH.contains(&error.code()) || !has_delete {
            return Err(error);
        }
        let mut again = Vec::with_capacity(changes.len());
        for change in changes {
            match change {
                Change::Upsert(_) => again.push(change.clone()),
                Change::Delete(set) => {
                    if let Some(now) = self.current(&set.name, set.rtype).await? {
                        again.push(Change::Delete(now));
                    }
                }
            }
        }
        if again == changes {
            return Err(error);
        }
        tracing::debug!(%error, "Route 53 refused a DELETE; sending the batch as the zone now is");
        if again.is_empty() {
            return Ok(());
        }
        self.send(&again).await
    }
}

impl std::fmt::Debug for Route53Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route53Provider")
            .field("zone", &self.zone)
            .field("hosted_zone_id", &self.hosted_zone_id)
            .finish()
    }
}

/// Route 53's limits on one ChangeResourceRecordSets ("Quotas on
/// ChangeResourceRecordSets requests"): 1,000 ResourceRecord elements and
/// 32,000 characters of values, an UPSERT counting twice.
const BATCH_RECORDS: usize = 1000;
const BATCH_CHARS: usize = 32_000;

/// `changes` cut, in order, into batches within Route 53's limits: one
/// batch unless the pass is very large.
fn batches(changes: &[Change]) -> Vec<&[Change]> {
    let mut out = Vec::new();
    let (mut start, mut records, mut chars) = (0, 0, 0);
    for (i, change) in changes.iter().enumerate() {
        let set = change.record_set();
        let weight = if matches!(change, Change::Upsert(_)) {
            2
        } else {
            1
        };
        let n = set.values.len().max(1) * weight;
        let c = set.values.iter().map(|v| v.len() + 2).sum::<usize>() * weight;
        if i > start && (records + n > BATCH_RECORDS || chars + c > BATCH_CHARS) {
            out.push(&changes[start..i]);
            (start, records, chars) = (i, 0, 0);
        }
        records += n;
        chars += c;
    }
    if start < changes.len() {
        out.push(&changes[start..]);
    }
    out
}

/// Labels from the right, joined with dots: the key Route 53 sorts
/// names by (`www.example.com` → `com.example.www`).
fn reversed(name: &str) -> String {
    name.rsplit('.').collect::<Vec<_>>().join(".")
}

/// Whether a listing in Route 53's order that has reached `name` has seen
/// every name at or under `basename`. Route 53 sorts by the reversed name;
/// moto compares those as strings, where `ticker-x` comes between `ticker`
/// and `ticker.0` (`-` sorts before `.`), so a sibling is no proof that
/// the subtree is over. Every reversed name of the subtree is below
/// `reversed(basename) + "/"` (`/` follows `.`) as a string and label by
/// label, so a name above that ends it in either order.
fn past_subtree(name: &str, basename: &str) -> bool {
    reversed(name) > format!("{}/", reversed(basename))
}

fn aws_type(rtype: RecordType) -> RrType {
    match rtype {
        RecordType::A => RrType::A,
        RecordType::Aaaa => RrType::Aaaa,
        RecordType::Txt => RrType::Txt,
    }
}

fn record_type(rtype: &RrType) -> Option<RecordType> {
    match rtype {
        RrType::A => Some(RecordType::A),
        RrType::Aaaa => Some(RecordType::Aaaa),
        RrType::Txt => Some(RecordType::Txt),
        _ => None,
    }
}

/// The A, AAAA and TXT RRsets among `sets` whose (decoded) name passes
/// `keep`, as [`RecordSet`]s. Several Route 53 RRsets at one name and type
/// (routing policies with set identifiers; moto's duplicates) become one
/// with every value and the smallest TTL; an alias record, which has no
/// values, is shown as `ALIAS <target>` so that its name is seen as taken.
fn group<'a>(
    sets: impl Iterator<Item = &'a ResourceRecordSet>,
    keep: impl Fn(&str) -> bool,
) -> Vec<RecordSet> {
    let mut grouped = RecordSets::default();
    for set in sets {
        let Some(rtype) = record_type(set.r#type()) else {
            continue;
        };
        let name = decode_name(set.name());
        if !keep(&name) {
            continue;
        }
        let ttl = set
            .ttl()
            .map(|t| u32::try_from(t.max(0)).unwrap_or(u32::MAX))
            .unwrap_or(0);
        let mut values: BTreeSet<String> = set
            .resource_records()
            .iter()
            .map(|r| presentation(rtype, r.value()))
            .collect();
        if let Some(alias) = set.alias_target() {
            values.insert(format!("ALIAS {}", decode_name(alias.dns_name())));
        }
        for value in values {
            grouped.add(&name, rtype, ttl, value);
        }
    }
    grouped.into_sets()
}

/// A value as [`RecordSet`] holds it: an address as `IpAddr` prints it, a
/// TXT value unquoted.
fn presentation(rtype: RecordType, value: &str) -> String {
    match rtype {
        RecordType::Txt => unquote_txt(value),
        RecordType::A | RecordType::Aaaa => value
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|_| value.to_string()),
    }
}

fn aws_change(change: &Change) -> Result<AwsChange, DnsError> {
    let (action, set) = match change {
        Change::Upsert(set) => (ChangeAction::Upsert, set),
        Change::Delete(set) => (ChangeAction::Delete, set),
    };
    let invalid = |e: aws_sdk_route53::error::BuildError| {
        DnsError::Config(format!("a Route 53 change of {}: {e}", set.name))
    };
    let records = set
        .values
        .iter()
        .map(|value| {
            let value = match set.rtype {
                RecordType::Txt => quote_txt(value),
                RecordType::A | RecordType::Aaaa => value.clone(),
            };
            ResourceRecord::builder()
                .value(value)
                .build()
                .map_err(invalid)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rrset = ResourceRecordSet::builder()
        .name(encode_name(&set.name))
        .r#type(aws_type(set.rtype))
        .ttl(i64::from(set.ttl))
        .set_resource_records(Some(records))
        .build()
        .map_err(invalid)?;
    AwsChange::builder()
        .action(action)
        .resource_record_set(rrset)
        .build()
        .map_err(invalid)
}

/// `error` of Route 53's `operation` as [`DnsError::Server`]: the AWS error
/// code and message, or for a failure without an answer `timeout`,
/// `dispatch`, `response` or `construction`.
pub(crate) fn server_error<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> DnsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = match &error {
        SdkError::ServiceError(service) => service
            .err()
            .code()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {}", service.raw().status().as_u16())),
        SdkError::TimeoutError(_) => "timeout".to_string(),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => "timeout".to_string(),
        SdkError::DispatchFailure(_) => "dispatch".to_string(),
        SdkError::ResponseError(_) => "response".to_string(),
        SdkError::ConstructionFailure(_) => "construction".to_string(),
        _ => "unknown".to_string(),
    };
    let message = match &error {
        SdkError::ServiceError(service) => service
            .err()
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| DisplayErrorContext(&error).to_string()),
        _ => DisplayErrorContext(&error).to_string(),
    };
    DnsError::Server {
        operation,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_past_a_subtree_only_beyond_every_name_of_it() {
        let base = "ticker.cerebro.test";
        for inside in [
            base,
            "0.local-a.ticker.cerebro.test",
            "zz.ticker.cerebro.test",
        ] {
            assert!(!past_subtree(inside, base), "{inside}");
        }
        // Siblings that sort between the subtree's names in moto's order.
        assert!(!past_subtree("ticker-x.cerebro.test", base));
        assert!(!past_subtree(
            "ticker-x.cerebro.test",
            "a.ticker.cerebro.test"
        ));
        assert!(past_subtree("tickerz.cerebro.test", base));
        assert!(past_subtree("u.cerebro.test", base));
    }

    #[test]
    fn only_a_very_large_pass_takes_several_batches() {
        let change = |n: usize| {
            Change::Upsert(RecordSet {
                name: format!("{n}.a.test"),
                rtype: RecordType::A,
                ttl: 60,
                values: [format!("10.0.{}.{}", n / 250, n % 250)].into(),
            })
        };
        let small: Vec<Change> = (0..10).map(change).collect();
        assert_eq!(batches(&small), vec![&small[..]]);
        assert!(batches(&[]).is_empty());
        let large: Vec<Change> = (0..1200).map(change).collect();
        let cut = batches(&large);
        assert_eq!(cut.iter().map(|b| b.len()).sum::<usize>(), 1200);
        assert_eq!(cut[0].len(), 500);
        assert_eq!(cut.concat(), large);
    }
}

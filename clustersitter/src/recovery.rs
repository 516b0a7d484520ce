//! Startup and exit: the persisted state restored (without the jobs that
//! asked not to survive a restart), machines matched with what the
//! provider still runs, and, with `--on-exit stop`, every machine
//! terminated.

use crate::cluster::{lock, Cluster};
use crate::config::ClusterConfig;
use crate::provider::{FoundMachine, MachineProvider, ProviderStatus};
use crate::store::{self, ClusterState};
use cerebro_types::cluster::{ClusterEventKind, MachineState};
use std::sync::{Arc, Mutex};

/// The persisted state, without the jobs that asked not to survive a
/// restart, and with the config's idle limits. An unreadable state file is
/// kept aside and its previous copy taken (an event says so); with no good
/// copy the cluster starts without jobs, machines come back from the
/// provider and the tasks they run are kept as orphans.
pub(crate) fn restore(config: Arc<ClusterConfig>, provider_kind: &'static str) -> Cluster {
    let fresh = || ClusterState::new(1, std::collections::BTreeMap::new());
    let (state, notice) = match store::load_or_previous(&config.state_dir) {
        store::Loaded::Fresh => (fresh(), None),
        store::Loaded::Read(state) => (state, None),
        store::Loaded::Recovered { state, problem } => (
            state,
            Some((
                ClusterEventKind::StateRecovered,
                format!("{problem}; recovered from the previous copy (cluster.json.prev)"),
            )),
        ),
        store::Loaded::Lost { problem } => (
            fresh(),
            Some((
                ClusterEventKind::StateFileUnreadable,
                format!(
                    "{problem}; jobs are lost; machines are recovered from the provider and the tasks they run are kept as orphans"
                ),
            )),
        ),
    };
    let mut cluster = Cluster::new(config.clone(), state, provider_kind);
    if let Some((kind, message)) = notice {
        tracing::error!("{message}");
        cluster.event(kind, "", message);
    }
    // The config's idle limits hold at every start; the API changes them
    // until the next one.
    if config.idle_limit.is_some() || !config.idle_limit_per_zone.is_empty() {
        let limit = config.idle_limit.unwrap_or(cluster.idle_limit_default());
        cluster.set_idle_limits_from_config(limit, &config.idle_limit_per_zone);
    }
    cluster.drop_non_persistent_jobs();
    cluster
}

/// Matches persisted machines with what the provider still runs: running
/// ones are adopted (never provisioned again), vanished ones are
/// decommissioned so their instances move, unknown ones of this cluster join.
/// The provider's largest machine per zone is learnt here too.
pub(crate) async fn recover_machines(cluster: &mut Cluster, provider: &dyn MachineProvider) {
    // Before anything is placed: no job may wait for a machine the provider cannot give.
    cluster.learn_machine_sizes(provider);
    let found = match provider.discover().await {
        Ok(found) => without_gone(found, provider).await,
        Err(error) => {
            cluster.event(
                ClusterEventKind::ProviderListFailed,
                "",
                format!("cannot list machines: {error}"),
            );
            return;
        }
    };
    for machine in &found {
        cluster.machine_found(machine);
    }
    let vanished: Vec<String> = cluster
        .machines()
        .filter(|m| m.provider_id.is_some() || m.state() == MachineState::Provisioning)
        .filter(|m| !found.iter().any(|f| f.machine_id == m.id))
        .map(|m| m.id.clone())
        .collect();
    for id in vanished {
        cluster.machine_vanished(&id);
    }
}

/// The machines of `found` the provider does not call gone: a cloud may
/// still list an instance it stopped or terminated, and such a machine
/// must never count as capacity (a known one is decommissioned as
/// vanished instead). One that cannot be asked about is kept: the polls
/// will tell.
async fn without_gone(
    found: Vec<FoundMachine>,
    provider: &dyn MachineProvider,
) -> Vec<FoundMachine> {
    let mut kept = Vec::with_capacity(found.len());
    for machine in found {
        match provider.status(&machine.provider_id).await {
            Ok(ProviderStatus::Gone { state }) => {
                tracing::info!(machine = %machine.machine_id, provider_id = %machine.provider_id, "listed by the provider but {state}: not adopted");
            }
            _ => kept.push(machine),
        }
    }
    kept
}

/// `--on-exit stop`: terminate every machine before exiting.
pub(crate) async fn terminate_all(cluster: &Arc<Mutex<Cluster>>, provider: &dyn MachineProvider) {
    let machines: Vec<(String, Option<String>)> = lock(cluster)
        .machines()
        .map(|m| (m.id.clone(), m.provider_id.clone()))
        .collect();
    for (id, provider_id) in machines {
        match provider
            .terminate(&id, provider_id.as_deref().unwrap_or_default())
            .await
        {
            Ok(()) => lock(cluster).machine_terminated_at_exit(&id),
            Err(error) => tracing::error!(machine = %id, %error, "cannot terminate"),
        }
    }
    lock(cluster).clear_assignments();
}

//! Whole nodes over HTTP, with real processes and real storage (the local backend and the moto
//! S3 server): handoff with the final checkpoint restored byte for byte, checkpoint/restore with
//! hooks and the undo checkpoint, validation before anything is touched, busy and failing
//! operations, takeover after a killed owner, a partitioned owner stopping in time, and the
//! state database surviving a kill and the loss of the local disk; `GET /readyz` on each role;
//! the process set and intent following the environment, and config reloads with a plan; kill -9
//! at many points of a restore; three nodes under SIGSTOP, kill -9, release and real cuts from
//! storage never running the environment at once.

use crate::common;

mod cases;
mod chaos;
mod failover;
mod fence;
mod procset;
mod ready;
mod reload;
mod restore_kill;
mod storage;
mod storage_events;
mod storage_faults;

use common::backend::Backend;
use common::s3s::S3sServer;
use serde_json::{Value, json};

/// The key prefix of the environment in every case.
pub const PREFIX: &str = "env-1";

/// A config for a node whose data directory is `data_dir`: short lease times, fast replication,
/// and `stacks` (their `cwd` defaults to the node's env_dir).
pub fn config(b: &Backend, data_dir: &std::path::Path, mut stacks: Vec<Value>) -> Value {
    let env = data_dir.join("env");
    for s in &mut stacks {
        if s.get("cwd").is_none() {
            s["cwd"] = json!(env);
        }
    }
    json!({
        "storage": b.storage(PREFIX),
        "lease": {"ttl": "4s", "poll_interval": "300ms", "clock_skew": "1s"},
        "replication": {"interval": "200ms"},
        "stop_timeout": "5s",
        "stacks": stacks,
    })
}

/// Assert that a 422 answer names a problem at (or under) each of `fields`.
pub fn assert_problems_at(problem: &Value, fields: &[&str]) {
    let paths: Vec<&str> = problem["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    for field in fields {
        assert!(
            paths.iter().any(|p| p.starts_with(field)),
            "{field} in {problem}"
        );
    }
}

macro_rules! both_backends {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$module::$case(&super::Backend::local()).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$module::$case(&super::Backend::moto()).await;
                }
            )*
        }
    };
}

both_backends!(
    cases::handoff_restores_the_final_checkpoint_byte_for_byte,
    cases::restore_round_trip_with_hooks_and_undo,
    cases::restore_validates_before_touching_anything,
    cases::operations_are_refused_while_one_runs_and_hooks_can_fail_them,
    failover::a_killed_owner_is_taken_over_after_the_ttl_and_never_before,
    failover::the_state_database_survives_a_kill_and_the_loss_of_the_disk,
    failover::a_restart_on_the_same_data_dir_reclaims_at_once_and_a_twin_waits,
    fence::a_stopped_owners_processes_die_before_its_trust_ends,
    fence::the_processes_get_the_lease_epoch_and_it_grows_on_takeover,
    procset::the_set_and_intent_survive_a_restart,
    procset::the_set_and_intent_follow_a_release_lease_handoff,
    procset::the_set_and_intent_follow_a_kill_9_failover,
    procset::concurrent_changes_are_ordered_and_none_is_lost,
    procset::invalid_and_conflicting_changes_change_nothing,
    procset::scaling_touches_only_the_instances_it_adds_or_stops,
    procset::a_replaced_stack_restarts_rolling_and_keeps_intents,
    reload::a_reload_applies_only_the_difference,
    reload::a_refused_reload_changes_nothing,
);

/// Each node in a mount namespace of its own, so that a cut is storage gone read-only for real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_never_run_the_environment_at_once_on_local_with_cuts() {
    chaos::three_nodes_never_run_the_environment_at_once(&Backend::local()).await;
}

/// Each node in a network namespace of its own, so that a cut is a real partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_never_run_the_environment_at_once_on_s3_with_partitions() {
    let moto = common::moto::MotoServer::start_on_every_address();
    moto.create_bucket(common::backend::BUCKET);
    chaos::three_nodes_never_run_the_environment_at_once(&Backend::Moto(moto)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_with_ready_processes_is_ready() {
    ready::only_the_owner_with_ready_processes_is_ready(&Backend::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfigured_server_is_not_ready() {
    ready::an_unconfigured_server_is_not_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_restore_leaves_one_whole_tree() {
    restore_kill::kill_9_during_a_restore_leaves_one_whole_tree(&Backend::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_chunk_fails_the_restore_and_leaves_env_dir_as_it_was() {
    cases::a_corrupt_chunk_fails_the_restore(&Backend::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_owner_stops_its_stacks_before_its_lease_expires() {
    failover::a_partitioned_owner_stops_in_time(&Backend::moto()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_shows_in_status_and_clears() {
    storage::an_unreachable_endpoint_shows_and_clears(&mut Backend::moto()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_shows_in_status_and_clears_when_created() {
    storage::a_missing_bucket_shows_and_clears_when_created(&Backend::moto()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_shows_in_status_and_clears_when_fixed() {
    let s3s = S3sServer::start_with_secret("the-servers-other-secret");
    s3s.create_bucket("env");
    storage::a_wrong_secret_shows_and_clears(&mut Backend::S3s(s3s)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_one_storage_event_and_its_fix_another() {
    let s3s = S3sServer::start_with_secret("the-servers-other-secret");
    s3s.create_bucket("env");
    storage_events::a_wrong_secret_is_one_event_and_its_fix_another(&mut Backend::S3s(s3s)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_clock_hours_off_is_corrected_and_its_return_shows_as_clock_skew() {
    storage_faults::a_server_clock_hours_off_is_corrected_and_its_return_shows(&mut Backend::s3s())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_name_s3s_refuses_shows_as_invalid_bucket_name() {
    storage_faults::a_bucket_name_the_server_refuses_shows_with_the_fix(&Backend::s3s()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_name_moto_would_refuse_shows_as_no_such_bucket() {
    storage_faults::moto_answers_a_bucket_it_would_refuse_as_missing(&Backend::moto()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_server_shows_as_throttled_while_it_lasts() {
    storage_faults::a_throttling_server_shows_as_throttled_while_it_lasts(&Backend::moto()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_stays_ready_while_its_storage_fails() {
    storage::an_owner_stays_ready_while_its_storage_fails(&mut Backend::s3s()).await;
}

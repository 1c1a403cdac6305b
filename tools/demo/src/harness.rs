//! What the fleet-level tests and benchmarks share (`tests/chaos.rs`,
//! `tests/request_cost.rs`): the five services as separate processes of
//! this build, whose AWS calls go wherever the given configuration points
//! (a fault or counting proxy in front of moto), and the wait until every
//! queue has drained.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kopter_runtime::{Config, ServiceContext};
use kopter_schema::Service;
use tokio_util::sync::CancellationToken;

use crate::fleet::{self, Fleet, Mode};
use crate::queue_depths;

/// The directory of this build's binaries (`target/debug`), as seen from a
/// test executable (which runs from `target/debug/deps`).
///
/// # Panics
/// When the running executable has no grandparent directory.
pub fn test_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable runs from target/<profile>/deps")
        .to_path_buf()
}

/// Starts the five services as processes of `bin_dir` with `config` (whose
/// endpoint is typically a proxy), metrics on a free run of ports, logs in
/// `run_dir`, and waits until each answers `/readyz` (at most 120 s).
///
/// # Errors
/// A binary missing (the test build did not run), a process exiting
/// before it is ready (its log is named), or not ready in time.
pub async fn start_fleet(
    bin_dir: PathBuf,
    config: &Config,
    run_dir: &Path,
    cancel: &CancellationToken,
) -> anyhow::Result<Fleet> {
    // Five services' metrics ports, then the api's (`fleet::start`).
    let first_port = crate::ports::free_run(Service::ALL.len() as u16 + 1);
    let mut fleet = fleet::start(&Mode::Separate { bin_dir }, config, first_port, run_dir)
        .await
        .map_err(|e| e.context("start the services (are the binaries built? `make test-build`)"))?;
    fleet.wait_ready(Duration::from_secs(120), cancel).await?;
    Ok(fleet)
}

/// Waits until every service queue is empty (nothing visible, in flight or
/// delayed; DLQs aside) on three checks `poll` apart in a row, and returns
/// how long that took.
///
/// # Errors
/// After `timeout`, naming `what` and every queue's depths then; or when
/// SQS cannot be read.
pub async fn drained(
    ctx: &ServiceContext,
    timeout: Duration,
    poll: Duration,
    what: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut quiet = 0;
    loop {
        let depths = queue_depths(ctx).await?;
        let busy: u64 = depths.iter().map(|(_, q, _)| q.iter().sum::<u64>()).sum();
        quiet = if busy == 0 { quiet + 1 } else { 0 };
        if quiet == 3 {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= timeout {
            anyhow::bail!(
                "{what}: the queues did not empty within {timeout:?}: {depths:?} \
                 (service, [visible, in flight, delayed], DLQ)"
            );
        }
        tokio::time::sleep(poll).await;
    }
}

//! Process-level behaviour of a service binary: SIGTERM (and SIGHUP) drain
//! and config errors. Runs the `test-worker` binary, which goes through the same
//! `service_main` as every service.

use std::process::Stdio;
use std::time::{Duration, Instant};

use kopter_schema::Service;
use kopter_tests::{TestEnv, eventually};

fn worker(env: &TestEnv, mode: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_test-worker"));
    cmd.envs(env.env_vars())
        .env("TEST_WORKER_MODE", mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn sigterm_returns_in_flight_messages_at_once_and_exits_zero() {
    let env = TestEnv::new().await;
    let url = env.queue_url(Service::Describer).await;
    for i in 0..3 {
        env.send_raw(&url, &format!("work-{i}")).await;
    }
    let mut child = worker(&env, "sleep")
        // Long visibility: without the drain the messages would stay hidden
        // for 10 minutes.
        .env("KOPTER_WORKER__VISIBILITY_TIMEOUT", "10m")
        .env("KOPTER_WORKER__HEARTBEAT_INTERVAL", "1m")
        .env("KOPTER_WORKER__SHUTDOWN_GRACE", "1s")
        .spawn()
        .unwrap();
    eventually("3 messages in flight", Duration::from_secs(30), || async {
        (env.depth(&url).await == (0, 3)).then_some(())
    })
    .await;

    let pid = child.id().unwrap() as i32;
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let t0 = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("worker exits after SIGTERM")
        .unwrap();
    assert!(out.success(), "exit status {out:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "drain took {:?}",
        t0.elapsed()
    );
    // Visible again right away, not after the 10 minute timeout.
    assert_eq!(env.depth(&url).await, (3, 0));
    let again = env.receive(&url, Duration::from_secs(30)).await;
    assert_eq!(again.len(), 3);
}

#[tokio::test]
async fn sigterm_lets_quick_work_finish_and_deletes_it() {
    let env = TestEnv::new().await;
    let url = env.queue_url(Service::Describer).await;
    let mut child = worker(&env, "ok").spawn().unwrap();
    env.send_raw(&url, "quick").await;
    eventually("the message handled", Duration::from_secs(20), || async {
        (env.depth(&url).await == (0, 0)).then_some(())
    })
    .await;
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) },
        0
    );
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("worker exits")
        .unwrap();
    assert!(status.success());
    assert_eq!(env.depth(&url).await, (0, 0));
}

/// Closing the terminal a service runs in sends SIGHUP: it drains and
/// exits 0 like on SIGTERM, instead of dying (default action) or, worse,
/// running on after its terminal and its local AWS are gone.
#[tokio::test]
async fn sighup_drains_and_exits_zero_like_sigterm() {
    let env = TestEnv::new().await;
    let url = env.queue_url(Service::Describer).await;
    let child = worker(&env, "ok").spawn().unwrap();
    env.send_raw(&url, "quick").await;
    eventually("the message handled", Duration::from_secs(20), || async {
        (env.depth(&url).await == (0, 0)).then_some(())
    })
    .await;
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGHUP) },
        0
    );
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("worker exits after SIGHUP")
        .unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("SIGHUP"),
        "the stop is logged with its signal: {log}"
    );
}

#[tokio::test]
async fn bad_config_is_refused_with_every_problem_named() {
    let env = TestEnv::new().await;
    let out = worker(&env, "ok")
        .env("KOPTER_WORKER__MAX_MESSAGES", "50")
        .env("KOPTER_WORKER__CONCURRENCY", "0")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid configuration"), "{err}");
    assert!(
        err.contains("worker.max_messages: 50 is outside 1..=10"),
        "{err}"
    );
    assert!(
        err.contains("worker.concurrency: 0 is outside 1..=1000"),
        "{err}"
    );

    let out = worker(&env, "ok")
        .env("KOPTER_WORKER__SHUTDOWN_GRACE", "soon")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("worker.shutdown_grace"), "{err}");
}

#[tokio::test]
async fn a_missing_queue_is_a_clear_startup_error() {
    let env = TestEnv::new().await;
    let out = worker(&env, "ok")
        .env("KOPTER_ENV", "never-bootstrapped")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("never-bootstrapped-kopter-describer") && err.contains("kopterctl bootstrap"),
        "{err}"
    );
}

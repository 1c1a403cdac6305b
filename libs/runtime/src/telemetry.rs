//! Logs (`tracing`, JSON or pretty), the HTTP server with `/metrics`,
//! `/healthz` and `/readyz`, and the shutdown signal.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetryConfig};
use crate::metrics;
use crate::worker::BoxFuture;

/// Installs the global subscriber. Safe to call more than once (later calls
/// are no-ops), so tests and the all-in-one process can share it.
pub fn init_logging(config: &TelemetryConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// A readiness probe: `Ok` when the process can do its work.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

#[derive(Clone)]
struct AppState {
    checks: Arc<Vec<ReadyCheck>>,
    draining: Arc<AtomicBool>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown`.
/// `/readyz` runs every check and answers 503 with the first failure, or
/// while the process is draining. Returns the bound address (port 0 picks
/// a free port).
pub async fn serve(
    listen: SocketAddr,
    checks: Vec<ReadyCheck>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("bind the metrics server to {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let draining = Arc::new(AtomicBool::new(false));
    let state = AppState {
        checks: Arc::new(checks),
        draining: draining.clone(),
    };
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                stop.cancelled().await;
                draining.store(true, Ordering::SeqCst);
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    tracing::info!(%addr, "serving /metrics /healthz /readyz");
    Ok(addr)
}

async fn metrics_page() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
}

async fn ready(State(state): State<AppState>) -> (StatusCode, String) {
    if state.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
    }
    for check in state.checks.iter() {
        if let Err(e) = check().await {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {e:#}\n"),
            );
        }
    }
    (StatusCode::OK, "ready\n".into())
}

/// A token cancelled on the first SIGTERM, SIGINT or SIGHUP.
///
/// SIGHUP counts as a stop request because closing the terminal a service
/// runs in (`make demo`, a developer's shell) sends it; ignoring it left
/// services running after their moto was gone, consuming the next run's
/// messages.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let signal = wait_for_signal().await;
        tracing::info!(signal, "shutdown requested");
        t.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    let mut hup = signal(SignalKind::hangup()).expect("install SIGHUP handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "ctrl-c"
}

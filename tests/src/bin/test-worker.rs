//! A worker process for the integration tests of process-level behaviour
//! (SIGTERM drain, config errors). It consumes the describer queue of the
//! environment in `KOPTER_ENV` through the real `service_main`, with a
//! handler chosen by `TEST_WORKER_MODE`: `ok` (acknowledge), `sleep` (hang
//! for ten minutes), `fail` (retryable error).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use kopter_runtime::{Delivery, FnHandler, Handler, HandlerError};
use kopter_schema::Service;

#[tokio::main]
async fn main() -> ExitCode {
    let mode = std::env::var("TEST_WORKER_MODE").unwrap_or_else(|_| "ok".into());
    kopter_runtime::service_main(Service::Describer, move |_ctx| async move {
        let handler = FnHandler(move |d: Delivery| {
            let mode = mode.clone();
            async move {
                tracing::info!(message_id = %d.message_id, %mode, "test worker got a message");
                match mode.as_str() {
                    "sleep" => {
                        tokio::time::sleep(Duration::from_secs(600)).await;
                        Ok(())
                    }
                    "fail" => Err(HandlerError::retry(anyhow::anyhow!("told to fail"))),
                    _ => Ok(()),
                }
            }
        });
        Ok(Arc::new(handler) as Arc<dyn Handler>)
    })
    .await
}

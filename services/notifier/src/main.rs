//! `notifier`: consume the notifier queue (feed, webhook and email
//! delivery, burst collapse, daily digest). The logic is in the library.

use std::process::ExitCode;
use std::sync::Arc;

use kopter_runtime::Handler;
use kopter_schema::Service;

#[tokio::main]
async fn main() -> ExitCode {
    kopter_runtime::service_main(Service::Notifier, |ctx| async move {
        Ok(
            Arc::new(notifier::NotifierHandler(Arc::new(notifier::notifier(
                &ctx,
            )))) as Arc<dyn Handler>,
        )
    })
    .await
}

//! The notifier service. Its message handling is not built yet: the runtime
//! consumes its queue, checks each message against the contracts and leaves
//! it for the DLQ with the reason logged (see `UnimplementedHandler`).

use std::process::ExitCode;
use std::sync::Arc;

use kopter_runtime::{Handler, UnimplementedHandler};
use kopter_schema::Service;

#[tokio::main]
async fn main() -> ExitCode {
    kopter_runtime::service_main(Service::Notifier, |_ctx| async {
        Ok(Arc::new(UnimplementedHandler(Service::Notifier)) as Arc<dyn Handler>)
    })
    .await
}

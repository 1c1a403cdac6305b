//! `describer`: consume the describer queue (describe sweeps and jobs,
//! targeted describes, backups). The logic is the `describer` library.

use std::process::ExitCode;
use std::sync::Arc;

use kopter_runtime::Handler;
use kopter_schema::Service;

#[tokio::main]
async fn main() -> ExitCode {
    kopter_runtime::service_main(Service::Describer, |ctx| async move {
        Ok(Arc::new(describer::DescriberHandler(describer::describer(&ctx))) as Arc<dyn Handler>)
    })
    .await
}

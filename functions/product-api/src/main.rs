//! Lambda entry point of `product-api`: configuration, secrets, the database pool and the
//! cache connection are set up once per process; every request then runs
//! [`product_api::handle`].

use inventory::adapters::lambda::{config_or_report, init_tracing};
use inventory::config::FromEnv;
use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    inventory::adapters::tls::install_crypto_provider();
    init_tracing();
    let config = config_or_report(inventory_product_api::Config::from_env())?;
    let app = inventory_product_api::build(&config)
        .await
        .inspect_err(|e| tracing::error!(error = %e.detailed(), "cold start failed"))?;
    let app = &app;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<Response<Body>, Error>(inventory_product_api::handle(app, req).await)
    }))
    .await
}

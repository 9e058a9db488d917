//! The local stack: the whole pipeline on 127.0.0.1, started and stopped by one command.
//!
//! moto (Kinesis, S3, SQS, KMS, SNS, Step Functions with its ASL interpreter) behind a router
//! that sends Lambda invokes to the real function binaries under `cargo lambda watch`'s
//! emulator, a Kinesis poller standing in for the event source mapping, and a database and
//! key prefix of the stack's own on the local PostgreSQL and Redis. The state machine is
//! created from `statemachines/inventory-pipeline.asl.json` with only its substitutions
//! filled in. The outputs go to `cfn-outputs/flat-outputs.json` under the deployed stack's keys.
//!
//! Everything the stack starts is recorded under `.local/stack/<id>/` and stopped by PID: on
//! the way down, by `cargo xtask stack down`, or by a reaper process if the stack itself dies.

pub mod cli;
pub mod database;
pub mod faults;
pub mod http;
pub mod lambda_watch;
pub mod moto;
pub mod outputs;
pub mod poller;
pub mod procs;
pub mod router;
pub mod start;
pub mod stats;

pub use outputs::Outputs;
pub use start::{LocalStack, StackOptions};

/// Runs `f` with a local stack up, then stops the stack whatever `f` returned. For callers
/// without an async runtime (`cargo xtask test`): the stack runs on its own threads while `f`
/// blocks. `f` gets the outputs and the environment variables that point the e2e tests at
/// the stack (`INVENTORY_OUTPUTS`, `INVENTORY_E2E_REQUIRED=1`).
pub fn with_stack<T>(
    opts: StackOptions,
    f: impl FnOnce(&Outputs, &[(String, String)]) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?;
    let stack = rt.block_on(LocalStack::start(opts))?;
    let env = stack.test_env();
    let result = f(&stack.outputs, &env);
    let stopped = rt.block_on(stack.stop());
    let value = result?;
    stopped?;
    Ok(value)
}

//! The `schema-migrate` function: applies pending database migrations. Invoked directly it
//! answers with what it applied; as a CloudFormation custom resource it migrates on Create and
//! Update, does nothing destructive on Delete, and always answers CloudFormation through the
//! request's `ResponseURL` (see [`inventory::adapters::custom_resource`]).
//!
//! After the migrations it ensures the functions' login role (see [`migration::login_role`]):
//! with `APP_DB_SECRET_ARN` set, it reads that secret's `username` and `password` on every run
//! (so a changed secret converges on the next run) and creates or updates the role. Without
//! it (local stack, tests) there is no such role to manage, and it says so in the log.
//!
//! Invoked with `{"action":"maintain"}` (daily, by the stack's schedule) it runs the event
//! store's partition maintenance instead (see
//! [`inventory::adapters::postgres::maintain_event_store`]) and fails, so the invocation counts
//! as an error and alarms, when the partitions do not reach far enough ahead or events sit in
//! the default partition.
//!
//! Invoked with `{"action":"retain"}` (hourly) it runs the event store's retention (see
//! [`inventory::adapters::postgres::retain_event_store`]): days older than
//! `EVENT_RETENTION_DAYS` are exported to the archive bucket, verified and dropped, within the
//! invocation's time left less a margin; what is left goes on at the next run.

mod config;
mod handler;
mod migrator;

pub use config::Config;
pub use handler::{
    Action, DEPLOY_RETENTION_BUDGET, MaintainOutput, MigrateOutput, MigrateRequest, PHYSICAL_ID,
    RETENTION_MARGIN, RetainOutput, handle, is_custom_resource, maintain_checked,
    on_custom_resource, retain_logged,
};
pub use migrator::{PgSchemaMigrator, SecretsManagerLogin, UnavailableMigrator, ensure_login};

#[cfg(test)]
mod tests;

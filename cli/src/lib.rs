//! The `inventory` command line, for suppliers (`push`, `generate`, `rejections`) and for the
//! platform team (`status`, `redrive-failed`, `replay-quarantine`, `replay-dlq`,
//! `reingest-archive`, `read-event-export`, `rebuild-projection`). It reuses the
//! domain crate, so `push` reports the same rejection codes the pipeline's quarantine would.

pub mod batch;
pub mod commands;
pub mod executions;
pub mod exit;
pub mod input;
pub mod progress;
pub mod send;
pub mod target;
pub mod validate;
pub mod window;

use clap::{Parser, Subcommand};
use exit::{EXIT_CODES_HELP, Outcome};
use std::ffi::OsString;

/// Push inventory feeds into the pipeline's Kinesis stream, and repair what went wrong.
#[derive(Debug, Parser)]
#[command(name = "inventory", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a feed (JSON lines or CSV) and put it on the stream.
    ///
    /// Every line is checked with the pipeline's own rules first; invalid lines are reported as
    /// `file:line: code: message` with the codes the quarantine uses. Records go out in
    /// PutRecords requests of at most 500 records and 5 MiB, partition key = product id. Only
    /// the entries that fail are retried, with exponential backoff and jitter (longer after
    /// ProvisionedThroughputExceeded and other throttling). A product's updates reach the stream in the order
    /// of the feed: its next record waits until the earlier one is accepted. A record that
    /// cannot be sent is listed (and written to --unsent-out), never dropped silently.
    ///
    /// Credentials, region and endpoint come from the standard AWS environment variables and
    /// profiles; --endpoint-url or an outputs file's LocalEndpointUrl reach a local stack.
    #[command(after_help = EXIT_CODES_HELP)]
    Push(commands::push::PushArgs),
    /// Write a deterministic synthetic feed as JSON lines.
    ///
    /// Zipf-distributed products, several suppliers, both record forms, and the requested
    /// shares of duplicates, out-of-order updates and records that break the contract. The same
    /// options always give the same bytes.
    #[command(after_help = EXIT_CODES_HELP)]
    Generate(commands::generate::GenerateArgs),
    /// Send quarantined records to the stream again, after a fix.
    ///
    /// Reads the quarantine table, keeps the records that match the filters and now pass the
    /// contract (as this build checks it), puts them on the stream with their original
    /// partition key, and marks each sent row replayed (replayed_at), so a re-run does not send
    /// it again (--include-replayed does). A record without occurred_at is sent with the time
    /// it first reached the stream as its occurred_at, so it means what it meant then and never
    /// wins over a newer update. If a run stops between sending and marking, a re-run sends
    /// those again; the pipeline's idempotency keys make that harmless.
    #[command(after_help = EXIT_CODES_HELP)]
    ReplayQuarantine(commands::replay_quarantine::ReplayQuarantineArgs),
    /// Rebuild the product projection from the event store.
    ///
    /// Builds new product_offers and product_summaries beside the live ones (in the schema
    /// projection_rebuild) from the newest snapshot of the projection and the events after it
    /// (from every event with --from-scratch), catches up with the events appended meanwhile,
    /// and switches over in one short transaction that drops the live tables and moves the new
    /// ones in under the same names. Appends and reads go on during the build; at the switch,
    /// appends wait for the last catch-up and reads for the table swap only. One rebuild runs
    /// at a time; a failed or stopped one leaves the live projection as it was. Needs DDL
    /// rights (the master user). The same events give the same projection and versions, so
    /// running it again changes nothing and cached entries stay valid.
    #[command(after_help = EXIT_CODES_HELP)]
    RebuildProjection(commands::rebuild_projection::RebuildProjectionArgs),
    /// Feed the batches the fan-out gave up on back into the stream.
    ///
    /// Reads the fan-out's on-failure queue (Lambda's on-failure record: KinesisBatchInfo with
    /// shardId and start/end sequence numbers), fetches those records from the stream with
    /// AT_SEQUENCE_NUMBER iterators, puts them on the stream again, and deletes each message
    /// once all its records are sent. A record without occurred_at is sent with its original
    /// arrival time as its occurred_at. A message whose records are gone (past the stream's
    /// retention) or not all sent stays on the queue. Re-running is safe: deleted messages are
    /// not read again, and a message sent twice is absorbed by the pipeline's idempotency.
    #[command(after_help = EXIT_CODES_HELP)]
    ReplayDlq(commands::replay_dlq::ReplayDlqArgs),
    /// Send the raw records archived in S3 for a time range through the pipeline again.
    ///
    /// Lists raw/{stream}/dt=YYYY-MM-DD/hour=HH/ for every hour in the range, reads each gzip
    /// JSON-lines object, and puts its records on the stream in their original order with
    /// their partition keys. Records the contract rejects are left out unless
    /// --include-invalid (they are already in quarantine). A record without occurred_at is
    /// sent with the time it first reached the stream (from the archive) as its occurred_at, so
    /// it keeps its identity and never wins over a newer update: idempotency makes a re-run, or
    /// a range that overlaps what was processed, apply nothing twice. The records sent are
    /// archived again, so a later run over the same hours sends them once more (harmlessly).
    #[command(after_help = EXIT_CODES_HELP)]
    ReingestArchive(commands::reingest_archive::ReingestArchiveArgs),
    /// Print the events of a day that left the database (retention), from its export.
    ///
    /// Reads event-store/inventory_events/YYYY/MM/DD/manifest.json in the archive bucket and
    /// each part it lists, checks every part's event count and checksum against the
    /// manifest, and prints the events as JSON lines (each the row as the database held it),
    /// in seq order. --check prints only the figures. An export older than 180 days is in an
    /// archive storage class: restore its objects first (docs/runbooks.md).
    #[command(after_help = EXIT_CODES_HELP)]
    ReadEventExport(commands::read_event_export::ReadEventExportArgs),
    /// The pipeline's health on one screen: stream lag and throughput, executions in a window
    /// (failed ones grouped by state and error), DLQ depths, the quarantine by reason and
    /// supplier, the newest event's age, database size and free storage, alarms in ALARM.
    ///
    /// Reads only. Each part is read on its own: one that cannot be read (the database out
    /// of reach from where you run it, a denied call) is shown as UNAVAILABLE with the reason,
    /// the rest still prints, and the exit code is 6. Parts the stack does not have (CloudWatch
    /// on the local stack, the alarm-delivery DLQ without an alarm e-mail) show n/a.
    #[command(after_help = EXIT_CODES_HELP)]
    Status(commands::status::StatusArgs),
    /// Redrive the state machine's failed executions of a time window, after an outage.
    ///
    /// Lists the FAILED and TIMED_OUT executions (ABORTED with --status aborted) that stopped
    /// in [--since, --until), keeps those matching --error / --state (from each execution's
    /// history), and redrives each with RedriveExecution: same ARN, resumed at the state that
    /// failed, the states that succeeded not run again. One that stopped more than 14 days
    /// ago (Step Functions' redrive window), or is refused because that window has passed, or
    /// every one with --new-execution, gets a new execution with its input under the name
    /// `<name>-r1`: a second run finds it and starts nothing twice. Calls are paced under
    /// the account's Step Functions quotas (--rate) and retried when throttled. Prints what it
    /// did per execution; --dry-run prints what it would do.
    #[command(after_help = EXIT_CODES_HELP)]
    RedriveFailed(commands::redrive_failed::RedriveFailedArgs),
    /// List a supplier's rejected records since a time, as that supplier's account sees them.
    ///
    /// Reads rejections/{account}/{supplier}/ in the rejections bucket (RejectionsBucketName),
    /// where validate copies every rejected record whose supplier_id the stack maps to an AWS
    /// account (SupplierRejectionAccounts). Each rejection is printed with its stream position
    /// (stream/shard/sequence number), its code and message, and the record as sent; --json
    /// prints the objects' own JSON lines. A supplier runs it with credentials of its own
    /// account and --account (its account id); without --account, the accounts are found by
    /// listing rejections/, which only the platform's operators may do. Records that name no
    /// supplier, or one not mapped, are in the quarantine only (replay-quarantine).
    #[command(after_help = EXIT_CODES_HELP)]
    Rejections(commands::rejections::RejectionsArgs),
}

/// Parses `args`, runs the command, and returns its exit code. Usage errors exit with 1.
pub fn main_with_args<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(if e.use_stderr() {
                Outcome::Usage.code()
            } else {
                Outcome::Done.code()
            });
        }
    };
    let outcome = match run(cli) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("inventory: error: {e:#}");
            exit::outcome_of(&e)
        }
    };
    std::process::ExitCode::from(outcome.code())
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    use commands::*;
    match cli.command {
        Command::Generate(a) => generate::run(a),
        command => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                match command {
                    Command::Push(a) => push::run(a).await,
                    Command::ReplayQuarantine(a) => replay_quarantine::run(a).await,
                    Command::RebuildProjection(a) => rebuild_projection::run(a).await,
                    Command::ReplayDlq(a) => replay_dlq::run(a).await,
                    Command::ReingestArchive(a) => reingest_archive::run(a).await,
                    Command::ReadEventExport(a) => read_event_export::run(a).await,
                    Command::Status(a) => status::run(a).await,
                    Command::RedriveFailed(a) => redrive_failed::run(a).await,
                    Command::Rejections(a) => rejections::run(a).await,
                    Command::Generate(a) => generate::run(a),
                }
            })
        }
    }
}

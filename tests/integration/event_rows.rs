//! Migration 10 keeps an event's fields in typed columns instead of a JSON payload, against
//! real PostgreSQL: rows of both forms are read alike (history and rebuild), the previous
//! release's Persist still appends payload rows while the stack updates, a row with neither
//! form is refused, the down migration gives the typed rows their payload back, and the
//! migration keeps out of a retention run's way.

use crate::event_store::{history, newest_per_offer, pid, scalar, update};
use crate::partitions::{migrate_while_held, migrated_to_before};
use anyhow::Result;
use integration_tests::postgres::TestDb;
use inventory::adapters::postgres::{
    PgEventStore, RETENTION_LOCK_KEY, load_offers, rebuild_projection,
};
use inventory::domain::ids::UpdateId;
use inventory::ports::EventStore as _;
use inventory::{InventoryUpdate, InventoryUpdateReceived};
use migration::{Migrator, MigratorTrait as _};
use sea_orm::{ConnectionTrait as _, DatabaseConnection, Statement, TransactionTrait as _};

/// The previous release's statement for a chunk's events (before migration 10): each event
/// as a JSON payload.
const PREVIOUS_RELEASE_EVENTS: &str = r#"
INSERT INTO inventory_events (update_key, event_type, event_version, product_id, supplier_id, occurred_at, payload)
SELECT k, $6, $7, p, s, o, e::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[]) AS t(k, p, s, o, e)
RETURNING seq, update_key"#;

/// Appends the events of `updates` with the previous release's statement.
async fn appended_by_previous_release(
    db: &DatabaseConnection,
    updates: &[InventoryUpdate],
) -> Result<()> {
    let column = |f: &dyn Fn(&InventoryUpdate) -> String| -> sea_orm::Value {
        updates.iter().map(f).collect::<Vec<String>>().into()
    };
    let payloads = updates
        .iter()
        .map(|u| serde_json::to_string(&InventoryUpdateReceived::from(u)))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            PREVIOUS_RELEASE_EVENTS,
            [
                column(&|u| u.update_key.as_str().to_owned()),
                column(&|u| u.product_id.as_str().to_owned()),
                column(&|u| u.supplier_id.as_str().to_owned()),
                updates
                    .iter()
                    .map(|u| u.occurred_at)
                    .collect::<Vec<_>>()
                    .into(),
                payloads.into(),
                InventoryUpdateReceived::EVENT_TYPE.into(),
                InventoryUpdateReceived::EVENT_VERSION.into(),
            ],
        ))
        .await?;
    anyhow::ensure!(rows.len() == updates.len(), "every event appended");
    Ok(())
}

/// Rows appended before the migration and by the previous release while the stack updates
/// hold a payload, rows this release appends hold typed columns; history and the rebuild read
/// them all alike.
#[tokio::test]
async fn events_of_both_forms_are_read_alike_by_history_and_the_rebuild() -> Result<()> {
    let (t, before) = migrated_to_before("m20261207_000010_typed_event_columns").await?;
    let known = migration::known();
    let before_migration = [
        update("p1", "s1", 5, "10", 1),
        update("p1", "s2", 3, "9.5", 2),
    ];
    let mut ours = [
        update("p1", "s1", 7, "11", 3),
        update("p1", "s3", 2, "8.25", 4),
    ];
    ours[1].update_id = Some(UpdateId::parse("feed-7/42")?);
    let while_updating = [update("p1", "s4", 1, "12", 5)];

    appended_by_previous_release(&t.db, &before_migration).await?;
    let applied = migration::run(&t.db).await?;
    PgEventStore::new(t.db.clone()).append(&ours).await?;
    appended_by_previous_release(&t.db, &while_updating).await?;

    assert_eq!(applied, known[before..]);
    let typed =
        "SELECT count(*) FROM inventory_events WHERE payload IS NULL AND quantity IS NOT NULL";
    let with_payload =
        "SELECT count(*) FROM inventory_events WHERE payload IS NOT NULL AND quantity IS NULL";
    assert_eq!(
        (
            scalar(&t.db, typed).await?,
            scalar(&t.db, with_payload).await?
        ),
        (2, 3),
        "this release's events are typed, the previous release's hold a payload"
    );

    let all: Vec<InventoryUpdate> = [&before_migration[..], &ours, &while_updating].concat();
    let history = history(&t.db, "p1").await?;
    let read: Vec<_> = history
        .iter()
        .map(|e| (e.supplier_id.clone(), e.quantity, e.price, e.occurred_at))
        .collect();
    let appended: Vec<_> = all
        .iter()
        .rev()
        .map(|u| (u.supplier_id.clone(), u.quantity, u.price, u.occurred_at))
        .collect();
    assert_eq!(read, appended, "history has every event, newest first");

    rebuild_projection(&t.db).await?;
    let offers: Vec<_> = load_offers(&t.db, &pid("p1"))
        .await?
        .into_iter()
        .map(|o| (o.supplier_id.to_string(), o.quantity, o.price))
        .collect();
    let newest: Vec<_> = newest_per_offer(&all)
        .into_values()
        .map(|u| (u.supplier_id.to_string(), u.quantity, u.price))
        .collect();
    assert_eq!(offers, newest, "the rebuild folds both forms");
    t.cleanup().await
}

/// A row must hold its event one way or the other: with neither a payload nor every typed
/// column (but the optional `update_id`), the insert is refused.
#[tokio::test]
async fn a_row_with_neither_a_payload_nor_its_typed_columns_is_refused() -> Result<()> {
    let t = TestDb::new().await?;
    let insert = |typed: &str| {
        format!(
            "INSERT INTO inventory_events (update_key, event_type, event_version, product_id, supplier_id, \
             occurred_at, quantity, price, currency, occurred_at_from_supplier, source_shard_id, \
             source_sequence_number, source_arrived_at) \
             VALUES (repeat('a', 64), 'InventoryUpdateReceived', 1, 'p1', 's1', now(), {typed})"
        )
    };
    let complete = "5, 10, 'USD', false, 'shardId-000000000000', '1', now()";
    let incomplete = [
        "NULL, NULL, NULL, NULL, NULL, NULL, NULL",
        "5, 10, 'USD', false, 'shardId-000000000000', '1', NULL",
        "5, NULL, 'USD', false, 'shardId-000000000000', '1', now()",
    ];

    for typed in incomplete {
        let e =
            t.db.execute_unprepared(&insert(typed))
                .await
                .expect_err(typed);
        assert!(
            e.to_string()
                .contains("inventory_events_payload_or_typed_columns"),
            "{typed}: {e}"
        );
    }
    t.db.execute_unprepared(&insert(complete)).await?;
    t.cleanup().await
}

/// Going back below migration 10 (a rollback to the previous release) gives every typed row
/// the payload the previous release reads, then drops the columns; the migration applies again
/// afterwards.
#[tokio::test]
async fn the_down_migration_gives_typed_events_the_payload_the_previous_release_reads() -> Result<()>
{
    let t = TestDb::new().await?;
    let mut with_id = update("p1", "s1", 5, "10.50", 1);
    with_id.update_id = Some(UpdateId::parse("feed-7/42")?);
    let ours = [with_id, update("p2", "s2", 3, "9.5", 2)];
    PgEventStore::new(t.db.clone()).append(&ours).await?;

    Migrator::down(&t.db, Some(1)).await?;

    let rows =
        t.db.query_all_raw(Statement::from_string(
            t.db.get_database_backend(),
            "SELECT payload::text AS payload FROM inventory_events ORDER BY seq",
        ))
        .await?;
    let read = rows
        .iter()
        .map(|r| -> Result<InventoryUpdateReceived> {
            Ok(serde_json::from_str(&r.try_get::<String>("", "payload")?)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let appended: Vec<_> = ours.iter().map(InventoryUpdateReceived::from).collect();
    assert_eq!(read, appended, "the previous release reads each event");
    assert_eq!(
        scalar(
            &t.db,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'inventory_events' \
             AND (column_name LIKE 'source_%' OR column_name = 'quantity' OR is_nullable = 'YES' AND column_name = 'payload')"
        )
        .await?,
        0,
        "the typed columns are gone and every event has its payload"
    );
    appended_by_previous_release(&t.db, &[update("p3", "s1", 1, "1", 3)]).await?;

    assert_eq!(
        migration::run(&t.db).await?,
        ["m20261207_000010_typed_event_columns"]
    );
    t.cleanup().await
}

/// Export lines are rows as `to_jsonb` gives them, so the new columns change their checksums:
/// the migration forgets the parts of a day exported but not yet dropped (the next retention
/// run exports it again rather than failing its last check), and keeps those of retired days.
#[tokio::test]
async fn the_migration_forgets_the_exports_of_days_not_yet_dropped() -> Result<()> {
    let (t, _) = migrated_to_before("m20261207_000010_typed_event_columns").await?;
    t.db.execute_unprepared(
        "INSERT INTO event_store_exports (day, part, after_seq, up_to_seq, events, checksum, object_key) VALUES \
             ('2026-10-01', 0, 0, 10, 10, 42, 'event-store/inventory_events/2026/10/01/part-00000.jsonl.gz'), \
             ('2026-10-02', 0, 10, 20, 10, 43, 'event-store/inventory_events/2026/10/02/part-00000.jsonl.gz'), \
             ('2026-10-02', 1, 20, 25, 5, 44, 'event-store/inventory_events/2026/10/02/part-00001.jsonl.gz'); \
         INSERT INTO event_store_retired_days (day, events, checksum, max_seq, manifest) VALUES \
             ('2026-10-01', 10, 42, 10, 'event-store/inventory_events/2026/10/01/manifest.json')",
    )
    .await?;

    migration::run(&t.db).await?;

    assert_eq!(
        scalar(
            &t.db,
            "SELECT count(*) FROM event_store_exports WHERE day = '2026-10-02'"
        )
        .await?,
        0,
        "the day not yet dropped is exported again"
    );
    assert_eq!(
        scalar(
            &t.db,
            "SELECT count(*) FROM event_store_exports WHERE day = '2026-10-01'"
        )
        .await?,
        1,
        "the retired day keeps its record"
    );
    t.cleanup().await
}

/// A retention run in progress holds partitions the migration's `ALTER TABLE` needs, and may
/// need the table next: the migration waits for the run's advisory lock before it takes any.
#[tokio::test]
async fn the_migration_waits_for_a_retention_run_in_progress() -> Result<()> {
    let (t, before) = migrated_to_before("m20261207_000010_typed_event_columns").await?;
    let run = t.db.begin().await?;
    run.execute_raw(Statement::from_sql_and_values(
        t.db.get_database_backend(),
        "SELECT pg_advisory_xact_lock($1)",
        [RETENTION_LOCK_KEY.into()],
    ))
    .await?;

    let (waited, applied) = migrate_while_held(&t, run).await?;

    assert!(waited, "the migration waits for the retention run");
    assert_eq!(applied, migration::known()[before..]);
    t.cleanup().await
}

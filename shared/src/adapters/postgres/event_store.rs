//! The event store on PostgreSQL: a chunk's events are appended once each (by update key, kept
//! in `inventory_update_key_ids`) to the day's partition of `inventory_events`, and applied to the
//! projection in the same transaction.

use super::error::db_error;
use super::projection_store::{OffersByProduct, apply_events};
use super::sql::{ids_param, stmt};
use crate::domain::event::{EventEnvelope, InventoryUpdateReceived, UpdateKey};
use crate::domain::ids::ProductId;
use crate::domain::projection::ProductSummary;
use crate::domain::update::InventoryUpdate;
use crate::error::{ErrorKind, PipelineError};
use crate::ports::{AppendOutcome, EventStore};
use crate::steps::payloads::ChangedProduct;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sea_orm::prelude::Uuid;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use std::collections::{BTreeSet, HashMap, HashSet};

/// [`EventStore`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgEventStore {
    db: DatabaseConnection,
}

impl PgEventStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

/// The events as the insert statement reads them: one typed array per column, sent in
/// PostgreSQL's binary format, so the server parses no text (a JSON payload per event cost
/// more to parse than the rest of the row to write; docs/event-store.md, "Typed columns").
/// An update without a supplier `update_id` sends an empty one (never a valid id), which the
/// statement stores as null: an array parameter cannot hold nulls here.
#[derive(Default)]
struct EventColumns {
    update_keys: Vec<String>,
    product_ids: Vec<String>,
    supplier_ids: Vec<String>,
    occurred_at: Vec<DateTime<Utc>>,
    quantities: Vec<i64>,
    prices: Vec<Decimal>,
    currencies: Vec<String>,
    occurred_at_from_supplier: Vec<bool>,
    update_ids: Vec<String>,
    shard_ids: Vec<String>,
    sequence_numbers: Vec<String>,
    arrived_at: Vec<DateTime<Utc>>,
}

impl EventColumns {
    fn of(events: &[(&UpdateKey, InventoryUpdateReceived)]) -> Self {
        let mut c = Self::default();
        for (key, e) in events {
            c.update_keys.push(key.as_str().to_owned());
            c.product_ids.push(e.product_id.as_str().to_owned());
            c.supplier_ids.push(e.supplier_id.as_str().to_owned());
            c.occurred_at.push(e.occurred_at);
            c.quantities.push(e.quantity.get());
            c.prices.push(e.price.get());
            c.currencies.push(e.currency.as_str().to_owned());
            c.occurred_at_from_supplier
                .push(e.occurred_at_from_supplier);
            c.update_ids.push(
                e.update_id
                    .as_ref()
                    .map(|u| u.as_str().to_owned())
                    .unwrap_or_default(),
            );
            c.shard_ids.push(e.source.shard_id.clone());
            c.sequence_numbers.push(e.source.sequence_number.clone());
            c.arrived_at.push(e.source.arrived_at);
        }
        c
    }

    /// The parameters of [`LOCK_AND_APPEND`]: the events' columns, then the products to lock.
    fn into_values(self, products: &BTreeSet<ProductId>) -> Vec<sea_orm::Value> {
        vec![
            self.update_keys.into(),
            self.product_ids.into(),
            self.supplier_ids.into(),
            self.occurred_at.into(),
            self.quantities.into(),
            self.prices.into(),
            self.currencies.into(),
            self.occurred_at_from_supplier.into(),
            self.update_ids.into(),
            self.shard_ids.into(),
            self.sequence_numbers.into(),
            self.arrived_at.into(),
            InventoryUpdateReceived::EVENT_TYPE.into(),
            InventoryUpdateReceived::EVENT_VERSION.into(),
            ids_param(products),
        ]
    }
}

/// The chunk's keys, each new one recorded in `inventory_update_key_ids` (as its first 128 bits,
/// a `uuid`, which Persist computes and sends in binary), which makes an update unique across
/// every day partition of the events (a unique index there would have to include the day). It
/// runs before any product is locked (about a quarter of a chunk's server time), so it
/// overlaps the work of another chunk in flight on the same products instead of waiting for
/// it. The ids go in sorted (the previous release's Persist sorted its text keys, whose hex
/// prefixes sort as the ids do): a concurrent append of one of them waits on its index entry
/// until the other transaction ends, then skips it if that one committed (with its event) or
/// inserts it if it rolled back; and writers that take keys in one order do not deadlock on
/// them. A writer here holds no product lock yet, so it cannot close a cycle with the product
/// locks either. The answer is the ids that were new.
const INSERT_KEYS: &str = r#"
INSERT INTO inventory_update_key_ids (key_id)
SELECT id FROM unnest($1::uuid[]) AS t(id) ORDER BY id
ON CONFLICT (key_id) DO NOTHING
RETURNING key_id"#;

/// Locks the chunk's products, then appends the events of the keys that were new, in one
/// statement (one round trip fewer while the locks are held, which is what chunks in flight on
/// the same products wait on).
///
/// The lock: a placeholder summary for each new product and a lock on each existing row, in
/// one global order (the ids' byte order, the order of the `SELECT`), so concurrent writers of
/// overlapping products wait for each other instead of deadlocking. `DO UPDATE` locks every
/// conflicting row, and `WHERE false` leaves it unchanged (no new row version).
///
/// The events: `seq` is taken as each is inserted, and only once every lock is held, so per
/// product it increases in commit order (which the summaries' `version` relies on). The insert
/// reads its rows only once the one-time filter on `locked` has passed, and that filter runs
/// the lock to its end first. PostgreSQL documents no order between the parts of a `WITH`
/// (one that nothing read would run after the insert); this order is its executor's, and
/// `a_chunk_takes_no_seq_while_it_waits_for_a_product_lock` checks it, with custom and generic
/// plans. A chunk whose keys are all repeats sends empty event arrays: it still takes the
/// locks, since the projection is loaded under them.
///
/// Both inserts are `WITH` parts, in this order, so the statement locks `product_summaries`
/// before `inventory_events` in its first run and when it runs again prepared (then tables are
/// locked in the order of the plan: the top-level statement's first, then each `WITH` part's).
/// The rebuild's switch locks them in that order too; the other order deadlocks an append that
/// arrives while the switch waits
/// (`an_append_arriving_while_the_switch_waits_does_not_deadlock_with_it`).
const LOCK_AND_APPEND: &str = r#"
WITH locked AS (
    INSERT INTO product_summaries (product_id)
    SELECT p FROM unnest($15::text[]) AS l(p) ORDER BY p COLLATE "C"
    ON CONFLICT (product_id) DO UPDATE SET version = product_summaries.version WHERE false
    RETURNING 1
), appended AS (
    INSERT INTO inventory_events (update_key, event_type, event_version, product_id, supplier_id, occurred_at,
        quantity, price, currency, occurred_at_from_supplier, update_id, source_shard_id, source_sequence_number,
        source_arrived_at)
    SELECT k, $13, $14, p, s, o, q, pr, c, f, nullif(u, ''), sh, sn, a
    FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::numeric[], $7::text[],
        $8::boolean[], $9::text[], $10::text[], $11::text[], $12::timestamptz[])
        AS t(k, p, s, o, q, pr, c, f, u, sh, sn, a)
    WHERE (SELECT count(*) FROM locked) >= 0
    RETURNING seq, update_key
)
SELECT seq, update_key FROM appended"#;

#[async_trait]
impl EventStore for PgEventStore {
    /// One transaction: (a) record the chunk's keys, learning which are new, (b) lock the
    /// chunk's products' summary rows in id order and (c) append the events of the new keys, in
    /// one statement, (d)–(f) apply them to the projection through
    /// [`crate::domain::projection::project`], (g) report the products whose current offers
    /// come from this chunk. Because (g) looks at the current state rather than at what this
    /// attempt inserted, a retry after a lost response reports the same products.
    #[tracing::instrument(skip_all, fields(updates = updates.len()))]
    async fn append(&self, updates: &[InventoryUpdate]) -> Result<AppendOutcome, PipelineError> {
        if updates.is_empty() {
            return Ok(AppendOutcome::default());
        }
        // The first update per key is the one that counts; later ones in the chunk are
        // duplicates like any redelivery.
        let mut keys: HashSet<&str> = HashSet::with_capacity(updates.len());
        let unique: Vec<&InventoryUpdate> = updates
            .iter()
            .filter(|u| keys.insert(u.update_key.as_str()))
            .collect();
        let products: BTreeSet<ProductId> = unique.iter().map(|u| u.product_id.clone()).collect();

        let rows: Vec<(&UpdateKey, InventoryUpdateReceived)> = unique
            .iter()
            .map(|u| (&u.update_key, InventoryUpdateReceived::from(*u)))
            .collect();

        let txn = self
            .db
            .begin()
            .await
            .map_err(|e| db_error("could not start the append", e))?;
        let fresh = record_keys(&txn, &unique).await?;
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|(k, _)| fresh.contains(k.as_str()))
            .collect();
        // The new keys' events become the statement's parameters before any product is
        // locked, so none of that work happens while the locks are held.
        let values = EventColumns::of(&rows).into_values(&products);
        let events = lock_and_append(&txn, values, rows).await?;

        let offers = apply_events(&txn, &products, &events).await?;
        txn.commit()
            .await
            .map_err(|e| db_error("could not commit the append", e))?;

        let outcome = AppendOutcome {
            appended: events.len(),
            duplicates: updates.len() - events.len(),
            changed: changed_products(&offers, &keys),
        };
        tracing::info!(
            appended = outcome.appended,
            duplicates = outcome.duplicates,
            changed = outcome.changed.len(),
            "chunk appended"
        );
        Ok(outcome)
    }
}

/// Records the keys of `unique` (one update per key) and returns those that were new.
async fn record_keys(
    txn: &DatabaseTransaction,
    unique: &[&InventoryUpdate],
) -> Result<HashSet<String>, PipelineError> {
    let mut by_id: HashMap<Uuid, &str> = HashMap::with_capacity(unique.len());
    for u in unique {
        by_id.insert(key_id(&u.update_key)?, u.update_key.as_str());
    }
    let mut ids: Vec<Uuid> = by_id.keys().copied().collect();
    ids.sort_unstable();
    let returned = txn
        .query_all_raw(stmt(INSERT_KEYS, vec![ids.into()]))
        .await
        .map_err(|e| db_error("could not record the update keys", e))?;
    let mut fresh = HashSet::with_capacity(returned.len());
    for row in returned {
        let id: Uuid = row
            .try_get("", "key_id")
            .map_err(|e| db_error("could not read a recorded key", e))?;
        let key = by_id.remove(&id).ok_or_else(|| {
            PipelineError::new(
                ErrorKind::Internal,
                format!("the store recorded key id {id}, which was not sent or came back twice"),
            )
        })?;
        fresh.insert(key.to_owned());
    }
    Ok(fresh)
}

/// The id `inventory_update_key_ids` keeps of `key`: its first 128 bits (32 hex digits), as
/// `left(update_key, 32)::uuid` gives in SQL (the previous release's trigger computes it so).
fn key_id(key: &UpdateKey) -> Result<Uuid, PipelineError> {
    key.as_str()
        .get(..32)
        .and_then(|hex| Uuid::try_parse(hex).ok())
        .ok_or_else(|| {
            PipelineError::new(
                ErrorKind::Internal,
                format!("update key {key} does not begin with 32 hex digits"),
            )
        })
}

/// Locks the chunk's products and appends the events of `rows` (their keys new; `values` are
/// the same events, encoded, then the products) and returns them with their `seq`.
async fn lock_and_append(
    txn: &DatabaseTransaction,
    values: Vec<sea_orm::Value>,
    rows: Vec<(&UpdateKey, InventoryUpdateReceived)>,
) -> Result<Vec<EventEnvelope>, PipelineError> {
    let inserted = txn
        .query_all_raw(stmt(LOCK_AND_APPEND, values))
        .await
        .map_err(|e| db_error("could not lock the products and append their events", e))?;
    let mut by_key: HashMap<&str, (&UpdateKey, InventoryUpdateReceived)> =
        rows.into_iter().map(|r| (r.0.as_str(), r)).collect();
    let mut events = Vec::with_capacity(inserted.len());
    for row in inserted {
        let seq: i64 = row
            .try_get("", "seq")
            .map_err(|e| db_error("could not read an appended seq", e))?;
        let key: String = row
            .try_get("", "update_key")
            .map_err(|e| db_error("could not read an appended key", e))?;
        let (update_key, event) = by_key.remove(key.as_str()).ok_or_else(|| {
            PipelineError::new(
                ErrorKind::Internal,
                format!("the store returned key {key}, which was not appended"),
            )
        })?;
        events.push(EventEnvelope {
            update_key: update_key.clone(),
            seq,
            event,
        });
    }
    // A key recorded without its event would be lost for good: every redelivery would find
    // the key and count the update as a duplicate. So the whole append rolls back instead.
    if let Some(key) = by_key.keys().next() {
        return Err(PipelineError::new(
            ErrorKind::Internal,
            format!(
                "the store appended {} of {} events; key {key} came back without its seq",
                events.len(),
                events.len() + by_key.len()
            ),
        ));
    }
    Ok(events)
}

/// Products whose current offers include one of `keys`, at their current version.
fn changed_products(offers: &OffersByProduct, keys: &HashSet<&str>) -> Vec<ChangedProduct> {
    offers
        .iter()
        .filter(|(_, o)| o.iter().any(|o| keys.contains(o.update_key.as_str())))
        .filter_map(|(p, o)| ProductSummary::from_offers(p, o))
        .map(|s| ChangedProduct {
            product_id: s.product_id,
            version: s.version,
        })
        .collect()
}

#[cfg(test)]
#[path = "event_store_tests.rs"]
pub(super) mod tests;

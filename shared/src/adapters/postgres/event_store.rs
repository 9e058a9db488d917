//! The event store on PostgreSQL: a chunk's events are appended once each (by update key, kept
//! in `inventory_update_keys`) to the day's partition of `inventory_events`, and applied to the
//! projection in the same transaction.

use super::error::db_error;
use super::projection_store::{OffersByProduct, apply_events, lock_products};
use super::sql::stmt;
use crate::domain::event::{EventEnvelope, InventoryUpdateReceived, UpdateKey};
use crate::domain::ids::ProductId;
use crate::domain::projection::ProductSummary;
use crate::domain::update::InventoryUpdate;
use crate::error::{ErrorKind, PipelineError};
use crate::ports::{AppendOutcome, EventStore};
use crate::steps::payloads::ChangedProduct;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
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
/// PostgreSQL's binary format, so the server parses only each event's own small payload
/// (parsing one JSON document of the whole chunk cost more than writing the rows). Payloads
/// go as JSON text, cast to `jsonb` by the server: a `serde_json::Value` per event would be
/// built as a tree of allocations, and deep-copied again when the statement is bound.
#[derive(Default)]
struct EventColumns {
    update_keys: Vec<String>,
    product_ids: Vec<String>,
    supplier_ids: Vec<String>,
    occurred_at: Vec<DateTime<Utc>>,
    payloads: Vec<String>,
}

impl EventColumns {
    fn of(events: &[(&UpdateKey, InventoryUpdateReceived)]) -> Result<Self, PipelineError> {
        let mut c = Self::default();
        for (key, event) in events {
            c.update_keys.push(key.as_str().to_owned());
            c.product_ids.push(event.product_id.as_str().to_owned());
            c.supplier_ids.push(event.supplier_id.as_str().to_owned());
            c.occurred_at.push(event.occurred_at);
            c.payloads.push(serde_json::to_string(event).map_err(|e| {
                PipelineError::with_source(ErrorKind::Internal, "could not encode an event", e)
            })?);
        }
        Ok(c)
    }

    fn into_values(self) -> Vec<sea_orm::Value> {
        vec![
            self.update_keys.into(),
            self.product_ids.into(),
            self.supplier_ids.into(),
            self.occurred_at.into(),
            self.payloads.into(),
            InventoryUpdateReceived::EVENT_TYPE.into(),
            InventoryUpdateReceived::EVENT_VERSION.into(),
        ]
    }
}

/// One statement: the chunk's keys go into `inventory_update_keys` first, and an event is
/// appended only for a key that was new there. The events table is partitioned by day, and a
/// unique index there would have to include the day; the keys table is what makes an update
/// unique across every partition. A concurrent append of the same key waits on the key's
/// index entry and then skips it, as it did on the events' own unique index before.
const INSERT_EVENTS: &str = r#"
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
        WITH ORDINALITY AS t(k, p, s, o, e, n)
), fresh AS (
    INSERT INTO inventory_update_keys (update_key)
    SELECT k FROM input ORDER BY n
    ON CONFLICT (update_key) DO NOTHING
    RETURNING update_key
)
INSERT INTO inventory_events (update_key, event_type, event_version, product_id, supplier_id, occurred_at, payload)
SELECT i.k, $6, $7, i.p, i.s, i.o, i.e::jsonb
FROM input i JOIN fresh f ON f.update_key = i.k
ORDER BY i.n
RETURNING seq, update_key"#;

#[async_trait]
impl EventStore for PgEventStore {
    /// One transaction: (a) lock the chunk's products' summary rows in id order, (b) insert
    /// the events, skipping keys the store already has, (c)–(e) apply the new ones to the
    /// projection through [`crate::domain::projection::project`], (f) report the products whose current
    /// offers come from this chunk. Because (f) looks at the current state rather than at what
    /// this attempt inserted, a retry after a lost response reports the same products.
    #[tracing::instrument(skip_all, fields(updates = updates.len()))]
    async fn append(&self, updates: &[InventoryUpdate]) -> Result<AppendOutcome, PipelineError> {
        if updates.is_empty() {
            return Ok(AppendOutcome::default());
        }
        // The first update per key is the one that counts; later ones in the chunk are
        // duplicates like any redelivery.
        let mut seen: HashSet<&UpdateKey> = HashSet::with_capacity(updates.len());
        let unique: Vec<&InventoryUpdate> = updates
            .iter()
            .filter(|u| seen.insert(&u.update_key))
            .collect();
        let products: BTreeSet<ProductId> = unique.iter().map(|u| u.product_id.clone()).collect();

        let txn = self
            .db
            .begin()
            .await
            .map_err(|e| db_error("could not start the append", e))?;
        lock_products(&txn, &products).await?;

        let rows: Vec<(&UpdateKey, InventoryUpdateReceived)> = unique
            .iter()
            .map(|u| (&u.update_key, InventoryUpdateReceived::from(*u)))
            .collect();
        let inserted = txn
            .query_all_raw(stmt(INSERT_EVENTS, EventColumns::of(&rows)?.into_values()))
            .await
            .map_err(|e| db_error("could not append events", e))?;
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

        let offers = apply_events(&txn, &products, &events).await?;
        txn.commit()
            .await
            .map_err(|e| db_error("could not commit the append", e))?;

        let keys: HashSet<&UpdateKey> = updates.iter().map(|u| &u.update_key).collect();
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

/// Products whose current offers include one of `keys`, at their current version.
fn changed_products(offers: &OffersByProduct, keys: &HashSet<&UpdateKey>) -> Vec<ChangedProduct> {
    offers
        .iter()
        .filter(|(_, o)| o.iter().any(|o| keys.contains(&o.update_key)))
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

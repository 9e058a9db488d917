//! The event store on PostgreSQL: a chunk's events are appended once each (by update key) and
//! applied to the projection in the same transaction.

use super::error::db_error;
use super::projection_store::{OffersByProduct, apply_events, json_param, lock_products, stmt};
use crate::error::{ErrorKind, PipelineError};
use crate::event::{EventEnvelope, InventoryUpdateReceived, UpdateKey};
use crate::ids::ProductId;
use crate::pipeline::ChangedProduct;
use crate::ports::{AppendOutcome, EventStore};
use crate::projection::ProductSummary;
use crate::update::InventoryUpdate;
use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use serde::Serialize;
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

/// One event as the insert statement reads it.
#[derive(Serialize)]
struct NewEvent<'a> {
    update_key: &'a UpdateKey,
    event: InventoryUpdateReceived,
}

const INSERT_EVENTS: &str = r#"
INSERT INTO inventory_events (update_key, event_type, event_version, product_id, supplier_id, occurred_at, payload)
SELECT x->>'update_key', $2, $3, x->'event'->>'product_id', x->'event'->>'supplier_id',
       (x->'event'->>'occurred_at')::timestamptz, x->'event'
FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(x, n)
ORDER BY n
ON CONFLICT (update_key) DO NOTHING
RETURNING seq, update_key"#;

#[async_trait]
impl EventStore for PgEventStore {
    /// One transaction: (a) lock the chunk's products' summary rows in id order, (b) insert
    /// the events, skipping keys the store already has, (c)–(e) apply the new ones to the
    /// projection through [`crate::projection::project`], (f) report the products whose current
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

        let rows: Vec<NewEvent<'_>> = unique
            .iter()
            .map(|u| NewEvent {
                update_key: &u.update_key,
                event: InventoryUpdateReceived::from(*u),
            })
            .collect();
        let inserted = txn
            .query_all_raw(stmt(
                INSERT_EVENTS,
                vec![
                    json_param(&rows)?,
                    InventoryUpdateReceived::EVENT_TYPE.into(),
                    InventoryUpdateReceived::EVENT_VERSION.into(),
                ],
            ))
            .await
            .map_err(|e| db_error("could not append events", e))?;
        let mut by_key: HashMap<String, NewEvent<'_>> = rows
            .into_iter()
            .map(|r| (r.update_key.as_str().to_owned(), r))
            .collect();
        let mut events = Vec::with_capacity(inserted.len());
        for row in inserted {
            let seq: i64 = row
                .try_get("", "seq")
                .map_err(|e| db_error("could not read an appended seq", e))?;
            let key: String = row
                .try_get("", "update_key")
                .map_err(|e| db_error("could not read an appended key", e))?;
            let new = by_key.remove(&key).ok_or_else(|| {
                PipelineError::new(
                    ErrorKind::Internal,
                    format!("the store returned key {key}, which was not appended"),
                )
            })?;
            events.push(EventEnvelope {
                update_key: new.update_key.clone(),
                seq,
                event: new.event,
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

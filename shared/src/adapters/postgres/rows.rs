//! Rows to domain values and back. A stored value that no longer parses is a broken invariant
//! (the domain types only ever wrote valid ones), reported as [`ErrorKind::Internal`].

use super::entity::{inventory_event, product_offer, product_summary};
use crate::domain::event::{EventEnvelope, InventoryUpdateReceived, UpdateKey};
use crate::domain::ids::{ProductId, SupplierId, UpdateId};
use crate::domain::money::{Currency, Price, Quantity};
use crate::domain::projection::{Offer, ProductSummary};
use crate::domain::update::SourcePosition;
use crate::error::{ErrorKind, PipelineError};
use serde::Deserialize as _;

fn corrupt(what: &str, detail: impl std::fmt::Display) -> PipelineError {
    PipelineError::new(
        ErrorKind::Internal,
        format!("stored {what} is not valid: {detail}"),
    )
}

pub(crate) fn product_id(s: &str) -> Result<ProductId, PipelineError> {
    ProductId::parse(s).map_err(|r| corrupt("product_id", r))
}

fn supplier_id(s: &str) -> Result<SupplierId, PipelineError> {
    SupplierId::parse(s).map_err(|r| corrupt("supplier_id", r))
}

fn currency(s: &str) -> Result<Currency, PipelineError> {
    Currency::parse(s).map_err(|r| corrupt("currency", r))
}

fn price(d: rust_decimal::Decimal) -> Result<Price, PipelineError> {
    Price::new(d).map_err(|r| corrupt("price", r))
}

pub(crate) fn offer(m: product_offer::Model) -> Result<Offer, PipelineError> {
    Ok(Offer {
        product_id: product_id(&m.product_id)?,
        supplier_id: supplier_id(&m.supplier_id)?,
        quantity: Quantity::new(m.quantity).map_err(|r| corrupt("quantity", r))?,
        price: price(m.price)?,
        currency: currency(&m.currency)?,
        occurred_at: m.occurred_at,
        update_key: UpdateKey::try_from(m.update_key).map_err(|r| corrupt("update_key", r))?,
        event_seq: m.event_seq,
    })
}

pub(crate) fn summary(m: product_summary::Model) -> Result<ProductSummary, PipelineError> {
    Ok(ProductSummary {
        product_id: product_id(&m.product_id)?,
        total_quantity: m.total_quantity,
        best_price: m.best_price.map(price).transpose()?,
        best_price_currency: m.best_price_currency.as_deref().map(currency).transpose()?,
        best_price_supplier: m
            .best_price_supplier
            .as_deref()
            .map(supplier_id)
            .transpose()?,
        supplier_count: m.supplier_count,
        version: m.version,
        updated_at: m.updated_at,
    })
}

/// The event a stored row holds, for every reader of the store (replay, rebuild, history):
/// the one place that says which event types and versions this build knows, and how a row
/// holds one. Rows appended since migration 10 hold it in typed columns; older rows in a JSON
/// payload. An unknown type or version, a payload that does not parse, or a typed row with a
/// column missing or out of range is an internal error naming the event's `seq`.
pub(crate) fn stored_event(
    m: &inventory_event::Model,
) -> Result<InventoryUpdateReceived, PipelineError> {
    let seq = m.seq;
    if m.event_type != InventoryUpdateReceived::EVENT_TYPE
        || m.event_version != InventoryUpdateReceived::EVENT_VERSION
    {
        return Err(PipelineError::new(
            ErrorKind::Internal,
            format!(
                "event {seq} is {} v{}, which this build does not know",
                m.event_type, m.event_version
            ),
        ));
    }
    let does_not_parse = format!("stored event {seq} does not parse");
    match &m.payload {
        Some(payload) => InventoryUpdateReceived::deserialize(payload)
            .map_err(|e| PipelineError::with_source(ErrorKind::Internal, does_not_parse, e)),
        None => typed_event(m)
            .map_err(|e| PipelineError::with_source(ErrorKind::Internal, does_not_parse, e)),
    }
}

/// The event of a row written with typed columns (and no payload).
fn typed_event(m: &inventory_event::Model) -> Result<InventoryUpdateReceived, PipelineError> {
    fn present<T>(v: Option<T>, column: &str) -> Result<T, PipelineError> {
        v.ok_or_else(|| corrupt(column, "null in a row without a payload"))
    }
    Ok(InventoryUpdateReceived {
        product_id: product_id(&m.product_id)?,
        supplier_id: supplier_id(&m.supplier_id)?,
        quantity: Quantity::new(present(m.quantity, "quantity")?)
            .map_err(|r| corrupt("quantity", r))?,
        price: price(present(m.price, "price")?)?,
        currency: currency(present(m.currency.as_deref(), "currency")?)?,
        occurred_at: m.occurred_at,
        occurred_at_from_supplier: present(
            m.occurred_at_from_supplier,
            "occurred_at_from_supplier",
        )?,
        update_id: m
            .update_id
            .as_deref()
            .map(|u| UpdateId::parse(u).map_err(|r| corrupt("update_id", r)))
            .transpose()?,
        source: SourcePosition {
            shard_id: present(m.source_shard_id.clone(), "source_shard_id")?,
            sequence_number: present(m.source_sequence_number.clone(), "source_sequence_number")?,
            arrived_at: present(m.source_arrived_at, "source_arrived_at")?,
        },
    })
}

/// A stored event row back as an envelope, whichever form it holds the event in; an event
/// type this build does not know is an error.
pub fn envelope(m: inventory_event::Model) -> Result<EventEnvelope, PipelineError> {
    let event = stored_event(&m)?;
    let update_key = UpdateKey::try_from(m.update_key).map_err(|e| {
        PipelineError::new(
            ErrorKind::Internal,
            format!("event {} has a bad update key: {e}", m.seq),
        )
    })?;
    Ok(EventEnvelope {
        update_key,
        seq: m.seq,
        event,
    })
}

/// Stored event rows for tests, in the two forms the store holds.
#[cfg(test)]
pub(crate) mod stored {
    use super::inventory_event::Model;
    use crate::domain::event::InventoryUpdateReceived;

    /// `event` as Persist writes it: in typed columns, without a payload.
    pub(crate) fn typed_row(seq: i64, update_key: &str, event: &InventoryUpdateReceived) -> Model {
        Model {
            seq,
            update_key: update_key.to_owned(),
            event_type: InventoryUpdateReceived::EVENT_TYPE.into(),
            event_version: InventoryUpdateReceived::EVENT_VERSION,
            product_id: event.product_id.as_str().to_owned(),
            supplier_id: event.supplier_id.as_str().to_owned(),
            occurred_at: event.occurred_at,
            recorded_at: event.source.arrived_at,
            payload: None,
            quantity: Some(event.quantity.get()),
            price: Some(event.price.get()),
            currency: Some(event.currency.as_str().to_owned()),
            occurred_at_from_supplier: Some(event.occurred_at_from_supplier),
            update_id: event.update_id.as_ref().map(|u| u.as_str().to_owned()),
            source_shard_id: Some(event.source.shard_id.clone()),
            source_sequence_number: Some(event.source.sequence_number.clone()),
            source_arrived_at: Some(event.source.arrived_at),
        }
    }

    /// `event` as Persist wrote it before migration 10: in a JSON payload, the typed columns
    /// null.
    pub(crate) fn payload_row(
        seq: i64,
        update_key: &str,
        event: &InventoryUpdateReceived,
    ) -> Model {
        with_payload(
            typed_row(seq, update_key, event),
            serde_json::to_value(event).expect("an event serialises"),
        )
    }

    /// `row` holding `payload` instead of its typed columns.
    pub(crate) fn with_payload(row: Model, payload: serde_json::Value) -> Model {
        Model {
            payload: Some(payload),
            quantity: None,
            price: None,
            currency: None,
            occurred_at_from_supplier: None,
            update_id: None,
            source_shard_id: None,
            source_sequence_number: None,
            source_arrived_at: None,
            ..row
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn stored_offer() -> product_offer::Model {
        product_offer::Model {
            product_id: "p-1".into(),
            supplier_id: "s-1".into(),
            quantity: 5,
            price: Decimal::new(1250, 2),
            currency: "EUR".into(),
            occurred_at: chrono::DateTime::UNIX_EPOCH,
            update_key: "a".repeat(64),
            event_seq: 7,
        }
    }

    fn stored_summary() -> product_summary::Model {
        product_summary::Model {
            product_id: "p-1".into(),
            total_quantity: 5,
            best_price: Some(Decimal::new(1250, 2)),
            best_price_currency: Some("EUR".into()),
            best_price_supplier: Some("s-1".into()),
            supplier_count: 1,
            version: 3,
            updated_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    /// The error for a row that no longer parses: internal (never retried as if the database
    /// were down, never blamed on the caller's payload) and naming the column.
    fn assert_corrupt(e: PipelineError, column: &str) {
        assert_eq!(e.kind, ErrorKind::Internal, "{e:?}");
        assert!(!e.is_transient());
        assert!(
            e.detailed()
                .contains(&format!("stored {column} is not valid")),
            "{}",
            e.detailed()
        );
    }

    #[test]
    fn valid_rows_become_domain_values() {
        let offer = offer(stored_offer()).expect("valid offer");
        assert_eq!(offer.product_id.as_str(), "p-1");
        assert_eq!(offer.quantity.get(), 5);
        assert_eq!(offer.event_seq, 7);
        let summary = summary(stored_summary()).expect("valid summary");
        assert_eq!(
            summary.best_price_supplier.expect("supplier").as_str(),
            "s-1"
        );
        assert_eq!(summary.version, 3);
    }

    #[test]
    fn a_stored_offer_that_no_longer_parses_is_an_internal_error_naming_the_column() {
        type Corruption = (&'static str, fn(&mut product_offer::Model));
        let cases: Vec<Corruption> = vec![
            ("product_id", |m| m.product_id = String::new()),
            ("supplier_id", |m| m.supplier_id = String::new()),
            ("quantity", |m| m.quantity = -1),
            ("price", |m| m.price = Decimal::new(-1, 0)),
            ("currency", |m| m.currency = "XXQ".into()),
            ("update_key", |m| m.update_key = "not-hex".into()),
        ];
        for (column, corrupt_it) in cases {
            let mut m = stored_offer();
            corrupt_it(&mut m);
            assert_corrupt(offer(m).expect_err(column), column);
        }
    }

    #[test]
    fn a_stored_summary_with_a_corrupt_best_price_is_an_internal_error() {
        let mut m = stored_summary();
        m.best_price_currency = Some("eur".into());
        assert_corrupt(summary(m).expect_err("currency"), "currency");
        let mut m = stored_summary();
        m.best_price_supplier = Some(String::new());
        assert_corrupt(summary(m).expect_err("supplier"), "supplier_id");
    }

    #[test]
    fn a_summary_without_stock_has_no_best_price() {
        let mut m = stored_summary();
        m.best_price = None;
        m.best_price_currency = None;
        m.best_price_supplier = None;
        m.total_quantity = 0;

        let s = summary(m).expect("valid summary");

        assert_eq!(
            (s.best_price, s.best_price_currency, s.best_price_supplier),
            (None, None, None)
        );
        assert_eq!((s.product_id.as_str(), s.total_quantity), ("p-1", 0));
    }

    #[test]
    fn a_summary_with_a_corrupt_id_or_price_is_an_internal_error_naming_the_column() {
        let mut m = stored_summary();
        m.product_id = String::new();
        assert_corrupt(summary(m).expect_err("product_id"), "product_id");
        let mut m = stored_summary();
        m.best_price = Some(Decimal::new(-5, 0));
        assert_corrupt(summary(m).expect_err("price"), "price");
    }

    fn an_event() -> InventoryUpdateReceived {
        let u = crate::adapters::postgres::event_store::tests::update("p-1", "s-1", 5, 0);
        InventoryUpdateReceived::from(&u)
    }

    #[test]
    fn a_stored_event_comes_back_as_the_envelope_it_was_in_either_form() {
        let mut event = an_event();
        let key = "b".repeat(64);
        for supplier_update_id in [None, Some(UpdateId::parse("feed-7/42").expect("valid"))] {
            event.update_id = supplier_update_id;
            for row in [
                stored::typed_row(41, &key, &event),
                stored::payload_row(41, &key, &event),
            ] {
                let e = envelope(row).expect("known event");

                assert_eq!(e.seq, 41);
                assert_eq!(e.update_key.as_str(), key);
                assert_eq!(e.event, event);
            }
        }
    }

    #[test]
    fn a_stored_event_with_a_bad_key_or_an_unknown_type_is_an_internal_error_naming_its_seq() {
        let event = an_event();
        let e = envelope(stored::typed_row(41, "not-a-key", &event)).expect_err("bad key");
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(
            e.message.starts_with("event 41 has a bad update key"),
            "{}",
            e.message
        );

        let mut unknown = stored::typed_row(41, &"b".repeat(64), &event);
        unknown.event_type = "StockCounted".into();
        let e = envelope(unknown).expect_err("unknown type");
        assert_eq!(e.kind, ErrorKind::Internal);
        assert_eq!(
            e.message,
            "event 41 is StockCounted v1, which this build does not know"
        );

        let incomplete = stored::with_payload(
            stored::typed_row(41, &"b".repeat(64), &event),
            serde_json::json!({"product_id": "p-1"}),
        );
        let e = stored_event(&incomplete).expect_err("incomplete payload");
        assert_eq!(e.message, "stored event 41 does not parse");
    }

    /// A row without a payload must have every typed column but `update_id`, each in range;
    /// one that does not is corrupt, and the error names the event and the column.
    #[test]
    fn a_typed_row_with_a_column_missing_or_out_of_range_is_an_internal_error_naming_it() {
        let row = || stored::typed_row(41, &"b".repeat(64), &an_event());
        let broken: [(&str, inventory_event::Model); 9] = [
            (
                "quantity",
                inventory_event::Model {
                    quantity: None,
                    ..row()
                },
            ),
            (
                "quantity",
                inventory_event::Model {
                    quantity: Some(-1),
                    ..row()
                },
            ),
            (
                "price",
                inventory_event::Model {
                    price: None,
                    ..row()
                },
            ),
            (
                "currency",
                inventory_event::Model {
                    currency: Some("dollars".into()),
                    ..row()
                },
            ),
            (
                "occurred_at_from_supplier",
                inventory_event::Model {
                    occurred_at_from_supplier: None,
                    ..row()
                },
            ),
            (
                "update_id",
                inventory_event::Model {
                    update_id: Some(String::new()),
                    ..row()
                },
            ),
            (
                "source_shard_id",
                inventory_event::Model {
                    source_shard_id: None,
                    ..row()
                },
            ),
            (
                "source_sequence_number",
                inventory_event::Model {
                    source_sequence_number: None,
                    ..row()
                },
            ),
            (
                "source_arrived_at",
                inventory_event::Model {
                    source_arrived_at: None,
                    ..row()
                },
            ),
        ];
        for (column, m) in broken {
            let e = stored_event(&m).expect_err(column);
            assert_eq!(e.kind, ErrorKind::Internal);
            assert_eq!(e.message, "stored event 41 does not parse");
            assert!(
                e.detailed()
                    .contains(&format!("stored {column} is not valid")),
                "{column}: {}",
                e.detailed()
            );
        }
    }
}

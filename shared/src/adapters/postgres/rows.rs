//! Rows to domain values and back. A stored value that no longer parses is a broken invariant
//! (the domain types only ever wrote valid ones), reported as [`ErrorKind::Internal`].

use super::entity::{inventory_event, product_offer, product_summary};
use crate::domain::event::{EventEnvelope, InventoryUpdateReceived, UpdateKey};
use crate::domain::ids::{ProductId, SupplierId};
use crate::domain::money::{Currency, Price, Quantity};
use crate::domain::projection::{Offer, ProductSummary};
use crate::error::{ErrorKind, PipelineError};

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
/// the one place that says which event types and versions this build knows. Anything else,
/// or a payload that does not parse, is an internal error naming the event's `seq`.
pub(crate) fn stored_event(
    seq: i64,
    event_type: &str,
    event_version: i32,
    payload: serde_json::Value,
) -> Result<InventoryUpdateReceived, PipelineError> {
    if event_type != InventoryUpdateReceived::EVENT_TYPE
        || event_version != InventoryUpdateReceived::EVENT_VERSION
    {
        return Err(PipelineError::new(
            ErrorKind::Internal,
            format!("event {seq} is {event_type} v{event_version}, which this build does not know"),
        ));
    }
    serde_json::from_value(payload).map_err(|e| {
        PipelineError::with_source(
            ErrorKind::Internal,
            format!("stored event {seq} does not parse"),
            e,
        )
    })
}

/// A stored event back as an envelope; an event type this build does not know is an error.
pub(crate) fn envelope(m: inventory_event::Model) -> Result<EventEnvelope, PipelineError> {
    let event = stored_event(m.seq, &m.event_type, m.event_version, m.payload)?;
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

    fn stored_event_row(
        event_type: &str,
        update_key: &str,
        payload: serde_json::Value,
    ) -> inventory_event::Model {
        inventory_event::Model {
            seq: 41,
            update_key: update_key.into(),
            event_type: event_type.into(),
            event_version: InventoryUpdateReceived::EVENT_VERSION,
            product_id: "p-1".into(),
            supplier_id: "s-1".into(),
            occurred_at: chrono::DateTime::UNIX_EPOCH,
            recorded_at: chrono::DateTime::UNIX_EPOCH,
            payload,
        }
    }

    fn an_event() -> InventoryUpdateReceived {
        let u = crate::adapters::postgres::event_store::tests::update("p-1", "s-1", 5, 0);
        InventoryUpdateReceived::from(&u)
    }

    #[test]
    fn a_stored_event_comes_back_as_the_envelope_it_was() {
        let event = an_event();
        let key = "b".repeat(64);
        let payload = serde_json::to_value(&event).expect("json");

        let e = envelope(stored_event_row(
            InventoryUpdateReceived::EVENT_TYPE,
            &key,
            payload,
        ))
        .expect("known event");

        assert_eq!(e.seq, 41);
        assert_eq!(e.update_key.as_str(), key);
        assert_eq!(e.event, event);
    }

    #[test]
    fn a_stored_event_with_a_bad_key_or_an_unknown_type_is_an_internal_error_naming_its_seq() {
        let payload = serde_json::to_value(an_event()).expect("json");
        let e = envelope(stored_event_row(
            InventoryUpdateReceived::EVENT_TYPE,
            "not-a-key",
            payload.clone(),
        ))
        .expect_err("bad key");
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(
            e.message.starts_with("event 41 has a bad update key"),
            "{}",
            e.message
        );

        let e = envelope(stored_event_row("StockCounted", &"b".repeat(64), payload))
            .expect_err("unknown type");
        assert_eq!(e.kind, ErrorKind::Internal);
        assert_eq!(
            e.message,
            "event 41 is StockCounted v1, which this build does not know"
        );

        let e = stored_event(
            41,
            InventoryUpdateReceived::EVENT_TYPE,
            InventoryUpdateReceived::EVENT_VERSION,
            serde_json::json!({"product_id": "p-1"}),
        )
        .expect_err("incomplete payload");
        assert_eq!(e.message, "stored event 41 does not parse");
    }
}

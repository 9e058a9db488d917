//! Events: past-tense facts with a type and a version, and the idempotency key that makes
//! each one unique in the store.

use crate::domain::ids::{ProductId, SupplierId, UpdateId};
use crate::domain::money::{Currency, Price, Quantity};
use crate::domain::update::{InventoryUpdate, SourcePosition};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// The idempotency key of one update: 64 lower-case hex digits of a SHA-256.
///
/// From the supplier's `update_id` when it gives one (scoped by supplier, so two suppliers
/// may reuse ids), otherwise from the update's content including `occurred_at`. Redelivery,
/// retries and duplicate sends of the same update all map to the same key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UpdateKey(String);

impl UpdateKey {
    pub fn for_supplier_update(supplier: &SupplierId, update_id: &UpdateId) -> Self {
        Self::digest(&[
            "inventory-update/v1",
            "supplier-update",
            supplier.as_str(),
            update_id.as_str(),
        ])
    }

    pub fn for_content(
        product: &ProductId,
        supplier: &SupplierId,
        quantity: Quantity,
        price: Price,
        currency: Currency,
        occurred_at: DateTime<Utc>,
    ) -> Self {
        Self::digest(&[
            "inventory-update/v1",
            "content",
            product.as_str(),
            supplier.as_str(),
            &quantity.get().to_string(),
            &price.to_string(),
            currency.as_str(),
            &crate::domain::update::event_time_text(occurred_at),
        ])
    }

    /// Parts are length-prefixed, so no two different part lists hash the same input.
    fn digest(parts: &[&str]) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
        Self(hex::encode(h.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UpdateKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s))
        } else {
            Err(format!(
                "update key must be 64 lower-case hex digits, got {s:?}"
            ))
        }
    }
}

impl From<UpdateKey> for String {
    fn from(k: UpdateKey) -> String {
        k.0
    }
}

impl fmt::Display for UpdateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Event: a supplier reported stock and price for a product. Version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryUpdateReceived {
    pub product_id: ProductId,
    pub supplier_id: SupplierId,
    pub quantity: Quantity,
    pub price: Price,
    pub currency: Currency,
    pub occurred_at: DateTime<Utc>,
    pub occurred_at_from_supplier: bool,
    pub update_id: Option<UpdateId>,
    pub source: SourcePosition,
}

impl InventoryUpdateReceived {
    pub const EVENT_TYPE: &'static str = "InventoryUpdateReceived";
    pub const EVENT_VERSION: i32 = 1;
}

/// An event as the store keeps it: the key that makes it unique, and, once appended, its
/// position in the store's total order (`seq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub update_key: UpdateKey,
    /// Position in the store; assigned on append, increasing in commit order per product.
    pub seq: i64,
    pub event: InventoryUpdateReceived,
}

impl From<&InventoryUpdate> for InventoryUpdateReceived {
    fn from(u: &InventoryUpdate) -> Self {
        Self {
            product_id: u.product_id.clone(),
            supplier_id: u.supplier_id.clone(),
            quantity: u.quantity,
            price: u.price,
            currency: u.currency,
            occurred_at: u.occurred_at,
            occurred_at_from_supplier: u.occurred_at_from_supplier,
            update_id: u.update_id.clone(),
            source: u.source.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hex_sha256_and_revalidate_on_deserialise() {
        let k = UpdateKey::for_supplier_update(
            &SupplierId::parse("s").expect("valid"),
            &UpdateId::parse("u").expect("valid"),
        );
        assert_eq!(k.as_str().len(), 64);
        let back: UpdateKey =
            serde_json::from_str(&serde_json::to_string(&k).expect("ser")).expect("de");
        assert_eq!(back, k);
        assert!(serde_json::from_str::<UpdateKey>("\"xyz\"").is_err());
    }

    #[test]
    fn part_boundaries_matter_to_the_key() {
        let a = UpdateKey::for_supplier_update(
            &SupplierId::parse("ab").expect("v"),
            &UpdateId::parse("c").expect("v"),
        );
        let b = UpdateKey::for_supplier_update(
            &SupplierId::parse("a").expect("v"),
            &UpdateId::parse("bc").expect("v"),
        );
        assert_ne!(a, b);
    }
}

//! The projection rules: per product and supplier the newest update wins, and a per-product
//! summary is derived from the offers. Pure functions, so the database adapter, the rebuild
//! and the tests all apply the very same rules.

use crate::domain::event::{EventEnvelope, UpdateKey};
use crate::domain::ids::{ProductId, SupplierId};
use crate::domain::money::{Currency, Price, Quantity};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The version of the projection rules ([`Offer::supersedes`], [`project`],
/// [`ProductSummary::from_offers`]). A snapshot of the projection records the version it was
/// taken under, and a rebuild starts only from a snapshot of the version it runs: raise this
/// with any change to what the rules produce, so that the next rebuild replays every event
/// under the new rules. The test `rules_fingerprint_changes_only_with_the_rules_version`
/// fails until you do. Raise it too for a fix of how the projection is written to the
/// database, and for a new column of `product_offers` or `product_summaries` (the snapshot
/// tables hold the columns of migration 2 only).
pub const PROJECTION_RULES_VERSION: i32 = 1;

/// One supplier's current stock and price for one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub product_id: ProductId,
    pub supplier_id: SupplierId,
    pub quantity: Quantity,
    pub price: Price,
    pub currency: Currency,
    pub occurred_at: DateTime<Utc>,
    /// The event this offer comes from.
    pub update_key: UpdateKey,
    pub event_seq: i64,
}

impl Offer {
    pub fn from_event(e: &EventEnvelope) -> Self {
        Self {
            product_id: e.event.product_id.clone(),
            supplier_id: e.event.supplier_id.clone(),
            quantity: e.event.quantity,
            price: e.event.price,
            currency: e.event.currency,
            occurred_at: e.event.occurred_at,
            update_key: e.update_key.clone(),
            event_seq: e.seq,
        }
    }

    /// Newest wins: the later `occurred_at`; on a tie, the greater update key, so the outcome
    /// never depends on arrival order.
    pub fn supersedes(&self, current: &Offer) -> bool {
        (self.occurred_at, &self.update_key) > (current.occurred_at, &current.update_key)
    }
}

/// The per-product summary that storefronts read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductSummary {
    pub product_id: ProductId,
    /// Stock summed over all suppliers.
    pub total_quantity: i64,
    /// Lowest price among suppliers with stock (see [`ProductSummary::from_offers`]).
    pub best_price: Option<Price>,
    pub best_price_currency: Option<Currency>,
    pub best_price_supplier: Option<SupplierId>,
    pub supplier_count: i32,
    /// Increases with every change: the store position of the newest event in any offer.
    /// A rebuild from the event store gives the same version.
    pub version: i64,
    /// The newest `occurred_at` among the offers.
    pub updated_at: DateTime<Utc>,
}

impl ProductSummary {
    /// Summarises a product's offers; `None` when there are none.
    ///
    /// Best price: among offers with stock, take the currency most of them quote in (ties:
    /// alphabetical), then the lowest price in it (ties: supplier id). Prices in different
    /// currencies are never compared with each other, since no conversion rate is known here.
    pub fn from_offers(product_id: &ProductId, offers: &[Offer]) -> Option<Self> {
        let offers: Vec<&Offer> = offers
            .iter()
            .filter(|o| &o.product_id == product_id)
            .collect();
        let version = offers.iter().map(|o| o.event_seq).max()?;
        let updated_at = offers.iter().map(|o| o.occurred_at).max()?;
        let total_quantity = offers.iter().map(|o| o.quantity.get()).sum();

        let mut per_currency: BTreeMap<Currency, usize> = BTreeMap::new();
        for o in offers.iter().filter(|o| o.quantity.get() > 0) {
            *per_currency.entry(o.currency).or_default() += 1;
        }
        // max_by_key keeps the last maximum; iterate in reverse so ties go to the first code.
        let main_currency = per_currency
            .iter()
            .rev()
            .max_by_key(|(_, n)| **n)
            .map(|(c, _)| *c);
        let best = main_currency.and_then(|cur| {
            offers
                .iter()
                .filter(|o| o.quantity.get() > 0 && o.currency == cur)
                .min_by(|a, b| (a.price, &a.supplier_id).cmp(&(b.price, &b.supplier_id)))
        });
        Some(Self {
            product_id: product_id.clone(),
            total_quantity,
            best_price: best.map(|o| o.price),
            best_price_currency: best.map(|o| o.currency),
            best_price_supplier: best.map(|o| o.supplier_id.clone()),
            supplier_count: i32::try_from(offers.len()).unwrap_or(i32::MAX),
            version,
            updated_at,
        })
    }
}

/// What applying a set of new events changes: the offers to write and the summaries of the
/// products whose offers changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectionChange {
    pub offers: Vec<Offer>,
    pub summaries: Vec<ProductSummary>,
}

/// Applies newly appended events to the current offers of the products they touch.
///
/// `current` must hold every existing offer of each product in `events` (the summary is
/// recomputed from all of them). Events may come in any order and may repeat.
pub fn project(current: &[Offer], events: &[EventEnvelope]) -> ProjectionChange {
    let mut offers: BTreeMap<(ProductId, SupplierId), Offer> = current
        .iter()
        .map(|o| ((o.product_id.clone(), o.supplier_id.clone()), o.clone()))
        .collect();
    let mut changed: BTreeSet<(ProductId, SupplierId)> = BTreeSet::new();
    for e in events {
        let candidate = Offer::from_event(e);
        let key = (candidate.product_id.clone(), candidate.supplier_id.clone());
        let wins = offers.get(&key).is_none_or(|cur| candidate.supersedes(cur));
        if wins {
            offers.insert(key.clone(), candidate);
            changed.insert(key);
        }
    }
    let changed_products: BTreeSet<&ProductId> = changed.iter().map(|(p, _)| p).collect();
    let summaries = changed_products
        .iter()
        .filter_map(|p| {
            let product_offers: Vec<Offer> = offers
                .range(((*p).clone(), min_supplier())..)
                .take_while(|((pp, _), _)| pp == *p)
                .map(|(_, o)| o.clone())
                .collect();
            ProductSummary::from_offers(p, &product_offers)
        })
        .collect();
    ProjectionChange {
        offers: changed
            .iter()
            .filter_map(|k| offers.get(k).cloned())
            .collect(),
        summaries,
    }
}

fn min_supplier() -> SupplierId {
    // The smallest id in the supplier id order; "-" sorts before every other allowed character.
    SupplierId::parse("-").unwrap_or_else(|_| SupplierId::unspecified())
}

/// An in-memory projection: replaying the event store through it gives the state the
/// database projection must hold. Used by the rebuild and by tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InMemoryProjection {
    offers: BTreeMap<(ProductId, SupplierId), Offer>,
    summaries: BTreeMap<ProductId, ProductSummary>,
}

impl InMemoryProjection {
    pub fn apply(&mut self, events: &[EventEnvelope]) -> ProjectionChange {
        let mut touched: Vec<Offer> = Vec::new();
        let products: BTreeSet<&ProductId> = events.iter().map(|e| &e.event.product_id).collect();
        for p in products {
            touched.extend(self.offers_of(p).cloned());
        }
        let change = project(&touched, events);
        for o in &change.offers {
            self.offers
                .insert((o.product_id.clone(), o.supplier_id.clone()), o.clone());
        }
        for s in &change.summaries {
            self.summaries.insert(s.product_id.clone(), s.clone());
        }
        change
    }

    pub fn offers_of<'a>(&'a self, product: &'a ProductId) -> impl Iterator<Item = &'a Offer> + 'a {
        self.offers
            .range((product.clone(), min_supplier())..)
            .take_while(move |((p, _), _)| p == product)
            .map(|(_, o)| o)
    }

    pub fn summary(&self, product: &ProductId) -> Option<&ProductSummary> {
        self.summaries.get(product)
    }

    pub fn offers(&self) -> impl Iterator<Item = &Offer> {
        self.offers.values()
    }

    pub fn summaries(&self) -> impl Iterator<Item = &ProductSummary> {
        self.summaries.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::InventoryUpdateReceived;
    use crate::domain::update::SourcePosition;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0)
            .single()
            .expect("valid")
    }

    fn event(
        seq: i64,
        product: &str,
        supplier: &str,
        qty: i64,
        price: &str,
        cur: &str,
        minute: u32,
    ) -> EventEnvelope {
        let product_id = ProductId::parse(product).expect("valid");
        let supplier_id = SupplierId::parse(supplier).expect("valid");
        let quantity = Quantity::new(qty).expect("valid");
        let price = Price::parse_decimal(price).expect("valid");
        let currency = Currency::parse(cur).expect("valid");
        let update_key = UpdateKey::for_content(
            &product_id,
            &supplier_id,
            quantity,
            price,
            currency,
            at(minute),
        );
        EventEnvelope {
            update_key,
            seq,
            event: InventoryUpdateReceived {
                product_id,
                supplier_id,
                quantity,
                price,
                currency,
                occurred_at: at(minute),
                occurred_at_from_supplier: true,
                update_id: None,
                source: SourcePosition {
                    shard_id: "s".into(),
                    sequence_number: seq.to_string(),
                    arrived_at: at(minute),
                },
            },
        }
    }

    #[test]
    fn a_newer_update_replaces_an_older_one_and_not_the_other_way() {
        let older = event(1, "p", "s", 10, "5", "USD", 1);
        let newer = event(2, "p", "s", 20, "4", "USD", 2);
        let mut c = InMemoryProjection::default();
        c.apply(std::slice::from_ref(&newer));
        let change = c.apply(&[older]);
        assert!(change.offers.is_empty(), "an older update changes nothing");
        let s = c.summary(&newer.event.product_id).expect("summary");
        assert_eq!(s.total_quantity, 20);
        assert_eq!(s.version, 2);
    }

    #[test]
    fn the_summary_adds_stock_and_picks_the_best_in_stock_price() {
        let mut c = InMemoryProjection::default();
        c.apply(&[
            event(1, "p", "a", 5, "10", "USD", 1),
            event(2, "p", "b", 0, "1", "USD", 1),
            event(3, "p", "c", 7, "9.5", "USD", 1),
            event(4, "p", "d", 1, "2", "EUR", 1),
        ]);
        let s = c
            .summary(&ProductId::parse("p").expect("valid"))
            .expect("summary");
        assert_eq!(s.total_quantity, 13);
        assert_eq!(s.best_price.map(|p| p.to_string()), Some("9.5".into()));
        assert_eq!(
            s.best_price_supplier.as_ref().map(SupplierId::as_str),
            Some("c")
        );
        assert_eq!(s.best_price_currency, Some(Currency::USD));
        assert_eq!(s.supplier_count, 4);
        assert_eq!(s.updated_at, at(1));
    }

    #[test]
    fn a_product_with_no_stock_has_no_best_price() {
        let mut c = InMemoryProjection::default();
        c.apply(&[event(1, "p", "a", 0, "10", "USD", 1)]);
        let s = c
            .summary(&ProductId::parse("p").expect("valid"))
            .expect("summary");
        assert_eq!(s.best_price, None);
        assert_eq!(s.total_quantity, 0);
    }

    #[test]
    fn currency_ties_go_to_the_first_code() {
        let mut c = InMemoryProjection::default();
        c.apply(&[
            event(1, "p", "a", 1, "10", "USD", 1),
            event(2, "p", "b", 1, "20", "EUR", 1),
        ]);
        let s = c
            .summary(&ProductId::parse("p").expect("valid"))
            .expect("summary");
        assert_eq!(
            s.best_price_currency.map(|c| c.to_string()),
            Some("EUR".into())
        );
    }

    #[test]
    fn equal_timestamps_are_decided_by_key_not_by_arrival() {
        let a = event(1, "p", "s", 1, "1", "USD", 3);
        let b = event(2, "p", "s", 2, "1", "USD", 3);
        let mut ab = InMemoryProjection::default();
        ab.apply(&[a.clone(), b.clone()]);
        let mut ba = InMemoryProjection::default();
        ba.apply(&[b]);
        ba.apply(&[a]);
        let p = ProductId::parse("p").expect("valid");
        assert_eq!(
            ab.offers_of(&p).collect::<Vec<_>>()[0].quantity,
            ba.offers_of(&p).collect::<Vec<_>>()[0].quantity
        );
    }

    fn arb_events() -> impl Strategy<Value = Vec<EventEnvelope>> {
        prop::collection::vec((0..4u8, 0..3u8, 0..50i64, 1..100u32, 0..20u32), 1..40).prop_map(
            |rows| {
                rows.into_iter()
                    .enumerate()
                    .map(|(i, (p, s, q, price, minute))| {
                        let seq = i64::try_from(i).unwrap_or(0) + 1;
                        event(
                            seq,
                            &format!("p{p}"),
                            &format!("s{s}"),
                            q,
                            &price.to_string(),
                            "USD",
                            minute,
                        )
                    })
                    .collect()
            },
        )
    }

    /// The projection of a fixed set of events that exercises every rule (newest wins, the
    /// tie on `occurred_at`, an older update arriving late, stock running out, two currencies,
    /// the best price and its ties), as JSON, hashed. It changes when the rules do.
    fn rules_fingerprint() -> String {
        use sha2::{Digest as _, Sha256};
        let events = [
            event(1, "p1", "s1", 5, "10.00", "EUR", 1),
            event(2, "p1", "s2", 3, "9.50", "EUR", 1),
            event(3, "p1", "s1", 0, "8.00", "EUR", 2),
            event(4, "p1", "s1", 7, "12.00", "EUR", 1),
            event(5, "p1", "s3", 2, "9.50", "EUR", 3),
            event(6, "p1", "s2", 4, "9.50", "EUR", 1),
            event(7, "p2", "s1", 1, "3.00", "USD", 5),
            event(8, "p2", "s2", 2, "2.00", "EUR", 5),
            event(9, "p2", "s3", 3, "4.00", "USD", 6),
            event(10, "p3", "s1", 0, "1.00", "GBP", 7),
        ];
        let mut c = InMemoryProjection::default();
        for chunk in events.chunks(3) {
            c.apply(chunk);
        }
        let offers: Vec<&Offer> = c.offers().collect();
        let summaries: Vec<&ProductSummary> = c.summaries().collect();
        let json = serde_json::to_vec(&(offers, summaries)).expect("serializable");
        hex::encode(Sha256::digest(json))
    }

    #[test]
    fn rules_fingerprint_changes_only_with_the_rules_version() {
        // (version, fingerprint of the rules under that version): add a line when you raise
        // PROJECTION_RULES_VERSION; never change a line.
        let known = [(
            1,
            "be495bbb227b46f57b706fd6966d3f6491fd2e97d9422a375de7654ebbf9a7e5",
        )];
        let (version, fingerprint) = known[known.len() - 1];
        assert_eq!(
            (PROJECTION_RULES_VERSION, rules_fingerprint().as_str()),
            (version, fingerprint),
            "the projection's output changed: if the rules changed on purpose, raise \
             PROJECTION_RULES_VERSION (so rebuilds ignore snapshots taken under the old rules) \
             and add its fingerprint to `known`"
        );
    }

    proptest! {
        /// Any permutation, duplication and batching of a set of updates gives the offers that
        /// "newest occurred_at per product and supplier" gives.
        #[test]
        fn order_duplication_and_batching_never_change_the_offers(
            events in arb_events(),
            order in prop::collection::vec(any::<prop::sample::Index>(), 1..80),
            batch in 1..7usize,
        ) {
            let delivered: Vec<EventEnvelope> = order.iter().map(|i| events[i.index(events.len())].clone()).chain(events.clone()).collect();
            let mut c = InMemoryProjection::default();
            for chunk in delivered.chunks(batch) {
                c.apply(chunk);
            }
            let mut expected: BTreeMap<(ProductId, SupplierId), &EventEnvelope> = BTreeMap::new();
            for e in &events {
                let k = (e.event.product_id.clone(), e.event.supplier_id.clone());
                let newer = expected.get(&k).is_none_or(|cur| (e.event.occurred_at, &e.update_key) > (cur.event.occurred_at, &cur.update_key));
                if newer { expected.insert(k, e); }
            }
            let got: Vec<(ProductId, SupplierId, i64, DateTime<Utc>)> = c.offers().map(|o| (o.product_id.clone(), o.supplier_id.clone(), o.quantity.get(), o.occurred_at)).collect();
            let want: Vec<(ProductId, SupplierId, i64, DateTime<Utc>)> = expected.iter().map(|((p, s), e)| (p.clone(), s.clone(), e.event.quantity.get(), e.event.occurred_at)).collect();
            prop_assert_eq!(got, want);
        }
    }
}

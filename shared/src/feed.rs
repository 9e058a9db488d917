//! Synthetic supplier feeds: realistic, deterministic streams of inventory records for the
//! demo, load tests and the supplier CLI's `generate`, plus the end state such a feed must
//! leave behind, computed with the domain's own rules ([`parse_record`], [`InMemoryProjection`]).
//!
//! A feed has Zipf-distributed product popularity, several suppliers (one quoting in EUR),
//! records in both the full and the brief's short form, and on request duplicates (a record
//! sent again byte for byte), out-of-order updates (older than one already sent for the same
//! product and supplier) and bad records of several kinds. The same [`FeedSpec`] always gives
//! the same records. The default spec starts a day before the process started (on the hour,
//! the same for every feed of one process), since the pipeline refuses updates more than
//! [`crate::domain::update::DEDUP_WINDOW`] older than their arrival.

use crate::domain::event::EventEnvelope;
use crate::domain::projection::InMemoryProjection;
use crate::domain::rejection::RejectionCode;
use crate::domain::update::{SourcePosition, parse_record};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use rand_distr::{Distribution as _, Zipf};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

/// Where a default feed starts: a day before this process first asked, on the hour. A feed of
/// up to about 1.7 million updates (50 ms apart) then ends before now, and all its updates lie
/// well inside the dedup window of records sent today.
static DEFAULT_START: LazyLock<DateTime<Utc>> = LazyLock::new(|| {
    let day_ago = (Utc::now() - Duration::days(1)).timestamp();
    DateTime::from_timestamp(day_ago - day_ago.rem_euclid(3600), 0).unwrap_or_default()
});

/// What feed to generate. `Default` gives the demo's feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedSpec {
    pub seed: u64,
    /// Records in the feed, duplicates and bad ones included.
    pub updates: usize,
    pub products: usize,
    pub suppliers: usize,
    /// Zipf exponent of product popularity (1.0 is classic Zipf; higher is more skewed; 0 is
    /// uniform, and so is a negative or non-finite value).
    pub zipf_exponent: f64,
    /// Share of records that repeat an earlier record byte for byte.
    pub duplicate_share: f64,
    /// Share of records older than the last update of the same product and supplier.
    pub out_of_order_share: f64,
    /// Share of records that break the data contract.
    pub bad_share: f64,
    /// `occurred_at` of the first update; later ones follow at about 50 ms apart.
    pub start: DateTime<Utc>,
    /// Prefix of product ids (`{prefix}{n:06}`), so parallel runs can keep apart.
    pub product_prefix: String,
}

impl Default for FeedSpec {
    fn default() -> Self {
        Self {
            seed: 42,
            updates: 20_000,
            products: 2_000,
            suppliers: 5,
            zipf_exponent: 1.1,
            duplicate_share: 0.02,
            out_of_order_share: 0.05,
            bad_share: 0.005,
            start: *DEFAULT_START,
            product_prefix: "SKU-".into(),
        }
    }
}

/// Why a record is in the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// A new update, newer than any before it for its product and supplier.
    Update,
    /// An earlier record sent again.
    Duplicate,
    /// An update older than one already sent for its product and supplier: it must lose.
    OutOfOrder,
    /// A record that breaks the data contract, and the code it must be rejected with.
    Bad(RejectionCode),
}

/// One record to put on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
    pub kind: RecordKind,
}

/// Generates the feed `spec` describes.
pub fn generate(spec: &FeedSpec) -> Vec<FeedRecord> {
    Generator::new(spec).run()
}

/// Writes records as JSON lines (bad records that are not UTF-8 are written lossily).
pub fn to_json_lines(records: &[FeedRecord]) -> String {
    let mut out = String::with_capacity(records.len() * 200);
    for r in records {
        out.push_str(&String::from_utf8_lossy(&r.data).replace('\n', " "));
        out.push('\n');
    }
    out
}

/// What the pipeline must end with after processing a feed (in any order, any number of times).
#[derive(Debug, Clone, Default)]
pub struct Expectation {
    /// The projection: offers and summaries (versions aside, which the store assigns).
    pub projection: InMemoryProjection,
    /// Distinct valid updates, i.e. the events the store must hold.
    pub distinct_updates: usize,
    /// Records that must be quarantined, by reason.
    pub rejected: BTreeMap<RejectionCode, usize>,
}

/// Runs every record through the domain's parser and projection. `arrived_at` stands in for
/// the stream's arrival time (feeds always carry `occurred_at`, so it only matters for the
/// future-timestamp check).
pub fn expected_state(records: &[FeedRecord], arrived_at: DateTime<Utc>) -> Expectation {
    let mut exp = Expectation::default();
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let source = SourcePosition {
            shard_id: "feed".into(),
            sequence_number: i.to_string(),
            arrived_at,
        };
        match parse_record(&r.data, &source) {
            Ok(update) => {
                if seen.insert(update.update_key.clone()) {
                    let seq = i64::try_from(events.len()).unwrap_or(i64::MAX) + 1;
                    events.push(EventEnvelope {
                        update_key: update.update_key.clone(),
                        seq,
                        event: (&update).into(),
                    });
                }
            }
            Err(reason) => *exp.rejected.entry(reason.code).or_default() += 1,
        }
    }
    exp.distinct_updates = events.len();
    for batch in events.chunks(1_000) {
        exp.projection.apply(batch);
    }
    exp
}

/// Uniform in [0, n); 0 when n is 0.
fn below(rng: &mut StdRng, n: usize) -> usize {
    rng.random_range(0..n.max(1))
}

const SUPPLIER_NAMES: &[&str] = &[
    "acme",
    "globex",
    "initech",
    "umbrella",
    "stark",
    "wayne",
    "tyrell",
    "cyberdyne",
];

/// The last update sent per product and supplier, to build out-of-order ones from.
#[derive(Debug, Clone)]
struct Last {
    occurred_at: DateTime<Utc>,
}

struct Generator<'a> {
    spec: &'a FeedSpec,
    /// Seeded from the spec: the same spec draws the same numbers.
    rng: StdRng,
    /// Product ranks 1..=products.
    popularity: Zipf<f64>,
    products: usize,
    suppliers: Vec<String>,
    update_counters: Vec<u64>,
    last: HashMap<(usize, usize), Last>,
    /// Recent valid records, for duplicates.
    recent: Vec<FeedRecord>,
}

impl<'a> Generator<'a> {
    fn new(spec: &'a FeedSpec) -> Self {
        let products = spec.products.max(1);
        let exponent = if spec.zipf_exponent.is_finite() && spec.zipf_exponent > 0.0 {
            spec.zipf_exponent
        } else {
            0.0
        };
        // At least one product and a finite exponent of at least 0: the only errors.
        let popularity = Zipf::new(products as f64, exponent)
            .unwrap_or_else(|e| unreachable!("Zipf({products}, {exponent}): {e}"));
        let suppliers = (0..spec.suppliers.max(1))
            .map(|i| match SUPPLIER_NAMES.get(i) {
                Some(name) => (*name).to_owned(),
                None => format!("supplier-{i:03}"),
            })
            .collect::<Vec<_>>();
        Self {
            spec,
            rng: StdRng::seed_from_u64(spec.seed),
            popularity,
            products,
            update_counters: vec![0; suppliers.len()],
            suppliers,
            last: HashMap::new(),
            recent: Vec::new(),
        }
    }

    fn run(mut self) -> Vec<FeedRecord> {
        let mut out = Vec::with_capacity(self.spec.updates);
        for i in 0..self.spec.updates {
            let now =
                self.spec.start + Duration::milliseconds(i64::try_from(i).unwrap_or(i64::MAX) * 50);
            let roll: f64 = self.rng.random();
            let record = if roll < self.spec.bad_share {
                self.bad()
            } else if roll < self.spec.bad_share + self.spec.duplicate_share
                && !self.recent.is_empty()
            {
                let r = self.recent[below(&mut self.rng, self.recent.len())].clone();
                FeedRecord {
                    kind: RecordKind::Duplicate,
                    ..r
                }
            } else {
                let out_of_order = roll
                    < self.spec.bad_share
                        + self.spec.duplicate_share
                        + self.spec.out_of_order_share;
                self.update(now, out_of_order)
            };
            out.push(record);
        }
        out
    }

    /// A product index, 0 the most popular.
    fn product(&mut self) -> usize {
        let rank = self.popularity.sample(&mut self.rng) as usize;
        rank.clamp(1, self.products) - 1
    }

    fn product_id(&self, p: usize) -> String {
        format!("{}{p:06}", self.spec.product_prefix)
    }

    /// Each product is carried by a fixed subset of the suppliers (at least one).
    fn supplier_for(&mut self, product: usize) -> usize {
        let n = self.suppliers.len();
        let carried = 1 + (product.wrapping_mul(7919) % n);
        let first = product % n;
        (first + below(&mut self.rng, carried)) % n
    }

    fn update(&mut self, now: DateTime<Utc>, out_of_order: bool) -> FeedRecord {
        let product = self.product();
        let supplier = self.supplier_for(product);
        let previous = self.last.get(&(product, supplier)).cloned();
        let (occurred_at, kind) = match previous {
            Some(prev) if out_of_order => {
                let back = Duration::milliseconds(
                    1 + i64::try_from(below(&mut self.rng, 600_000)).unwrap_or(0),
                );
                (prev.occurred_at - back, RecordKind::OutOfOrder)
            }
            _ => (now, RecordKind::Update),
        };
        if kind == RecordKind::Update {
            self.last.insert((product, supplier), Last { occurred_at });
        }
        self.update_counters[supplier] += 1;
        let supplier_id = &self.suppliers[supplier];
        let update_id = format!("{supplier_id}-{:08}", self.update_counters[supplier]);
        let product_id = self.product_id(product);
        let quantity = if self.rng.random_bool(0.05) {
            0
        } else {
            below(&mut self.rng, 500)
        };
        let base_cents = 199 + (product.wrapping_mul(2_654_435_761) % 50_000);
        let cents = base_cents + supplier * 37 + below(&mut self.rng, 100);
        let price = format!("{}.{:02}", cents / 100, cents % 100);
        let at = occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let euro = supplier == 3 % self.suppliers.len() && self.suppliers.len() > 3;
        let json = if self.rng.random_bool(0.1) {
            // The brief's short form: `inventory`, a JSON number price, default currency.
            serde_json::json!({
                "product_id": product_id, "inventory": quantity, "price": serde_json::Number::from_f64(cents as f64 / 100.0),
                "supplier_id": supplier_id, "update_id": update_id, "occurred_at": at,
            })
        } else {
            serde_json::json!({
                "product_id": product_id, "quantity": quantity, "price": price,
                "currency": if euro { "EUR" } else { "USD" },
                "supplier_id": supplier_id, "update_id": update_id, "occurred_at": at,
            })
        };
        let record = FeedRecord {
            partition_key: product_id,
            data: json.to_string().into_bytes(),
            kind,
        };
        if self.recent.len() < 1_000 {
            self.recent.push(record.clone());
        } else {
            let slot = below(&mut self.rng, self.recent.len());
            self.recent[slot] = record.clone();
        }
        record
    }

    fn bad(&mut self) -> FeedRecord {
        let product = self.product();
        let pid = self.product_id(product);
        let (data, code): (Vec<u8>, RejectionCode) = match below(&mut self.rng, 8) {
            0 => (
                format!(r#"{{"product_id":"{pid}","quantity":5,"price":"#).into_bytes(),
                RejectionCode::NotJson,
            ),
            1 => (
                format!(r#"{{"product_id":"{pid}","quantity":-3,"price":"9.99"}}"#).into_bytes(),
                RejectionCode::QuantityNegative,
            ),
            2 => (
                br#"{"quantity":3,"price":"9.99"}"#.to_vec(),
                RejectionCode::ProductIdMissing,
            ),
            3 => (
                format!(r#"{{"product_id":"{pid}","quantity":1,"price":"9.99","colour":"red"}}"#)
                    .into_bytes(),
                RejectionCode::UnknownField,
            ),
            4 => (
                format!(r#"{{"product_id":"{pid}","quantity":1,"price":"9.99999"}}"#).into_bytes(),
                RejectionCode::PriceTooPrecise,
            ),
            5 => (
                format!(r#"{{"product_id":"{pid}","quantity":1,"price":"9.99","currency":"XYZ"}}"#)
                    .into_bytes(),
                RejectionCode::CurrencyUnknown,
            ),
            6 => (
                br#"{"product_id":"SKU 1","quantity":1,"price":"9.99"}"#.to_vec(),
                RejectionCode::ProductIdInvalidChars,
            ),
            _ => (vec![0xff, 0xfe, b'{', b'}'], RejectionCode::NotUtf8),
        };
        FeedRecord {
            partition_key: pid,
            data,
            kind: RecordKind::Bad(code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(updates: usize) -> FeedSpec {
        FeedSpec {
            updates,
            products: 50,
            duplicate_share: 0.05,
            out_of_order_share: 0.1,
            bad_share: 0.05,
            ..FeedSpec::default()
        }
    }

    /// When the test feeds reach the stream: a day after they start, so every update lies
    /// inside the dedup window and none in the future.
    fn arrival() -> DateTime<Utc> {
        FeedSpec::default().start + Duration::days(1)
    }

    #[test]
    fn the_same_spec_gives_the_same_feed_and_another_seed_another() {
        assert_eq!(generate(&spec(500)), generate(&spec(500)));
        assert_ne!(
            generate(&spec(500)),
            generate(&FeedSpec {
                seed: 7,
                ..spec(500)
            })
        );
    }

    #[test]
    fn a_feed_has_every_kind_of_record_and_bad_ones_fail_as_labelled() {
        let feed = generate(&spec(2_000));
        let count = |k: fn(&RecordKind) -> bool| feed.iter().filter(|r| k(&r.kind)).count();
        assert!(count(|k| *k == RecordKind::Duplicate) > 20);
        assert!(count(|k| *k == RecordKind::OutOfOrder) > 50);
        assert!(count(|k| matches!(k, RecordKind::Bad(_))) > 20);
        for r in &feed {
            let source = SourcePosition {
                shard_id: "s".into(),
                sequence_number: "1".into(),
                arrived_at: arrival(),
            };
            match (r.kind, parse_record(&r.data, &source)) {
                (RecordKind::Bad(code), Err(rejection)) => assert_eq!(code, rejection.code),
                (RecordKind::Bad(code), Ok(_)) => panic!("a bad record ({code:?}) was accepted"),
                (_, Err(rejection)) => panic!("a good record was rejected: {rejection:?}"),
                (_, Ok(_)) => {}
            }
        }
    }

    #[test]
    fn popularity_is_skewed_towards_the_first_products() {
        let feed = generate(&FeedSpec {
            bad_share: 0.0,
            duplicate_share: 0.0,
            ..spec(5_000)
        });
        let first = feed
            .iter()
            .filter(|r| r.partition_key == "SKU-000000")
            .count();
        let last = feed
            .iter()
            .filter(|r| r.partition_key == "SKU-000049")
            .count();
        assert!(first > 10 * last.max(1), "first {first}, last {last}");
    }

    #[test]
    fn out_of_order_updates_never_win_and_duplicates_add_no_event() {
        let feed = generate(&spec(3_000));
        let exp = expected_state(&feed, arrival());
        let updates = feed.iter().filter(|r| r.kind == RecordKind::Update).count();
        let out_of_order = feed
            .iter()
            .filter(|r| r.kind == RecordKind::OutOfOrder)
            .count();
        assert_eq!(exp.distinct_updates, updates + out_of_order);
        let bad = feed
            .iter()
            .filter(|r| matches!(r.kind, RecordKind::Bad(_)))
            .count();
        assert_eq!(exp.rejected.values().sum::<usize>(), bad);
        // Every offer comes from an in-order update: the newest sent for its product and supplier.
        let in_order_keys: HashSet<String> = feed
            .iter()
            .filter(|r| r.kind == RecordKind::Update)
            .filter_map(|r| {
                let source = SourcePosition {
                    shard_id: "s".into(),
                    sequence_number: "1".into(),
                    arrived_at: arrival(),
                };
                parse_record(&r.data, &source)
                    .ok()
                    .map(|u| u.update_key.to_string())
            })
            .collect();
        assert!(
            exp.projection
                .offers()
                .all(|o| in_order_keys.contains(o.update_key.as_str()))
        );
    }

    #[test]
    fn json_lines_have_one_record_per_line() {
        let feed = generate(&spec(100));
        assert_eq!(to_json_lines(&feed).lines().count(), 100);
    }
}

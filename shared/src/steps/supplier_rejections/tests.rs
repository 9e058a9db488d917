use super::*;
use crate::domain::rejection::Rejection;
use crate::testing::{MemoryQuarantine, MemoryRejectionStore};

fn accounts() -> SupplierAccounts {
    SupplierAccounts::parse("acme=111111111111, globex=222222222222,initech=111111111111")
        .expect("mapping")
}

fn record(seq: u32, raw: &[u8], second: u32) -> QuarantinedRecord {
    QuarantinedRecord {
        stream: "inventory-updates-test".into(),
        shard_id: "shardId-000000000000".into(),
        sequence_number: format!("{seq:05}"),
        partition_key: "p-1".into(),
        arrived_at: DateTime::from_timestamp(1_780_000_000 + i64::from(second), 0).expect("time"),
        reason: Rejection::new(RejectionCode::QuantityNegative, "quantity must be >= 0"),
        raw: Some(raw.to_vec()),
        payload_ref: None,
    }
}

fn sequence_numbers(quarantine: &MemoryQuarantine) -> Vec<String> {
    quarantine
        .kept()
        .into_iter()
        .map(|r| r.sequence_number)
        .collect()
}

#[test]
fn the_mapping_names_each_supplier_once_with_a_twelve_digit_account() {
    let m = accounts();
    let acme = SupplierId::parse("acme").expect("id");
    assert_eq!(
        m.account_of(&acme).map(AccountId::as_str),
        Some("111111111111")
    );
    assert_eq!(m.accounts().len(), 2);
    assert!(SupplierAccounts::parse("  ").expect("empty").is_empty());

    for (text, says) in [
        ("acme", "is not supplier=account"),
        ("acme=1111", "12-digit"),
        ("a b=111111111111", "supplier_id must be"),
        ("acme=111111111111,acme=222222222222", "mapped twice"),
    ] {
        let e = SupplierAccounts::parse(text).expect_err(text);
        assert!(e.contains(says), "{text}: {e}");
    }
}

#[test]
fn each_mapped_supplier_gets_its_own_records_and_the_rest_stay_with_operators() {
    let records = [
        record(
            1,
            br#"{"product_id":"p","quantity":-1,"price":1,"supplier_id":"acme"}"#,
            0,
        ),
        record(
            2,
            br#"{"product_id":"p","quantity":-1,"price":1,"supplier_id":"globex"}"#,
            1,
        ),
        record(3, br#"{"supplier_id":"acme","colour":"red"}"#, 2),
        record(4, br#"{"product_id":"p","quantity":-1,"price":1}"#, 3),
        record(
            5,
            br#"{"product_id":"p","quantity":-1,"price":1,"supplier_id":"hooli"}"#,
            4,
        ),
        record(6, b"not json", 5),
        record(7, b"{\"supplier_id\":\"globex\",\"x\":\"\xff\"}", 6),
    ];

    let batches = for_suppliers(&records, &accounts());

    let seen: Vec<(&str, &str, Vec<&str>)> = batches
        .iter()
        .map(|b| {
            (
                b.supplier.as_str(),
                b.account.as_str(),
                b.notices
                    .iter()
                    .map(|n| n.sequence_number.as_str())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("acme", "111111111111", vec!["00001", "00003"]),
            ("globex", "222222222222", vec!["00002"]),
        ]
    );
    for b in &batches {
        let prefix = RejectionKey::supplier_prefix(b.account.as_str(), b.supplier.as_str());
        assert!(b.key.as_str().starts_with(&prefix), "{}", b.key);
        assert!(
            b.notices
                .iter()
                .all(|n| n.supplier_id == b.supplier.as_str())
        );
    }
    // Keyed by the last arrival in the batch, so listing from a time never skips a record.
    assert!(
        batches[0].key.as_str().contains("T202642.000000Z"),
        "{}",
        batches[0].key
    );
}

#[test]
fn a_notice_carries_the_position_the_reason_and_the_record_as_sent() {
    let mut odd = record(9, b"\xff\xfe", 0);
    odd.raw = Some(b"\xff{\"supplier_id\":\"acme\"}".to_vec());
    let text = record(8, br#"{"supplier_id":"acme","quantity":-1}"#, 1);
    let accounts = accounts();

    let batches = for_suppliers(&[text], &accounts);
    let batch = &batches[0];
    let body = batch.body().expect("body");
    let lines: Vec<RejectionNotice> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines, batch.notices);
    let n = &lines[0];
    assert_eq!(
        (n.stream.as_str(), n.shard_id.as_str()),
        ("inventory-updates-test", "shardId-000000000000")
    );
    assert_eq!(
        (n.sequence_number.as_str(), n.partition_key.as_str()),
        ("00008", "p-1")
    );
    assert_eq!(n.code, RejectionCode::QuantityNegative);
    assert_eq!(n.message, "quantity must be >= 0");
    assert_eq!(
        n.raw.as_deref(),
        Some(r#"{"supplier_id":"acme","quantity":-1}"#)
    );
    assert_eq!(n.raw_base64, None);
    let line = String::from_utf8(body).expect("utf8");
    assert!(line.contains(r#""code":"quantity_negative""#), "{line}");

    // Bytes that are not UTF-8 cannot be read far enough to name a supplier.
    assert!(for_suppliers(&[odd], &accounts).is_empty());
}

#[tokio::test]
async fn the_quarantine_keeps_every_record_and_suppliers_get_copies_of_their_own() {
    let (quarantine, store) = (MemoryQuarantine::default(), MemoryRejectionStore::default());
    let accounts = accounts();
    let q = SupplierVisibleQuarantine {
        quarantine: &quarantine,
        store: &store,
        accounts: &accounts,
    };
    let records = [
        record(1, br#"{"supplier_id":"acme","quantity":-1}"#, 0),
        record(2, br#"{"quantity":-1}"#, 1),
    ];

    assert_eq!(q.quarantine(&records).await.expect("kept"), 2);

    assert_eq!(sequence_numbers(&quarantine), ["00001", "00002"]);
    let objects = store.objects();
    assert_eq!(objects.len(), 1);
    assert!(
        objects[0].0.starts_with("rejections/111111111111/acme/"),
        "{}",
        objects[0].0
    );
}

#[tokio::test]
async fn a_store_that_is_down_fails_the_call_so_the_task_is_retried() {
    let (quarantine, store) = (
        MemoryQuarantine::default(),
        MemoryRejectionStore::unavailable(),
    );
    let accounts = accounts();
    let q = SupplierVisibleQuarantine {
        quarantine: &quarantine,
        store: &store,
        accounts: &accounts,
    };

    let e = q
        .quarantine(&[record(1, br#"{"supplier_id":"acme"}"#, 0)])
        .await
        .expect_err("store down");

    assert!(e.is_transient());
    assert_eq!(quarantine.kept().len(), 1, "quarantined first");
}

/// A record rejected for the pipeline's reasons is sound: the supplier has nothing to fix, so
/// it is not in their view (it is in the quarantine, and a replay sends it again).
#[test]
fn a_rejection_that_is_the_pipelines_doing_is_not_shown_to_the_supplier() {
    let mut late = record(
        1,
        br#"{"product_id":"p","quantity":1,"price":1,"supplier_id":"acme"}"#,
        0,
    );
    late.reason = Rejection::new(RejectionCode::ArrivedTooLongAgo, "validated 30 days late");
    let theirs = record(
        2,
        br#"{"product_id":"p","quantity":-1,"price":1,"supplier_id":"acme"}"#,
        1,
    );
    let batches = for_suppliers(&[late, theirs], &accounts());
    assert_eq!(batches.len(), 1);
    assert_eq!(
        batches[0].notices.len(),
        1,
        "only the record acme has to fix"
    );
}

#[test]
fn a_record_that_is_not_text_would_be_handed_over_in_base64() {
    let acme = SupplierId::parse("acme").expect("id");

    let binary = notice(&record(1, b"{\"x\":\"\xff\"}", 0), &acme);
    let text = notice(&record(2, br#"{"supplier_id":"acme"}"#, 0), &acme);

    assert_eq!(binary.raw, None);
    assert_eq!(binary.raw_base64.as_deref(), Some("eyJ4Ijoi/yJ9"));
    assert_eq!(text.raw.as_deref(), Some(r#"{"supplier_id":"acme"}"#));
    assert_eq!(text.raw_base64, None);
}

#[test]
fn the_supplier_visible_quarantine_shows_its_mapping_and_not_its_stores() {
    let quarantine = MemoryQuarantine::default();
    let store = MemoryRejectionStore::default();
    let accounts = accounts();
    let visible = SupplierVisibleQuarantine {
        quarantine: &quarantine,
        store: &store,
        accounts: &accounts,
    };

    let shown = format!("{visible:?}");

    assert!(
        shown.starts_with("SupplierVisibleQuarantine { accounts: "),
        "{shown}"
    );
    assert!(
        shown.contains("111111111111") && shown.ends_with(", .. }"),
        "{shown}"
    );
}

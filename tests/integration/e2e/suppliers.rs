//! Each supplier's own rejections, end to end on the local stack: records of two mapped
//! suppliers, one that names no supplier and one of a supplier nobody mapped go through the
//! pipeline, and `inventory rejections` reads the rejections bucket exactly as a supplier's
//! account would (its own account's prefix). The local stack enforces no IAM: that an account
//! can read only its own prefix is checked on the template's policies
//! (infra/checks/test_supplier_rejections.py); here, that each prefix holds only its own.

use super::harness::{SERIAL, Stack, local_stack};
use super::operator::{Cli, succeeded};
use anyhow::{Context as _, Result};
use chrono::{SecondsFormat, TimeDelta, Utc};
use inventory::steps::supplier_rejections::{RejectionNotice, SupplierAccounts};
use inventory::{RejectionKey, SupplierId};
use serde_json::json;
use std::collections::BTreeSet;

/// A supplier's view through the CLI (`inventory rejections --json`).
async fn view(
    cli: &Cli,
    supplier: &str,
    account: Option<&str>,
    since: &str,
) -> Result<Vec<RejectionNotice>> {
    let mut args = vec!["--supplier", supplier, "--since", since, "--json"];
    if let Some(a) = account {
        args.extend(["--account", a]);
    }
    let out = cli.run("rejections", &args).await?;
    succeeded(&out);
    String::from_utf8(out.stdout)?
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not a rejection: {l}")))
        .collect()
}

/// Every (shard, sequence number) in the objects under `prefix`.
async fn positions_under(st: &Stack, prefix: &str) -> Result<BTreeSet<(String, String)>> {
    let bucket = st.o("RejectionsBucketName");
    let listed = st
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await?;
    let mut out = BTreeSet::new();
    for object in listed.contents() {
        let key = object.key().context("no key")?;
        let body = st.s3.get_object().bucket(bucket).key(key).send().await?;
        let bytes = body.body.collect().await?.into_bytes();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let n: RejectionNotice = serde_json::from_slice(line)?;
            out.insert((n.shard_id, n.sequence_number));
        }
    }
    Ok(out)
}

#[tokio::test]
async fn each_supplier_sees_its_own_rejections_and_none_of_anothers() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) = local_stack("the local stack's supplier mapping and database").await else {
        return Ok(());
    };
    let accounts =
        SupplierAccounts::parse(st.o("LocalSupplierAccounts")).map_err(anyhow::Error::msg)?;
    let account = |s: &str| -> Result<String> {
        let id = SupplierId::parse(s).map_err(|e| anyhow::anyhow!(e.message))?;
        Ok(accounts.account_of(&id).context("not mapped")?.to_string())
    };
    let (a, b) = (account("supplier-a")?, account("supplier-b")?);
    let cli = Cli::new()?;
    let since = (Utc::now() - TimeDelta::seconds(1)).to_rfc3339_opts(SecondsFormat::Micros, true);

    // Arrange: two rejections of supplier-a, one of supplier-b, one naming no supplier, one of
    // a supplier nobody mapped, and a valid update of supplier-a.
    let p = |n| st.product(n);
    let negative = |n: u32, supplier: Option<&str>| {
        let mut r = json!({"product_id": p(n), "quantity": -1, "price": 1});
        if let Some(s) = supplier {
            r["supplier_id"] = json!(s);
        }
        r.to_string().into_bytes()
    };
    let records = vec![
        (p(0), negative(0, Some("supplier-a"))),
        (p(1), negative(1, Some("supplier-b"))),
        (p(2), json!({"product_id": p(2), "quantity": 1, "price": 1, "supplier_id": "supplier-a", "colour": "red"}).to_string().into_bytes()),
        (p(3), negative(3, None)),
        (p(4), negative(4, Some("supplier-z"))),
        (p(5), st.update(&p(5), "supplier-a", 5)),
    ];
    let before = st.poller()?.1;
    let at = st.put_records(&records).await?;
    st.until(
        "the poller to take the records",
        async || st.poller(),
        |(read, done, in_flight)| *done >= before + 6 && done == read && *in_flight == 0,
    )
    .await?;
    st.wait_finished(1).await?;
    let quarantined = st
        .count("SELECT count(*) FROM quarantined_records WHERE partition_key LIKE '{nonce}-%'")
        .await?;
    assert_eq!(quarantined, 5, "every rejection is in the quarantine");

    // Act: each supplier's view, as its own account reads it.
    let a_view = view(&cli, "supplier-a", Some(&a), &since).await?;
    let b_view = view(&cli, "supplier-b", Some(&b), &since).await?;

    // Assert: supplier-a sees its two rejections, with position, reason and the record as sent.
    let ours = |v: &[RejectionNotice]| -> Vec<(String, String, String)> {
        v.iter()
            .filter(|n| n.partition_key.starts_with(&st.nonce))
            .map(|n| {
                (
                    n.shard_id.clone(),
                    n.sequence_number.clone(),
                    n.code.as_str().to_owned(),
                )
            })
            .collect()
    };
    // Records 0 and 2 went to different shards in one put, so they may carry the same arrival
    // time; the CLI then orders by shard. Compare as sets and check the order separately.
    let expect = |i: usize, code: &str| (at[i].0.clone(), at[i].1.clone(), code.to_owned());
    let set = |v: Vec<(String, String, String)>| v.into_iter().collect::<BTreeSet<_>>();
    assert_eq!(
        set(ours(&a_view)),
        set(vec![
            expect(0, "quantity_negative"),
            expect(2, "unknown_field")
        ])
    );
    assert_eq!(ours(&b_view), [expect(1, "quantity_negative")]);
    assert!(
        a_view
            .windows(2)
            .all(|w| (w[0].arrived_at, &w[0].shard_id) <= (w[1].arrived_at, &w[1].shard_id)),
        "oldest arrival first, then by shard: {a_view:?}"
    );
    let first = a_view
        .iter()
        // Sequence numbers are per shard: records 0 and 2 may carry the same one.
        .find(|n| (&n.shard_id, &n.sequence_number) == (&at[0].0, &at[0].1))
        .context("a's first")?;
    assert_eq!(
        first.raw.as_deref().map(str::as_bytes),
        Some(&records[0].1[..])
    );
    assert_eq!(first.stream, st.o("StreamName"));
    assert!(first.message.contains("quantity"), "{}", first.message);
    assert!(a_view.iter().all(|n| n.supplier_id == "supplier-a"));
    assert!(b_view.iter().all(|n| n.supplier_id == "supplier-b"));

    // Each account's prefix holds only its own suppliers' records: b's record is nowhere under
    // a's account, and the records naming no supplier or an unmapped one are in no prefix.
    let under_a = positions_under(&st, &format!("{}{a}/", RejectionKey::PREFIX)).await?;
    let under_b = positions_under(&st, &format!("{}{b}/", RejectionKey::PREFIX)).await?;
    let everywhere = positions_under(&st, RejectionKey::PREFIX).await?;
    let pos = |i: usize| at[i].clone();
    assert!(under_a.contains(&pos(0)) && under_a.contains(&pos(2)));
    assert!(
        !under_a.contains(&pos(1)),
        "supplier-b's rejection under supplier-a's account"
    );
    assert!(under_b.contains(&pos(1)) && !under_b.contains(&pos(0)) && !under_b.contains(&pos(2)));
    for i in [3, 4, 5] {
        assert!(
            !everywhere.contains(&pos(i)),
            "record {i} must stay with operators only"
        );
    }

    // Asking with the other account finds nothing of ours; without --account (an operator's
    // listing) the view is the same; and a later --since leaves these out.
    assert!(ours(&view(&cli, "supplier-b", Some(&a), &since).await?).is_empty());
    assert!(ours(&view(&cli, "supplier-a", Some(&b), &since).await?).is_empty());
    assert_eq!(
        ours(&view(&cli, "supplier-a", None, &since).await?),
        ours(&a_view)
    );
    let later = (Utc::now() + TimeDelta::minutes(1)).to_rfc3339_opts(SecondsFormat::Micros, true);
    assert!(ours(&view(&cli, "supplier-a", Some(&a), &later).await?).is_empty());
    Ok(())
}

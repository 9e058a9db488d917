//! `inventory push` against moto's Kinesis, through a proxy that fails chosen entries.

use super::support::*;
use anyhow::Result;
use std::collections::BTreeMap;

fn temp_dir(purpose: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(integration_tests::moto::unique_name(purpose));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Each product's update numbers in the order the stream holds them.
fn per_product(reads: &[Read]) -> BTreeMap<String, Vec<usize>> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for r in reads {
        out.entry(r.partition_key.clone())
            .or_default()
            .push(update_number(&r.data));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_entries_are_retried_alone_until_every_record_is_on_the_stream_once_in_product_order()
-> Result<()> {
    // Arrange: 1,200 updates over 7 products (so one product has many in a row), 3 shards,
    // and a proxy that fails every odd entry of each request twice before letting it through.
    let moto = MotoServer::shared()?;
    let stream = create_stream(moto, "retry", 3).await?;
    let proxy = FaultProxy::start(
        moto.endpoint_url(),
        FaultPlan {
            fail_times: 2,
            ..Default::default()
        },
    )
    .await?;
    let feed: String = (0..1_200)
        .map(|n| update(&format!("SKU-{}", n % 7 + (n % 3) * 7), n) + "\n")
        .collect();

    // Act
    let out = inventory(
        &[
            "push",
            "--stream",
            &stream,
            "--endpoint-url",
            &proxy.url,
            "--base-delay-ms",
            "5",
            "--max-delay-ms",
            "50",
            "--progress",
            "lines",
            "--concurrency",
            "4",
        ],
        Some(feed.as_bytes()),
    )
    .await?;

    // Assert: exit 0, every record exactly once, each product's in feed order, and the proxy
    // really failed entries that were then sent again.
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let reads = read_stream(moto, &stream).await?;
    assert_eq!(reads.len(), 1_200, "every record once");
    let mut numbers: Vec<usize> = reads.iter().map(|r| update_number(&r.data)).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..1_200).collect::<Vec<_>>());
    for (product, got) in per_product(&reads) {
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(got, sorted, "{product}'s updates out of feed order");
    }
    let failed = proxy
        .stats
        .entries_failed
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(failed > 0, "the proxy failed no entry");
    let err = stderr(&out);
    assert!(err.contains(&format!("{failed} entries retried")), "{err}");
    assert!(err.contains("progress sent=1200 total=1200"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_records_per_request_a_product_still_ends_in_feed_order_after_retries()
-> Result<()> {
    // Arrange: one hot product and a cold one, requests of up to 50 records of a product, and
    // every odd entry failed once.
    let moto = MotoServer::shared()?;
    let stream = create_stream(moto, "perproduct", 2).await?;
    let proxy = FaultProxy::start(
        moto.endpoint_url(),
        FaultPlan {
            fail_times: 1,
            ..Default::default()
        },
    )
    .await?;
    let feed: String = (0..600)
        .map(|n| update(if n % 5 == 0 { "SKU-COLD" } else { "SKU-HOT" }, n) + "\n")
        .collect();

    let out = inventory(
        &[
            "push",
            "--stream",
            &stream,
            "--endpoint-url",
            &proxy.url,
            "--per-product",
            "50",
            "--base-delay-ms",
            "2",
        ],
        Some(feed.as_bytes()),
    )
    .await?;

    // Assert: every record is there; keeping each record's last copy, every product's records
    // are in feed order; and records were in fact sent again to restore it.
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("sent again behind a failed earlier record"),
        "{err}"
    );
    for (product, got) in per_product(&read_stream(moto, &stream).await?) {
        let mut last_copies: Vec<usize> = Vec::new();
        for n in got.iter().rev() {
            if !last_copies.contains(n) {
                last_copies.push(*n);
            }
        }
        last_copies.reverse();
        let mut sorted = last_copies.clone();
        sorted.sort_unstable();
        assert_eq!(last_copies, sorted, "{product}");
        let want = (0..600)
            .filter(|n| (n % 5 == 0) == (product == "SKU-COLD"))
            .count();
        assert_eq!(sorted.len(), want, "{product} has every record");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_keeps_failing_is_reported_with_its_products_later_records_and_exit_code_3()
-> Result<()> {
    let moto = MotoServer::shared()?;
    let stream = create_stream(moto, "doomed", 1).await?;
    let proxy = FaultProxy::start(
        moto.endpoint_url(),
        FaultPlan {
            always_fail_containing: Some("u-000003".into()),
            ..Default::default()
        },
    )
    .await?;
    let dir = temp_dir("doomed")?;
    let feed: String = (0..10)
        .map(|n| update(if n % 2 == 1 { "SKU-A" } else { "SKU-B" }, n) + "\n")
        .collect();
    let file = write(&dir, "feed.jsonl", &feed)?;
    let unsent = dir.join("unsent.jsonl");

    let out = inventory(
        &[
            "push",
            &file,
            "--stream",
            &stream,
            "--endpoint-url",
            &proxy.url,
            "--max-attempts",
            "3",
            "--base-delay-ms",
            "1",
            "--unsent-out",
            &unsent.to_string_lossy(),
        ],
        None,
    )
    .await?;

    // SKU-A's update 3 never goes through: it and SKU-A's later updates (5, 7, 9) are held
    // back and listed; everything else is on the stream.
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{file}:4: not sent: still failing after 3 attempts"
        )),
        "{err}"
    );
    for line in [6, 8, 10] {
        assert!(
            err.contains(&format!("{file}:{line}: not sent: held back")),
            "{err}"
        );
    }
    let on_stream = per_product(&read_stream(moto, &stream).await?);
    assert_eq!(on_stream["SKU-A"], vec![1]);
    assert_eq!(on_stream["SKU-B"], vec![0, 2, 4, 6, 8]);
    let unsent_lines: Vec<usize> = std::fs::read_to_string(&unsent)?
        .lines()
        .map(|l| update_number(l.as_bytes()))
        .collect();
    assert_eq!(unsent_lines, vec![3, 5, 7, 9]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_never_exceed_500_records_or_5_mib() -> Result<()> {
    let moto = MotoServer::shared()?;
    let stream = create_stream(moto, "bounds", 2).await?;
    let proxy = FaultProxy::start(moto.endpoint_url(), FaultPlan::default()).await?;
    // 1,100 small records of distinct products, then 700 near the 16 KiB record limit
    // (~11 MiB in all, padded with JSON whitespace) to force the byte bound.
    let mut feed: String = (0..1_100)
        .map(|n| update(&format!("P{n}"), n) + "\n")
        .collect();
    let pad = " ".repeat(15_000);
    for n in 0..700 {
        feed.push_str(&format!(
            r#"{{"product_id":"BIG{n}",{pad}"quantity":1,"price":"1","update_id":"b{n}"}}"#
        ));
        feed.push('\n');
    }

    let out = inventory(
        &[
            "push",
            "--stream",
            &stream,
            "--endpoint-url",
            &proxy.url,
            "--concurrency",
            "1",
        ],
        Some(feed.as_bytes()),
    )
    .await?;

    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sizes = proxy.stats.request_sizes.lock().expect("lock").clone();
    let bytes = proxy.stats.request_bytes.lock().expect("lock").clone();
    assert_eq!(sizes.iter().sum::<usize>(), 1_800);
    assert!(sizes.iter().all(|n| *n <= 500), "{sizes:?}");
    assert!(sizes.contains(&500), "full requests are used: {sizes:?}");
    assert!(bytes.iter().all(|b| *b <= 5 * 1024 * 1024), "{bytes:?}");
    assert!(
        bytes.iter().any(|b| *b > 4 * 1024 * 1024),
        "the byte bound was reached: {bytes:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_lists_bad_lines_with_the_pipelines_codes_and_sends_nothing() -> Result<()> {
    let moto = MotoServer::shared()?;
    let stream = create_stream(moto, "strict", 1).await?;
    let dir = temp_dir("strict")?;
    let file = write(
        &dir,
        "feed.jsonl",
        &format!(
            "{}\n{{\"product_id\":\"SKU-1\",\"quantity\":-1,\"price\":\"1\"}}\n{}\n{{\"product_id\":\"SKU-1\",\"quantity\":1,\"price\":\"1\",\"currency\":\"XYZ\"}}\n",
            update("SKU-1", 1),
            update("SKU-2", 2)
        ),
    )?;

    let out = inventory(
        &[
            "push",
            &file,
            "--stream",
            &stream,
            "--endpoint-url",
            moto.endpoint_url(),
        ],
        None,
    )
    .await?;

    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{file}:2: quantity_negative: ")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:4: currency_unknown: ")),
        "{err}"
    );
    assert!(
        !err.contains(&format!("{file}:1:")) && !err.contains(&format!("{file}:3:")),
        "{err}"
    );
    assert!(read_stream(moto, &stream).await?.is_empty(), "nothing sent");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_invalid_sends_the_valid_csv_rows_and_exits_5() -> Result<()> {
    let moto = MotoServer::shared()?;
    let stream = create_stream(moto, "skip", 1).await?;
    let dir = temp_dir("skip")?;
    let file = write(
        &dir,
        "feed.csv",
        "product_id,quantity,price,currency,update_id\nSKU-1,3,9.99,EUR,a\nSKU-2,,1.00,USD,b\nSKU-3,1,2.50,USD,c\nSKU-4,1\n",
    )?;

    let out = inventory(
        &[
            "push",
            &file,
            "--skip-invalid",
            "--stream",
            &stream,
            "--endpoint-url",
            moto.endpoint_url(),
            "--concurrency",
            "1",
        ],
        None,
    )
    .await?;

    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{file}:3: quantity_missing: ")),
        "{err}"
    );
    assert!(err.contains(&format!("{file}:5: csv_malformed: ")), "{err}");
    let keys: Vec<String> = read_stream(moto, &stream)
        .await?
        .into_iter()
        .map(|r| r.partition_key)
        .collect();
    assert_eq!(keys, vec!["SKU-1", "SKU-3"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_validates_only_and_exit_codes_tell_usage_and_service_errors_apart() -> Result<()> {
    let moto = MotoServer::shared()?;
    let stream = create_stream(moto, "dry", 1).await?;
    let good = update("SKU-1", 1) + "\n";

    let dry = inventory(
        &["push", "--dry-run", "--stream", &stream],
        Some(good.as_bytes()),
    )
    .await?;
    let dry_bad = inventory(&["push", "--dry-run"], Some(b"{\"product_id\":1}\n")).await?;
    let no_stream = inventory(&["push"], Some(good.as_bytes())).await?;
    let bad_flag = inventory(&["push", "--no-such-flag"], None).await?;
    let missing_file = inventory(
        &["push", "/nonexistent/feed.jsonl", "--stream", &stream],
        None,
    )
    .await?;
    let no_such_stream = inventory(
        &[
            "push",
            "--stream",
            "no-such-stream",
            "--endpoint-url",
            moto.endpoint_url(),
            "--max-attempts",
            "2",
        ],
        Some(good.as_bytes()),
    )
    .await?;
    let help = inventory(&["push", "--help"], None).await?;

    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    assert!(
        read_stream(moto, &stream).await?.is_empty(),
        "a dry run sends nothing"
    );
    assert_eq!(code(&dry_bad), 2, "{}", stderr(&dry_bad));
    assert!(
        stderr(&dry_bad).contains("<stdin>:1: product_id_wrong_type: "),
        "{}",
        stderr(&dry_bad)
    );
    assert_eq!(code(&no_stream), 1, "{}", stderr(&no_stream));
    assert!(
        stderr(&no_stream).contains("--stream"),
        "{}",
        stderr(&no_stream)
    );
    assert_eq!(code(&bad_flag), 1, "{}", stderr(&bad_flag));
    assert_eq!(code(&missing_file), 1, "{}", stderr(&missing_file));
    assert_eq!(code(&no_such_stream), 4, "{}", stderr(&no_such_stream));
    assert!(
        stderr(&no_such_stream).contains("ResourceNotFound"),
        "{}",
        stderr(&no_such_stream)
    );
    assert_eq!(code(&help), 0);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Exit codes:") && help.contains("--skip-invalid"),
        "{help}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_name_and_endpoint_come_from_an_outputs_file() -> Result<()> {
    let moto = MotoServer::shared()?;
    let stream = create_stream(moto, "outputs", 1).await?;
    let dir = temp_dir("outputs")?;
    let outputs = write(
        &dir,
        "flat-outputs.json",
        &serde_json::json!({"StreamName": stream, "LocalEndpointUrl": moto.endpoint_url(), "Region": "us-east-1"}).to_string(),
    )?;
    let feed = update("SKU-9", 1) + "\n";

    let out = inventory(&["push", "--outputs", &outputs], Some(feed.as_bytes())).await?;

    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(read_stream(moto, &stream).await?.len(), 1);
    Ok(())
}

//! The Python producer example (`examples/producer/producer.py`, the README's quick-start for
//! suppliers outside Rust) against the local stack: run with the project venv's Python (boto3
//! from `tests/requirements.txt`), on a feed of this test's products, its records go through
//! the whole pipeline into the projection. Its retry of only the refused entries is tested on
//! a stub client by its own unit tests (`examples/producer/test_producer.py`, run by the
//! infrastructure checks); here the unit tests are run too, with the same interpreter.

use super::harness::{SERIAL, local_stack};
use anyhow::{Context as _, Result};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    // This crate lives in <root>/tests.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The project venv's Python, which has boto3.
fn python() -> Result<PathBuf> {
    let python = root().join(".venv/bin/python");
    anyhow::ensure!(
        python.is_file(),
        "{} is missing: `cargo xtask setup` creates the project venv",
        python.display()
    );
    Ok(python)
}

#[tokio::test]
async fn the_python_producer_example_puts_a_feed_that_reaches_the_projection() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) = local_stack("the stack's database (the projection)").await else {
        return Ok(());
    };
    let python = python()?;
    let example = root().join("examples/producer");
    let unit = Command::new(&python)
        .args(["-m", "unittest", "discover", "-s"])
        .arg(&example)
        .output()?;
    assert!(
        unit.status.success(),
        "the producer's unit tests failed:\n{}",
        String::from_utf8_lossy(&unit.stderr)
    );

    // Arrange: three products, two suppliers each, as JSON lines.
    let mut feed = String::new();
    for p in 0..3u32 {
        for (supplier, quantity) in [("acme", 10 + p), ("globex", 20 + p)] {
            let product = st.product(p);
            let record = json!({"product_id": product, "quantity": quantity, "price": "4.25",
                                "supplier_id": supplier, "occurred_at": integration_tests::recent_occurred_at()});
            feed.push_str(&format!("{record}\n"));
        }
    }
    let path = std::env::temp_dir().join(format!("{}-feed.jsonl", st.nonce));
    std::fs::write(&path, feed)?;

    // Act: the example, as a supplier runs it, against the local stack's endpoint.
    let out = Command::new(&python)
        .arg(example.join("producer.py"))
        .args(["--stream", st.o("StreamName")])
        .args(["--endpoint-url", st.o("LocalEndpointUrl")])
        .args(["--region", "us-east-1"])
        .arg(&path)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .context("running producer.py")?;
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "producer.py failed: {stderr}");
    assert!(stderr.contains("sent 6 of 6 records"), "{stderr}");

    // Assert: every record reached the projection, each product with both suppliers' stock.
    st.until(
        "six offers in the projection",
        async || {
            st.count("SELECT count(*) FROM product_offers WHERE product_id LIKE '{nonce}-%'")
                .await
        },
        |n| *n == 6,
    )
    .await?;
    for p in 0..3i64 {
        let total = st
            .count(&format!(
                "SELECT total_quantity FROM product_summaries WHERE product_id = '{{nonce}}-{p}'"
            ))
            .await?;
        assert_eq!(total, 30 + 2 * p, "{}", st.product(p as u32));
    }
    assert_eq!(st.events().await?, 6);
    Ok(())
}

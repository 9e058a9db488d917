//! `inventory generate`: a deterministic synthetic feed (the demo's, or any size), as JSON
//! lines. The same options always give the same bytes.

use crate::exit::{Outcome, WithOutcome as _};
use anyhow::{Context as _, Result};
use inventory::feed::{self, FeedSpec};
use std::io::Write as _;
use std::path::PathBuf;

/// Options of `inventory generate`. Defaults give the demo's feed.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Seed; the same seed and options give the same feed.
    #[arg(long, default_value_t = FeedSpec::default().seed)]
    pub seed: u64,
    /// Records in the feed, duplicates and bad ones included.
    #[arg(long, default_value_t = FeedSpec::default().updates, value_name = "N")]
    pub updates: usize,
    /// Distinct products.
    #[arg(long, default_value_t = FeedSpec::default().products, value_name = "N")]
    pub products: usize,
    /// Distinct suppliers (one of them quotes in EUR).
    #[arg(long, default_value_t = FeedSpec::default().suppliers, value_name = "N")]
    pub suppliers: usize,
    /// Zipf exponent of product popularity (1.0 is classic Zipf; higher is more skewed).
    #[arg(long, default_value_t = FeedSpec::default().zipf_exponent, value_name = "S")]
    pub zipf: f64,
    /// Share of records that repeat an earlier record byte for byte (0 to 1).
    #[arg(long, default_value_t = FeedSpec::default().duplicate_share, value_name = "SHARE")]
    pub duplicates: f64,
    /// Share of records older than an update already sent for the same product and supplier.
    #[arg(long, default_value_t = FeedSpec::default().out_of_order_share, value_name = "SHARE")]
    pub out_of_order: f64,
    /// Share of records that break the data contract (each kind has its rejection code).
    #[arg(long, default_value_t = FeedSpec::default().bad_share, value_name = "SHARE")]
    pub bad: f64,
    /// Prefix of product ids (`{prefix}{n:06}`). The update_ids (`{supplier}-{n:08}`, from 1)
    /// do not carry it: the pipeline takes the records of a second generated feed for
    /// duplicates of the first's unless their update_ids are made different.
    #[arg(long, default_value = "SKU-", value_name = "TEXT")]
    pub product_prefix: String,
    /// `occurred_at` of the first update (RFC 3339); later ones follow about 50 ms apart.
    /// Default: a day ago, on the hour (the pipeline refuses updates more than 30 days older
    /// than their arrival).
    #[arg(long, value_name = "TIME")]
    pub start: Option<chrono::DateTime<chrono::Utc>>,
    /// Write here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

impl GenerateArgs {
    pub fn spec(&self) -> Result<FeedSpec> {
        for (name, share) in [
            ("--duplicates", self.duplicates),
            ("--out-of-order", self.out_of_order),
            ("--bad", self.bad),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(crate::exit::usage(format!(
                    "{name} is a share between 0 and 1, got {share}"
                )));
            }
        }
        if self.duplicates + self.out_of_order + self.bad > 1.0 {
            return Err(crate::exit::usage(
                "--duplicates, --out-of-order and --bad add up to more than 1",
            ));
        }
        if self.products == 0 || self.suppliers == 0 {
            return Err(crate::exit::usage(
                "--products and --suppliers must be at least 1",
            ));
        }
        if !(self.zipf.is_finite() && self.zipf >= 0.0) {
            return Err(crate::exit::usage("--zipf must be a number at least 0"));
        }
        let defaults = FeedSpec::default();
        Ok(FeedSpec {
            seed: self.seed,
            updates: self.updates,
            products: self.products,
            suppliers: self.suppliers,
            zipf_exponent: self.zipf,
            duplicate_share: self.duplicates,
            out_of_order_share: self.out_of_order,
            bad_share: self.bad,
            start: self.start.unwrap_or(defaults.start),
            product_prefix: self.product_prefix.clone(),
        })
    }
}

/// The feed as bytes: one record per line, exactly as generated (a record that is not UTF-8
/// stays so; a newline inside a record would split it, so it becomes a space).
pub fn feed_bytes(spec: &FeedSpec) -> Vec<u8> {
    let records = feed::generate(spec);
    let mut out = Vec::with_capacity(records.len() * 160);
    for r in &records {
        out.extend(r.data.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        out.push(b'\n');
    }
    out
}

pub fn run(args: GenerateArgs) -> Result<Outcome> {
    let spec = args.spec()?;
    let bytes = feed_bytes(&spec);
    match &args.out {
        Some(path) => std::fs::write(path, &bytes)
            .with_context(|| format!("writing {}", path.display()))
            .or_exit(Outcome::Usage)?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes).context("writing stdout")?;
            out.flush().context("writing stdout")?;
        }
    }
    eprintln!(
        "generate: {} records, {} products, {} suppliers, seed {}",
        spec.updates, spec.products, spec.suppliers, spec.seed
    );
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Format, parse};
    use inventory::feed::RecordKind;

    #[test]
    fn the_written_feed_reads_back_as_the_generated_records_byte_for_byte() {
        let spec = FeedSpec {
            updates: 3_000,
            products: 50,
            bad_share: 0.05,
            ..FeedSpec::default()
        };
        let records = feed::generate(&spec);
        assert!(records.iter().any(|r| matches!(r.kind, RecordKind::Bad(_))));
        let (lines, bad) = parse("feed", &feed_bytes(&spec), Format::Jsonl);
        assert!(bad.is_empty());
        assert_eq!(lines.len(), records.len());
        for (line, record) in lines.iter().zip(&records) {
            assert_eq!(line.data, record.data, "line {}", line.number);
        }
        assert_eq!(feed_bytes(&spec), feed_bytes(&spec), "deterministic");
    }
}

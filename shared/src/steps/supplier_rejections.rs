//! Each supplier's own rejections, readable from its own AWS account and from no other.
//!
//! Kinesis does not say which account put a record, so a rejected record belongs to the
//! supplier its `supplier_id` names ([`crate::domain::update::claimed_supplier`]), and that supplier to
//! the AWS account the deployer maps it to ([`SupplierAccounts`], the template's
//! `SupplierRejectionAccounts`). Validate writes each chunk's rejections, one object per
//! supplier, under `rejections/{account}/{supplier}/` ([`RejectionKey`]); the bucket policy lets
//! an account read only its own prefix. A record that names no supplier, or one nobody mapped,
//! is in the quarantine only, where operators see it.

use crate::domain::ids::SupplierId;
use crate::domain::keys::RejectionKey;
use crate::domain::rejection::RejectionCode;
use crate::domain::update::claimed_supplier;
use crate::error::PipelineError;
use crate::ports::{Quarantine, QuarantinedRecord, RejectionStore};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("{s:?} is not a 12-digit AWS account id"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which AWS account may read which supplier's rejections: `supplierA=111122223333,...`.
/// An account may carry several suppliers; a supplier has one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupplierAccounts(BTreeMap<SupplierId, AccountId>);

impl SupplierAccounts {
    /// Parses `supplier=account` pairs separated by commas; blanks around them are ignored and
    /// an empty text maps nobody. Every error names the pair that is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (supplier, account) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not supplier=account"))?;
            let supplier = SupplierId::parse(supplier.trim())
                .map_err(|e| format!("{pair:?}: {}", e.message))?;
            let account = AccountId::parse(account.trim()).map_err(|e| format!("{pair:?}: {e}"))?;
            if let Some(before) = map.insert(supplier.clone(), account) {
                return Err(format!(
                    "supplier {:?} is mapped twice (to {before} and again in {pair:?})",
                    supplier.as_str()
                ));
            }
        }
        Ok(Self(map))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn account_of(&self, supplier: &SupplierId) -> Option<&AccountId> {
        self.0.get(supplier)
    }

    /// The accounts that the mapping names.
    pub fn accounts(&self) -> BTreeSet<&AccountId> {
        self.0.values().collect()
    }
}

/// One rejected record as its supplier reads it: where it was on the stream, why it was
/// rejected, and its bytes. One JSON line per record in a rejections object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionNotice {
    pub supplier_id: String,
    pub stream: String,
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    /// When the record reached the stream.
    pub arrived_at: DateTime<Utc>,
    pub code: RejectionCode,
    pub message: String,
    /// The record as sent, when it is UTF-8 text (JSON always is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// The record as sent, base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
}

/// One supplier's rejections from one chunk, and where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplierRejections {
    pub account: AccountId,
    pub supplier: SupplierId,
    pub key: RejectionKey,
    pub notices: Vec<RejectionNotice>,
}

impl SupplierRejections {
    /// The object's body: one [`RejectionNotice`] per line.
    pub fn body(&self) -> Result<Vec<u8>, PipelineError> {
        let mut out = Vec::with_capacity(self.notices.len() * 512);
        for notice in &self.notices {
            serde_json::to_writer(&mut out, notice).map_err(|e| {
                PipelineError::with_source(
                    crate::ErrorKind::Internal,
                    "could not encode a rejection notice",
                    e,
                )
            })?;
            out.push(b'\n');
        }
        Ok(out)
    }
}

/// Sorts a chunk's quarantined records by the mapped supplier each names, one batch per
/// supplier in stream order. Records that name no mapped supplier, and rejections that are the
/// pipeline's own doing rather than the record's ([`RejectionCode::is_the_pipelines`]), are
/// left out: they are in the quarantine, for operators.
pub fn for_suppliers(
    records: &[QuarantinedRecord],
    accounts: &SupplierAccounts,
) -> Vec<SupplierRejections> {
    let mut by_supplier: BTreeMap<SupplierId, Vec<&QuarantinedRecord>> = BTreeMap::new();
    for record in records {
        if record.reason.code.is_the_pipelines() {
            continue;
        }
        let Some(supplier) = record.raw.as_deref().and_then(claimed_supplier) else {
            continue;
        };
        if accounts.account_of(&supplier).is_some() {
            by_supplier.entry(supplier).or_default().push(record);
        }
    }
    by_supplier
        .into_iter()
        .filter_map(|(supplier, records)| {
            let account = accounts.account_of(&supplier)?.clone();
            let first = records.first()?;
            let last_arrival = records.iter().map(|r| r.arrived_at).max()?;
            let key = RejectionKey::for_batch(
                account.as_str(),
                supplier.as_str(),
                last_arrival,
                &first.shard_id,
                &first.sequence_number,
            );
            let notices = records
                .iter()
                .map(|r| notice(r, &supplier))
                .collect::<Vec<_>>();
            Some(SupplierRejections {
                account,
                supplier,
                key,
                notices,
            })
        })
        .collect()
}

fn notice(record: &QuarantinedRecord, supplier: &SupplierId) -> RejectionNotice {
    let bytes = record.raw.as_deref().unwrap_or_default();
    let (raw, raw_base64) = match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(BASE64.encode(bytes))),
    };
    RejectionNotice {
        supplier_id: supplier.as_str().to_owned(),
        stream: record.stream.clone(),
        shard_id: record.shard_id.clone(),
        sequence_number: record.sequence_number.clone(),
        partition_key: record.partition_key.clone(),
        arrived_at: record.arrived_at,
        code: record.reason.code,
        message: record.reason.message.clone(),
        raw,
        raw_base64,
    }
}

/// The quarantine, plus a copy of each mapped supplier's rejections where that supplier can
/// read them. The quarantine is written first: it is the record operators replay from, and a
/// failure to write the copies fails the call (and so the task, which the state machine
/// retries; both writes are idempotent).
pub struct SupplierVisibleQuarantine<'a> {
    pub quarantine: &'a dyn Quarantine,
    pub store: &'a dyn RejectionStore,
    pub accounts: &'a SupplierAccounts,
}

impl fmt::Debug for SupplierVisibleQuarantine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupplierVisibleQuarantine")
            .field("accounts", self.accounts)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Quarantine for SupplierVisibleQuarantine<'_> {
    async fn quarantine(&self, records: &[QuarantinedRecord]) -> Result<usize, PipelineError> {
        let new = self.quarantine.quarantine(records).await?;
        for batch in for_suppliers(records, self.accounts) {
            self.store.put(&batch.key, batch.body()?).await?;
            tracing::info!(supplier = %batch.supplier.as_str(), account = %batch.account, key = %batch.key, records = batch.notices.len(), "rejections written for the supplier");
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests;

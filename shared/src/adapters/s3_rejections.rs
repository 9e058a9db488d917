//! The rejection objects suppliers read, on S3: SSE-KMS without an S3 Bucket Key, so KMS sees
//! each object's own ARN as the encryption context and the key policy can hold a supplier
//! account to its own prefix.

use super::s3::{NewObject, SseKms, write_object};
use crate::config::Vars;
use crate::domain::keys::RejectionKey;
use crate::error::PipelineError;
use crate::ports::RejectionStore;
use crate::steps::supplier_rejections::{AccountId, SupplierAccounts};
use async_trait::async_trait;
use aws_sdk_s3::Client;

/// Media type of a rejections object.
pub const REJECTIONS_CONTENT_TYPE: &str = "application/x-ndjson";

/// Where suppliers' rejections go, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionsConfig {
    pub bucket: String,
    /// The KMS key objects are encrypted with; `None`: the bucket's default (locally).
    pub kms_key_id: Option<String>,
    pub accounts: SupplierAccounts,
}

impl RejectionsConfig {
    pub const ACCOUNTS_VAR: &'static str = "SUPPLIER_ACCOUNTS";
    pub const ALLOWED_ACCOUNTS_VAR: &'static str = "SUPPLIER_ACCOUNT_IDS";
    pub const BUCKET_VAR: &'static str = "REJECTIONS_BUCKET";
    pub const KMS_KEY_VAR: &'static str = "REJECTIONS_KMS_KEY_ID";

    /// `None` when `SUPPLIER_ACCOUNTS` maps nobody. Otherwise the bucket is required, and every
    /// mapped account must be one the stack admits (`SUPPLIER_ACCOUNT_IDS`, the template's
    /// SupplierAccountIds): the bucket policy lets only those read, so another account's
    /// objects would be written for nobody.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, PipelineError> {
        let vars = Vars::new(get);
        let Some(mapping) = vars.optional(Self::ACCOUNTS_VAR) else {
            return Ok(None);
        };
        let accounts = SupplierAccounts::parse(&mapping).map_err(|e| {
            PipelineError::misconfigured(format!(
                "environment variable {} is not valid: {e}",
                Self::ACCOUNTS_VAR
            ))
        })?;
        if accounts.is_empty() {
            return Ok(None);
        }
        let because = format!("when {} is set", Self::ACCOUNTS_VAR);
        let allowed = vars.required_because(Self::ALLOWED_ACCOUNTS_VAR, &because)?;
        let allowed: Vec<AccountId> = allowed
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(AccountId::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                PipelineError::misconfigured(format!(
                    "environment variable {} is not valid: {e}",
                    Self::ALLOWED_ACCOUNTS_VAR
                ))
            })?;
        if let Some(stranger) = accounts
            .accounts()
            .into_iter()
            .find(|a| !allowed.contains(a))
        {
            return Err(PipelineError::misconfigured(format!(
                "{} maps a supplier to account {stranger}, which is not in {} (the template's SupplierAccountIds); add it there, or nobody could read those rejections",
                Self::ACCOUNTS_VAR,
                Self::ALLOWED_ACCOUNTS_VAR
            )));
        }
        Ok(Some(Self {
            bucket: vars.required_because(Self::BUCKET_VAR, &because)?,
            kms_key_id: vars.optional(Self::KMS_KEY_VAR),
            accounts,
        }))
    }
}

/// [`RejectionStore`] on S3.
#[derive(Debug, Clone)]
pub struct S3RejectionStore {
    client: Client,
    bucket: String,
    kms_key_id: Option<String>,
}

impl S3RejectionStore {
    pub fn new(client: Client, config: &RejectionsConfig) -> Self {
        Self {
            client,
            bucket: config.bucket.clone(),
            kms_key_id: config.kms_key_id.clone(),
        }
    }
}

#[async_trait]
impl RejectionStore for S3RejectionStore {
    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, key = %key, bytes = jsonl.len()))]
    async fn put(&self, key: &RejectionKey, jsonl: Vec<u8>) -> Result<(), PipelineError> {
        write_object(
            &self.client,
            NewObject {
                bucket: &self.bucket,
                key: key.as_str(),
                body: jsonl,
                content_type: REJECTIONS_CONTENT_TYPE,
                content_encoding: None,
                // No bucket key: with one, KMS would see the bucket's ARN, not the object's,
                // and the key policy could not tell one supplier's prefix from another's.
                sse_kms: self.kms_key_id.as_deref().map(|key_id| SseKms {
                    key_id,
                    bucket_key: false,
                }),
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Option<RejectionsConfig>, PipelineError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RejectionsConfig::from_lookup(|n| vars.get(n).cloned())
    }

    #[test]
    fn no_mapping_means_no_supplier_copies() {
        assert_eq!(config(&[]).expect("ok"), None);
        assert_eq!(config(&[("SUPPLIER_ACCOUNTS", " , ")]).expect("ok"), None);
    }

    #[test]
    fn a_mapping_needs_the_bucket_and_only_accounts_the_stack_admits() {
        let ok = config(&[
            ("SUPPLIER_ACCOUNTS", "acme=111111111111"),
            ("SUPPLIER_ACCOUNT_IDS", "111111111111,222222222222"),
            ("REJECTIONS_BUCKET", "inventory-rejections-dev-1"),
            ("REJECTIONS_KMS_KEY_ID", "arn:aws:kms:us-east-1:1:key/k"),
        ])
        .expect("valid")
        .expect("configured");
        assert_eq!(ok.bucket, "inventory-rejections-dev-1");
        assert_eq!(
            ok.kms_key_id.as_deref(),
            Some("arn:aws:kms:us-east-1:1:key/k")
        );

        for (pairs, says) in [
            (
                vec![("SUPPLIER_ACCOUNTS", "acme")],
                "SUPPLIER_ACCOUNTS is not valid",
            ),
            (
                vec![
                    ("SUPPLIER_ACCOUNTS", "acme=111111111111"),
                    ("REJECTIONS_BUCKET", "b"),
                ],
                "SUPPLIER_ACCOUNT_IDS is required when SUPPLIER_ACCOUNTS is set",
            ),
            (
                vec![
                    ("SUPPLIER_ACCOUNTS", "acme=111111111111"),
                    ("SUPPLIER_ACCOUNT_IDS", "222222222222"),
                    ("REJECTIONS_BUCKET", "b"),
                ],
                "account 111111111111, which is not in SUPPLIER_ACCOUNT_IDS",
            ),
            (
                vec![
                    ("SUPPLIER_ACCOUNTS", "acme=111111111111"),
                    ("SUPPLIER_ACCOUNT_IDS", "111111111111"),
                ],
                "REJECTIONS_BUCKET is required",
            ),
        ] {
            let e = config(&pairs).expect_err(says);
            assert_eq!(e.kind, ErrorKind::Misconfigured);
            assert!(e.message.contains(says), "{says}: {}", e.message);
        }
    }
}

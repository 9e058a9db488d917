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

    #[test]
    fn an_admitted_account_that_is_not_an_account_id_is_a_configuration_error() {
        let e = config(&[
            ("SUPPLIER_ACCOUNTS", "acme=111111111111"),
            ("SUPPLIER_ACCOUNT_IDS", "111111111111, not-an-account"),
            ("REJECTIONS_BUCKET", "b"),
        ])
        .expect_err("not an account id");
        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert!(
            e.message
                .contains("environment variable SUPPLIER_ACCOUNT_IDS is not valid"),
            "{}",
            e.message
        );
    }

    fn store(endpoint: &str, kms_key_id: Option<&str>) -> S3RejectionStore {
        let sdk = test_support::aws::stub_sdk_config(endpoint);
        let config = RejectionsConfig {
            bucket: "inventory-rejections-dev".into(),
            kms_key_id: kms_key_id.map(str::to_owned),
            accounts: SupplierAccounts::parse("acme=111111111111").expect("mapping"),
        };
        S3RejectionStore::new(crate::adapters::aws::s3_client(&sdk), &config)
    }

    fn key() -> RejectionKey {
        RejectionKey::for_batch(
            "111111111111",
            "acme",
            chrono::DateTime::UNIX_EPOCH,
            "shardId-000000000000",
            "4965",
        )
    }

    #[tokio::test]
    async fn rejections_are_encrypted_with_the_key_and_no_bucket_key_so_kms_sees_each_object() {
        use test_support::stub_http::StubServer;
        let stub = StubServer::always(200, &[("etag", "\"abc\"")], "").await;
        let jsonl = b"{\"reason\":\"bad price\"}\n".to_vec();

        store(stub.endpoint(), Some("arn:aws:kms:us-east-1:1:key/k"))
            .put(&key(), jsonl.clone())
            .await
            .expect("written");

        let request = &stub.received()[0];
        assert_eq!(request.method(), "PUT");
        assert!(
            request.target().starts_with(
                "/inventory-rejections-dev/rejections/111111111111/acme/19700101T000000.000000Z-shardId-000000000000-4965.jsonl"
            ),
            "{}",
            request.target()
        );
        assert_eq!(
            request.header("x-amz-server-side-encryption"),
            Some("aws:kms")
        );
        assert_eq!(
            request.header("x-amz-server-side-encryption-aws-kms-key-id"),
            Some("arn:aws:kms:us-east-1:1:key/k")
        );
        assert_eq!(
            request.header("x-amz-server-side-encryption-bucket-key-enabled"),
            Some("false")
        );
        assert_eq!(
            request.header("content-type"),
            Some(REJECTIONS_CONTENT_TYPE)
        );
        assert_eq!(request.header("content-encoding"), None);
        assert!(
            request
                .body
                .windows(jsonl.len())
                .any(|w| w == jsonl.as_slice()),
            "the rejections are sent"
        );
    }

    #[tokio::test]
    async fn without_a_key_the_buckets_default_encryption_applies_and_failures_keep_their_kind() {
        use test_support::stub_http::{Answer, StubServer};
        let stub = StubServer::start(
            vec![Answer::status(200)],
            Answer::new(
                403,
                &[("content-type", "application/xml")],
                "<Error><Code>AccessDenied</Code><Message>no</Message></Error>",
            ),
        )
        .await;
        let store = store(stub.endpoint(), None);

        store.put(&key(), b"{}\n".to_vec()).await.expect("written");
        let e = store
            .put(&key(), b"{}\n".to_vec())
            .await
            .expect_err("denied");

        assert_eq!(
            stub.received()[0].header("x-amz-server-side-encryption"),
            None
        );
        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert!(
            e.message
                .starts_with("could not write s3://inventory-rejections-dev/rejections/"),
            "{}",
            e.message
        );
    }
}

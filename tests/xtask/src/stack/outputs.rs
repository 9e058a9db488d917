//! `cfn-outputs/flat-outputs.json`: the stack's outputs under the same keys as the deployed
//! stack's, so the integration suite targets either. Keys only the local stack has start with
//! `Local`.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Outputs {
    pub environment_suffix: String,
    pub region: String,
    pub stream_name: String,
    pub stream_arn: String,
    pub archive_bucket_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejections_bucket_name: Option<String>,
    pub state_machine_arn: String,
    pub state_machine_name: String,
    pub fanout_dlq_url: String,
    pub fanout_dlq_arn: String,
    pub lambda_dlq_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_topic_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_api_url: Option<String>,
    /// Host only, as RDS gives it; the port is `DbPort`.
    pub db_endpoint: String,
    pub db_port: String,
    pub db_name: String,
    pub cache_endpoint: String,
    pub cache_port: String,
    pub cache_key_prefix: String,
    pub kms_key_arn: String,
    pub fanout_function_name: String,
    pub validate_function_name: String,
    pub archive_function_name: String,
    pub persist_function_name: String,
    pub cache_invalidate_function_name: String,
    /// Where AWS SDK clients reach the emulated APIs (the router).
    pub local_endpoint_url: String,
    /// The router's own controls: `{url}/_faults`, `{url}/_stats`.
    pub local_router_url: String,
    pub local_database_url: String,
    pub local_redis_url: String,
    pub local_cache_prefix: String,
    pub local_state_dir: String,
    /// The SupplierRejectionAccounts the local validate runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_supplier_accounts: Option<String>,
}

impl Outputs {
    /// Writes the file atomically (a reader never sees half of it).
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_are_the_deployed_stacks_keys() {
        let o = Outputs {
            environment_suffix: "local".into(),
            region: "us-east-1".into(),
            stream_name: "s".into(),
            stream_arn: "a".into(),
            archive_bucket_name: "b".into(),
            rejections_bucket_name: Some("r".into()),
            state_machine_arn: "m".into(),
            state_machine_name: "m".into(),
            fanout_dlq_url: "q".into(),
            fanout_dlq_arn: "q".into(),
            lambda_dlq_url: "l".into(),
            alarm_topic_arn: None,
            product_api_url: None,
            db_endpoint: "127.0.0.1".into(),
            db_port: "5432".into(),
            db_name: "d".into(),
            cache_endpoint: "127.0.0.1".into(),
            cache_port: "6379".into(),
            cache_key_prefix: "p:".into(),
            kms_key_arn: "k".into(),
            fanout_function_name: "f".into(),
            validate_function_name: "v".into(),
            archive_function_name: "a".into(),
            persist_function_name: "p".into(),
            cache_invalidate_function_name: "c".into(),
            local_endpoint_url: "http://127.0.0.1:1".into(),
            local_router_url: "http://127.0.0.1:1".into(),
            local_database_url: "postgres://x".into(),
            local_redis_url: "redis://x".into(),
            local_cache_prefix: "p:".into(),
            local_state_dir: "/tmp".into(),
            local_supplier_accounts: Some("a=111111111111".into()),
        };
        let v = serde_json::to_value(&o).expect("json");
        for key in [
            "EnvironmentSuffix",
            "Region",
            "StreamName",
            "StreamArn",
            "ArchiveBucketName",
            "RejectionsBucketName",
            "StateMachineArn",
            "StateMachineName",
            "FanoutDlqUrl",
            "FanoutDlqArn",
            "LambdaDlqUrl",
            "DbEndpoint",
            "DbPort",
            "DbName",
            "CacheEndpoint",
            "CachePort",
            "CacheKeyPrefix",
            "KmsKeyArn",
            "FanoutFunctionName",
            "CacheInvalidateFunctionName",
            "LocalDatabaseUrl",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        assert!(v.get("AlarmTopicArn").is_none());
    }
}

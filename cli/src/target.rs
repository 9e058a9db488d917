//! Where the commands act: the AWS endpoint, region and credentials (the SDK's standard
//! environment variables and profiles, or `--endpoint-url`), and the stack's names, read from
//! a CloudFormation outputs file (`cfn-outputs/flat-outputs.json`) when not given.

use crate::exit::{Outcome, WithOutcome as _, usage};
use anyhow::{Context as _, Result};
use aws_config::{Region, SdkConfig};
use inventory::adapters::aws;
use inventory::config::FromEnv;
use std::path::PathBuf;

/// Options every AWS-facing command shares.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TargetArgs {
    /// Send AWS calls to this endpoint (a local emulator). Default: the SDK's own resolution,
    /// including AWS_ENDPOINT_URL, or the outputs file's LocalEndpointUrl.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region. Default: AWS_REGION / the profile, else the outputs file's Region.
    #[arg(long)]
    pub region: Option<String>,
    /// A stack outputs file (flat JSON: StreamName, ArchiveBucketName, FanoutDlqUrl, ...) to
    /// read names from when they are not given as options.
    #[arg(long, value_name = "FILE")]
    pub outputs: Option<PathBuf>,
}

/// A stack outputs file, read as flat string values.
#[derive(Debug, Clone, Default)]
pub struct Outputs(serde_json::Map<String, serde_json::Value>);

impl Outputs {
    pub fn read(args: &TargetArgs) -> Result<Self> {
        let Some(path) = &args.outputs else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the outputs file {}", path.display()))
            .or_exit(Outcome::Usage)?;
        let map = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON object of outputs", path.display()))
            .or_exit(Outcome::Usage)?;
        Ok(Self(map))
    }

    pub fn get(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// An option's value, else the outputs file's `key`, else a usage error naming both.
    pub fn pick(&self, given: &Option<String>, key: &str, option: &str) -> Result<String> {
        given.clone().or_else(|| self.get(key)).ok_or_else(|| {
            usage(format!(
                "no {option} given and no outputs file with {key} (use {option} or --outputs)"
            ))
        })
    }
}

/// The SDK configuration for `args`: the functions' defaults ([`aws::config_loader`]) with the
/// command's region and endpoint. A local stack's outputs (LocalEndpointUrl) also give its
/// endpoint, and test credentials when the environment has none. The functions' call timeouts
/// ([`aws::timeouts`]) are left out: they suit an AWS region's network, not a feed of 5 MiB
/// requests uploaded from an operator's machine, and the commands pace and retry on their own.
pub async fn sdk_config(args: &TargetArgs, outputs: &Outputs) -> SdkConfig {
    let mut loader = aws::config_loader();
    let local = outputs.get("LocalEndpointUrl");
    if let Some(url) = args.endpoint_url.clone().or_else(|| local.clone()) {
        loader = loader.endpoint_url(url);
    }
    let region = args.region.clone().or_else(|| {
        let from_env = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
        if from_env {
            None
        } else {
            outputs.get("Region")
        }
    });
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    if args.endpoint_url.is_none()
        && local.is_some()
        && std::env::var("AWS_ACCESS_KEY_ID").is_err()
        && std::env::var("AWS_PROFILE").is_err()
    {
        loader = loader.credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "local-stack-outputs",
        ));
    }
    loader.load().await
}

/// Where `--dry-run`-less operator commands find the database: `--database-url`, else the
/// outputs file's LocalDatabaseUrl, else the functions' own variables (DATABASE_URL, or
/// DB_HOST/DB_NAME/DB_SECRET_ARN/DB_TLS_CA_FILE, the secret read with `conf`).
pub async fn connect_database(
    given: &Option<String>,
    outputs: &Outputs,
    conf: &SdkConfig,
) -> Result<inventory::adapters::postgres::DatabaseConnection> {
    use inventory::adapters::postgres::{DatabaseConfig, connect_from_config};
    let url = given.clone().or_else(|| outputs.get("LocalDatabaseUrl"));
    let config = DatabaseConfig::from_lookup(|name| match (name, &url) {
        ("DATABASE_URL", Some(u)) => Some(u.clone()),
        _ => std::env::var(name).ok(),
    })
    .map_err(|e| usage(format!("database: {e}")))?;
    connect_from_config(&config, conf)
        .await
        .context("connecting to the database")
        .or_exit(Outcome::ServiceFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_option_wins_over_the_outputs_file_and_a_missing_name_is_a_usage_error() {
        let outputs = Outputs(
            serde_json::from_str(r#"{"StreamName":"from-file","Empty":""}"#).expect("json"),
        );
        let picked = outputs.pick(&Some("given".into()), "StreamName", "--stream");
        assert_eq!(picked.expect("given"), "given");
        assert_eq!(
            outputs.pick(&None, "StreamName", "--stream").expect("file"),
            "from-file"
        );
        let err = outputs.pick(&None, "Empty", "--thing").expect_err("empty");
        assert_eq!(crate::exit::outcome_of(&err), Outcome::Usage);
        assert!(err.to_string().contains("--thing"), "{err}");
    }
}

//! The fan-out's configuration, read once at cold start; a missing or bad variable is named.

use inventory::PipelineError;
use inventory::adapters::s3::ArchiveConfig;
use inventory::config::FromEnv;
use inventory::config::Vars;

/// What the SAM template sets for the fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `STATE_MACHINE_ARN`: the pipeline's state machine.
    pub state_machine_arn: String,
    /// `ARCHIVE_BUCKET` and `ARCHIVE_KMS_KEY_ID`: where oversized records go, and the key
    /// they are encrypted with.
    pub oversized: ArchiveConfig,
}

impl Config {
    pub const STATE_MACHINE_ARN_VAR: &'static str = "STATE_MACHINE_ARN";
}

impl FromEnv for Config {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        let name = Self::STATE_MACHINE_ARN_VAR;
        let arn = Vars::new(&get).required(name)?;
        if !is_state_machine_arn(&arn) {
            return Err(PipelineError::misconfigured(format!(
                "environment variable {name}={arn:?} is not a state machine ARN \
                 (arn:PARTITION:states:REGION:ACCOUNT:stateMachine:NAME)"
            )));
        }
        Ok(Self {
            state_machine_arn: arn,
            oversized: ArchiveConfig::from_lookup(&get)?,
        })
    }
}

fn is_state_machine_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    matches!(parts.as_slice(), ["arn", _, "states", _, _, "stateMachine", name] if !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ARN: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:inventory-pipeline-dev";

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn a_complete_environment_is_read() {
        let config = Config::from_lookup(lookup(&[
            ("STATE_MACHINE_ARN", ARN),
            ("ARCHIVE_BUCKET", "inventory-archive-dev"),
            ("ARCHIVE_KMS_KEY_ID", "alias/inventory-dev"),
        ]))
        .expect("valid");

        assert_eq!(config.state_machine_arn, ARN);
        assert_eq!(config.oversized.bucket, "inventory-archive-dev");
        assert_eq!(
            config.oversized.kms_key_id.as_deref(),
            Some("alias/inventory-dev")
        );
    }

    #[test]
    fn a_missing_state_machine_arn_is_named() {
        let e = Config::from_lookup(lookup(&[("ARCHIVE_BUCKET", "b")])).expect_err("missing");

        assert_eq!(e.kind, inventory::ErrorKind::Misconfigured);
        assert!(e.message.contains("STATE_MACHINE_ARN"), "{}", e.message);
    }

    #[test]
    fn something_that_is_not_a_state_machine_arn_is_refused() {
        for bad in [
            "inventory-pipeline-dev",
            "arn:aws:lambda:us-east-1:1:function:validate",
            "arn:aws:states:us-east-1:1:stateMachine:",
        ] {
            let e = Config::from_lookup(lookup(&[
                ("STATE_MACHINE_ARN", bad),
                ("ARCHIVE_BUCKET", "b"),
            ]))
            .expect_err(bad);
            assert!(e.message.contains("STATE_MACHINE_ARN"), "{}", e.message);
        }
    }

    #[test]
    fn a_missing_bucket_is_named() {
        let e = Config::from_lookup(lookup(&[("STATE_MACHINE_ARN", ARN)])).expect_err("missing");

        assert!(e.message.contains("ARCHIVE_BUCKET"), "{}", e.message);
    }
}

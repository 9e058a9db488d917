//! moto: the AWS API emulator, with Step Functions execution turned on, and the stack's AWS
//! resources in it (stream, archive bucket, on-failure queue, KMS key, alarm topic, and the
//! state machine built from the same ASL file as production).

use super::http::{self, HttpClient};
use super::procs::{self, Managed};
use anyhow::{Context, Result, bail};
use aws_config::BehaviorVersion;
use hyper::body::Bytes;
use hyper::{Method, Request};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

/// The Python program that runs moto's server: moto with its Kinesis shard fixed (direct
/// lookups instead of scanning every record; a lock on `put_record`) and with Step Functions'
/// `RedriveExecution`, which moto lacks, added with AWS's documented semantics: an unsuccessful
/// execution resumes at the state it stopped in, on the same ARN with the same input, and a
/// Parallel state re-runs only its branches that did not succeed. The file explains how, and
/// what it leaves out. The redrive window (14 days by default) is a key of moto's config API:
/// `POST /moto-api/config` with
/// `{"stepfunctions": {"execute_state_machine": true, "redrive_window_seconds": N}}`.
const MOTO_SHIM: &str = include_str!("moto_shim.py");

/// Starts moto's server on `moto_port` (with [`MOTO_SHIM`]), telling it (`MOTO_PORT`) that it
/// lives on `router_port`, so its Step Functions interpreter calls Lambda through the router.
pub fn start(python: &Path, moto_port: u16, router_port: u16, log: &Path) -> Result<Managed> {
    let mut cmd = std::process::Command::new(python);
    cmd.args([
        "-c",
        MOTO_SHIM,
        "-H",
        "127.0.0.1",
        "-p",
        &moto_port.to_string(),
    ])
    .env("MOTO_PORT", router_port.to_string())
    .env("AWS_DEFAULT_REGION", REGION)
    .env("AWS_ACCESS_KEY_ID", "test")
    .env("AWS_SECRET_ACCESS_KEY", "test");
    procs::spawn("moto_server", cmd, log)
}

/// Turns on the Step Functions interpreter (moto only records executions otherwise).
pub async fn enable_execution(client: &HttpClient, moto_port: u16) -> Result<()> {
    let url = format!("http://127.0.0.1:{moto_port}/moto-api/config");
    let reply = http::post_json(
        client,
        &url,
        &json!({ "stepfunctions": { "execute_state_machine": true } }),
    )
    .await?;
    if !reply.status.is_success() {
        bail!(
            "moto refused the config: HTTP {} {}",
            reply.status,
            reply.text()
        );
    }
    Ok(())
}

/// SDK configuration for the local endpoint, with dummy credentials and one attempt (so a
/// failure shows at once instead of hiding behind retries).
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "local-stack",
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}

pub fn s3_client(conf: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(true)
            .build(),
    )
}

/// The stack's AWS resources.
#[derive(Debug, Clone)]
pub struct Resources {
    pub stream_name: String,
    pub stream_arn: String,
    pub bucket: String,
    /// Where validate copies each mapped supplier's rejections.
    pub rejections_bucket: String,
    pub dlq_url: String,
    pub dlq_arn: String,
    pub lambda_dlq_url: String,
    pub kms_key_arn: String,
    pub alarm_topic_arn: Option<String>,
    pub state_machine_arn: String,
}

/// Names of the stack's resources, `{resource-type}-{suffix}` as in the template.
#[derive(Debug, Clone)]
pub struct Names {
    pub suffix: String,
    pub shards: i32,
}

/// Creates everything but the state machine, which needs the function ARNs.
pub async fn create_resources(
    conf: &aws_config::SdkConfig,
    client: &HttpClient,
    endpoint: &str,
    n: &Names,
) -> Result<Resources> {
    let stream_name = format!("inventory-updates-{}", n.suffix);
    let kinesis = aws_sdk_kinesis::Client::new(conf);
    kinesis
        .create_stream()
        .stream_name(&stream_name)
        .shard_count(n.shards)
        .send()
        .await
        .context("creating the stream")?;
    let stream_arn = loop {
        let d = kinesis
            .describe_stream_summary()
            .stream_name(&stream_name)
            .send()
            .await?;
        let s = d
            .stream_description_summary()
            .context("no stream summary")?;
        if s.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active {
            break s.stream_arn().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let bucket = format!("inventory-archive-{}", n.suffix);
    s3_client(conf)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .context("creating the archive bucket")?;
    let rejections_bucket = format!("inventory-rejections-{}", n.suffix);
    s3_client(conf)
        .create_bucket()
        .bucket(&rejections_bucket)
        .send()
        .await
        .context("creating the rejections bucket")?;

    let sqs = aws_sdk_sqs::Client::new(conf);
    let queue = format!("inventory-fanout-dlq-{}", n.suffix);
    let dlq_url = sqs
        .create_queue()
        .queue_name(&queue)
        .send()
        .await?
        .queue_url()
        .context("no queue url")?
        .to_owned();
    let dlq_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}");
    let lambda_dlq = format!("inventory-lambda-dlq-{}", n.suffix);
    let lambda_dlq_url = sqs
        .create_queue()
        .queue_name(&lambda_dlq)
        .send()
        .await?
        .queue_url()
        .context("no queue url")?
        .to_owned();

    let kms = aws_json(
        client,
        endpoint,
        "kms",
        "TrentService.CreateKey",
        &json!({ "Description": format!("inventory-{}", n.suffix) }),
    )
    .await?;
    let kms_key_arn = kms["KeyMetadata"]["Arn"]
        .as_str()
        .context("CreateKey gave no ARN")?
        .to_owned();

    let alarm_topic_arn =
        sns_create_topic(client, endpoint, &format!("inventory-alarms-{}", n.suffix))
            .await
            .ok();
    Ok(Resources {
        stream_name,
        stream_arn,
        bucket,
        rejections_bucket,
        dlq_url,
        dlq_arn,
        lambda_dlq_url,
        kms_key_arn,
        alarm_topic_arn,
        state_machine_arn: String::new(),
    })
}

/// Fills the ASL file's `${...}` placeholders (`${ValidateFunctionArn}` -> the ARN of
/// `validate`, and so on) and nothing else.
pub fn substitute(asl: &str, arns: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(asl.len());
    let mut rest = asl;
    let mut unknown = Vec::new();
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            bail!("unterminated ${{ in the ASL file")
        };
        let name = &after[..end];
        match arns.get(name) {
            Some(v) => out.push_str(v),
            None => unknown.push(name.to_owned()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if !unknown.is_empty() {
        bail!(
            "the ASL file uses substitutions the local stack does not know: {unknown:?} (known: {:?})",
            arns.keys()
        );
    }
    Ok(out)
}

/// The substitution names for a function: `cache-invalidate` -> `CacheInvalidateFunctionArn`,
/// `CacheInvalidateArn`, `CacheInvalidateFunction`.
pub fn substitution_names(binary: &str) -> Vec<String> {
    let camel: String = binary
        .split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    vec![
        format!("{camel}FunctionArn"),
        format!("{camel}Arn"),
        format!("{camel}Function"),
    ]
}

pub async fn create_state_machine(
    conf: &aws_config::SdkConfig,
    name: &str,
    definition: String,
) -> Result<String> {
    let sfn = aws_sdk_sfn::Client::new(conf);
    let out = sfn
        .create_state_machine()
        .name(name)
        .definition(definition)
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/{name}-role"))
        .r#type(aws_sdk_sfn::types::StateMachineType::Standard)
        .send()
        .await
        .context("creating the state machine")?;
    Ok(out.state_machine_arn().to_owned())
}

fn fake_auth(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=test/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=00"
    )
}

/// One call to a JSON-protocol API (KMS), which the stack needs no SDK crate for.
async fn aws_json(
    client: &HttpClient,
    endpoint: &str,
    service: &str,
    target: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{endpoint}/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", target)
        .header("authorization", fake_auth(service))
        .body(http::Body::new(Bytes::from(serde_json::to_vec(body)?)))?;
    let reply = http::send(client, req).await?;
    if !reply.status.is_success() {
        bail!("{target} failed: HTTP {} {}", reply.status, reply.text());
    }
    reply.json()
}

/// SNS CreateTopic over the query protocol; the alarm topic is optional locally.
async fn sns_create_topic(client: &HttpClient, endpoint: &str, name: &str) -> Result<String> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{endpoint}/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", fake_auth("sns"))
        .body(http::Body::new(Bytes::from(format!(
            "Action=CreateTopic&Version=2010-03-31&Name={name}"
        ))))?;
    let reply = http::send(client, req).await?;
    let text = reply.text();
    let arn = text
        .split("<TopicArn>")
        .nth(1)
        .and_then(|s| s.split("</TopicArn>").next());
    arn.map(str::to_owned)
        .with_context(|| format!("CreateTopic gave no ARN: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_placeholders_are_replaced() {
        let arns: BTreeMap<String, String> =
            [("ValidateFunctionArn".to_string(), "arn:v".to_string())].into();
        let asl = r#"{"Resource":"${ValidateFunctionArn}","Comment":"costs $5"}"#;
        assert_eq!(
            substitute(asl, &arns).expect("known"),
            r#"{"Resource":"arn:v","Comment":"costs $5"}"#
        );
        let e = substitute(r#"{"R":"${PersistFunctionArn}"}"#, &arns).expect_err("unknown");
        assert!(e.to_string().contains("PersistFunctionArn"), "{e}");
    }

    #[test]
    fn substitution_names_follow_the_binary_names() {
        assert_eq!(
            substitution_names("cache-invalidate")[0],
            "CacheInvalidateFunctionArn"
        );
        assert_eq!(substitution_names("persist")[1], "PersistArn");
    }
}

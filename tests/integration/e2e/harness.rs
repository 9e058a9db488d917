//! The harness of the end-to-end tests: the stack from its outputs, clients on it, the
//! router's fault switch, and waiting for the pipeline.

use anyhow::{Context as _, Result, bail};
use aws_sdk_sfn::types::ExecutionStatus;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use serde_json::{Value, json};
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
pub const WAIT: Duration = Duration::from_secs(90);

pub struct Stack {
    pub out: Value,
    pub kinesis: aws_sdk_kinesis::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    /// What only the local stack offers; `None` on a deployed stack, whose database is in
    /// private subnets and which has no fault switch.
    pub local: Option<Local>,
    /// This test's product ids start with it.
    pub nonce: String,
    /// When this test began (by this machine's clock).
    pub began: DateTime<Utc>,
    /// Executions that existed before this test began.
    pub before: std::collections::HashSet<String>,
}

/// The local stack's extras: its database and the router's controls.
pub struct Local {
    pub db: DatabaseConnection,
    pub router_url: String,
}

/// Executions started this long before a test began are never its own: it bounds the
/// listing on a deployed stack with a long history, with room for clock skew.
const LISTING_SLACK: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The stack named by `INVENTORY_OUTPUTS`, or `None` (and a note) when there is none and
/// none is required. The default `cfn-outputs/flat-outputs.json` is deliberately not used:
/// it may belong to a demo or a developer's stack, which these tests would disturb.
///
/// Outputs with `LocalEndpointUrl` are the local stack's: clients go there with dummy
/// credentials. Others are a deployed stack's: clients use the default AWS credential chain
/// in the outputs' `Region`.
pub async fn stack() -> Option<Stack> {
    let required = std::env::var("INVENTORY_E2E_REQUIRED").is_ok_and(|v| v == "1");
    let Ok(path) = std::env::var("INVENTORY_OUTPUTS") else {
        assert!(
            !required,
            "INVENTORY_E2E_REQUIRED=1 but INVENTORY_OUTPUTS names no stack"
        );
        eprintln!(
            "e2e: skipped; set INVENTORY_OUTPUTS to a stack's outputs (cargo xtask test does)"
        );
        return None;
    };
    let out: Value = match std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(v) => v,
        None if required => panic!("no stack: {path} is missing or unreadable"),
        None => {
            eprintln!("e2e: skipped, no stack outputs at {path}");
            return None;
        }
    };
    let (conf, local) = match out["LocalEndpointUrl"].as_str() {
        Some(endpoint) => {
            let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(endpoint)
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    "test", "test", None, None, "e2e",
                ))
                .load()
                .await;
            let field = |k: &str| {
                out[k]
                    .as_str()
                    .unwrap_or_else(|| panic!("{path}: a local stack's outputs lack {k}"))
            };
            let db = Database::connect(field("LocalDatabaseUrl"))
                .await
                .expect("the stack's database");
            let router_url = field("LocalRouterUrl").to_owned();
            (conf, Some(Local { db, router_url }))
        }
        None => {
            let region = out["Region"]
                .as_str()
                .unwrap_or_else(|| panic!("{path}: the outputs lack Region"))
                .to_owned();
            let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(region))
                .load()
                .await;
            if let Err(e) = deployed_credentials(&conf).await {
                assert!(
                    !required,
                    "{path} names a deployed stack, but there are no AWS credentials: {e:#}"
                );
                eprintln!("e2e: skipped, {path} names a deployed stack and {e:#}");
                return None;
            }
            (conf, None)
        }
    };
    let force_path_style = local.is_some();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(force_path_style)
            .build(),
    );
    let nonce = format!("E2E{:x}", Utc::now().timestamp_micros() % 0xFFFF_FFFF);
    let mut st = Stack {
        kinesis: aws_sdk_kinesis::Client::new(&conf),
        sfn: aws_sdk_sfn::Client::new(&conf),
        sqs: aws_sdk_sqs::Client::new(&conf),
        s3,
        local,
        nonce,
        began: Utc::now(),
        before: Default::default(),
        out,
    };
    st.before = st
        .executions()
        .await
        .expect("listing executions")
        .into_iter()
        .map(|e| e.0)
        .collect();
    Some(st)
}

/// The stack, only when it is the local one: a test that needs the fault switch or the
/// database says why it skips a deployed stack, and passes.
pub async fn local_stack(needs: &str) -> Option<Stack> {
    let st = stack().await?;
    if st.local.is_none() {
        eprintln!("e2e: skipped on a deployed stack: needs {needs}");
        return None;
    }
    Some(st)
}

/// Whether the default credential chain yields credentials.
async fn deployed_credentials(conf: &aws_config::SdkConfig) -> Result<()> {
    use aws_sdk_s3::config::ProvideCredentials as _;
    let provider = conf
        .credentials_provider()
        .context("no AWS credential provider is configured")?;
    provider
        .provide_credentials()
        .await
        .context("the default AWS credential chain found no credentials")?;
    Ok(())
}

/// A fault on the router, removed when dropped (also when the test fails).
pub struct Fault<'a> {
    stack: &'a Stack,
    id: u64,
}

impl<'a> Fault<'a> {
    pub fn add(stack: &'a Stack, spec: Value) -> Result<Self> {
        let id = stack.router("POST", "/_faults", &spec)?["id"]
            .as_u64()
            .context("fault id")?;
        Ok(Self { stack, id })
    }

    pub fn fired(&self) -> Result<u64> {
        let faults = self.stack.router("GET", "/_faults", &json!({}))?;
        let f = faults
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["id"] == self.id))
            .context("fault gone")?;
        f["fired"].as_u64().context("fired")
    }
}

impl Drop for Fault<'_> {
    fn drop(&mut self) {
        let _ = self
            .stack
            .router("DELETE", &format!("/_faults/{}", self.id), &json!({}));
    }
}

/// The local emulator's redrive window (AWS: 14 days), shortened for one test so that its
/// failed executions count as too old to redrive; back to the default when dropped. moto's
/// config API replaces its whole `stepfunctions` section, so execution stays turned on.
pub struct RedriveWindow<'a> {
    stack: &'a Stack,
}

impl<'a> RedriveWindow<'a> {
    pub fn set(stack: &'a Stack, seconds: u64) -> Result<Self> {
        stack.router(
            "POST",
            "/moto-api/config",
            &json!({"stepfunctions": {"execute_state_machine": true, "redrive_window_seconds": seconds}}),
        )?;
        Ok(Self { stack })
    }
}

impl Drop for RedriveWindow<'_> {
    fn drop(&mut self) {
        let _ = self.stack.router(
            "POST",
            "/moto-api/config",
            &json!({"stepfunctions": {"execute_state_machine": true}}),
        );
    }
}

impl Stack {
    pub fn o(&self, key: &str) -> &str {
        self.out[key]
            .as_str()
            .unwrap_or_else(|| panic!("output {key} missing"))
    }

    pub fn product(&self, n: u32) -> String {
        format!("{}-{n}", self.nonce)
    }

    pub fn update(&self, product: &str, supplier: &str, qty: u32) -> Vec<u8> {
        json!({"product_id": product, "quantity": qty, "price": "12.50", "supplier_id": supplier,
               "update_id": format!("{product}-{supplier}-{qty}"), "occurred_at": integration_tests::recent_occurred_at()})
        .to_string()
        .into_bytes()
    }

    /// The local stack's extras, or an error saying the test needs them.
    pub fn local(&self) -> Result<&Local> {
        self.local
            .as_ref()
            .context("this needs the local stack (its database or fault switch)")
    }

    /// The poller's progress: (records read from the stream, records done, batches in flight).
    pub fn poller(&self) -> Result<(u64, u64, u64)> {
        let p = self.router("GET", "/_stats", &json!({}))?["poller"].clone();
        let n = |k: &str| p[k].as_u64().unwrap_or(0);
        Ok((n("records_read"), n("records_done"), n("in_flight")))
    }

    /// Puts records (partition key, data) on the stream in one PutRecords call, and on the
    /// local stack waits until the event source mapping has handed all of them to the
    /// fan-out (or given up on them), so every execution they start exists when this returns.
    /// A deployed stack's mapping cannot be watched: there the caller waits for executions.
    pub async fn put(&self, records: &[(String, Vec<u8>)]) -> Result<()> {
        if self.local.is_none() {
            return self.put_only(records).await;
        }
        let (_, done_before, _) = self.poller()?;
        self.put_only(records).await?;
        let want = done_before + records.len() as u64;
        self.until(
            "the poller to take the records",
            async || self.poller(),
            |(read, done, in_flight)| *done >= want && done == read && *in_flight == 0,
        )
        .await?;
        Ok(())
    }

    pub async fn put_only(&self, records: &[(String, Vec<u8>)]) -> Result<()> {
        self.put_records(records).await.map(drop)
    }

    /// Puts records on the stream in one PutRecords call; where each went: (shard id,
    /// sequence number), in the order given.
    pub async fn put_records(
        &self,
        records: &[(String, Vec<u8>)],
    ) -> Result<Vec<(String, String)>> {
        let entries = records
            .iter()
            .map(|(k, d)| {
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(k)
                    .data(aws_sdk_kinesis::primitives::Blob::new(d.clone()))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .kinesis
            .put_records()
            .stream_name(self.o("StreamName"))
            .set_records(Some(entries))
            .send()
            .await?;
        anyhow::ensure!(
            out.failed_record_count() == Some(0) || out.failed_record_count().is_none(),
            "PutRecords failed some"
        );
        out.records()
            .iter()
            .map(|r| {
                Ok((
                    r.shard_id().context("PutRecords: no shard id")?.to_owned(),
                    r.sequence_number()
                        .context("PutRecords: no sequence number")?
                        .to_owned(),
                ))
            })
            .collect()
    }

    pub async fn count(&self, sql: &str) -> Result<i64> {
        let sql = sql.replace("{nonce}", &self.nonce);
        let row = self
            .local()?
            .db
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await?
            .context("no row")?;
        Ok(row.try_get_by_index(0)?)
    }

    pub async fn events(&self) -> Result<i64> {
        self.count("SELECT count(*) FROM inventory_events WHERE product_id LIKE '{nonce}-%'")
            .await
    }

    /// Waits until `f` holds, or fails with what it last saw.
    pub async fn until<T: std::fmt::Debug>(
        &self,
        what: &str,
        mut probe: impl AsyncFnMut() -> Result<T>,
        ok: impl Fn(&T) -> bool,
    ) -> Result<T> {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = probe().await?;
            if ok(&v) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("{what}: still {v:?} after {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Executions not in `before` (started since this test began): (ARN, name, status).
    /// The listing comes newest first (in AWS and moto), so it stops at the first execution
    /// that started well before the test.
    pub async fn executions(&self) -> Result<Vec<(String, String, ExecutionStatus)>> {
        let since = aws_sdk_sfn::primitives::DateTime::from_millis(
            (self.began - LISTING_SLACK).timestamp_millis(),
        );
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .sfn
                .list_executions()
                .state_machine_arn(self.o("StateMachineArn"))
                .set_next_token(token)
                .send()
                .await?;
            for e in page.executions() {
                if e.start_date().secs() < since.secs() {
                    return Ok(all);
                }
                if !self.before.contains(e.execution_arn()) {
                    all.push((
                        e.execution_arn().to_owned(),
                        e.name().to_owned(),
                        e.status().clone(),
                    ));
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(all);
            }
        }
    }

    /// The router's controls (`/_faults`), over plain HTTP/1.1.
    pub fn router(&self, method: &str, path: &str, body: &Value) -> Result<Value> {
        http(
            method,
            &format!("{}{path}", self.local()?.router_url),
            &body.to_string(),
        )
    }

    /// The status of the execution `arn` once it is no longer RUNNING.
    pub async fn finished(&self, arn: &str) -> Result<ExecutionStatus> {
        self.until(
            "the execution to finish",
            async || {
                Ok(self
                    .sfn
                    .describe_execution()
                    .execution_arn(arn)
                    .send()
                    .await?
                    .status()
                    .clone())
            },
            |s| *s != ExecutionStatus::Running,
        )
        .await
    }

    /// Archive objects of the chunk whose execution is named `name`.
    pub async fn archived(&self, name: &str) -> Result<usize> {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(self.o("ArchiveBucketName"))
            .prefix("raw/")
            .send()
            .await?;
        Ok(listed
            .contents()
            .iter()
            .filter(|o| o.key().is_some_and(|k| k.contains(name)))
            .count())
    }

    pub async fn wait_finished(
        &self,
        at_least: usize,
    ) -> Result<Vec<(String, String, ExecutionStatus)>> {
        self.until(
            "executions to finish",
            async || self.executions().await,
            |v| v.len() >= at_least && v.iter().all(|e| e.2 != ExecutionStatus::Running),
        )
        .await
    }
}

/// A minimal HTTP/1.1 client for the router's JSON controls and direct invocations.
pub fn http(method: &str, url: &str, body: &str) -> Result<Value> {
    let rest = url.strip_prefix("http://").context("http only")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").context("no HTTP body")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 2"), "{method} {url}: {head}");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The states whose task failed: each TaskFailed event, walked back to its state's entry.
pub fn failed_in(
    history: &aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput,
) -> Vec<String> {
    let by_id: std::collections::HashMap<i64, &aws_sdk_sfn::types::HistoryEvent> =
        history.events().iter().map(|e| (e.id(), e)).collect();
    let mut states = Vec::new();
    for failed in history
        .events()
        .iter()
        .filter(|e| e.r#type() == &aws_sdk_sfn::types::HistoryEventType::TaskFailed)
    {
        let mut e = failed;
        while let Some(prev) = by_id.get(&e.previous_event_id()) {
            if let Some(d) = prev.state_entered_event_details() {
                states.push(d.name().to_owned());
                break;
            }
            e = prev;
        }
    }
    states
}

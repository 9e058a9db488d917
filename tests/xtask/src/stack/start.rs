//! Starting and stopping the local stack, in dependency order.

use super::http::{self, HttpClient};
use super::lambda_watch::{self, FunctionLaunch, PIPELINE_FUNCTIONS, Registry};
use super::moto::{self, ACCOUNT, REGION};
use super::outputs::Outputs;
use super::poller::{EsmConfig, Poller};
use super::procs::{self, Managed};
use super::router::{self, RouterState};
use super::stats::Stats;
use super::{database, faults::Faults};
use crate::setup;
use crate::shell;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const ASL_FILE: &str = "statemachines/inventory-pipeline.asl.json";
/// The local stack's SupplierRejectionAccounts: two suppliers in two (made-up) accounts, so
/// the end-to-end tests can check that each sees its own rejections and not the other's.
pub const LOCAL_SUPPLIER_ACCOUNTS: &str = "supplier-a=111111111111,supplier-b=222222222222";
/// The local stack's SupplierAccountIds.
pub const LOCAL_SUPPLIER_ACCOUNT_IDS: &str = "111111111111,222222222222";

/// How to run the stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Unique per stack on this machine: names its database, key prefix and state directory.
    pub id: String,
    /// `EnvironmentSuffix` of the resource names (`inventory-updates-local`).
    pub suffix: String,
    pub outputs: PathBuf,
    pub shards: i32,
    /// Instances per function (Lambda's concurrency, locally).
    pub instances: usize,
    pub esm: EsmConfig,
    /// Build the function binaries first (`cargo build --workspace --bins`).
    pub build: bool,
    pub function_timeout: Duration,
    /// Keep the database and cache keys after the stack stops.
    pub keep_data: bool,
    /// The PostgreSQL server the stack makes its database on (`postgres://user@host:port`).
    pub postgres_server: String,
    /// The Redis server the functions cache in.
    pub redis_url: String,
}

impl Default for StackOptions {
    fn default() -> Self {
        let id = format!("local{}", std::process::id());
        Self {
            suffix: "local".into(),
            outputs: shell::root().join("cfn-outputs/flat-outputs.json"),
            shards: 4,
            instances: 3,
            esm: EsmConfig::default(),
            build: true,
            function_timeout: Duration::from_secs(60),
            keep_data: false,
            postgres_server: database::POSTGRES_SERVER.into(),
            redis_url: database::REDIS_URL.into(),
            id,
        }
    }
}

/// What `stack down` and the reaper need to clean up after a stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackState {
    pub supervisor_pid: u32,
    pub database: String,
    pub cache_prefix: String,
    pub outputs: PathBuf,
    pub keep_data: bool,
    pub reaper: Option<procs::Recorded>,
    #[serde(default = "default_postgres_server")]
    pub postgres_server: String,
    #[serde(default = "default_redis_url")]
    pub redis_url: String,
}

fn default_postgres_server() -> String {
    database::POSTGRES_SERVER.into()
}

fn default_redis_url() -> String {
    database::REDIS_URL.into()
}

pub fn stacks_dir() -> PathBuf {
    shell::root().join(".local/stack")
}

/// A running local stack.
#[derive(Debug)]
pub struct LocalStack {
    pub outputs: Outputs,
    pub outputs_path: PathBuf,
    pub state_dir: PathBuf,
    pub stats: Arc<Stats>,
    registry: Registry,
    services: Vec<Managed>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    state: StackState,
}

impl LocalStack {
    pub async fn start(opts: StackOptions) -> Result<Self> {
        setup::ensure_services()?;
        let (moto_server, cargo_lambda) = (
            shell::venv_bin("moto_server"),
            shell::venv_bin("cargo-lambda"),
        );
        if !moto_server.exists() || !cargo_lambda.exists() {
            tokio::task::spawn_blocking(|| setup::ensure_venv(setup::Tools::Stack)).await??;
        }
        super::cli::clean_dead_stacks();
        let root = shell::root();
        if opts.build {
            let r = root.clone();
            tokio::task::spawn_blocking(move || lambda_watch::build_functions(&r)).await??;
        }
        let asl = std::fs::read_to_string(root.join(ASL_FILE))
            .with_context(|| format!("reading {ASL_FILE}"))?;
        for f in PIPELINE_FUNCTIONS {
            let p = lambda_watch::binary_path(&root, f);
            anyhow::ensure!(
                p.exists(),
                "{} is missing: build the functions (drop --no-build)",
                p.display()
            );
        }

        let state_dir = stacks_dir().join(&opts.id);
        let logs = state_dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let registry = Registry::new(&state_dir);
        let database = format!("inventory_{}", opts.id.replace('-', "_"));
        let cache_prefix = format!("inventory:{}:", opts.id);
        let mut state = StackState {
            supervisor_pid: std::process::id(),
            database: database.clone(),
            cache_prefix: cache_prefix.clone(),
            outputs: opts.outputs.clone(),
            keep_data: opts.keep_data,
            reaper: None,
            postgres_server: opts.postgres_server.clone(),
            redis_url: opts.redis_url.clone(),
        };
        state.reaper = super::cli::spawn_reaper(&state_dir, &logs).ok();
        write_state(&state_dir, &state)?;

        let (stop_tx, stop_rx) = watch::channel(false);
        let mut stack = Self {
            outputs_path: opts.outputs.clone(),
            state_dir: state_dir.clone(),
            stats: Arc::new(Stats::default()),
            registry,
            services: Vec::new(),
            stop_tx,
            tasks: Vec::new(),
            state,
            outputs: placeholder_outputs(),
        };
        match stack
            .bring_up(&opts, &asl, &moto_server, &cargo_lambda, stop_rx)
            .await
        {
            Ok(outputs) => {
                stack.outputs = outputs;
                Ok(stack)
            }
            Err(e) => {
                eprintln!(
                    "stack: start-up failed; stopping what was started (logs in {})",
                    logs.display()
                );
                stack.stop().await.ok();
                Err(e)
            }
        }
    }

    /// The stack's parts, in dependency order.
    async fn bring_up(
        &mut self,
        opts: &StackOptions,
        asl: &str,
        moto_server: &Path,
        cargo_lambda: &Path,
        stop_rx: watch::Receiver<bool>,
    ) -> Result<Outputs> {
        let ports = Ports::free()?;
        let client: HttpClient = http::client();
        database::create(&self.state.postgres_server, &self.state.database).await?;
        self.start_moto_and_emulator(moto_server, cargo_lambda, ports)?;
        self.start_router(opts, ports, &client).await?;
        let (conf, res) = create_resources(opts, asl, ports, &client).await?;
        let product_api_url = self.start_functions(opts, &res, ports, &stop_rx).await?;
        let fanout_arn = function_arn(&opts.suffix, "fanout");
        smoke_test(&client, &ports.endpoint(), &fanout_arn, &self.logs()).await?;
        self.start_poller(opts, &conf, &res, &client, ports, stop_rx)
            .await?;
        let outputs = self.outputs(opts, res, ports, product_api_url);
        outputs.write(&opts.outputs)?;
        Ok(outputs)
    }

    fn logs(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    /// The emulator (moto) and the Lambda runtime emulator (`cargo lambda watch`), as
    /// processes; each is waited for by the step that first needs it.
    fn start_moto_and_emulator(
        &mut self,
        moto_server: &Path,
        cargo_lambda: &Path,
        ports: Ports,
    ) -> Result<()> {
        let logs = self.logs();
        let m = moto::start(
            &moto_server.with_file_name("python"),
            ports.moto,
            ports.router,
            &logs.join("moto.log"),
        )?;
        self.registry.add(m.record.clone());
        self.services.push(m);
        let e = lambda_watch::start_emulator(
            &shell::root(),
            cargo_lambda,
            ports.emulator,
            // The emulator also ends a function's idle wait for its next event after this
            // long, without a request id, and the runtime then panics: keep it long. The
            // router enforces the function timeout itself.
            Duration::from_secs(3600),
            &logs.join("cargo-lambda.log"),
        )?;
        self.registry.add(e.record.clone());
        self.services.push(e);
        Ok(())
    }

    /// The router in front of moto, which sends Lambda invokes to the emulator, by function
    /// name or binary name.
    async fn start_router(
        &mut self,
        opts: &StackOptions,
        ports: Ports,
        client: &HttpClient,
    ) -> Result<()> {
        let mut functions = BTreeMap::new();
        for bin in PIPELINE_FUNCTIONS {
            functions.insert(function_name(&opts.suffix, bin), (*bin).to_owned());
            functions.insert((*bin).to_owned(), (*bin).to_owned());
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", ports.router))
            .await
            .context("binding the router")?;
        let router_state = Arc::new(RouterState {
            moto_port: ports.moto,
            emulator_port: ports.emulator,
            functions,
            function_timeout: opts.function_timeout,
            faults: Faults::default(),
            stats: self.stats.clone(),
            client: client.clone(),
        });
        self.tasks
            .push(tokio::spawn(router::run(listener, router_state)));
        Ok(())
    }

    /// The pipeline's functions (and the read API when built) under the emulator, each with
    /// the environment the template gives it, pointed at this stack. Returns the read API's
    /// URL when it runs.
    async fn start_functions(
        &mut self,
        opts: &StackOptions,
        res: &moto::Resources,
        ports: Ports,
        stop_rx: &watch::Receiver<bool>,
    ) -> Result<Option<String>> {
        let emulator_port = ports.emulator;
        let up = Duration::from_secs(60);
        tokio::task::spawn_blocking(move || {
            shell::wait_for_port(emulator_port, "cargo lambda watch", up)
        })
        .await??;
        let root = shell::root();
        let logs = self.logs();
        let endpoint = ports.endpoint();
        let database_url =
            database::database_url(&self.state.postgres_server, &self.state.database);
        let env: Vec<(String, String)> = [
            ("RUST_LOG", "info"),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_MAX_ATTEMPTS", "3"),
            ("DATABASE_URL", database_url.as_str()),
            ("DB_POOL_MAX", "2"),
            ("REDIS_URL", self.state.redis_url.as_str()),
            ("CACHE_KEY_PREFIX", self.state.cache_prefix.as_str()),
            ("ARCHIVE_BUCKET", res.bucket.as_str()),
            ("ARCHIVE_KMS_KEY_ID", res.kms_key_arn.as_str()),
            ("SUPPLIER_ACCOUNTS", LOCAL_SUPPLIER_ACCOUNTS),
            ("SUPPLIER_ACCOUNT_IDS", LOCAL_SUPPLIER_ACCOUNT_IDS),
            ("REJECTIONS_BUCKET", res.rejections_bucket.as_str()),
            ("REJECTIONS_KMS_KEY_ID", res.kms_key_arn.as_str()),
            ("STATE_MACHINE_ARN", res.state_machine_arn.as_str()),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for bin in PIPELINE_FUNCTIONS {
            let launch = FunctionLaunch {
                binary: (*bin).to_owned(),
                path: lambda_watch::binary_path(&root, bin),
                env: env.clone(),
                runtime_port: emulator_port,
                log: logs.join(format!("{bin}.log")),
            };
            lambda_watch::supervise(
                launch,
                opts.instances.max(1),
                self.registry.clone(),
                stop_rx.clone(),
            );
        }
        // The read API, behind the emulator's function URLs, which turn an HTTP request into
        // the HTTP API v2 event API Gateway sends. One instance is plenty locally.
        let product_api = lambda_watch::binary_path(&root, "product-api");
        let product_api_url = product_api
            .exists()
            .then(|| format!("http://127.0.0.1:{emulator_port}/lambda-url/product-api"));
        if product_api_url.is_some() {
            let launch = FunctionLaunch {
                binary: "product-api".to_owned(),
                path: product_api,
                env,
                runtime_port: emulator_port,
                log: logs.join("product-api.log"),
            };
            lambda_watch::supervise(launch, 1, self.registry.clone(), stop_rx.clone());
        }
        Ok(product_api_url)
    }

    /// The Kinesis poller, standing in for the fan-out's event source mapping.
    async fn start_poller(
        &mut self,
        opts: &StackOptions,
        conf: &aws_config::SdkConfig,
        res: &moto::Resources,
        client: &HttpClient,
        ports: Ports,
        stop_rx: watch::Receiver<bool>,
    ) -> Result<()> {
        let fanout_arn = function_arn(&opts.suffix, "fanout");
        let poller = Poller {
            kinesis: aws_sdk_kinesis::Client::new(conf),
            sqs: aws_sdk_sqs::Client::new(conf),
            http: client.clone(),
            invoke_url: format!(
                "{}/2015-03-31/functions/{fanout_arn}/invocations",
                ports.endpoint()
            ),
            function_arn: fanout_arn,
            stream_name: res.stream_name.clone(),
            stream_arn: res.stream_arn.clone(),
            dlq_url: res.dlq_url.clone(),
            config: opts.esm.clone(),
            stats: self.stats.clone(),
        };
        self.tasks.extend(poller.start(stop_rx).await?);
        Ok(())
    }

    /// The stack's outputs, under the deployed stack's keys.
    fn outputs(
        &self,
        opts: &StackOptions,
        res: moto::Resources,
        ports: Ports,
        product_api_url: Option<String>,
    ) -> Outputs {
        let function_name = |bin: &str| function_name(&opts.suffix, bin);
        let endpoint = ports.endpoint();
        Outputs {
            environment_suffix: opts.suffix.clone(),
            region: REGION.into(),
            stream_name: res.stream_name,
            stream_arn: res.stream_arn,
            archive_bucket_name: res.bucket,
            rejections_bucket_name: Some(res.rejections_bucket),
            local_supplier_accounts: Some(LOCAL_SUPPLIER_ACCOUNTS.into()),
            state_machine_arn: res.state_machine_arn,
            state_machine_name: format!("inventory-pipeline-{}", opts.suffix),
            fanout_dlq_url: res.dlq_url,
            fanout_dlq_arn: res.dlq_arn,
            lambda_dlq_url: res.lambda_dlq_url,
            alarm_topic_arn: res.alarm_topic_arn,
            product_api_url,
            db_endpoint: "127.0.0.1".into(),
            db_port: port_of(&self.state.postgres_server, "5432"),
            db_name: self.state.database.clone(),
            cache_endpoint: "127.0.0.1".into(),
            cache_port: port_of(&self.state.redis_url, "6379"),
            cache_key_prefix: self.state.cache_prefix.clone(),
            kms_key_arn: res.kms_key_arn,
            fanout_function_name: function_name("fanout"),
            validate_function_name: function_name("validate"),
            archive_function_name: function_name("archive"),
            persist_function_name: function_name("persist"),
            cache_invalidate_function_name: function_name("cache-invalidate"),
            local_endpoint_url: endpoint.clone(),
            local_router_url: endpoint,
            local_database_url: database::database_url(
                &self.state.postgres_server,
                &self.state.database,
            ),
            local_redis_url: self.state.redis_url.clone(),
            local_cache_prefix: self.state.cache_prefix.clone(),
            local_state_dir: self.state_dir.display().to_string(),
        }
    }

    /// Environment variables that point the end-to-end tests at this stack.
    pub fn test_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "INVENTORY_OUTPUTS".into(),
                self.outputs_path.display().to_string(),
            ),
            ("INVENTORY_E2E_REQUIRED".into(), "1".into()),
        ]
    }

    /// Stops everything the stack started and removes its data (unless kept).
    pub async fn stop(mut self) -> Result<()> {
        let _ = self.stop_tx.send(true);
        for t in &self.tasks {
            t.abort();
        }
        // Functions first, so none of them sees its runtime API vanish.
        let (services, functions): (Vec<_>, Vec<_>) = self
            .registry
            .all()
            .into_iter()
            .partition(|r| r.name == "moto_server" || r.name == "cargo-lambda-watch");
        tokio::task::spawn_blocking(move || {
            procs::stop_recorded(&functions, Duration::from_secs(3));
            procs::stop_recorded(&services, Duration::from_secs(3));
        })
        .await
        .ok();
        procs::stop_all(&mut self.services, Duration::from_secs(1)).await;
        let result = cleanup_data(&self.state).await;
        if let Some(r) = &self.state.reaper {
            procs::stop_recorded(std::slice::from_ref(r), Duration::from_secs(1));
        }
        std::fs::remove_file(self.state_dir.join("state.json")).ok();
        result
    }
}

/// The ports the stack's parts listen on, picked free at start.
#[derive(Debug, Clone, Copy)]
struct Ports {
    router: u16,
    moto: u16,
    emulator: u16,
}

impl Ports {
    fn free() -> Result<Self> {
        Ok(Self {
            router: http::free_port()?,
            moto: http::free_port()?,
            emulator: http::free_port()?,
        })
    }

    /// Where the AWS SDK and the functions reach the stack: the router.
    fn endpoint(self) -> String {
        format!("http://127.0.0.1:{}", self.router)
    }
}

/// A function's name in the stack (`inventory-{bin}-{suffix}`, as in the template).
fn function_name(suffix: &str, bin: &str) -> String {
    format!("inventory-{bin}-{suffix}")
}

fn function_arn(suffix: &str, bin: &str) -> String {
    format!(
        "arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}",
        function_name(suffix, bin)
    )
}

/// The emulator's resources (stream, buckets, queues, key, topic) and the state machine from
/// the ASL with its substitutions filled in.
async fn create_resources(
    opts: &StackOptions,
    asl: &str,
    ports: Ports,
    client: &HttpClient,
) -> Result<(aws_config::SdkConfig, moto::Resources)> {
    let mut substitutions = BTreeMap::new();
    for bin in PIPELINE_FUNCTIONS {
        for name in moto::substitution_names(bin) {
            substitutions.insert(name, function_arn(&opts.suffix, bin));
        }
    }
    let (moto_port, up) = (ports.moto, Duration::from_secs(60));
    tokio::task::spawn_blocking(move || shell::wait_for_port(moto_port, "moto_server", up))
        .await??;
    moto::enable_execution(client, ports.moto).await?;
    let endpoint = ports.endpoint();
    let conf = moto::sdk_config(&endpoint).await;
    let names = moto::Names {
        suffix: opts.suffix.clone(),
        shards: opts.shards,
    };
    let mut res = moto::create_resources(&conf, client, &endpoint, &names).await?;
    let definition = moto::substitute(asl, &substitutions)?;
    res.state_machine_arn = moto::create_state_machine(
        &conf,
        &format!("inventory-pipeline-{}", opts.suffix),
        definition,
    )
    .await?;
    Ok((conf, res))
}

/// Drops the database and cache keys, and the outputs file if it is still this stack's.
pub async fn cleanup_data(state: &StackState) -> Result<()> {
    if let Ok(o) = Outputs::read(&state.outputs)
        && o.local_cache_prefix == state.cache_prefix
    {
        std::fs::remove_file(&state.outputs).ok();
    }
    if state.keep_data {
        return Ok(());
    }
    let db = database::drop(&state.postgres_server, &state.database).await;
    let cache = database::delete_prefix(&state.redis_url, &state.cache_prefix).await;
    db.context("dropping the stack's database")?;
    cache.context("deleting the stack's cache keys")?;
    Ok(())
}

/// The port of a `scheme://[user@]host:port[/...]` URL, or `default`.
fn port_of(url: &str, default: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|host| host.rsplit_once(':'))
        .map_or(default.to_owned(), |(_, port)| port.to_owned())
}

pub fn write_state(dir: &Path, state: &StackState) -> Result<()> {
    std::fs::write(dir.join("state.json"), serde_json::to_vec_pretty(state)?)?;
    Ok(())
}

pub fn read_state(dir: &Path) -> Option<StackState> {
    std::fs::read(dir.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// One empty batch through the fan-out: proves the functions start and are configured.
async fn smoke_test(
    client: &HttpClient,
    endpoint: &str,
    fanout_arn: &str,
    logs: &Path,
) -> Result<()> {
    let url = format!("{endpoint}/2015-03-31/functions/{fanout_arn}/invocations");
    let reply = http::post_json(client, &url, &serde_json::json!({ "Records": [] })).await?;
    if reply.headers.contains_key("x-amz-function-error") || !reply.status.is_success() {
        bail!(
            "the fan-out failed its smoke test: {} (see {})",
            reply.text(),
            logs.join("fanout.log").display()
        );
    }
    Ok(())
}

fn placeholder_outputs() -> Outputs {
    let e = String::new;
    Outputs {
        environment_suffix: e(),
        region: e(),
        stream_name: e(),
        stream_arn: e(),
        archive_bucket_name: e(),
        rejections_bucket_name: None,
        state_machine_arn: e(),
        state_machine_name: e(),
        fanout_dlq_url: e(),
        fanout_dlq_arn: e(),
        lambda_dlq_url: e(),
        alarm_topic_arn: None,
        product_api_url: None,
        db_endpoint: e(),
        db_port: e(),
        db_name: e(),
        cache_endpoint: e(),
        cache_port: e(),
        cache_key_prefix: e(),
        kms_key_arn: e(),
        fanout_function_name: e(),
        validate_function_name: e(),
        archive_function_name: e(),
        persist_function_name: e(),
        cache_invalidate_function_name: e(),
        local_endpoint_url: e(),
        local_router_url: e(),
        local_database_url: e(),
        local_redis_url: e(),
        local_cache_prefix: e(),
        local_state_dir: e(),
        local_supplier_accounts: None,
    }
}

//! lambda: each `[source] lambda_functions` entry deployed to prod from dev's
//! own package — from `[source] lambda_artifacts` (S3) when set, else
//! GetFunction's presigned Code.Location — after checking that its SHA-256
//! equals dev's CodeSha256 (a mismatch is an error, never a silent deploy).
//! Dev's runtime, handler, memory, timeout, architectures, layers, tracing
//! and ephemeral storage; environment values naming dev resources rewritten
//! through the name map plus `[lambda.overrides]`, encrypted with the prod
//! key; the prod private subnets with the compute group; reserved
//! concurrency; a published version with aliases `blue` and `green`. A
//! package too large to send inline goes through a prod staging bucket
//! ([`staging`]).

mod runtimes;
mod staging;

use crate::aws::Call;
use crate::engine::estimate::{Compose, Wait};
use std::collections::BTreeMap;

use aws_sdk_lambda::types::{Environment, EphemeralStorage, FunctionConfiguration, TracingConfig, VpcConfig};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;

use crate::engine::journal::{Op, Record};
use crate::engine::{is_planned, retry_until, About, Created, Ctx, Declared, Detail, Outcome, Res, Step, StepError};
use crate::steps::common::arns;
use crate::steps::common::references::{self, Counterparts};

const STEP: &str = "lambda";
/// AWS keeps at least this much concurrency unreserved per account.
const MIN_UNRESERVED: i32 = 100;
pub const ALIASES: [&str; 2] = ["blue", "green"];

/// The lambda step; dev's functions are read once per command.
#[derive(Default)]
pub struct Lambda {
    dev: tokio::sync::OnceCell<Vec<DevFunction>>,
}

/// What the migration reads of a dev function.
#[derive(Debug, Clone)]
pub struct DevFunction {
    pub name: String,
    pub config: FunctionConfiguration,
}

impl std::fmt::Display for DevFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Lambda {
    async fn dev(&self, ctx: &Ctx) -> Result<&Vec<DevFunction>, StepError> {
        self.dev.get_or_try_init(|| read_dev(ctx)).await
    }
}

static ABOUT: About = About {
    id: STEP,
    // Not `database`: a function needs nothing of the cluster (its
    // environment names it through the name map), so the functions deploy
    // while Aurora restores — on AWS the restore and its instances take
    // 15–30 minutes, and everything else fits in their shadow.
    deps: &["iam", "network"],
    kinds: &["staging_bucket", "lambda_function", "lambda_alias"],
    actions: &[
        "lambda:GetFunction",
        "lambda:GetAccountSettings",
        "lambda:CreateFunction",
        "lambda:UpdateFunctionConfiguration",
        "lambda:UpdateFunctionCode",
        "lambda:DeleteFunction",
        "lambda:PutFunctionConcurrency",
        "lambda:DeleteFunctionConcurrency",
        "lambda:GetFunctionConcurrency",
        "lambda:PublishVersion",
        "lambda:ListVersionsByFunction",
        "lambda:CreateAlias",
        "lambda:GetAlias",
        "lambda:DeleteAlias",
        "lambda:TagResource",
        "lambda:ListTags",
        // CreateFunction with dev's layers reads each layer version.
        "lambda:GetLayerVersion",
        "iam:PassRole",
        "s3:GetObject",
        // The staging bucket, for packages over the inline limit.
        "s3:ListBucket",
        "s3:CreateBucket",
        "s3:GetBucketTagging",
        "s3:PutBucketTagging",
        "s3:PutEncryptionConfiguration",
        "s3:PutBucketPublicAccessBlock",
        "s3:DeleteBucketPolicy",
        "s3:PutLifecycleConfiguration",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucketVersions",
        "s3:DeleteObjectVersion",
        "s3:ListBucketMultipartUploads",
        "s3:AbortMultipartUpload",
        "s3:DeleteBucket",
        "kms:GenerateDataKey",
        "kms:Decrypt",
    ],
    source_actions: &["lambda:GetFunction", "lambda:GetLayerVersionPolicy", "s3:ListBucket", "s3:GetObject"],
    scopes: &[("lambda", arns::functions), ("kms", arns::kms_keys), ("s3", arns::packages)],
    waits: &[("lambda_function", Wait::FunctionActive, Compose::Side)],
    undo_waits: &[("lambda_function", Wait::InterfacesReleased, Compose::Side)],
    ..About::NONE
};

impl Declared for Lambda {
    fn about(&self) -> &'static About {
        &ABOUT
    }

    fn grant(&self, cfg: &crate::config::Config, account: &str, action: &str) -> Option<crate::engine::Grant> {
        use crate::engine::Grant;
        match action {
            // The execution roles, passed to Lambda only.
            "iam:PassRole" => Some(Grant::passed_to(
                "PassExecutionRoles",
                cfg.source
                    .lambda_functions
                    .iter()
                    .map(|f| format!("arn:aws:iam::{account}:role/{}", cfg.names.lambda_role(f)))
                    .collect(),
                "lambda.amazonaws.com",
            )),
            // Dev's layers may live in any account (a shared layer): their
            // ARNs are known only once dev's functions are read.
            "lambda:GetLayerVersion" => Some(Grant {
                sid: "ReadLayers",
                resources: vec![format!("arn:aws:lambda:{}:*:layer:*:*", cfg.migration.region)],
                condition: None,
            }),
            _ => None,
        }
    }
}

impl Step for Lambda {
    async fn preflight(&self, ctx: &Ctx) -> Vec<StepError> {
        let dev = match self.dev(ctx).await {
            Ok(d) => d,
            Err(e) => return vec![e],
        };
        let today = runtimes::today();
        let mut problems = Vec::new();
        for f in dev {
            match runtimes::verdict(f.config.runtime().map(|r| r.as_str()).unwrap_or(""), today) {
                runtimes::Verdict::Supported => {}
                runtimes::Verdict::Deprecated(d) => ctx.notice(STEP, runtimes::warning(&f.name, &d)),
                runtimes::Verdict::Blocked(why) => {
                    problems.push(StepError::Invalid(format!("[source] lambda_functions: {}: {why}", f.name)))
                }
            }
        }
        if let Err(e) = check_concurrency(ctx).await {
            problems.push(e);
        }
        problems.extend(check_layers_shared(ctx, dev).await);
        problems.extend(staging::check_bucket(ctx, dev).await);
        problems
    }

    async fn run(&self, ctx: &Ctx) -> Result<Outcome, StepError> {
        let dev = self.dev(ctx).await?;
        if dev.is_empty() {
            return Ok(Outcome::Skipped("no [source] lambda_functions configured".into()));
        }
        staging::converge_bucket(ctx, dev).await?;
        let refs = &counterparts(ctx, dev).await?;
        ctx.each(dev.clone(), |f: DevFunction| async move { converge_function(ctx, refs, &f).await }).await?;
        Ok(Outcome::Done)
    }

    crate::step_functions!(undo => undo);

    async fn validate(&self, ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
        let dev = self.dev(ctx).await?;
        validate(ctx, dev).await
    }
}

/// The reserved concurrency a prod function should have.
fn reserved_for(ctx: &Ctx, dev: &str) -> Option<i32> {
    ctx.cfg.lambda.overrides.get(dev).and_then(|o| o.reserved_concurrency).or(ctx.cfg.lambda.reserved_concurrency)
}

/// Preflight, when dev is another account: every layer version of dev's own
/// that a dev function uses must grant the prod account
/// `lambda:GetLayerVersion` (CreateFunction in prod reads it), read through
/// the dev side (reads only). Layers of third accounts are theirs to share
/// and cannot be read from here; AWS refuses CreateFunction if they are not.
async fn check_layers_shared(ctx: &Ctx, dev: &[DevFunction]) -> Vec<StepError> {
    let layers: BTreeMap<String, Vec<&str>> = dev.iter().fold(BTreeMap::new(), |mut m, f| {
        for arn in f.config.layers().iter().filter_map(|l| l.arn()) {
            m.entry(arn.to_owned()).or_default().push(f.name.as_str());
        }
        m
    });
    if layers.is_empty() {
        return vec![];
    }
    let dev_account = match ctx.aws.source.account_id().await {
        Ok(a) => a,
        Err(e) => return vec![StepError::Invalid(e)],
    };
    if dev_account == ctx.account {
        return vec![];
    }
    let mut problems = Vec::new();
    for (arn, users) in layers {
        // arn:aws:lambda:<region>:<account>:layer:<name>:<version>
        let parts: Vec<&str> = arn.split(':').collect();
        let (Some(owner), Some(name), Some(version)) = (parts.get(4), parts.get(6), parts.get(7)) else { continue };
        if *owner != dev_account {
            continue;
        }
        let Ok(number) = version.parse::<i64>() else { continue };
        let read =
            ctx.aws.source.lambda.get_layer_version_policy().layer_name(*name).version_number(number).send().await;
        let policy = match read.found(format!("dev layer {arn}"), "GetLayerVersionPolicy") {
            Ok(out) => out.and_then(|o| o.policy).and_then(|p| serde_json::from_str(&p).ok()).unwrap_or(Value::Null),
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if !super::common::policy::grants(&policy, &ctx.account, "lambda:GetLayerVersion") {
            problems.push(StepError::Invalid(format!(
                "[source] lambda_functions: {}: layer {arn} (account {dev_account}) does not grant the prod account {} lambda:GetLayerVersion, so CreateFunction in prod would be refused\nhelp: in the dev account run: aws lambda add-layer-version-permission --region {} --layer-name {name} --version-number {number} --statement-id paymig-prod-{} --action lambda:GetLayerVersion --principal {}",
                users.join(", "),
                ctx.account,
                parts.get(3).unwrap_or(&""),
                ctx.account,
                ctx.account
            )));
        }
    }
    problems
}

/// Preflight: the account keeps at least 100 unreserved after the
/// reservations. An endpoint without GetAccountSettings (the emulator) gets
/// a warning; AWS itself still refuses a reservation that breaks the rule.
async fn check_concurrency(ctx: &Ctx) -> Result<(), StepError> {
    let wanted: i32 = ctx.cfg.source.lambda_functions.iter().filter_map(|f| reserved_for(ctx, f)).sum();
    if wanted == 0 {
        return Ok(());
    }
    let settings = match ctx.aws.target.lambda.get_account_settings().send().await {
        Ok(s) => s,
        Err(e) => {
            let failure = crate::aws::AwsFailure::of(&e);
            // An endpoint without the operation (the emulator answers 404) is
            // expected there and said once, quietly; anything else (a denial
            // above all) is a preflight failure naming the call.
            if failure.status == Some(404) && failure.code.is_none() {
                // Only an emulator lacks it (AWS always has it): said at -v.
                tracing::debug!("this endpoint has no Lambda GetAccountSettings; the 100-unreserved rule is left to PutFunctionConcurrency");
                return Ok(());
            }
            return Err(StepError::sdk("the account's Lambda concurrency", "GetAccountSettings", &e));
        }
    };
    let unreserved = settings.account_limit().and_then(|l| l.unreserved_concurrent_executions()).unwrap_or(0);
    // Reservations paymig already holds are given back before they are re-taken.
    let mut held = 0;
    for f in &ctx.cfg.source.lambda_functions {
        let name = ctx.cfg.names.prod(f);
        let c = ctx.aws.target.lambda.get_function_concurrency().function_name(&name).send().await;
        if let Some(c) = c.found(&name, "GetFunctionConcurrency")? {
            held += c.reserved_concurrent_executions().unwrap_or(0);
        }
    }
    if unreserved + held - wanted < MIN_UNRESERVED {
        return Err(StepError::Invalid(format!(
            "[lambda] reserved_concurrency: reserving {wanted} leaves {} unreserved in the account; AWS requires at least {MIN_UNRESERVED} — lower the reservations or raise the account quota",
            unreserved + held - wanted
        )));
    }
    Ok(())
}

async fn read_dev(ctx: &Ctx) -> Result<Vec<DevFunction>, StepError> {
    use futures::StreamExt;
    let lane = crate::aws::lane();
    let reads = ctx.cfg.source.lambda_functions.clone().into_iter().map(|name: String| {
        crate::aws::in_lane(format!("{lane}/{name}"), async move {
            match ctx
                .aws
                .source
                .lambda
                .get_function()
                .function_name(&name)
                .send()
                .await
                .found(format!("dev function {name}"), "GetFunction")?
            {
                Some(f) => Ok(DevFunction {
                    name: name.clone(),
                    config: f.configuration.ok_or_else(|| {
                        StepError::Invalid(format!("dev function {name}: GetFunction returned no configuration"))
                    })?,
                }),
                None => Err(StepError::Invalid(format!(
                    "[source] lambda_functions: the dev function {name:?} does not exist"
                ))),
            }
        })
    });
    // In order, `parallelism` at a time.
    let read: Vec<Result<DevFunction, StepError>> =
        futures::stream::iter(reads).buffered(ctx.parallelism.max(1)).collect().await;
    read.into_iter().collect()
}

/// Base64 SHA-256, as Lambda's CodeSha256.
pub fn code_sha256(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}

/// Downloads a presigned URL (GetFunction's Code.Location).
/// Why a package download failed: the HTTP status when the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadError {
    pub status: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for DownloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for DownloadError {
    fn from(message: String) -> Self {
        DownloadError { status: None, message }
    }
}

pub async fn download(url: &str) -> Result<Vec<u8>, DownloadError> {
    use http_body_util::BodyExt;
    type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
    type HttpClient = hyper_util::client::legacy::Client<Https, http_body_util::Empty<bytes::Bytes>>;
    // Built once per process, not once per package.
    static CLIENT: std::sync::OnceLock<Result<HttpClient, String>> = std::sync::OnceLock::new();
    let client = CLIENT
        .get_or_init(|| {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_native_roots()
                .map_err(|e| format!("no TLS roots: {e}"))?
                .https_or_http()
                .enable_http1()
                .build();
            Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https))
        })
        .as_ref()
        .map_err(|e| DownloadError::from(e.clone()))?;
    let uri: hyper::Uri = url.parse().map_err(|e| DownloadError::from(format!("bad code location: {e}")))?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(300), client.get(uri))
        .await
        .map_err(|_| DownloadError::from("download timed out".to_owned()))?
        .map_err(|e| DownloadError::from(format!("download failed: {e}")))?;
    if !resp.status().is_success() {
        return Err(DownloadError {
            status: Some(resp.status().as_u16()),
            message: format!("download answered HTTP {}", resp.status()),
        });
    }
    let body = resp.into_body().collect().await.map_err(|e| DownloadError::from(format!("download failed: {e}")))?;
    Ok(body.to_bytes().to_vec())
}

/// GetFunction's presigned `Code.Location` of a dev function, asked for now:
/// it is valid for about ten minutes, and the database step before this one
/// takes longer than that on AWS.
async fn code_location(ctx: &Ctx, dev: &str) -> Result<String, StepError> {
    ctx.aws
        .source
        .lambda
        .get_function()
        .function_name(dev)
        .send()
        .await
        .on(dev, "GetFunction")?
        .code
        .and_then(|c| c.location)
        .ok_or_else(|| StepError::Invalid(format!("dev function {dev}: GetFunction gave no code location to download")))
}

/// Downloads dev's package from a fresh code location; a link that expired
/// on the way (403) is asked for once more.
async fn download_from_dev(ctx: &Ctx, dev: &str) -> Result<Vec<u8>, StepError> {
    let failed = |e: DownloadError| StepError::Invalid(format!("dev function {dev}: {e}"));
    match download(&code_location(ctx, dev).await?).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.status == Some(403) => {
            tracing::info!(function = dev, "the package link expired; asking for a new one");
            download(&code_location(ctx, dev).await?).await.map_err(failed)
        }
        Err(e) => Err(failed(e)),
    }
}

/// Dev's package, verified against dev's CodeSha256.
async fn fetch_package(ctx: &Ctx, f: &DevFunction) -> Result<Vec<u8>, StepError> {
    let artifacts = &ctx.cfg.source.lambda_artifacts;
    let (bytes, from) = if artifacts.is_empty() {
        (download_from_dev(ctx, &f.name).await?, "its code location".to_owned())
    } else {
        let rest = artifacts.trim_start_matches("s3://");
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let key = format!("{prefix}{}.zip", f.name);
        let out = ctx
            .aws
            .source
            .s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .on(format!("s3://{bucket}/{key}"), "GetObject")?;
        let data = out.body.collect().await.map_err(|e| StepError::Invalid(format!("s3://{bucket}/{key}: {e}")))?;
        (data.into_bytes().to_vec(), format!("s3://{bucket}/{key}"))
    };
    let sha = code_sha256(&bytes);
    let want = f.config.code_sha256().unwrap_or_default();
    if sha != want {
        return Err(StepError::Invalid(format!(
            "dev function {}: the package from {from} has SHA-256 {sha}, but dev runs {want}; refusing to deploy a package that is not dev's",
            f.name
        )));
    }
    Ok(bytes)
}

/// Prod environment: dev's values with every dev identifier mapped to its
/// prod counterpart ([`references`]), then the overrides (the operator's
/// own values, taken as they are).
pub fn prod_environment(ctx: &Ctx, refs: &Counterparts, f: &DevFunction) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = dev_variables(f).map(|(k, v)| (k.clone(), refs.rewrite(v).0)).collect();
    if let Some(o) = ctx.cfg.lambda.overrides.get(&f.name) {
        let secret = refs.master_secret.as_deref().unwrap_or(MASTER_SECRET);
        env.extend(o.environment.iter().map(|(k, v)| (k.clone(), v.replace(MASTER_SECRET, secret))));
    }
    env
}

/// In an environment override, the ARN of the secret in which RDS keeps the
/// prod cluster's master credentials (the function reads them from Secrets
/// Manager; paymig never does). A function asking for it is deployed once
/// the database step has them managed, after the restore.
pub const MASTER_SECRET: &str = "{{database.master_user_secret_arn}}";

/// Whether a function's overrides ask for the master credentials' secret.
fn wants_master_secret(ctx: &Ctx, f: &str) -> bool {
    ctx.cfg.lambda.overrides.get(f).is_some_and(|o| o.environment.values().any(|v| v.contains(MASTER_SECRET)))
}

/// A dev function's environment variables.
fn dev_variables(f: &DevFunction) -> impl Iterator<Item = (&String, &String)> {
    f.config.environment().and_then(|e| e.variables()).into_iter().flatten()
}

/// The dev identifiers in the functions' environments, recorded for plan,
/// apply and validate (`<dev function>:<VARIABLE>`); an overridden variable
/// is the operator's value and is not dev's.
fn record_references(ctx: &Ctx, refs: &Counterparts, f: &DevFunction) {
    let overridden = ctx.cfg.lambda.overrides.get(&f.name).map(|o| &o.environment);
    for (k, v) in dev_variables(f).filter(|(k, _)| overridden.is_none_or(|o| !o.contains_key(*k))) {
        references::record(ctx, STEP, &format!("{}:{k}", f.name), &refs.rewrite(v).1);
    }
}

/// The map for every dev value the functions copy.
async fn counterparts(ctx: &Ctx, dev: &[DevFunction]) -> Result<Counterparts, StepError> {
    references::gather(ctx, dev.iter().flat_map(dev_variables).map(|(_, v)| v.as_str())).await
}

/// `refs` for function `f`: with the master credentials' secret when its
/// overrides ask for it — then it waits for the database step to have them
/// managed (after the restore); every other function goes on meanwhile.
async fn counterparts_for(ctx: &Ctx, refs: &Counterparts, f: &DevFunction) -> Result<Counterparts, StepError> {
    let mut refs = refs.clone();
    if wants_master_secret(ctx, &f.name) {
        refs.master_secret = Some(crate::steps::database::master_secret_arn(ctx).await?.ok_or_else(|| {
            StepError::Invalid(format!(
                "[lambda.overrides.\"{}\"] environment: {MASTER_SECRET} names the prod cluster's master credentials, but there are none (no [source] db_cluster, or the database step did not finish)",
                f.name
            ))
        })?);
    }
    Ok(refs)
}

/// Environment values as SHA-256 digests: comparable, but a secret value
/// never reaches the journal, a log line or the validate report.
pub fn redact_environment<'a>(vars: impl Iterator<Item = (&'a String, &'a String)>) -> BTreeMap<String, String> {
    vars.map(|(k, v)| (k.clone(), format!("sha256:{}", &hex::encode(sha2::Sha256::digest(v.as_bytes()))[..16])))
        .collect()
}

/// What a function update replaced, as its intent records it for rollback
/// (untagged: the journal's own JSON shapes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Prev {
    /// Reserved concurrency before (`null`: unreserved).
    Reserved {
        #[serde(deserialize_with = "crate::engine::journal::present")]
        reserved: Option<i32>,
    },
    /// The settings before ([`settings_of`]).
    Settings { settings: SettingsBefore },
    /// The code digest before (code cannot be rolled back to bytes paymig
    /// no longer has; recorded for the report).
    Code {
        #[serde(deserialize_with = "crate::engine::journal::present")]
        code_sha256: Option<String>,
    },
}

impl Prev {
    fn settings(have: &Value) -> Prev {
        Prev::Settings { settings: serde_json::from_value(have.clone()).expect("settings_of is an object") }
    }
}

/// A function's settings before an update: what rollback restores (role,
/// memory, timeout), and the rest as recorded (environment values only as
/// digests, so they are never restored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SettingsBefore {
    role: Option<String>,
    memory: Option<i32>,
    timeout: Option<i32>,
    #[serde(flatten)]
    recorded: BTreeMap<String, Value>,
}

/// The settings paymig owns, comparable and journal-able (environment values
/// only as digests).
fn settings_of(c: &FunctionConfiguration) -> Value {
    let mut subnets: Vec<String> = c.vpc_config().map(|v| v.subnet_ids().to_vec()).unwrap_or_default();
    subnets.sort();
    json!({
        "runtime": c.runtime().map(|r| r.as_str()),
        "handler": c.handler(),
        "memory": c.memory_size(),
        "timeout": c.timeout(),
        "role": c.role(),
        // Lambda keeps no key for a function without variables
        // (terraform-provider-aws #6366): there is nothing to compare.
        "kms_key": if has_variables(c) { c.kms_key_arn() } else { None },
        // No variables and an empty map are the same setting.
        "environment": c.environment().and_then(|e| e.variables()).map(|v| redact_environment(v.iter())).unwrap_or_default(),
        "subnets": subnets,
        "security_groups": c.vpc_config().map(|v| v.security_group_ids().to_vec()).unwrap_or_default(),
        "layers": c.layers().iter().filter_map(|l| l.arn()).collect::<Vec<_>>(),
        "tracing": c.tracing_config().and_then(|t| t.mode()).map(|m| m.as_str()),
        "ephemeral_storage": c.ephemeral_storage().map(|e| e.size()),
    })
}

/// Whether a function has environment variables (only then does Lambda keep
/// the key that encrypts them).
fn has_variables(c: &FunctionConfiguration) -> bool {
    c.environment().and_then(|e| e.variables()).is_some_and(|v| !v.is_empty())
}

/// The key to send for a function with `env`: none without variables, which
/// Lambda would not keep (a key sent and then missing reads as drift on every
/// run).
fn key_for<'a>(env: &BTreeMap<String, String>, key: &'a str) -> Option<&'a str> {
    (!env.is_empty()).then_some(key)
}

#[allow(clippy::too_many_arguments)]
fn desired_settings(
    ctx: &Ctx,
    refs: &Counterparts,
    f: &DevFunction,
    role: &str,
    key: &str,
    subnets: &[String],
    sg: &str,
) -> Value {
    let d = &f.config;
    let mut subnets = subnets.to_vec();
    subnets.sort();
    let env = prod_environment(ctx, refs, f);
    json!({
        "runtime": d.runtime().map(|r| r.as_str()),
        "handler": d.handler(),
        "memory": d.memory_size(),
        "timeout": d.timeout(),
        "role": role,
        "kms_key": key_for(&env, key),
        "environment": redact_environment(env.iter()),
        "subnets": subnets,
        "security_groups": [sg],
        "layers": d.layers().iter().filter_map(|l| l.arn()).collect::<Vec<_>>(),
        "tracing": d.tracing_config().and_then(|t| t.mode()).map(|m| m.as_str()),
        "ephemeral_storage": d.ephemeral_storage().map(|e| e.size()),
    })
}

/// A configuration update as plan and rollback show it: each setting that
/// differs, before and after (environment values are digests: only that
/// they changed).
fn configuration_change(have: &Value, want: &Value) -> Detail {
    let show = |v: &Value| match v {
        Value::String(s) => s.rsplit('/').next().unwrap_or(s).to_owned(),
        Value::Null => "none".to_owned(),
        Value::Array(a) if a.is_empty() => "none".to_owned(),
        Value::Array(a) => {
            a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned)).collect::<Vec<_>>().join(" ")
        }
        other => other.to_string(),
    };
    let (mut from, mut to) = (Vec::new(), Vec::new());
    for (field, w) in want.as_object().into_iter().flatten() {
        let h = &have[field];
        if h == w {
            continue;
        }
        if field == "environment" {
            from.push("environment (values not shown)".to_owned());
            to.push("environment from dev, mapped".to_owned());
        } else {
            from.push(format!("{} {}", field.replace('_', " "), show(h)));
            to.push(format!("{} {}", field.replace('_', " "), show(w)));
        }
    }
    Detail::change("configuration", from.join(", "), to.join(", "))
}

/// Whether a function can take a change now: Active (not Pending) and its
/// last update finished.
fn is_settled(c: &FunctionConfiguration) -> bool {
    use aws_sdk_lambda::types::{LastUpdateStatus, State};
    !matches!(c.state(), Some(State::Pending)) && !matches!(c.last_update_status(), Some(LastUpdateStatus::InProgress))
}

/// Waits (the SDK's waiter) until a new function is Active.
async fn wait_active(ctx: &Ctx, name: &str) -> Result<(), StepError> {
    use aws_sdk_lambda::client::Waiters;
    let waiter = ctx.aws.target.lambda.wait_until_function_active_v2().function_name(name).wait(ctx.max_wait());
    crate::progress::while_waiting(STEP, &format!("{name} to become Active"), waiter)
        .await
        .map_err(StepError::waiting(name, "Active", ctx.max_wait()))?;
    Ok(())
}

/// Waits (the SDK's waiter) until a function's last update finished.
async fn wait_updated(ctx: &Ctx, name: &str) -> Result<(), StepError> {
    use aws_sdk_lambda::client::Waiters;
    let waiter = ctx.aws.target.lambda.wait_until_function_updated_v2().function_name(name).wait(ctx.max_wait());
    crate::progress::while_waiting(STEP, &format!("{name}'s update to finish"), waiter)
        .await
        .map_err(StepError::waiting(name, "updated", ctx.max_wait()))?;
    Ok(())
}

/// How long a new role's or key grant's propagation may keep CreateFunction
/// refusing (terraform-provider-aws retries these for its propagation
/// timeout of two minutes).
const PROPAGATION: std::time::Duration = std::time::Duration::from_secs(120);

fn is_role_not_ready(e: &StepError) -> bool {
    // AWS says it only in words, as InvalidParameterValueException: the new
    // role is not yet visible to Lambda (IAM propagation), its permissions
    // not yet to EC2 or X-Ray ("does not have permissions to call
    // CreateNetworkInterface on EC2", "… PutTraceSegments on XRAY"), or the
    // key's grant for Lambda not yet usable ("… KMS key is invalid for
    // CreateGrant").
    e.is_code("InvalidParameterValueException")
        && (e.message_contains("cannot be assumed")
            || e.message_contains("does not have permissions to call")
            || e.message_contains("is invalid for CreateGrant"))
}

async fn converge_function(ctx: &Ctx, refs: &Counterparts, f: &DevFunction) -> Result<(), StepError> {
    let refs = &counterparts_for(ctx, refs, f).await?;
    let lambda = &ctx.aws.target.lambda;
    let name = ctx.cfg.names.prod(&f.name);
    let res = Res::new(STEP, "lambda_function", format!("function/{name}"), &name);
    let role = ctx
        .outputs
        .get::<super::iam::ExecutionRoles>()
        .0
        .get(&f.name)
        .cloned()
        .unwrap_or_else(|| format!("arn:aws:iam::{}:role/{}", ctx.account, ctx.cfg.names.lambda_role(&f.name)));
    let key = crate::steps::kms::key_arn(ctx);
    let network = crate::steps::network::Vpc::of(ctx);
    let (subnets, sg) = (network.subnet_ids(), network.sg_compute);
    let want = desired_settings(ctx, refs, f, &role, &key, &subnets, &sg);
    let existing = lambda
        .get_function()
        .function_name(&name)
        .send()
        .await
        .found(&name, "GetFunction")?
        .and_then(|out| out.configuration);
    record_references(ctx, refs, f);
    let variables = prod_environment(ctx, refs, f);
    let env_key = key_for(&variables, &key).map(str::to_owned);
    let env = Environment::builder().set_variables(Some(variables.into_iter().collect())).build();
    let vpc = VpcConfig::builder()
        .set_subnet_ids(Some(subnets.iter().filter(|s| !is_planned(s)).cloned().collect()))
        .security_group_ids(&sg)
        .build();
    let d = &f.config;
    match existing {
        None => {
            let detail = format!(
                "{} from dev's package {}",
                d.runtime().map_or("?", |r| r.as_str()),
                d.code_sha256().unwrap_or("?")
            );
            let created = ctx
                .create(&res, detail, json!({"dev": f.name, "code_sha256": d.code_sha256()}), || async {
                    let package = staging::Package::of(ctx, &name, fetch_package(ctx, f).await?).await?;
                    let tags: std::collections::HashMap<String, String> =
                        super::common::prod_tags_as(ctx, |k, v| (k, v)).into_iter().collect();
                    let out = retry_until("CreateFunction", PROPAGATION, is_role_not_ready, || async {
                        lambda
                            .create_function()
                            .function_name(&name)
                            .set_runtime(d.runtime().cloned())
                            .set_handler(d.handler().map(str::to_owned))
                            .role(&role)
                            .code(package.code())
                            .set_memory_size(d.memory_size())
                            .set_timeout(d.timeout())
                            .set_architectures(Some(d.architectures().to_vec()))
                            .set_layers(Some(d.layers().iter().filter_map(|l| l.arn().map(str::to_owned)).collect()))
                            .set_tracing_config(
                                d.tracing_config()
                                    .and_then(|t| t.mode().cloned())
                                    .map(|m| TracingConfig::builder().mode(m).build()),
                            )
                            .set_ephemeral_storage(
                                d.ephemeral_storage()
                                    .map(|e| EphemeralStorage::builder().size(e.size()).build())
                                    .transpose()
                                    .map_err(|e| StepError::Invalid(e.to_string()))?,
                            )
                            .environment(env.clone())
                            .set_kms_key_arn(env_key.clone())
                            .vpc_config(vpc.clone())
                            .publish(true)
                            .set_tags(Some(tags.clone()))
                            .send()
                            .await
                            .on(&name, "CreateFunction")
                    })
                    .await?;
                    package.release(ctx).await?;
                    let arn = out.function_arn.unwrap_or_default();
                    Ok(Created {
                        value: out.version.unwrap_or_else(|| "1".into()),
                        id: name.clone(),
                        arn: Some(arn),
                        data: Value::Null,
                    })
                })
                .await?;
            if created.is_some() {
                // Pending until Lambda has set it up (its ENIs for a VPC
                // function): publishing meanwhile is refused.
                ctx.timed(STEP, Wait::FunctionActive, &name, wait_active(ctx, &name)).await?;
                converge_concurrency(ctx, &res, &f.name, &name, None).await?;
                converge_aliases(ctx, &name, false).await?;
            } else {
                // Plan: what apply sets up on the new function.
                converge_concurrency(ctx, &res, &f.name, &name, None).await?;
                converge_aliases(ctx, &name, true).await?;
            }
        }
        Some(current) => {
            // A failed read (a denial above all) is an error, never "not ours".
            let ours = lambda
                .list_tags()
                .resource(current.function_arn().unwrap_or_default())
                .send()
                .await
                .on(&name, "ListTags")?
                .tags()
                .is_some_and(|t| super::common::is_ours(ctx, t.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
            ctx.existing(&res, &name, current.function_arn(), crate::engine::Ownership::of(ours))?;
            // A run that stopped mid-update (or another tool) may have left
            // the function Pending or InProgress: a change now is refused.
            if !ctx.is_plan() && !is_settled(&current) {
                wait_active(ctx, &name).await?;
                wait_updated(ctx, &name).await?;
            }
            let have = settings_of(&current);
            if have != want && !is_planned(&sg) {
                let detail = configuration_change(&have, &want);
                ctx.update(&res, &name, detail, Prev::settings(&have), || async {
                    lambda
                        .update_function_configuration()
                        .function_name(&name)
                        .role(&role)
                        .set_runtime(d.runtime().cloned())
                        .set_handler(d.handler().map(str::to_owned))
                        .set_memory_size(d.memory_size())
                        .set_timeout(d.timeout())
                        .environment(env.clone())
                        .set_kms_key_arn(env_key.clone())
                        .vpc_config(vpc.clone())
                        .set_layers(Some(d.layers().iter().filter_map(|l| l.arn().map(str::to_owned)).collect()))
                        .send()
                        .await
                        .on(&name, "UpdateFunctionConfiguration")?;
                    // InProgress (about a minute for a VPC change): the next
                    // update or PublishVersion would be refused.
                    wait_updated(ctx, &name).await
                })
                .await?;
            }
            if current.code_sha256() != d.code_sha256() {
                ctx.update(
                    &res,
                    &name,
                    "code",
                    Prev::Code { code_sha256: current.code_sha256().map(String::from) },
                    || async {
                        let package = staging::Package::of(ctx, &name, fetch_package(ctx, f).await?).await?;
                        package
                            .update(lambda.update_function_code().function_name(&name))
                            .publish(true)
                            .send()
                            .await
                            .on(&name, "UpdateFunctionCode")?;
                        package.release(ctx).await?;
                        wait_updated(ctx, &name).await
                    },
                )
                .await?;
            }
            let reserved = lambda
                .get_function_concurrency()
                .function_name(&name)
                .send()
                .await
                .found(&name, "GetFunctionConcurrency")?
                .and_then(|c| c.reserved_concurrent_executions());
            converge_concurrency(ctx, &res, &f.name, &name, Some(reserved)).await?;
            converge_aliases(ctx, &name, false).await?;
        }
    }
    Ok(())
}

async fn converge_concurrency(
    ctx: &Ctx,
    res: &Res,
    dev: &str,
    name: &str,
    current: Option<Option<i32>>,
) -> Result<(), StepError> {
    let want = reserved_for(ctx, dev);
    let have = current.flatten();
    if want == have {
        return Ok(());
    }
    let lambda = &ctx.aws.target.lambda;
    let shown = |v: Option<i32>| v.map_or_else(|| "unreserved".to_owned(), |n| n.to_string());
    let detail = Detail::change("reserved concurrency", shown(have), shown(want));
    ctx.update(res, name, detail, Prev::Reserved { reserved: have }, || async {
        match want {
            Some(n) => {
                lambda
                    .put_function_concurrency()
                    .function_name(name)
                    .reserved_concurrent_executions(n)
                    .send()
                    .await
                    .on(name, "PutFunctionConcurrency")?;
            }
            None => {
                lambda
                    .delete_function_concurrency()
                    .function_name(name)
                    .send()
                    .await
                    .on(name, "DeleteFunctionConcurrency")?;
            }
        }
        Ok(())
    })
    .await
}

/// Aliases `blue` and `green` on the newest published version, created when
/// missing (never moved here: `switch` moves traffic between them).
async fn converge_aliases(ctx: &Ctx, name: &str, new: bool) -> Result<(), StepError> {
    let lambda = &ctx.aws.target.lambda;
    if new && ctx.is_plan() {
        // A function the plan creates gets both aliases, on its first version.
        for alias in ALIASES {
            let res = Res::new(STEP, "lambda_alias", format!("alias/{name}:{alias}"), format!("{name}:{alias}"));
            ctx.create(&res, "-> its first published version", Value::Null, || async {
                Ok(Created::id(format!("{name}:{alias}")))
            })
            .await?;
        }
        return Ok(());
    }
    let versions: Vec<FunctionConfiguration> = lambda
        .list_versions_by_function()
        .function_name(name)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .on(name, "ListVersionsByFunction")?;
    let latest = versions.iter().filter_map(|v| v.version()?.parse::<u64>().ok()).max();
    for alias in ALIASES {
        let res = Res::new(STEP, "lambda_alias", format!("alias/{name}:{alias}"), format!("{name}:{alias}"));
        match lambda
            .get_alias()
            .function_name(name)
            .name(alias)
            .send()
            .await
            .found(format!("{name}:{alias}"), "GetAlias")?
        {
            Some(a) => ctx.existing(&res, &format!("{name}:{alias}"), a.alias_arn(), crate::engine::Ownership::Ours)?,
            None => {
                let version = latest.map_or_else(|| "$LATEST".to_owned(), |v| v.to_string());
                ctx.create(&res, format!("-> version {version}"), json!({"function": name}), || async {
                    let out = lambda
                        .create_alias()
                        .function_name(name)
                        .name(alias)
                        .function_version(&version)
                        .send()
                        .await
                        .on(format!("{name}:{alias}"), "CreateAlias")?;
                    Ok(Created { value: (), id: format!("{name}:{alias}"), arn: out.alias_arn, data: Value::Null })
                })
                .await?;
            }
        }
    }
    Ok(())
}

async fn validate(ctx: &Ctx, dev: &[DevFunction]) -> Result<crate::report::Findings, StepError> {
    use crate::report::{diff, Check, Findings, Resource};
    let lambda = &ctx.aws.target.lambda;
    let mut f = Findings::default();
    let key = crate::steps::kms::key_arn(ctx);
    let mut prod = Vec::new();
    for d in dev {
        let name = ctx.cfg.names.prod(&d.name);
        match lambda.get_function().function_name(&name).send().await {
            Ok(out) => prod.push((d, name, out)),
            Err(_) => f.resources.push(Resource::missing("lambda_function", &d.name, &name)),
        }
    }
    // Dev's values (what prod should hold) and prod's (what it holds: a
    // dev identifier still in it is a finding).
    let prod_values: Vec<String> = prod
        .iter()
        .flat_map(|(_, _, out)| {
            out.configuration().and_then(|c| c.environment()).and_then(|e| e.variables()).into_iter().flatten()
        })
        .map(|(_, v)| v.clone())
        .collect();
    let dev_values = dev.iter().flat_map(dev_variables).map(|(_, v)| v.as_str());
    let mut refs = references::gather(ctx, dev_values.chain(prod_values.iter().map(String::as_str))).await?;
    if dev.iter().any(|d| wants_master_secret(ctx, &d.name)) {
        refs.master_secret = crate::steps::database::master_secret_arn(ctx).await?;
    }
    for (d, name, out) in prod {
        let Some(c) = out.configuration.clone() else { continue };
        let overridden = ctx.cfg.lambda.overrides.get(&d.name).map(|o| &o.environment);
        let leftovers: Vec<(String, references::Found)> = c
            .environment()
            .and_then(|e| e.variables())
            .into_iter()
            .flatten()
            .filter(|(k, _)| overridden.is_none_or(|o| !o.contains_key(*k)))
            .flat_map(|(k, v)| refs.rewrite(v).1.into_iter().map(move |found| (format!("{}:{k}", d.name), found)))
            .collect();
        f.checks.extend(references::checks(ctx, &name, &leftovers));
        let have = settings_of(&c);
        let dv = settings_of(&d.config);
        let mut diffs = Vec::new();
        diff(&mut diffs, "name", &d.name, &name, true);
        for field in ["runtime", "handler", "memory", "timeout", "layers", "tracing", "ephemeral_storage"] {
            diff(&mut diffs, field, &dv[field], &have[field], false);
        }
        let want_env = json!(redact_environment(prod_environment(ctx, &refs, d).iter()));
        diff(&mut diffs, "environment", &dv["environment"], &have["environment"], have["environment"] == want_env);
        diff(&mut diffs, "role", &dv["role"], &have["role"], true);
        let want_key = json!(key_for(&prod_environment(ctx, &refs, d), &key));
        diff(&mut diffs, "kms_key", &dv["kms_key"], &have["kms_key"], have["kms_key"] == want_key);
        diff(&mut diffs, "vpc_subnets", &dv["subnets"], &have["subnets"], true);
        diff(
            &mut diffs,
            "code_sha256",
            d.config.code_sha256().unwrap_or_default(),
            c.code_sha256().unwrap_or_default(),
            false,
        );
        f.resources.push(Resource::compared("lambda_function", &d.name, &name, diffs));
        let reserved = lambda
            .get_function_concurrency()
            .function_name(&name)
            .send()
            .await
            .found(&name, "GetFunctionConcurrency")?
            .and_then(|x| x.reserved_concurrent_executions());
        let want = reserved_for(ctx, &d.name);
        f.checks.push(Check::new(
            "lambda.reserved_concurrency",
            &name,
            reserved == want,
            format!("reserved {}, configured {}", crate::report::or_none(reserved), crate::report::or_none(want)),
        ));
        let (encrypted, detail) = if has_variables(&c) {
            let ok = c.kms_key_arn() == Some(key.as_str());
            (
                ok,
                if ok {
                    "environment encrypted with the prod key".to_owned()
                } else {
                    format!("environment encrypted with {}", c.kms_key_arn().unwrap_or("Lambda's default key"))
                },
            )
        } else {
            (true, "no environment variables to encrypt".to_owned())
        };
        f.checks.push(Check::new("lambda.cmk", &name, encrypted, detail));
        let tags: BTreeMap<String, String> = out.tags.map(|t| t.into_iter().collect()).unwrap_or_default();
        f.checks.extend(super::common::common_checks(ctx, &name, &tags));
    }
    Ok(f)
}

async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    let lambda = &ctx.aws.target.lambda;
    let name = r.intent.name.as_str();
    match (r.intent.kind.as_str(), r.intent.op) {
        ("lambda_function", Op::Create | Op::Adopt) => {
            lambda.delete_function().function_name(name).send().await.gone(name, "DeleteFunction")?;
        }
        ("staging_bucket", Op::Create | Op::Adopt) => staging::delete_bucket(ctx, name).await?,
        ("lambda_alias", Op::Create | Op::Adopt) => {
            let (function, alias) = name.rsplit_once(':').unwrap_or((name, ""));
            lambda.delete_alias().function_name(function).name(alias).send().await.gone(name, "DeleteAlias")?;
        }
        ("lambda_function", Op::Update) => {
            let result = match r.prev::<Prev>()? {
                Prev::Reserved { reserved } => match reserved {
                    Some(n) => lambda
                        .put_function_concurrency()
                        .function_name(name)
                        .reserved_concurrent_executions(n)
                        .send()
                        .await
                        .map(|_| ())
                        .on(name, "PutFunctionConcurrency"),
                    None => lambda
                        .delete_function_concurrency()
                        .function_name(name)
                        .send()
                        .await
                        .map(|_| ())
                        .on(name, "DeleteFunctionConcurrency"),
                },
                Prev::Settings { settings: s } => {
                    // Mid-update (the run being rolled back just changed it), a
                    // change is refused: wait for it to settle first.
                    match wait_updated(ctx, name).await {
                        Err(e) if !e.is_not_found() => return Err(e),
                        _ => {}
                    }
                    // The journal holds only digests of environment values (they may
                    // be secrets), so the environment is left as it is.
                    tracing::warn!(
                        function = name,
                        "rollback restores role, memory and timeout; the environment keeps its current values"
                    );
                    lambda
                        .update_function_configuration()
                        .function_name(name)
                        .set_role(s.role)
                        .set_memory_size(s.memory)
                        .set_timeout(s.timeout)
                        .send()
                        .await
                        .map(|_| ())
                        .on(name, "UpdateFunctionConfiguration")
                }
                // A code update cannot be undone to bytes paymig no longer
                // has; the previous version stays published.
                Prev::Code { .. } => Ok(()),
            };
            match result {
                Err(e) if e.is_not_found() => {}
                other => other?,
            }
        }
        (kind, op) => return Err(StepError::Invalid(format!("lambda cannot undo {op:?} of {kind}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_values_are_only_digests() {
        let env: BTreeMap<String, String> = BTreeMap::from([("DB_PASSWORD".into(), "hunter2".into())]);
        let r = redact_environment(env.iter());
        assert!(r["DB_PASSWORD"].starts_with("sha256:") && !r["DB_PASSWORD"].contains("hunter2"));
        assert_eq!(r, redact_environment(env.iter()), "stable, so still comparable");
    }

    #[test]
    fn code_sha256_is_base64_of_the_digest() {
        assert_eq!(code_sha256(b""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }
}

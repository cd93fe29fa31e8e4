//! AWS clients: one `SdkConfig` per environment (source = dev, target = prod,
//! replica = prod in `replica_region`), built once with retry and timeouts,
//! and two interceptors on every client: API-call accounting and, on source
//! clients, a guard that refuses any operation that is not a read.

pub mod call;

pub use call::Call;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde::Serialize;

use crate::config::Config;
mod failure;
#[cfg(test)]
pub(crate) mod replay;
pub use failure::*;

/// Which environment a client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Source,
    Target,
    Replica,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
            Side::Replica => "replica",
        })
    }
}

/// Whether an operation only reads. This is the allow-list of the read-only
/// source guard and the read/mutating split of the call accounting.
pub fn is_read_operation(operation: &str) -> bool {
    const READ_PREFIXES: [&str; 7] = ["Describe", "Get", "List", "Head", "BatchGet", "Query", "Scan"];
    READ_PREFIXES.iter().any(|p| operation.starts_with(p))
        // SSM GetParameter(s)WithDecryption is never used; STS identity is a read.
        || operation == "GetCallerIdentity"
}

tokio::task_local! {
    /// The dependency lane of the code making a call: the step, and within
    /// it the resource being worked on. Calls in one lane depend on each
    /// other in order; lanes of one step are independent.
    static LANE: String;
}

/// The current lane (`""` outside any).
pub fn lane() -> String {
    LANE.try_with(Clone::clone).unwrap_or_default()
}

/// Runs `fut` in `lane`.
pub async fn in_lane<F: std::future::Future>(lane: String, fut: F) -> F::Output {
    LANE.scope(lane, fut).await
}

/// Where `PAYMIG_CALL_LOG` asks for one JSON line per API call (lane, side,
/// service, operation, whether it mutates, start and end in ms since the
/// process started): the benchmark computes the critical path from it, the
/// tests count calls with it.
struct CallLog {
    file: Mutex<std::fs::File>,
    epoch: std::time::Instant,
}

fn call_log() -> Option<&'static CallLog> {
    static LOG: std::sync::OnceLock<Option<CallLog>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let path = std::env::var_os("PAYMIG_CALL_LOG")?;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).ok()?;
        Some(CallLog { file: Mutex::new(file), epoch: std::time::Instant::now() })
    })
    .as_ref()
}

/// Opens the `PAYMIG_CALL_LOG` file, if asked for, before any call: the
/// file then exists even for a run that makes none, so a reader can tell
/// "no call" from "no log".
pub fn open_call_log() {
    let _ = call_log();
}

/// When a call started, kept in its config bag until it ends.
#[derive(Debug, Clone)]
struct CallStart(std::time::Duration, String);

impl aws_smithy_types::config_bag::Storable for CallStart {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

/// Calls and HTTP attempts of one operation.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Count {
    pub calls: u64,
    pub attempts: u64,
}

/// API-call accounting shared by every client of a command.
#[derive(Debug, Default)]
pub struct CallStats {
    counts: Mutex<BTreeMap<(Side, String, String), Count>>,
    /// SSM reads that asked for decrypted values. paymig never makes one;
    /// counted so that tests and operators can see it.
    decrypting: std::sync::atomic::AtomicU64,
}

/// A summary of the calls a command made.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CallSummary {
    pub read: u64,
    pub mutating: u64,
    pub retries: u64,
    /// SSM GetParameter(s)/GetParametersByPath calls with decryption (always 0).
    pub decrypting_reads: u64,
    /// `service -> operation -> calls`, with `side` folded into the service name
    /// (`ec2`, `source:ec2`).
    pub by_operation: BTreeMap<String, BTreeMap<String, u64>>,
    pub mutating_by_service: BTreeMap<String, u64>,
}

impl CallStats {
    fn record(&self, side: Side, md: &Metadata, attempt: bool) {
        let mut counts = self.counts.lock().expect("call stats poisoned");
        let c = counts.entry((side, md.service().to_owned(), md.name().to_owned())).or_default();
        if attempt {
            c.attempts += 1;
        } else {
            c.calls += 1;
        }
    }

    /// Totals so far.
    pub fn summary(&self) -> CallSummary {
        let counts = self.counts.lock().expect("call stats poisoned");
        let mut s = CallSummary {
            decrypting_reads: self.decrypting.load(std::sync::atomic::Ordering::Relaxed),
            ..CallSummary::default()
        };
        for ((side, service, op), c) in counts.iter() {
            let service = service.to_ascii_lowercase();
            let key = if *side == Side::Target { service.clone() } else { format!("{side}:{service}") };
            *s.by_operation.entry(key.clone()).or_default().entry(op.clone()).or_default() += c.calls;
            s.retries += c.attempts.saturating_sub(c.calls);
            if is_read_operation(op) {
                s.read += c.calls;
            } else {
                s.mutating += c.calls;
                *s.mutating_by_service.entry(key).or_default() += c.calls;
            }
        }
        s
    }
}

impl fmt::Display for CallSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "API calls: {} read, {} mutating, {} retries", self.read, self.mutating, self.retries)?;
        if self.decrypting_reads > 0 {
            write!(f, ", {} SSM reads WITH DECRYPTION", self.decrypting_reads)?;
        }
        if !self.mutating_by_service.is_empty() {
            let per: Vec<String> = self.mutating_by_service.iter().map(|(k, v)| format!("{k} {v}")).collect();
            write!(f, " (mutating: {})", per.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct CallCounter {
    side: Side,
    stats: Arc<CallStats>,
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "paymig::CallCounter"
    }

    // Once per `send()`: the operation metadata is in the bag from here on.
    fn read_before_serialization(
        &self,
        ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if asks_for_decryption(ctx.input()) {
            self.stats.decrypting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(md) = cfg.load::<Metadata>() {
            self.stats.record(self.side, md, false);
            tracing::trace!(side = %self.side, service = md.service(), operation = md.name(), "api call");
        }
        if let Some(log) = call_log() {
            cfg.interceptor_state().store_put(CallStart(log.epoch.elapsed(), lane()));
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        _ctx: &aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let (Some(log), Some(start), Some(md)) = (call_log(), cfg.load::<CallStart>(), cfg.load::<Metadata>()) {
            let line = serde_json::json!({
                "lane": start.1, "side": self.side, "service": md.service(), "operation": md.name(),
                "mutating": !is_read_operation(md.name()),
                "start_ms": start.0.as_secs_f64() * 1000.0, "end_ms": log.epoch.elapsed().as_secs_f64() * 1000.0,
            });
            if let Ok(mut f) = log.file.lock() {
                use std::io::Write;
                let _ = writeln!(f, "{line}");
            }
        }
        Ok(())
    }

    // Once per HTTP attempt: attempts minus calls are the retries.
    fn read_before_transmit(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(md) = cfg.load::<Metadata>() {
            self.stats.record(self.side, md, true);
        }
        Ok(())
    }
}

/// Whether an operation's input is an SSM read asking for decrypted values.
fn asks_for_decryption(input: &aws_smithy_runtime_api::client::interceptors::context::Input) -> bool {
    use aws_sdk_ssm::operation::{get_parameter, get_parameters, get_parameters_by_path};
    input.downcast_ref::<get_parameter::GetParameterInput>().is_some_and(|i| i.with_decryption() == Some(true))
        || input.downcast_ref::<get_parameters::GetParametersInput>().is_some_and(|i| i.with_decryption() == Some(true))
        || input
            .downcast_ref::<get_parameters_by_path::GetParametersByPathInput>()
            .is_some_and(|i| i.with_decryption() == Some(true))
}

/// Refuses, before anything is sent, every operation that is not a read.
#[derive(Debug)]
struct ReadOnlyGuard;

/// The error a source client returns for a mutating operation.
#[derive(Debug, thiserror::Error)]
#[error("refused {service}:{operation} with source (dev) credentials: paymig never writes to the dev environment")]
pub struct ReadOnlyViolation {
    pub service: String,
    pub operation: String,
}

impl Intercept for ReadOnlyGuard {
    fn name(&self) -> &'static str {
        "paymig::ReadOnlyGuard"
    }

    fn read_before_serialization(
        &self,
        _ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        match cfg.load::<Metadata>() {
            Some(md) if is_read_operation(md.name()) => Ok(()),
            Some(md) => Err(Box::new(ReadOnlyViolation { service: md.service().into(), operation: md.name().into() })),
            None => Err("refused an operation without metadata on a read-only client".into()),
        }
    }
}

/// Every service client of one environment.
#[derive(Debug, Clone)]
pub struct Clients {
    pub side: Side,
    pub region: String,
    pub sdk: SdkConfig,
    pub sts: aws_sdk_sts::Client,
    pub kms: aws_sdk_kms::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub rds: aws_sdk_rds::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub iam: aws_sdk_iam::Client,
    pub s3: aws_sdk_s3::Client,
    pub sns: aws_sdk_sns::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
}

macro_rules! client {
    ($krate:ident, $sdk:expr, $side:expr, $stats:expr) => {{
        let mut b = $krate::config::Builder::from($sdk).interceptor(CallCounter { side: $side, stats: $stats.clone() });
        if $side == Side::Source {
            b = b.interceptor(ReadOnlyGuard);
        }
        $krate::Client::from_conf(b.build())
    }};
}

impl Clients {
    /// Builds every client of one environment from its `SdkConfig`.
    pub fn new(side: Side, sdk: SdkConfig, stats: &Arc<CallStats>) -> Self {
        // Path-style S3 whenever the endpoint is overridden (an emulator or a
        // proxy): virtual-host style cannot resolve against `localhost`.
        let s3 = {
            let mut b = aws_sdk_s3::config::Builder::from(&sdk)
                .interceptor(CallCounter { side, stats: stats.clone() })
                .force_path_style(sdk.endpoint_url().is_some());
            if side == Side::Source {
                b = b.interceptor(ReadOnlyGuard);
            }
            aws_sdk_s3::Client::from_conf(b.build())
        };
        Clients {
            side,
            region: sdk.region().map(|r| r.to_string()).unwrap_or_default(),
            sts: client!(aws_sdk_sts, &sdk, side, stats),
            kms: client!(aws_sdk_kms, &sdk, side, stats),
            ec2: client!(aws_sdk_ec2, &sdk, side, stats),
            rds: client!(aws_sdk_rds, &sdk, side, stats),
            dynamodb: client!(aws_sdk_dynamodb, &sdk, side, stats),
            lambda: client!(aws_sdk_lambda, &sdk, side, stats),
            iam: client!(aws_sdk_iam, &sdk, side, stats),
            s3,
            sns: client!(aws_sdk_sns, &sdk, side, stats),
            cloudwatch: client!(aws_sdk_cloudwatch, &sdk, side, stats),
            ssm: {
                // Parameter Store throttles early: adaptive retry adds
                // client-side rate limiting on ThrottlingException.
                let mut b = aws_sdk_ssm::config::Builder::from(&sdk)
                    .interceptor(CallCounter { side, stats: stats.clone() })
                    .retry_config(
                        RetryConfig::adaptive().with_max_attempts(10).with_max_backoff(Duration::from_secs(20)),
                    );
                if side == Side::Source {
                    b = b.interceptor(ReadOnlyGuard);
                }
                aws_sdk_ssm::Client::from_conf(b.build())
            },
            elbv2: client!(aws_sdk_elasticloadbalancingv2, &sdk, side, stats),
            sdk,
        }
    }

    /// The account these credentials belong to.
    pub async fn account_id(&self) -> Result<String, String> {
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| match credentials_problem(&e) {
                // As the AWS CLI says it: one line and what to do, not the
                // provider chain's dump.
                Some(problem) => format!(
                    "cannot identify the {} account: {problem}\nhelp: give paymig credentials as the AWS CLI takes them: AWS_PROFILE (or the side's `profile` in the configuration), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, `aws configure` or `aws sso login`; in CodeBuild the project's service role provides them",
                    self.side
                ),
                None => format!("cannot identify the {} account: {}", self.side, describe_sdk_error(&e)),
            })?;
        out.account().map(str::to_owned).ok_or_else(|| format!("the {} account has no id", self.side))
    }
}

/// All clients of a command plus their shared call accounting.
#[derive(Debug, Clone)]
pub struct Aws {
    pub source: Clients,
    pub target: Clients,
    pub replica: Clients,
    pub stats: Arc<CallStats>,
}

/// Retry and timeout settings, set once on every `SdkConfig`.
fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(6)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(10))
}

/// The longest one HTTP attempt may take before it is abandoned and retried:
/// 60 s, or `PAYMIG_ATTEMPT_TIMEOUT_SECONDS` (for networks or tests where a
/// hung connection should be given up sooner).
fn attempt_timeout() -> Duration {
    let secs = std::env::var("PAYMIG_ATTEMPT_TIMEOUT_SECONDS").ok().and_then(|v| v.parse::<u64>().ok());
    Duration::from_secs(secs.filter(|s| *s > 0).unwrap_or(60))
}

fn timeout_config() -> TimeoutConfig {
    let attempt = attempt_timeout();
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(attempt.min(Duration::from_secs(30)))
        .operation_attempt_timeout(attempt)
        .operation_timeout(Duration::from_secs(300))
        .build()
}

pub(crate) async fn load_sdk_config(region: &str, profile: Option<&str>, role_arn: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .retry_config(retry_config())
        .timeout_config(timeout_config());
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    let base = loader.load().await;
    let Some(arn) = role_arn else { return base };
    let provider =
        aws_config::sts::AssumeRoleProvider::builder(arn).session_name("paymig").configure(&base).build().await;
    base.into_builder()
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(provider))
        .build()
}

impl Aws {
    /// Builds the source, target and replica clients for `cfg`.
    pub async fn connect(cfg: &Config) -> Self {
        let stats = Arc::new(CallStats::default());
        let region = &cfg.migration.region;
        let (source, target, replica) = tokio::join!(
            load_sdk_config(region, cfg.source.profile.as_deref(), cfg.source.role_arn.as_deref()),
            load_sdk_config(region, cfg.target.profile.as_deref(), cfg.target.role_arn.as_deref()),
            load_sdk_config(
                &cfg.migration.replica_region,
                cfg.target.profile.as_deref(),
                cfg.target.role_arn.as_deref()
            ),
        );
        Aws {
            source: Clients::new(Side::Source, source, &stats),
            target: Clients::new(Side::Target, target, &stats),
            replica: Clients::new(Side::Replica, replica, &stats),
            stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: Option<&str>, status: u16) -> AwsFailure {
        AwsFailure {
            code: code.map(str::to_owned),
            message: "m".into(),
            status: Some(status),
            request_id: Some("req-1".into()),
        }
    }

    #[test]
    fn failures_are_classified_by_code_and_printed_with_the_request_id() {
        for code in [
            "InvalidGroup.NotFound",
            "DBClusterNotFoundFault",
            "DBInstanceNotFound",
            "ResourceNotFoundException",
            "NoSuchEntity",
            "NoSuchBucket",
            "ReplicationConfigurationNotFoundError",
            "ParameterNotFound",
            "LoadBalancerNotFound",
            "ResourceNotFound",
        ] {
            assert!(failure(Some(code), 400).is_not_found(), "{code}");
        }
        assert!(!failure(Some("DependencyViolation"), 400).is_not_found());
        assert!(failure(Some("DependencyViolation"), 400).is_dependency_violation());
        for code in
            ["Throttling", "ThrottlingException", "RequestLimitExceeded", "SlowDown", "TooManyRequestsException"]
        {
            assert!(failure(Some(code), 400).is_throttle(), "{code}");
        }
        assert!(failure(None, 429).is_throttle());
        for code in [
            "ResourceConflictException",
            "ResourceInUseException",
            "InvalidDBClusterStateFault",
            "ContinuousBackupsUnavailableException",
        ] {
            assert!(failure(Some(code), 409).is_in_progress(), "{code}");
        }
        assert!(failure(Some("AccessDeniedException"), 403).is_access_denied());
        assert!(failure(Some("UnauthorizedOperation"), 403).is_access_denied());
        assert_eq!(failure(Some("DependencyViolation"), 400).to_string(), "DependencyViolation: m (request id req-1)");
        assert_eq!(failure(None, 503).to_string(), "HTTP 503: m (request id req-1)");
        let timeout = AwsFailure { code: None, message: "timeout".into(), status: None, request_id: None };
        assert_eq!(timeout.to_string(), "timeout");
        assert!(!timeout.is_not_found() && !timeout.is_throttle());
    }

    #[test]
    fn decrypting_ssm_reads_are_recognised() {
        use aws_sdk_ssm::operation::{
            get_parameter::GetParameterInput, get_parameters_by_path::GetParametersByPathInput,
        };
        use aws_smithy_runtime_api::client::interceptors::context::Input;
        let by_path = |d: Option<bool>| {
            Input::erase(GetParametersByPathInput::builder().path("/dev/").set_with_decryption(d).build().unwrap())
        };
        assert!(asks_for_decryption(&by_path(Some(true))));
        assert!(!asks_for_decryption(&by_path(Some(false))));
        assert!(!asks_for_decryption(&by_path(None)));
        let one = Input::erase(GetParameterInput::builder().name("x").with_decryption(true).build().unwrap());
        assert!(asks_for_decryption(&one));
    }

    #[test]
    fn reads_and_writes_are_told_apart() {
        for op in ["DescribeVpcs", "GetFunction", "ListKeys", "HeadBucket", "Query", "GetCallerIdentity"] {
            assert!(is_read_operation(op), "{op}");
        }
        for op in [
            "CreateVpc",
            "PutParameter",
            "DeleteBucket",
            "ModifyDBCluster",
            "TagResource",
            "Decrypt",
            "GenerateDataKey",
        ] {
            assert!(!is_read_operation(op), "{op}");
        }
    }
}

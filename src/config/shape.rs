//! The file's shape: one struct per section with its defaults.
//! `deny_unknown_fields` everywhere: a typo is an error.

use super::*;

// The file's shape. `deny_unknown_fields` everywhere: a typo is an error.

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) migration: Migration,
    pub(super) tags: BTreeMap<String, String>,
    pub(super) source: Source,
    pub(super) target: Target,
    #[serde(default)]
    pub(super) database: Database,
    #[serde(default)]
    pub(super) dynamodb: DynamoDb,
    #[serde(default)]
    pub(super) lambda: Lambda,
    #[serde(default)]
    pub(super) audit: Audit,
    #[serde(default)]
    pub(super) parameters: Parameters,
    #[serde(default)]
    pub(super) monitoring: Monitoring,
    #[serde(default)]
    pub(super) blue_green: BlueGreen,
    #[serde(default)]
    pub(super) network: Network,
    #[serde(default)]
    pub(super) references: References,
}

/// `[migration]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    pub name: String,
    pub environment_suffix: String,
    pub region: String,
    pub replica_region: String,
    #[serde(default = "default_journal")]
    pub journal: String,
    /// How long a waiter may wait for one resource (real Aurora restores take
    /// tens of minutes; the emulator is instant).
    #[serde(default = "default_max_wait")]
    pub max_wait_minutes: u64,
}

pub(super) fn default_journal() -> String {
    ".paymig".into()
}
pub(super) fn default_max_wait() -> u64 {
    60
}

/// `[source]` — the dev environment, read only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub profile: Option<String>,
    pub role_arn: Option<String>,
    pub vpc_id: String,
    #[serde(default)]
    pub db_cluster: String,
    #[serde(default)]
    pub db_snapshot: String,
    #[serde(default)]
    pub dynamodb_tables: Vec<String>,
    #[serde(default)]
    pub lambda_functions: Vec<String>,
    #[serde(default)]
    pub lambda_artifacts: String,
    #[serde(default)]
    pub audit_buckets: Vec<String>,
    #[serde(default)]
    pub dashboards: Vec<String>,
    #[serde(default = "default_source_path")]
    pub parameter_path: String,
    #[serde(default = "default_name_suffix")]
    pub name_suffix: String,
}

pub(super) fn default_source_path() -> String {
    "/dev/".into()
}
pub(super) fn default_name_suffix() -> String {
    "-dev".into()
}

/// `[target]` — the prod environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub profile: Option<String>,
    pub role_arn: Option<String>,
    #[serde(default = "default_target_path")]
    pub parameter_path: String,
}

pub(super) fn default_target_path() -> String {
    "/prod/".into()
}

/// `[database]` — Aurora Serverless v2 sizing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    pub min_capacity: f64,
    pub max_capacity: f64,
    pub instances: u32,
}

impl Default for Database {
    fn default() -> Self {
        Self { min_capacity: 0.5, max_capacity: 16.0, instances: 2 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum BillingMode {
    #[serde(rename = "PAY_PER_REQUEST")]
    PayPerRequest,
    #[serde(rename = "PROVISIONED")]
    Provisioned,
}

/// `[dynamodb]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamoDb {
    pub billing_mode: BillingMode,
}

impl Default for DynamoDb {
    fn default() -> Self {
        Self { billing_mode: BillingMode::PayPerRequest }
    }
}

/// `[lambda]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lambda {
    pub reserved_concurrency: Option<i32>,
    pub overrides: BTreeMap<String, LambdaOverride>,
}

/// `[lambda.overrides."<dev name>"]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LambdaOverride {
    pub reserved_concurrency: Option<i32>,
    pub environment: BTreeMap<String, String>,
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    pub glacier_after_days: i32,
}

impl Default for Audit {
    fn default() -> Self {
        Self { glacier_after_days: 90 }
    }
}

/// `[parameters]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Parameters {
    pub exclude: Vec<String>,
}

impl Parameters {
    /// One exclude glob as paymig matches it: case-insensitive, `*`
    /// crossing `/` (so `*secret*` reaches every level under the path).
    pub fn glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
        globset::GlobBuilder::new(pattern).case_insensitive(true).literal_separator(false).build()
    }

    /// Every exclude glob, compiled once.
    pub fn excludes(&self) -> Result<globset::GlobSet, globset::Error> {
        let mut set = globset::GlobSetBuilder::new();
        for g in &self.exclude {
            set.add(Parameters::glob(g)?);
        }
        set.build()
    }
}

impl Default for Parameters {
    fn default() -> Self {
        Self {
            exclude: ["*password*", "*passwd*", "*secret*", "*token*", "*private*key*", "*api*key*", "*credential*"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// `[monitoring]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Monitoring {
    pub rds_cpu_percent: f64,
    pub lambda_error_rate_percent: f64,
    pub alarm_emails: Vec<String>,
    /// Production thresholds for replicated dev alarms, by dev alarm name.
    pub alarm_thresholds: BTreeMap<String, f64>,
}

impl Default for Monitoring {
    fn default() -> Self {
        Self {
            rds_cpu_percent: 80.0,
            lambda_error_rate_percent: 1.0,
            alarm_emails: vec![],
            alarm_thresholds: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Blue,
    Green,
}

/// `[blue_green]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlueGreen {
    pub listener_port: u16,
    pub health_check_path: String,
    pub live: Colour,
    /// `lambda` (the function's aliases are the targets) or `ip`.
    pub target_type: TargetType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    Lambda,
    Ip,
}

impl Default for BlueGreen {
    fn default() -> Self {
        Self {
            listener_port: 80,
            health_check_path: "/health".into(),
            live: Colour::Blue,
            target_type: TargetType::Lambda,
        }
    }
}

/// `[network]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Interface VPC endpoints, by service (`"ssm"`, `"kms"`, …): `None`
    /// derives them from what the functions' execution roles grant; an
    /// empty list creates none.
    pub interface_endpoints: Option<Vec<String>>,
}

/// `[references]`: dev identifiers found in copied values that have no prod
/// counterpart are named by plan, apply and validate; the ones listed here
/// are accepted deliberately and silenced.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct References {
    /// Places whose unmapped dev references are accepted, as globs:
    /// `"<dev function>:<VARIABLE>"` for a function's environment, a dev
    /// parameter name (`"/dev/legacy/*"`), `"dashboard:<dev name>"`.
    pub keep: Vec<String>,
}

impl References {
    /// Whether the unmapped references found in `place` are accepted.
    pub fn keeps(&self, place: &str) -> bool {
        self.keep.iter().filter_map(|g| References::glob(g).ok()).any(|g| g.compile_matcher().is_match(place))
    }

    /// One keep pattern as paymig matches it (case-sensitive, `*` crossing
    /// `/` and `:`).
    pub fn glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
        globset::GlobBuilder::new(pattern).literal_separator(false).build()
    }
}

/// Services reached through the gateway endpoints paymig always creates.
pub const GATEWAY_SERVICES: [&str; 2] = ["s3", "dynamodb"];

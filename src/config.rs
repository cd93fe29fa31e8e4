//! `migrations.toml` → a validated, typed [`Config`]. Everything here is pure:
//! no AWS call is made before the whole file has been checked (SPEC
//! "migrations.toml").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::naming::{self, Derived, NameMap, Rule};

/// A configuration problem, always naming the file and, where known, the line
/// and key, with a hint on how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}\nhelp: pass --config PATH or run paymig where migrations.toml is")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}{}", help_suffix(.help))]
    Parse { path: PathBuf, line: usize, column: usize, message: String, help: Option<String> },
    #[error("{}: `{key}` {message}{}", location(.path, *.line), help_suffix(.help))]
    Invalid { path: PathBuf, line: Option<usize>, key: String, message: String, help: Option<String> },
}

fn help_suffix(help: &Option<String>) -> String {
    help.as_ref().map(|h| format!("\nhelp: {h}")).unwrap_or_default()
}

fn location(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{}:{l}", path.display()),
        None => path.display().to_string(),
    }
}

// ---------------------------------------------------------------------------
// The file's shape. `deny_unknown_fields` everywhere: a typo is an error.

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    migration: Migration,
    tags: BTreeMap<String, String>,
    source: Source,
    target: Target,
    #[serde(default)]
    database: Database,
    #[serde(default)]
    dynamodb: DynamoDb,
    #[serde(default)]
    lambda: Lambda,
    #[serde(default)]
    audit: Audit,
    #[serde(default)]
    parameters: Parameters,
    #[serde(default)]
    monitoring: Monitoring,
    #[serde(default)]
    blue_green: BlueGreen,
    #[serde(default)]
    network: Network,
    #[serde(default)]
    references: References,
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

fn default_journal() -> String {
    ".paymig".into()
}
fn default_max_wait() -> u64 {
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

fn default_source_path() -> String {
    "/dev/".into()
}
fn default_name_suffix() -> String {
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

fn default_target_path() -> String {
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

// ---------------------------------------------------------------------------

/// Where the journal lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalLocation {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub migration: Migration,
    pub tags: BTreeMap<String, String>,
    pub source: Source,
    pub target: Target,
    pub database: Database,
    pub dynamodb: DynamoDb,
    pub lambda: Lambda,
    pub audit: Audit,
    pub parameters: Parameters,
    pub monitoring: Monitoring,
    pub blue_green: BlueGreen,
    pub network: Network,
    pub references: References,
    pub journal: JournalLocation,
    pub names: NameMap,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
        let v = Validator { path, text };
        v.validate(&raw)?;
        let journal = parse_journal(&raw.migration.journal, path).map_err(|m| {
            v.invalid(
                "migration",
                "journal",
                m,
                Some("use a directory such as \".paymig\" or s3://bucket/prefix".into()),
            )
        })?;
        let listed = raw
            .source
            .dynamodb_tables
            .iter()
            .chain(&raw.source.lambda_functions)
            .chain(&raw.source.audit_buckets)
            .chain(&raw.source.dashboards)
            .chain(std::iter::once(&raw.source.db_cluster).filter(|c| !c.is_empty()));
        let names = NameMap::new(
            &raw.migration.name,
            &raw.migration.environment_suffix,
            &raw.source.name_suffix,
            (&raw.source.parameter_path, &raw.target.parameter_path),
            listed,
        );
        let cfg = Config {
            path: path.to_owned(),
            migration: raw.migration,
            tags: raw.tags,
            source: raw.source,
            target: raw.target,
            database: raw.database,
            dynamodb: raw.dynamodb,
            lambda: raw.lambda,
            audit: raw.audit,
            parameters: raw.parameters,
            monitoring: raw.monitoring,
            blue_green: raw.blue_green,
            network: raw.network,
            references: raw.references,
            journal,
            names,
        };
        v.check_derived_names(&cfg)?;
        Ok(cfg)
    }

    /// The tags every taggable prod resource carries: `[tags]` plus the
    /// `paymig:*` tags.
    pub fn prod_tags(&self) -> BTreeMap<String, String> {
        let mut tags = self.tags.clone();
        tags.insert(TAG_MIGRATION.into(), self.migration.name.clone());
        tags.insert(TAG_SUFFIX.into(), self.migration.environment_suffix.clone());
        tags
    }

    /// The environment suffix.
    pub fn suffix(&self) -> &str {
        &self.migration.environment_suffix
    }
}

/// Tag key naming the migration on every prod resource.
pub const TAG_MIGRATION: &str = "paymig:migration";
/// Tag key carrying the environment suffix on every prod resource.
pub const TAG_SUFFIX: &str = "paymig:suffix";

fn parse_journal(s: &str, config_path: &Path) -> Result<JournalLocation, String> {
    if let Some(rest) = s.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !naming::is_valid_bucket_name(bucket) {
            return Err(format!("names an invalid S3 bucket {bucket:?}"));
        }
        return Ok(JournalLocation::S3 { bucket: bucket.to_owned(), prefix: prefix.trim_end_matches('/').to_owned() });
    }
    if s.contains("://") {
        return Err(format!("{s:?} is neither a local directory nor an s3:// URL"));
    }
    if s.is_empty() {
        return Err("is empty".into());
    }
    let p = PathBuf::from(s);
    // A relative journal directory is relative to the configuration file, so
    // the same config works from any working directory.
    Ok(JournalLocation::Local(if p.is_relative() { config_path.parent().unwrap_or(Path::new(".")).join(p) } else { p }))
}

/// The keys a configuration must have (`section`, `key`; an empty key: the
/// section itself), as the raw structs require them.
const REQUIRED: [(&str, &str); 9] = [
    ("migration", ""),
    ("migration", "name"),
    ("migration", "environment_suffix"),
    ("migration", "region"),
    ("migration", "replica_region"),
    ("tags", ""),
    ("source", ""),
    ("source", "vpc_id"),
    ("target", ""),
];

/// Every required key `text` lacks, not only the first serde meets.
fn missing_required(text: &str) -> Vec<String> {
    let Ok(table) = text.parse::<toml::Table>() else { return Vec::new() };
    REQUIRED
        .iter()
        .filter(|(section, key)| match table.get(*section) {
            None => key.is_empty(),
            Some(t) => !key.is_empty() && t.get(*key).is_none(),
        })
        .map(|(section, key)| if key.is_empty() { format!("[{section}]") } else { format!("`{section}.{key}`") })
        .collect()
}

fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    if e.message().starts_with("missing field") {
        let missing = missing_required(text);
        if missing.len() > 1 {
            return ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: format!("{} required keys are missing: {}", missing.len(), missing.join(", ")),
                help: Some("add each of them (the reference migrations.toml comments every key)".into()),
            };
        }
    }
    let mut message = plain_types(e.message().trim());
    // serde names the unknown key but not a key whose value has the wrong
    // type: name it from the line.
    if !message.starts_with("unknown field") {
        if let Some(key) = key_at_line(text, line) {
            message = format!("`{key}`: {message}");
        }
    }
    let help = nearest_key_help(&message);
    ConfigError::Parse { path: path.to_owned(), line, column, message, help }
}

/// serde's type names in words a person reads (`expected f64` → `expected
/// a number`).
fn plain_types(message: &str) -> String {
    let mut out = message.to_owned();
    for (rust, words) in [
        ("f64", "a number"),
        ("f32", "a number"),
        ("u8", "a whole number"),
        ("u16", "a whole number"),
        ("u32", "a whole number"),
        ("u64", "a whole number"),
        ("i32", "a whole number"),
        ("i64", "a whole number"),
        ("usize", "a whole number"),
        ("a boolean", "true or false"),
        ("a sequence", "a list ([…])"),
        ("a map", "a table ({…})"),
    ] {
        out = out.replace(&format!("expected {rust}"), &format!("expected {words}"));
        out = out.replace(&format!("invalid type: {rust}"), &format!("invalid type: {words}"));
    }
    out
}

/// `section.key` of the assignment on a 1-based line, if it is one.
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let mut section = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            section = t.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        } else if i + 1 == line {
            let key = t.split_once('=')?.0.trim().trim_matches('"');
            return Some(if section.is_empty() { key.to_owned() } else { format!("{section}.{key}") });
        }
    }
    None
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" message, names the
/// nearest valid key.
fn nearest_key_help(message: &str) -> Option<String> {
    if !message.starts_with("unknown field") {
        return None;
    }
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let (unknown, valid) = quoted.split_first()?;
    let best = valid.iter().map(|k| (strsim::damerau_levenshtein(unknown, k), *k)).min()?;
    Some(if best.0 <= 3.max(unknown.len() / 3) {
        format!("did you mean `{}`? valid keys here: {}", best.1, valid.join(", "))
    } else {
        format!("valid keys here: {}", valid.join(", "))
    })
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    fn invalid(&self, section: &str, key: &str, message: impl Into<String>, help: Option<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: find_key_line(self.text, section, key.split('.').next().unwrap_or(key)),
            key: format!("{section}.{key}"),
            message: message.into(),
            help,
        }
    }

    fn validate(&self, raw: &RawConfig) -> Result<(), ConfigError> {
        let m = &raw.migration;
        if !is_migration_name(&m.name) {
            return Err(self.invalid(
                "migration",
                "name",
                format!("{:?} is not a valid migration name", m.name),
                Some("use 1-20 lower-case letters, digits or hyphens, starting with a letter".into()),
            ));
        }
        if !is_suffix(&m.environment_suffix) {
            return Err(self.invalid(
                "migration",
                "environment_suffix",
                format!("{:?} does not match ^[a-z0-9][a-z0-9-]{{0,11}}$", m.environment_suffix),
                Some("use up to 12 lower-case letters, digits or hyphens, e.g. \"prod\"".into()),
            ));
        }
        for (key, region) in [("region", &m.region), ("replica_region", &m.replica_region)] {
            if !is_region(region) {
                return Err(self.invalid(
                    "migration",
                    key,
                    format!("{region:?} is not an AWS region name"),
                    Some("use a region code such as \"us-east-1\"".into()),
                ));
            }
        }
        if m.region == m.replica_region {
            return Err(self.invalid(
                "migration",
                "replica_region",
                "must differ from region",
                Some("audit logs are replicated to another region, e.g. \"us-west-2\"".into()),
            ));
        }
        if m.max_wait_minutes == 0 {
            return Err(self.invalid("migration", "max_wait_minutes", "must be at least 1", None));
        }

        for required in ["Environment", "CostCenter"] {
            if !raw.tags.contains_key(required) {
                return Err(self.invalid(
                    "tags",
                    required,
                    "is required",
                    Some(format!("add `{required} = \"...\"` under [tags]")),
                ));
            }
        }
        for (k, v) in &raw.tags {
            if k.starts_with("aws:") || k.starts_with("paymig:") {
                return Err(self.invalid(
                    "tags",
                    k,
                    "uses a reserved prefix (aws:, paymig:)",
                    Some("rename the tag".into()),
                ));
            }
            if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
                return Err(self.invalid(
                    "tags",
                    k,
                    "exceeds AWS tag limits (key 1-128, value 0-256 characters)",
                    None,
                ));
            }
        }

        let s = &raw.source;
        for (section, arn) in [("source", &s.role_arn), ("target", &raw.target.role_arn)] {
            if let Some(arn) = arn {
                if !(arn.starts_with("arn:aws") && arn.contains(":iam::") && arn.contains(":role/")) {
                    return Err(self.invalid(
                        section,
                        "role_arn",
                        format!("{arn:?} is not an IAM role ARN"),
                        Some("use arn:aws:iam::<account>:role/<name>".into()),
                    ));
                }
            }
        }
        if !s.vpc_id.starts_with("vpc-") {
            return Err(self.invalid(
                "source",
                "vpc_id",
                format!("{:?} is not a VPC id", s.vpc_id),
                Some("use the dev VPC id, e.g. \"vpc-0a1b2c3d4e5f\"".into()),
            ));
        }
        if !s.name_suffix.starts_with('-') || !is_suffix(&s.name_suffix[1..]) {
            return Err(self.invalid(
                "source",
                "name_suffix",
                format!("{:?} must be a hyphen followed by a suffix", s.name_suffix),
                Some("use e.g. \"-dev\"".into()),
            ));
        }
        if s.name_suffix[1..] == m.environment_suffix {
            return Err(self.invalid(
                "source",
                "name_suffix",
                "equals the prod environment_suffix",
                Some("dev and prod names must differ".into()),
            ));
        }
        for (key, list) in [
            ("dynamodb_tables", &s.dynamodb_tables),
            ("lambda_functions", &s.lambda_functions),
            ("audit_buckets", &s.audit_buckets),
            ("dashboards", &s.dashboards),
            ("alarm_emails", &raw.monitoring.alarm_emails),
            ("exclude", &raw.parameters.exclude),
            ("keep", &raw.references.keep),
        ] {
            let section = match key {
                "alarm_emails" => "monitoring",
                "exclude" => "parameters",
                "keep" => "references",
                _ => "source",
            };
            let mut seen = BTreeSet::new();
            for item in list {
                if item.trim().is_empty() {
                    return Err(self.invalid(section, key, "contains an empty entry", None));
                }
                if !seen.insert(item) {
                    return Err(self.invalid(
                        section,
                        key,
                        format!("lists {item:?} twice"),
                        Some("remove the duplicate".into()),
                    ));
                }
            }
        }
        for bucket in &s.audit_buckets {
            if !naming::is_valid_bucket_name(bucket) {
                return Err(self.invalid(
                    "source",
                    "audit_buckets",
                    format!("{bucket:?} is not a valid S3 bucket name"),
                    None,
                ));
            }
        }
        if !s.lambda_artifacts.is_empty() {
            let ok = s
                .lambda_artifacts
                .strip_prefix("s3://")
                .and_then(|r| r.split('/').next())
                .is_some_and(naming::is_valid_bucket_name);
            if !ok {
                return Err(self.invalid(
                    "source",
                    "lambda_artifacts",
                    format!("{:?} is not an s3:// URL", s.lambda_artifacts),
                    Some("use s3://bucket/prefix/ (the package of function F is <prefix>F.zip)".into()),
                ));
            }
        }
        for (section, p) in [("source", &s.parameter_path), ("target", &raw.target.parameter_path)] {
            if !(p.starts_with('/') && p.ends_with('/')) {
                return Err(self.invalid(
                    section,
                    "parameter_path",
                    format!("{p:?} must begin and end with `/`"),
                    Some("e.g. \"/dev/\"".into()),
                ));
            }
        }
        if s.parameter_path == raw.target.parameter_path {
            return Err(self.invalid(
                "target",
                "parameter_path",
                "equals [source] parameter_path",
                Some("prod parameters need their own path, e.g. \"/prod/\"".into()),
            ));
        }

        let db = &raw.database;
        let half_steps = |x: f64| (x * 2.0).fract() == 0.0;
        if !(0.0..=256.0).contains(&db.min_capacity) || !half_steps(db.min_capacity) {
            return Err(self.invalid("database", "min_capacity", "must be 0-256 in steps of 0.5 ACU", None));
        }
        if !(1.0..=256.0).contains(&db.max_capacity)
            || !half_steps(db.max_capacity)
            || db.max_capacity < db.min_capacity
        {
            return Err(self.invalid(
                "database",
                "max_capacity",
                "must be 1-256 in steps of 0.5 ACU and at least min_capacity",
                None,
            ));
        }
        if !(2..=16).contains(&db.instances) {
            return Err(self.invalid(
                "database",
                "instances",
                format!("is {}; must be 2-16 (Multi-AZ needs at least 2)", db.instances),
                None,
            ));
        }

        let l = &raw.lambda;
        if let Some(rc) = l.reserved_concurrency {
            if rc < 0 {
                return Err(self.invalid("lambda", "reserved_concurrency", "must not be negative", None));
            }
        }
        for (name, o) in &l.overrides {
            if !s.lambda_functions.contains(name) {
                return Err(self.invalid(
                    "lambda",
                    "overrides",
                    format!("names {name:?}, which is not in [source] lambda_functions"),
                    Some("override only functions the migration lists".into()),
                ));
            }
            if o.reserved_concurrency.is_some_and(|rc| rc < 0) {
                return Err(self.invalid(
                    "lambda",
                    "overrides",
                    format!("{name:?}: reserved_concurrency must not be negative"),
                    None,
                ));
            }
        }
        if raw.audit.glacier_after_days < 0 {
            return Err(self.invalid("audit", "glacier_after_days", "must not be negative", None));
        }
        for glob in &raw.parameters.exclude {
            if let Err(e) = Parameters::glob(glob) {
                return Err(self.invalid("parameters", "exclude", format!("{glob:?} is not a valid glob: {e}"), None));
            }
        }
        for glob in &raw.references.keep {
            if let Err(e) = References::glob(glob) {
                return Err(self.invalid(
                    "references",
                    "keep",
                    format!("{glob:?} is not a valid pattern: {e}"),
                    Some("\"<dev function>:<VARIABLE>\", \"/dev/path/*\" or \"dashboard:<name>\"".into()),
                ));
            }
        }
        let mo = &raw.monitoring;
        for (key, pct) in
            [("rds_cpu_percent", mo.rds_cpu_percent), ("lambda_error_rate_percent", mo.lambda_error_rate_percent)]
        {
            if !(0.0..=100.0).contains(&pct) {
                return Err(self.invalid(
                    "monitoring",
                    key,
                    format!("is {pct}; a percentage must be within 0-100"),
                    None,
                ));
            }
        }
        for email in &mo.alarm_emails {
            if !email.contains('@') {
                return Err(self.invalid(
                    "monitoring",
                    "alarm_emails",
                    format!("{email:?} is not an email address"),
                    None,
                ));
            }
        }
        let bg = &raw.blue_green;
        if bg.listener_port == 0 {
            return Err(self.invalid("blue_green", "listener_port", "must be 1-65535", None));
        }
        if !bg.health_check_path.starts_with('/') {
            return Err(self.invalid("blue_green", "health_check_path", "must begin with `/`", None));
        }
        let mut seen = BTreeSet::new();
        for service in raw.network.interface_endpoints.iter().flatten() {
            let valid = service.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && service.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !valid {
                return Err(self.invalid(
                    "network",
                    "interface_endpoints",
                    format!("{service:?} is not a service name"),
                    Some(
                        "use the service part of the endpoint name, e.g. \"ssm\" for com.amazonaws.<region>.ssm".into(),
                    ),
                ));
            }
            if GATEWAY_SERVICES.contains(&service.as_str()) {
                return Err(self.invalid(
                    "network",
                    "interface_endpoints",
                    format!("{service:?} is reached through the gateway endpoint paymig always creates"),
                    Some(format!("remove {service:?} from the list")),
                ));
            }
            if !seen.insert(service) {
                return Err(self.invalid(
                    "network",
                    "interface_endpoints",
                    format!("{service:?} is listed twice"),
                    None,
                ));
            }
        }
        Ok(())
    }

    /// AWS length and character limits of every name the migration derives,
    /// checked before anything is created — never truncated silently.
    fn check_derived_names(&self, cfg: &Config) -> Result<(), ConfigError> {
        // A name_suffix that no dev name carries would plan a parallel stack
        // (`payments-dev-prod`) instead of prod's: a wrong suffix, refused.
        let listed: Vec<&String> = cfg.names.known().keys().collect();
        if !listed.is_empty() && !listed.iter().any(|n| cfg.names.carries_dev_suffix(n)) {
            let shown: Vec<String> = listed.iter().take(4).map(|n| format!("{n} → {}", cfg.names.prod(n))).collect();
            return Err(self.invalid(
                "source",
                "name_suffix",
                format!(
                    "{:?} is a whole token of none of the dev names, so each would keep its own and gain -{} ({}{})",
                    cfg.source.name_suffix,
                    cfg.suffix(),
                    shown.join(", "),
                    if listed.len() > 4 { ", …" } else { "" }
                ),
                Some("set name_suffix to the suffix the dev names carry (\"-dev\" for sessions-dev)".into()),
            ));
        }
        for d in derived_names(cfg) {
            if let Err(why) = d.check() {
                return Err(self.invalid(
                    d.section,
                    d.key,
                    format!("derives the {} name {:?}, which {why}", d.kind, d.name),
                    Some("shorten the dev name, the migration name or environment_suffix".into()),
                ));
            }
        }
        Ok(())
    }
}

/// Every name the configuration derives, for preflight checks.
fn derived_names(cfg: &Config) -> Vec<Derived> {
    let n = &cfg.names;
    let s = &cfg.source;
    let d = |section, key, kind, name: String, max, rule| Derived { section, key, kind, name, max, rule };
    let mut out = vec![
        d("migration", "name", "KMS alias", n.kms_alias(), 256, Rule::Any),
        d("migration", "name", "ALB", n.own("alb"), 32, Rule::Identifier),
        d("migration", "name", "target group", n.own("blue"), 32, Rule::Identifier),
        d("migration", "name", "target group", n.own("green"), 32, Rule::Identifier),
        d("migration", "name", "IAM role", n.own("s3-replication"), 64, Rule::Function),
        d("migration", "name", "SNS topic", n.own("alarms"), 256, Rule::Function),
        d("migration", "name", "security group", n.own("compute-sg"), 255, Rule::Any),
    ];
    if !s.db_cluster.is_empty() {
        out.push(d("source", "db_cluster", "Aurora cluster", n.prod(&s.db_cluster), 63, Rule::Identifier));
        // Instances are `<cluster>-1` … `<cluster>-N`: the longest is checked.
        let last = format!("{}-{}", n.prod(&s.db_cluster), cfg.database.instances.max(1));
        out.push(d("source", "db_cluster", "Aurora instance", last, 63, Rule::Identifier));
    }
    for t in &s.dynamodb_tables {
        out.push(d("source", "dynamodb_tables", "DynamoDB table", n.prod(t), 255, Rule::Table));
    }
    for f in &s.lambda_functions {
        out.push(d("source", "lambda_functions", "Lambda function", n.prod(f), 64, Rule::Function));
        out.push(d("source", "lambda_functions", "IAM role", n.lambda_role(f), 64, Rule::Function));
    }
    for b in &s.audit_buckets {
        out.push(d("source", "audit_buckets", "S3 bucket", n.prod(b), 63, Rule::Bucket));
        out.push(d("source", "audit_buckets", "S3 replica bucket", n.replica_bucket(b), 63, Rule::Bucket));
    }
    for db in &s.dashboards {
        out.push(d("source", "dashboards", "dashboard", n.prod(db), 255, Rule::Function));
    }
    out
}

/// The 1-based line where `key` is set inside `[section]` (or its subtables).
fn find_key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    let mut section_line = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix('[') {
            current = h.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_owned();
            if current == section {
                section_line = Some(i + 1);
            }
            continue;
        }
        let in_section = current == section || current.starts_with(&format!("{section}."));
        if in_section {
            let k = t.split('=').next().unwrap_or("").trim().trim_matches('"');
            if k == key {
                return Some(i + 1);
            }
        }
    }
    section_line
}

fn is_suffix(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 12
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn is_migration_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 20
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !s.ends_with('-')
}

fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|c| c.is_ascii_digit()))
}

impl fmt::Display for JournalLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalLocation::Local(p) => write!(f, "{}", p.display()),
            JournalLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const MINIMAL: &str = r#"
[migration]
name = "payments"
environment_suffix = "prod"
region = "us-east-1"
replica_region = "us-west-2"

[tags]
Environment = "production"
CostCenter = "payments"

[source]
vpc_id = "vpc-0a1b2c3d4e5f"
dynamodb_tables = ["sessions-dev"]
lambda_functions = ["payment-processor-dev"]
audit_buckets = ["payments-audit-dev"]

[target]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("migrations.toml"), text)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.database.instances, 2);
        assert_eq!(c.database.min_capacity, 0.5);
        assert_eq!(c.target.parameter_path, "/prod/");
        assert_eq!(c.journal, JournalLocation::Local(PathBuf::from(".paymig")));
        assert_eq!(c.prod_tags()["paymig:migration"], "payments");
    }

    #[test]
    fn unknown_key_names_line_and_nearest_key() {
        let text = MINIMAL.replace("region = \"us-east-1\"", "regoin = \"us-east-1\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("migrations.toml:5:1"), "{err}");
        assert!(err.contains("unknown field `regoin`"), "{err}");
        assert!(err.contains("did you mean `region`"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_key_and_line() {
        let cases = [
            ("environment_suffix = \"prod\"", "environment_suffix = \"Prod_1\"", "migration.environment_suffix", 4),
            ("replica_region = \"us-west-2\"", "replica_region = \"us-east-1\"", "migration.replica_region", 6),
            ("CostCenter = \"payments\"", "Team = \"payments\"", "tags.CostCenter", 8),
        ];
        for (from, to, key, line) in cases {
            let err = parse(&MINIMAL.replace(from, to)).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(key), "{msg}");
            if let ConfigError::Invalid { line: Some(l), .. } = err {
                assert_eq!(l, line, "{msg}");
            } else {
                panic!("expected an Invalid error with a line: {msg}");
            }
        }
    }

    #[test]
    fn duplicates_overrides_and_paths_are_rejected() {
        let dup = MINIMAL.replace("[\"sessions-dev\"]", "[\"sessions-dev\", \"sessions-dev\"]");
        assert!(parse(&dup).unwrap_err().to_string().contains("twice"));
        let ov = format!("{MINIMAL}\n[lambda.overrides.\"other-dev\"]\nreserved_concurrency = 5\n");
        assert!(parse(&ov).unwrap_err().to_string().contains("not in [source] lambda_functions"));
        let path = MINIMAL.replace("[target]", "[target]\nparameter_path = \"prod\"");
        assert!(parse(&path).unwrap_err().to_string().contains("begin and end"));
    }

    #[test]
    fn long_derived_names_are_rejected_not_truncated() {
        let text = MINIMAL.replace("[\"payments-audit-dev\"]", &format!("[\"{}-dev\"]", "a".repeat(58)));
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("63"), "{err}");
        // A cluster name that fits while `<cluster>-2` (its second
        // instance) does not.
        let cluster = format!("{}-dev", "c".repeat(57));
        let text = MINIMAL.replace("[source]\n", &format!("[source]\ndb_cluster = \"{cluster}\"\n"));
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("Aurora instance") && err.contains("63"), "{err}");
    }

    #[test]
    fn region_shapes() {
        assert!(is_region("us-east-1"));
        assert!(is_region("ap-southeast-2"));
        assert!(!is_region("useast1"));
        assert!(!is_region("us-east-x"));
    }
}

//! `migrations.toml` → a validated, typed [`Config`]. Everything here is pure:
//! no AWS call is made before the whole file has been checked (SPEC
//! "migrations.toml"). `shape.rs` is the file's shape (a struct per
//! section), `errors.rs` turns TOML's errors into file, line, key and what
//! to do, `validate.rs` checks everything after parsing; this file holds the
//! validated `Config` and `Config::parse`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::naming::{self, Derived, NameMap, Rule};

mod errors;
mod shape;
mod validate;
use errors::*;
pub use shape::*;
use validate::*;

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

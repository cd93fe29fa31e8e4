//! Validation after parsing, before anything is read or changed: every
//! problem at once, each naming the key and what to do; the names derived
//! from the configuration checked against AWS's limits.

use super::*;

pub(super) struct Validator<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Validator<'_> {
    pub(super) fn invalid(
        &self,
        section: &str,
        key: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: find_key_line(self.text, section, key.split('.').next().unwrap_or(key)),
            key: format!("{section}.{key}"),
            message: message.into(),
            help,
        }
    }

    pub(super) fn validate(&self, raw: &RawConfig) -> Result<(), ConfigError> {
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
    pub(super) fn check_derived_names(&self, cfg: &Config) -> Result<(), ConfigError> {
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
pub(super) fn derived_names(cfg: &Config) -> Vec<Derived> {
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
pub(super) fn find_key_line(text: &str, section: &str, key: &str) -> Option<usize> {
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

pub(super) fn is_suffix(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 12
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

pub(super) fn is_migration_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 20
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !s.ends_with('-')
}

pub(super) fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|c| c.is_ascii_digit()))
}

//! The ARNs of the migration's prod resources, as the configuration names
//! them: what each step declares its actions touch ([`crate::engine::Declared::resources`]),
//! for `paymig iam-policy`. One function per kind of resource, shared by the
//! steps that act on it (the key by KMS, database and Lambda; the functions
//! by Lambda and the ALB).

use crate::config::Config;

/// The migration's customer-managed keys (ids are random) and its alias.
pub fn kms_keys(cfg: &Config, account: &str) -> Vec<String> {
    let r = &cfg.migration.region;
    vec![format!("arn:aws:kms:{r}:{account}:key/*"), format!("arn:aws:kms:{r}:{account}:{}", cfg.names.kms_alias())]
}

/// The network's resources (EC2 ids are random: by type).
pub fn ec2(cfg: &Config, account: &str) -> Vec<String> {
    let r = &cfg.migration.region;
    ["vpc", "subnet", "route-table", "security-group", "vpc-endpoint", "internet-gateway", "prefix-list"]
        .iter()
        .map(|t| format!("arn:aws:ec2:{r}:{account}:{t}/*"))
        .collect()
}

/// The Aurora cluster, its instances, subnet and parameter groups, the dev
/// snapshot restored, and the default groups a create authorizes against.
pub fn rds(cfg: &Config, account: &str) -> Vec<String> {
    let r = &cfg.migration.region;
    let c = cfg.names.prod(&cfg.source.db_cluster);
    vec![
        format!("arn:aws:rds:{r}:{account}:cluster:{c}"),
        format!("arn:aws:rds:{r}:{account}:db:{c}-*"),
        format!("arn:aws:rds:{r}:{account}:subgrp:{c}-subnets"),
        format!("arn:aws:rds:{r}:{account}:cluster-pg:{c}-params"),
        format!("arn:aws:rds:{r}:*:cluster-snapshot:*"),
        // Create and restore also authorize against the default groups they
        // use (instances take the engine's default parameter and option groups).
        format!("arn:aws:rds:{r}:{account}:pg:default.*"),
        format!("arn:aws:rds:{r}:{account}:og:default*"),
        format!("arn:aws:rds:{r}:{account}:cluster-pg:default.*"),
    ]
}

/// The secrets RDS creates for the master credentials it manages
/// (`rds!cluster-<id>`, in the prod account).
pub fn rds_secrets(cfg: &Config, account: &str) -> Vec<String> {
    vec![format!("arn:aws:secretsmanager:{}:{account}:secret:rds!*", cfg.migration.region)]
}

/// The prod tables and their indexes.
pub fn tables(cfg: &Config, account: &str) -> Vec<String> {
    let r = &cfg.migration.region;
    cfg.source
        .dynamodb_tables
        .iter()
        .map(|t| cfg.names.prod(t))
        .flat_map(|t| {
            [
                format!("arn:aws:dynamodb:{r}:{account}:table/{t}"),
                format!("arn:aws:dynamodb:{r}:{account}:table/{t}/index/*"),
            ]
        })
        .collect()
}

fn bucket_and_objects(b: &str) -> [String; 2] {
    [format!("arn:aws:s3:::{b}"), format!("arn:aws:s3:::{b}/*")]
}

/// The audit buckets and their replicas (S3 ARNs name no account).
pub fn audit_buckets(cfg: &Config, _account: &str) -> Vec<String> {
    let n = &cfg.names;
    cfg.source
        .audit_buckets
        .iter()
        .flat_map(|b| [n.prod(b), n.replica_bucket(b)])
        .flat_map(|b| bucket_and_objects(&b))
        .collect()
}

/// The staging bucket of packages over Lambda's inline limit, and the
/// artifacts location packages are read from (S3 ARNs name no account).
pub fn packages(cfg: &Config, _account: &str) -> Vec<String> {
    bucket_and_objects(&cfg.names.own("lambda-staging"))
        .into_iter()
        .chain(cfg.source.lambda_artifacts.strip_prefix("s3://").map(|a| format!("arn:aws:s3:::{a}*")))
        .collect()
}

/// The replication role of the audit buckets.
pub fn replication_role(cfg: &Config, account: &str) -> Vec<String> {
    vec![format!("arn:aws:iam::{account}:role/{}", cfg.names.own("s3-replication"))]
}

/// The prod functions and their versions and aliases.
pub fn functions(cfg: &Config, account: &str) -> Vec<String> {
    let r = &cfg.migration.region;
    cfg.source
        .lambda_functions
        .iter()
        .map(|f| cfg.names.prod(f))
        .flat_map(|f| {
            [
                format!("arn:aws:lambda:{r}:{account}:function:{f}"),
                format!("arn:aws:lambda:{r}:{account}:function:{f}:*"),
            ]
        })
        .collect()
}

/// The prod parameters under `[target] parameter_path`.
pub fn parameters(cfg: &Config, account: &str) -> Vec<String> {
    vec![format!("arn:aws:ssm:{}:{account}:parameter{}*", cfg.migration.region, cfg.target.parameter_path)]
}

/// The alarm topic.
pub fn topic(cfg: &Config, account: &str) -> Vec<String> {
    vec![format!("arn:aws:sns:{}:{account}:{}", cfg.migration.region, cfg.names.own("alarms"))]
}

/// The prod dashboards, and the alarms: every prod alarm name holds the
/// suffix as a whole token (the naming rule): `<name>-prod`,
/// `<a>-prod-<b>`, or a dev alarm `dev-x` renamed `prod-x`.
pub fn dashboards_and_alarms(cfg: &Config, account: &str) -> Vec<String> {
    let (r, x) = (&cfg.migration.region, cfg.suffix());
    let mut v: Vec<String> = cfg
        .source
        .dashboards
        .iter()
        .map(|d| format!("arn:aws:cloudwatch::{account}:dashboard/{}", cfg.names.prod(d)))
        .collect();
    for pattern in [format!("*-{x}-*"), format!("*-{x}"), format!("{x}-*")] {
        v.push(format!("arn:aws:cloudwatch:{r}:{account}:alarm:{pattern}"));
    }
    v
}

/// The load balancer, its listeners and the two target groups.
pub fn load_balancer(cfg: &Config, account: &str) -> Vec<String> {
    let (r, n) = (&cfg.migration.region, &cfg.names);
    let (m, x) = (&cfg.migration.name, cfg.suffix());
    vec![
        format!("arn:aws:elasticloadbalancing:{r}:{account}:loadbalancer/app/{}/*", n.own("alb")),
        format!("arn:aws:elasticloadbalancing:{r}:{account}:listener/app/{}/*", n.own("alb")),
        format!("arn:aws:elasticloadbalancing:{r}:{account}:targetgroup/{m}-blue-{x}/*"),
        format!("arn:aws:elasticloadbalancing:{r}:{account}:targetgroup/{m}-green-{x}/*"),
    ]
}

//! The IAM policies paymig itself needs for a configuration, derived from
//! the actions each step declares — no hand-kept list, no wildcard action —
//! with each action scoped to the ARNs the step declares for this
//! configuration ([`crate::engine::Declared::resources`]). Only actions AWS
//! grants on `*` alone (creates of resources whose ids are random,
//! unfiltered describes and lists) keep `Resource: "*"`. `paymig iam-policy`
//! prints them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::config::Config;

/// Whether AWS grants `action` only on `*` (X-Ray's trace writes, in the
/// execution roles paymig creates, among them).
pub fn needs_star(action: &str) -> bool {
    let (service, op) = action.split_once(':').unwrap_or(("", action));
    matches!(service, "ec2") && (op.starts_with("Describe") || op == "CreateVpc")
        || matches!(
            action,
            "kms:CreateKey"
                | "kms:ListKeys"
                | "sts:GetCallerIdentity"
                | "lambda:GetAccountSettings"
                | "ssm:DescribeParameters"
                | "xray:PutTraceSegments"
                | "xray:PutTelemetryRecords"
                | "secretsmanager:GetRandomPassword"
        )
        || (matches!(service, "rds" | "cloudwatch" | "elasticloadbalancing") && op.starts_with("Describe"))
}

/// The policy: per step, one statement for the actions AWS grants only on
/// `*`, and one per service with the migration's ARNs. `dev_account`, when
/// it is another account, adds what a restore needs of dev's snapshot key.
pub fn policy(cfg: &Config, account: &str, dev_account: Option<&str>) -> Value {
    let mut statements =
        vec![json!({"Sid": "Identity", "Effect": "Allow", "Action": ["sts:GetCallerIdentity"], "Resource": "*"})];
    for step in crate::steps::all() {
        let sid_base: String = step
            .id()
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
            })
            .collect();
        let mut star: BTreeSet<&str> = BTreeSet::new();
        let mut scoped: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for a in step.actions() {
            if let Some(s) = special_statement(step.as_ref(), cfg, account, &sid_base, a) {
                statements.push(s);
            } else if needs_star(a) {
                star.insert(a);
            } else {
                scoped.entry(a.split(':').next().unwrap_or("")).or_default().insert(a);
            }
        }
        if !star.is_empty() {
            statements.push(
                json!({"Sid": format!("{sid_base}Unscoped"), "Effect": "Allow", "Action": star, "Resource": "*"}),
            );
        }
        for (service, actions) in scoped {
            let arns = step.resources(cfg, account, service);
            if arns.is_empty() {
                continue;
            }
            let sid = format!(
                "{sid_base}{}",
                service
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .map(|w| {
                        let mut c = w.chars();
                        c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
                    })
                    .collect::<String>()
            );
            statements.push(json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": arns}));
        }
    }
    statements.extend(journal_statements(cfg));
    if let Some(dev) = dev_account.filter(|d| *d != account && !cfg.source.db_cluster.is_empty()) {
        // The snapshot is encrypted with dev's key: the restore creates a
        // grant on it and decrypts through it (its key policy must also
        // grant this account; preflight checks that).
        statements.push(json!({"Sid": "DevSnapshotKey", "Effect": "Allow",
            "Action": ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey"],
            "Resource": [format!("arn:aws:kms:{}:{dev}:key/*", cfg.migration.region)]}));
    }
    // paymig assumes [target] role_arn with the prod identity this policy is
    // for; and [source] role_arn with the source side's base identity, which
    // is this one when the source side has no identity of its own (no
    // [source] profile: the default chain — in CodeBuild, the build's role).
    if let Some(role) = &cfg.target.role_arn {
        statements.push(
            json!({"Sid": "AssumeTargetRole", "Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": [role]}),
        );
    }
    if let Some(role) = cfg.source.role_arn.as_ref().filter(|_| source_assumed_by_prod(cfg)) {
        statements.push(
            json!({"Sid": "AssumeSourceRole", "Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": [role]}),
        );
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// Whether the identity that assumes `[source] role_arn` is the prod
/// identity: the source side has no profile of its own (or the same one),
/// so both sides start from the same credentials.
pub fn source_assumed_by_prod(cfg: &Config) -> bool {
    cfg.source.role_arn.is_some() && cfg.source.profile == cfg.target.profile
}

/// The base identity of a side, in words.
fn identity(profile: Option<&str>) -> String {
    match profile {
        Some(p) => format!("the credentials of profile {p:?}"),
        None => "the default credential chain (in CodeBuild: the build's service role)".into(),
    }
}

/// Who needs which policy (`iam-policy --side principals`): the prod
/// identity (with `sts:AssumeRole` on `[source] role_arn` when it is the one
/// that assumes it), the dev side's read permissions — on the role paymig
/// assumes there, with that role's trust policy naming `assumer` (the source
/// side's base identity; its account root when unknown) — and the dev
/// identity when it is a profile of its own.
pub fn principals(
    cfg: &Config,
    prod_account: &str,
    dev_account: &str,
    dev_in_other: Option<&str>,
    assumer: Option<&str>,
) -> Value {
    let mut out = vec![json!({
        "principal": "prod identity",
        "who": match &cfg.target.role_arn {
            Some(r) => format!("{}, assuming {r}", identity(cfg.target.profile.as_deref())),
            None => identity(cfg.target.profile.as_deref()),
        },
        "policy": policy(cfg, prod_account, dev_in_other),
    })];
    let reads = source_policy(cfg, dev_account);
    match &cfg.source.role_arn {
        Some(role) => {
            if !source_assumed_by_prod(cfg) {
                out.push(json!({
                    "principal": "dev identity",
                    "who": identity(cfg.source.profile.as_deref()),
                    "policy": {"Version": "2012-10-17", "Statement": [
                        {"Sid": "AssumeSourceRole", "Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": [role]}]},
                }));
            }
            let assumer = assumer.map_or_else(|| format!("arn:aws:iam::{prod_account}:root"), str::to_owned);
            out.push(json!({
                "principal": "dev read role",
                "who": role,
                "policy": reads,
                "trust_policy": {"Version": "2012-10-17", "Statement": [
                    {"Sid": "PaymigAssumes", "Effect": "Allow", "Principal": {"AWS": assumer}, "Action": "sts:AssumeRole"}]},
            }));
        }
        None => out.push(json!({
            "principal": "dev identity",
            "who": identity(cfg.source.profile.as_deref()),
            "policy": reads,
        })),
    }
    json!({"principals": out})
}

/// An STS caller ARN as IAM names the principal: an assumed role's session
/// is its role.
pub fn principal_arn(caller: &str) -> String {
    match caller.strip_prefix("arn:aws:sts::").and_then(|r| r.split_once(":assumed-role/")) {
        Some((account, rest)) => format!("arn:aws:iam::{account}:role/{}", rest.split('/').next().unwrap_or(rest)),
        None => caller.to_owned(),
    }
}

/// The statement of an action whose grant is narrower than "the service's
/// ARNs", as its step declares it ([`crate::engine::Declared::grant`]). A
/// service-linked role a step did not map still gets service-linked roles
/// only (a unit test keeps every declaring step mapped).
fn special_statement(
    step: &dyn crate::engine::DynStep,
    cfg: &Config,
    account: &str,
    sid: &str,
    action: &str,
) -> Option<Value> {
    match step.grant(cfg, account, action) {
        Some(g) => {
            let mut s = json!({"Sid": format!("{sid}{}", g.sid), "Effect": "Allow", "Action": [action], "Resource": g.resources});
            if let Some(c) = g.condition {
                s["Condition"] = c;
            }
            Some(s)
        }
        None if action == "iam:CreateServiceLinkedRole" => Some(json!({"Sid": format!("{sid}ServiceLinkedRole"),
            "Effect": "Allow", "Action": [action],
            "Resource": [format!("arn:aws:iam::{account}:role/aws-service-role/*")]})),
        None => None,
    }
}

/// The remote journal's objects (`journal = "s3://bucket/prefix"`): read,
/// written with conditional writes, deleted (the lease), listed under its
/// prefix.
fn journal_statements(cfg: &Config) -> Vec<Value> {
    let crate::config::JournalLocation::S3 { bucket, prefix } = &cfg.journal else { return Vec::new() };
    vec![
        json!({"Sid": "JournalObjects", "Effect": "Allow", "Action": crate::engine::store::s3::OBJECT_ACTIONS,
            "Resource": [format!("arn:aws:s3:::{bucket}/{prefix}*")]}),
        json!({"Sid": "JournalBucket", "Effect": "Allow", "Action": crate::engine::store::s3::BUCKET_ACTIONS,
            "Resource": [format!("arn:aws:s3:::{bucket}")]}),
    ]
}

/// The dev ARNs a read of `service` may touch.
fn source_resources(cfg: &Config, account: &str, service: &str) -> Vec<String> {
    let r = &cfg.migration.region;
    let s = &cfg.source;
    match service {
        "rds" => vec![
            format!("arn:aws:rds:{r}:{account}:cluster:{}", s.db_cluster),
            format!("arn:aws:rds:{r}:{account}:cluster-snapshot:*"),
            format!("arn:aws:rds:{r}:{account}:snapshot:*"),
            format!("arn:aws:rds:{r}:{account}:db:*"),
            format!("arn:aws:rds:{r}:{account}:cluster-pg:*"),
            format!("arn:aws:rds:{r}:{account}:subgrp:*"),
        ],
        "dynamodb" => s
            .dynamodb_tables
            .iter()
            .flat_map(|t| {
                [
                    format!("arn:aws:dynamodb:{r}:{account}:table/{t}"),
                    format!("arn:aws:dynamodb:{r}:{account}:table/{t}/index/*"),
                ]
            })
            .collect(),
        "lambda" => s
            .lambda_functions
            .iter()
            .map(|f| format!("arn:aws:lambda:{r}:{account}:function:{f}"))
            // Dev's own layer versions: their policies are read when prod is
            // another account.
            .chain([format!("arn:aws:lambda:{r}:{account}:layer:*:*")])
            .collect(),
        "s3" => s
            .audit_buckets
            .iter()
            .flat_map(|b| [format!("arn:aws:s3:::{b}"), format!("arn:aws:s3:::{b}/*")])
            .chain(s.lambda_artifacts.strip_prefix("s3://").map(|a| format!("arn:aws:s3:::{a}*")))
            .chain(
                s.lambda_artifacts
                    .strip_prefix("s3://")
                    .and_then(|a| a.split('/').next())
                    .map(|b| format!("arn:aws:s3:::{b}")),
            )
            .collect(),
        "ssm" => vec![format!("arn:aws:ssm:{r}:{account}:parameter{}*", s.parameter_path)],
        "cloudwatch" => s.dashboards.iter().map(|d| format!("arn:aws:cloudwatch::{account}:dashboard/{d}")).collect(),
        "iam" => vec![format!("arn:aws:iam::{account}:role/*")],
        "kms" => vec![format!("arn:aws:kms:{r}:{account}:key/*")],
        _ => vec![format!("arn:aws:{service}:{r}:{account}:*")],
    }
}

/// The read-only policy for the dev side (`iam-policy --side source`): what
/// each step reads there, scoped to the configured dev resources.
pub fn source_policy(cfg: &Config, account: &str) -> Value {
    let mut star: BTreeSet<&str> = BTreeSet::from(["sts:GetCallerIdentity"]);
    let mut scoped: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for step in crate::steps::all() {
        for a in step.source_actions() {
            if needs_star(a) {
                star.insert(a);
            } else {
                scoped.entry(a.split(':').next().unwrap_or("")).or_default().insert(a);
            }
        }
    }
    let mut statements = vec![json!({"Sid": "ReadUnscoped", "Effect": "Allow", "Action": star, "Resource": "*"})];
    for (service, actions) in scoped {
        let sid: String = format!("Read{}", service.split('-').map(capitalized).collect::<String>());
        statements.push(json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": source_resources(cfg, account, service)}));
    }
    // `sts:AssumeRole` on [source] role_arn is the assuming identity's, not
    // the role's: see `principals`.
    json!({"Version": "2012-10-17", "Statement": statements})
}

fn capitalized(w: &str) -> String {
    let mut c = w.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Config {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations.toml")).unwrap();
        Config::parse(std::path::Path::new("migrations.toml"), &text).unwrap()
    }

    #[test]
    fn every_scoped_action_of_every_step_has_arns_declared_by_its_step() {
        let cfg = reference();
        for step in crate::steps::all() {
            for a in step.actions() {
                if needs_star(a) || special_statement(step.as_ref(), &cfg, "123456789012", "S", a).is_some() {
                    continue;
                }
                let service = a.split(':').next().unwrap();
                let arns = step.resources(&cfg, "123456789012", service);
                assert!(!arns.is_empty(), "step {} declares {a} but no {service} ARNs for it", step.id());
                assert!(arns.iter().all(|r| r.starts_with("arn:aws:") && r != "*"), "{arns:?}");
            }
        }
    }

    #[test]
    fn every_step_creating_a_service_linked_role_names_its_service() {
        let cfg = reference();
        for step in crate::steps::all() {
            if step.actions().contains(&"iam:CreateServiceLinkedRole") {
                let g = step.grant(&cfg, "123456789012", "iam:CreateServiceLinkedRole");
                assert!(g.is_some_and(|g| g.condition.is_some()), "step {} has no service mapped", step.id());
            }
        }
    }
}

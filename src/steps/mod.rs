//! One file per AWS service step. [`all`] is the migration's DAG: adding a
//! step is one new file here and one line in that list.

pub mod alb;
pub mod audit;
pub mod database;
pub mod dynamodb;
pub mod iam;
pub mod kms;
pub mod lambda;
pub mod monitoring;
pub mod network;
pub mod params;

use std::sync::Arc;

use std::collections::BTreeMap;

use crate::config::{TAG_MIGRATION, TAG_SUFFIX};
use crate::engine::{Ctx, Step};
use crate::report::Check;

/// The checks every prod resource gets: the required tags, and the
/// environment suffix in its name.
pub fn common_checks(ctx: &Ctx, name: &str, tags: &BTreeMap<String, String>) -> Vec<Check> {
    let missing: Vec<String> =
        ctx.cfg.prod_tags().into_iter().filter(|(k, v)| tags.get(k) != Some(v)).map(|(k, _)| k).collect();
    let suffix = ctx.suffix();
    vec![
        Check::new(
            "tags.present",
            name,
            missing.is_empty(),
            if missing.is_empty() {
                "all required tags".to_owned()
            } else {
                format!("missing or wrong: {}", missing.join(", "))
            },
        ),
        Check::new(
            "names.suffix",
            name,
            name.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == suffix)
                || name.contains(&format!("-{suffix}")),
            format!("contains -{suffix}"),
        ),
    ]
}

/// The `Allow` statements of a policy document that name a wildcard action
/// (`*` or `service:*`, or any `*` pattern).
pub fn wildcard_actions(policy: &serde_json::Value) -> Vec<String> {
    let statements = match &policy["Statement"] {
        serde_json::Value::Array(a) => a.clone(),
        s @ serde_json::Value::Object(_) => vec![s.clone()],
        _ => vec![],
    };
    statements
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| match &s["Action"] {
            serde_json::Value::String(a) => vec![a.clone()],
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
            _ => vec![],
        })
        .filter(|a| a.contains('*'))
        .collect()
}

/// Whether tags mark a resource as the migration's.
pub fn is_tagged_ours(ctx: &Ctx, tags: &BTreeMap<String, String>) -> bool {
    tags.get(TAG_MIGRATION) == Some(&ctx.cfg.migration.name)
        && tags.get(TAG_SUFFIX).map(String::as_str) == Some(ctx.suffix())
}

/// Every step of the migration, with its dependencies.
pub fn all() -> Vec<Arc<dyn Step>> {
    vec![
        Arc::new(kms::Kms),
        Arc::new(network::Network::default()),
        Arc::new(database::Database::default()),
        Arc::new(dynamodb::DynamoDb),
        Arc::new(audit::Audit),
        Arc::new(iam::Iam),
        Arc::new(lambda::Lambda::default()),
        Arc::new(alb::Alb),
        Arc::new(monitoring::Monitoring),
        Arc::new(params::Params::default()),
    ]
}

//! One file per AWS service step. [`all`] is the migration's DAG: adding a
//! tier is one new file here and one line in that list.

pub mod audit;
pub mod database;
pub mod dynamodb;
pub mod kms;
pub mod monitoring;
pub mod network;
pub mod params;
pub mod pending;

use std::sync::Arc;

use crate::engine::Step;
use pending::Pending;

/// Every step of the migration, with its dependencies.
pub fn all() -> Vec<Arc<dyn Step>> {
    vec![
        Arc::new(kms::Kms),
        Arc::new(network::Network::default()),
        Arc::new(database::Database::default()),
        Arc::new(dynamodb::DynamoDb),
        Arc::new(audit::Audit),
        pending("iam", &["kms", "dynamodb", "audit"], "the IAM tier"),
        pending("lambda", &["iam", "network", "database"], "the Lambda tier"),
        pending("alb", &["network", "lambda"], "the ALB blue-green tier"),
        Arc::new(monitoring::Monitoring),
        Arc::new(params::Params::default()),
    ]
}

fn pending(id: &'static str, deps: &'static [&'static str], what: &'static str) -> Arc<dyn Step> {
    Arc::new(Pending { id, deps, what })
}

//! One file per AWS service step. [`all`] is the migration's DAG: adding a
//! tier is one new file here and one line in that list.

pub mod kms;
pub mod network;
pub mod pending;

use std::sync::Arc;

use crate::engine::Step;
use pending::Pending;

/// Every step of the migration, with its dependencies.
pub fn all() -> Vec<Arc<dyn Step>> {
    vec![
        Arc::new(kms::Kms),
        Arc::new(network::Network::default()),
        Arc::new(Pending {
            id: "database",
            deps: &["kms", "network"],
            what: "the Aurora PostgreSQL tier",
        }),
        Arc::new(Pending {
            id: "dynamodb",
            deps: &["kms"],
            what: "the DynamoDB tier",
        }),
        Arc::new(Pending {
            id: "audit",
            deps: &[],
            what: "the S3 audit-log tier",
        }),
        Arc::new(Pending {
            id: "iam",
            deps: &["kms", "dynamodb", "audit"],
            what: "the IAM tier",
        }),
        Arc::new(Pending {
            id: "lambda",
            deps: &["iam", "network", "database"],
            what: "the Lambda tier",
        }),
        Arc::new(Pending {
            id: "alb",
            deps: &["network", "lambda"],
            what: "the ALB blue-green tier",
        }),
        Arc::new(Pending {
            id: "monitoring",
            deps: &["kms", "database", "lambda", "dynamodb", "audit"],
            what: "the monitoring tier",
        }),
        Arc::new(Pending {
            id: "params",
            deps: &[],
            what: "the SSM parameter tier",
        }),
    ]
}

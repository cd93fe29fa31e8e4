//! One file per AWS service step. [`all`] is the migration's DAG: adding a
//! step is one new file here and one line in that list. What the steps
//! share (tags and ownership, policy documents, service roles) is in
//! [`common`].

pub mod alb;
pub mod audit;
pub mod common;
pub mod database;
pub mod dynamodb;
pub mod iam;
pub mod kms;
pub mod lambda;
pub mod monitoring;
pub mod network;
pub mod params;

use std::sync::Arc;

use crate::engine::DynStep;

/// Every step of the migration, with its dependencies.
pub fn all() -> Vec<Arc<dyn DynStep>> {
    vec![
        Arc::new(kms::Kms),
        Arc::new(network::Network::default()),
        Arc::new(network::interface::Endpoints::default()),
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

//! Tiers whose steps are not built yet. They hold their place in the DAG so
//! `plan`/`apply` accept the full `migrations.toml`, report the tier as
//! skipped (a notice, not an error), and still check in preflight that the dev
//! resources the config lists exist — a SPEC rule that holds before any tier
//! is built.

use futures::future::BoxFuture;

use crate::engine::journal::Record;
use crate::engine::{Ctx, Outcome, Step, StepError};

/// A tier not built yet.
pub struct Pending {
    pub id: &'static str,
    pub deps: &'static [&'static str],
    /// What the tier will migrate, for the notice.
    pub what: &'static str,
}

impl Step for Pending {
    fn id(&self) -> &'static str {
        self.id
    }

    fn deps(&self) -> &'static [&'static str] {
        self.deps
    }

    fn preflight<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Vec<String>> {
        Box::pin(check_dev_resources(self.id, ctx))
    }

    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let why = format!("{} is not built yet", self.what);
            tracing::info!(step = self.id, "skipped: {why}");
            let _ = ctx;
            Ok(Outcome::Skipped(why))
        })
    }

    fn undo<'a>(&'a self, _ctx: &'a Ctx, record: &'a Record) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(
            async move { Err(StepError::Invalid(format!("step {} cannot undo {} yet", self.id, record.intent.key))) },
        )
    }
}

/// Existence checks of the dev resources each tier reads (source, read only).
async fn check_dev_resources(step: &str, ctx: &Ctx) -> Vec<String> {
    let src = &ctx.aws.source;
    let s = &ctx.cfg.source;
    let mut problems = Vec::new();
    match step {
        "database" if !s.db_cluster.is_empty() => {
            match src.rds.describe_db_clusters().db_cluster_identifier(&s.db_cluster).send().await {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(|e| e.is_db_cluster_not_found_fault()) => problems.push(format!(
                    "[source] db_cluster: the dev Aurora cluster {:?} does not exist (check the name and the source account/region)", s.db_cluster)),
                Err(e) => problems.push(format!("[source] db_cluster {:?}: {}", s.db_cluster, crate::aws::describe_sdk_error(&e))),
            }
        }
        "dynamodb" => {
            for t in &s.dynamodb_tables {
                match src.dynamodb.describe_table().table_name(t).send().await {
                    Ok(_) => {}
                    Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
                        problems.push(format!("[source] dynamodb_tables: the dev table {t:?} does not exist"))
                    }
                    Err(e) => {
                        problems.push(format!("[source] dynamodb_tables {t:?}: {}", crate::aws::describe_sdk_error(&e)))
                    }
                }
            }
        }
        "lambda" => {
            for f in &s.lambda_functions {
                match src.lambda.get_function_configuration().function_name(f).send().await {
                    Ok(_) => {}
                    Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
                        problems.push(format!("[source] lambda_functions: the dev function {f:?} does not exist"))
                    }
                    Err(e) => problems
                        .push(format!("[source] lambda_functions {f:?}: {}", crate::aws::describe_sdk_error(&e))),
                }
            }
        }
        "audit" => {
            for b in &s.audit_buckets {
                match src.s3.head_bucket().bucket(b).send().await {
                    Ok(_) => {}
                    Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => {
                        problems.push(format!("[source] audit_buckets: the dev bucket {b:?} does not exist"))
                    }
                    Err(e) => {
                        problems.push(format!("[source] audit_buckets {b:?}: {}", crate::aws::describe_sdk_error(&e)))
                    }
                }
            }
        }
        "monitoring" => {
            for d in &s.dashboards {
                match src.cloudwatch.get_dashboard().dashboard_name(d).send().await {
                    Ok(_) => {}
                    Err(e) if e.as_service_error().is_some_and(|e| e.is_dashboard_not_found_error()) => {
                        problems.push(format!("[source] dashboards: the dev dashboard {d:?} does not exist"))
                    }
                    Err(e) => {
                        problems.push(format!("[source] dashboards {d:?}: {}", crate::aws::describe_sdk_error(&e)))
                    }
                }
            }
        }
        _ => {}
    }
    problems
}

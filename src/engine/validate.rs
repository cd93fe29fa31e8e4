//! `validate`'s schedule: every step observes what exists (in DAG order:
//! the prod key first, which several checks compare against), then every
//! step's comparisons and checks run side by side. Reads only.

use super::dag::Dag;
use super::Ctx;
use crate::report::{Findings, Meta, Report};

/// The report of every step's findings, or one line per step whose reads
/// failed (a runtime failure, exit 1 — never reported as drift).
pub async fn run(ctx: &Ctx, dag: &Dag) -> Result<Report, Vec<String>> {
    for step in dag.steps() {
        step.observe(ctx).await.map_err(|e| vec![format!("{}: {e}", step.id())])?;
    }
    let results = futures::future::join_all(dag.steps().iter().map(|s| s.validate(ctx))).await;
    let mut findings: Vec<Findings> = Vec::new();
    let mut errors = Vec::new();
    for (step, r) in dag.steps().iter().zip(results) {
        match r {
            Ok(mut f) => {
                for r in &mut f.resources {
                    r.tier = step.id().to_owned();
                }
                findings.push(f)
            }
            Err(e) => errors.push(format!("{}: {e}", step.id())),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut report = Report::from(findings);
    report.meta = Meta {
        generated_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        paymig_version: env!("CARGO_PKG_VERSION").to_owned(),
        migration: ctx.cfg.migration.name.clone(),
        account: ctx.account.clone(),
        region: ctx.cfg.migration.region.clone(),
        run: ctx.journal.as_ref().and_then(|j| j.runs().last().map(|r| r.id.clone())),
    };
    Ok(report)
}

//! apply's schedule: every step forward through the DAG under one journal
//! run, each settled once it is done. A re-run resumes: every step adopts
//! what exists.

use super::dag::{Dag, Report, Status};
use super::journal::{Journal, JournalError};
use super::{Action, Ctx, Outcome};

/// What an apply did.
pub struct Applied {
    /// The journal run's id.
    pub run: String,
    /// One per step, in the DAG's order.
    pub reports: Vec<Report>,
    /// A line per step that failed or was blocked.
    pub failed: Vec<String>,
}

/// Opens a journal run and executes the DAG (preflight and confirmation
/// already passed); the caller closes the run.
pub async fn run(ctx: &Ctx, journal: &Journal, dag: &Dag) -> Result<Applied, JournalError> {
    let run = journal.begin_run("apply")?;
    tracing::debug!(run = %run, parallelism = ctx.parallelism, "apply started");
    crate::progress::start("apply", &dag.steps().iter().map(|s| s.id()).collect::<Vec<_>>());
    ctx.outputs.schedule(dag.steps().iter().map(|s| s.id()));
    let mut reports = dag
        .execute(
            ctx.parallelism,
            |s| {
                Box::pin(async move {
                    tracing::debug!(step = s.id(), "step running");
                    let outcome = s.run(ctx).await?;
                    if outcome == Outcome::Done {
                        ctx.settle(s.id())?;
                    }
                    Ok(outcome)
                })
            },
            &|id| ctx.outputs.ended(id),
        )
        .await;
    reports.sort_by_key(|r| dag.steps().iter().position(|s| s.id() == r.step));
    for r in reports.iter().filter(|r| matches!(r.status, Status::Done | Status::Failed(_) | Status::Interrupted(_))) {
        let (created, updated) = counts(ctx, r.step);
        let status = match r.status {
            Status::Done => "done",
            Status::Failed(_) => "failed",
            _ => "interrupted",
        };
        ctx.step_time(r.step, r.started, r.elapsed, status, created + updated);
    }
    let failed = reports
        .iter()
        .filter_map(|r| match &r.status {
            Status::Failed(e) => Some(format!("[{}] failed: {e}", r.step)),
            Status::Blocked(e) => Some(format!("[{}] blocked: {e}", r.step)),
            Status::Interrupted(e) => Some(format!("[{}] {e}", r.step)),
            _ => None,
        })
        .collect();
    Ok(Applied { run, reports, failed })
}

/// How many resources `step` created and updated in this context.
pub fn counts(ctx: &Ctx, step: &str) -> (usize, usize) {
    ctx.changes().iter().filter(|c| c.step == step).fold((0, 0), |(c, u), ch| match ch.action {
        Action::Create => (c + 1, u),
        Action::Update => (c, u + 1),
        Action::Noop => (c, u),
    })
}

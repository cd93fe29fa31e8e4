//! `paymig plan`: preflight, then every step in plan mode — the same code path
//! as apply, with mutations only recorded.

use std::collections::BTreeMap;

use serde_json::json;

use crate::cli::OutputFormat;
use crate::config::Config;
use crate::engine::dag::Status;
use crate::engine::{Action, Mode};
use crate::error::{Error, Result};

pub async fn run(cfg: Config, format: OutputFormat, detailed_exitcode: bool) -> Result<()> {
    let journal = super::open_read_only(&cfg)?;
    let dag = super::build_dag()?;
    let ctx = super::connect(cfg, Mode::Plan, journal).await?;
    super::preflight(&ctx, &dag).await?;
    let plan = compute(&ctx, &dag).await;
    match format {
        OutputFormat::Json => print_json(&ctx, &dag, &plan),
        OutputFormat::Text => print_text(&ctx, &dag, &plan),
    }
    super::report_calls(&ctx.aws);
    if !plan.failed.is_empty() {
        Err(Error::StepsFailed { lines: plan.failed })
    } else if detailed_exitcode && plan.pending() > 0 {
        Err(Error::ChangesPending(plan.pending()))
    } else {
        Ok(())
    }
}

/// What a plan found.
pub struct Plan {
    reports: Vec<crate::engine::dag::Report>,
    changes: Vec<crate::engine::Change>,
    notices: Vec<(String, String)>,
    counts: BTreeMap<String, [usize; 3]>,
    total: [usize; 3],
    failed: Vec<String>,
}

impl Plan {
    /// Resources to create or update.
    pub fn pending(&self) -> usize {
        self.total[0] + self.total[1]
    }
}

/// Runs every step in plan mode (preflight already passed).
pub async fn compute(ctx: &crate::engine::Ctx, dag: &crate::engine::dag::Dag) -> Plan {
    let reports = dag.execute(8, |s| s.run(ctx)).await;
    // Resources inside a step are worked on side by side, so the order the
    // changes were recorded in varies run to run: list them by kind (in
    // dependency order) and name; a resource's own changes keep their order.
    let mut changes = ctx.changes();
    changes.sort_by(|a, b| (kind_rank(&a.kind), &a.kind, &a.name).cmp(&(kind_rank(&b.kind), &b.kind, &b.name)));
    let notices = ctx.notices();
    let mut counts: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    for c in &changes {
        let e = counts.entry(c.step.clone()).or_default();
        match c.action {
            Action::Create => e[0] += 1,
            Action::Update => e[1] += 1,
            Action::Noop => e[2] += 1,
        }
    }
    let total = counts.values().fold([0; 3], |a, c| [a[0] + c[0], a[1] + c[1], a[2] + c[2]]);
    let failed: Vec<String> = reports
        .iter()
        .filter_map(|r| match &r.status {
            Status::Failed(e) => Some(format!("{}: {e}", r.step)),
            _ => None,
        })
        .collect();
    Plan { reports, changes, notices, counts, total, failed }
}

fn print_json(ctx: &crate::engine::Ctx, dag: &crate::engine::dag::Dag, plan: &Plan) {
    let Plan { reports, changes, notices, counts, total, failed } = plan;
    let steps: Vec<_> = dag
        .steps()
        .iter()
        .map(|s| {
            let id = s.id();
            let status = reports
                .iter()
                .find(|r| r.step == id)
                .map(|r| match &r.status {
                    Status::Done => "planned".to_owned(),
                    Status::Skipped(_) => "skipped".to_owned(),
                    Status::Failed(_) => "failed".to_owned(),
                    Status::Blocked(_) => "blocked".to_owned(),
                })
                .unwrap_or_default();
            let c = counts.get(id).copied().unwrap_or_default();
            json!({
                "step": id,
                "status": status,
                "create": c[0], "update": c[1], "unchanged": c[2],
                "changes": changes.iter().filter(|x| x.step == id).collect::<Vec<_>>(),
                "notices": notices.iter().filter(|(s, _)| s == id).map(|(_, n)| n).collect::<Vec<_>>(),
            })
        })
        .collect();
    let doc = json!({
        "migration": ctx.cfg.migration.name,
        "account": ctx.account,
        "summary": {"create": total[0], "update": total[1], "unchanged": total[2], "failed": failed.len()},
        "steps": steps,
    });
    println!("{}", serde_json::to_string_pretty(&doc).expect("plan serializes"));
}

/// The plan as text (also shown by `apply` before it asks).
pub fn print_text(ctx: &crate::engine::Ctx, dag: &crate::engine::dag::Dag, plan: &Plan) {
    let Plan { reports, changes, notices, counts, total, .. } = plan;
    println!(
        "paymig plan: migration {:?} into account {} ({})",
        ctx.cfg.migration.name, ctx.account, ctx.cfg.migration.region
    );
    for s in dag.steps() {
        let id = s.id();
        let c = counts.get(id).copied().unwrap_or_default();
        let report = reports.iter().find(|r| r.step == id);
        let state = match report.map(|r| &r.status) {
            Some(Status::Skipped(why)) => format!("skipped: {why}"),
            Some(Status::Failed(e)) => format!("FAILED: {e}"),
            Some(Status::Blocked(e)) => format!("blocked: {e}"),
            _ => format!("{} to create, {} to update, {} unchanged", c[0], c[1], c[2]),
        };
        println!("\n[{id}] {state}");
        for ch in changes.iter().filter(|x| x.step == id && x.action != Action::Noop) {
            let sign = if ch.action == Action::Create { "+" } else { "~" };
            let detail = if ch.detail.is_empty() { String::new() } else { format!(" ({})", ch.detail) };
            println!("  {sign} {} {}{detail}", ch.kind, ch.name);
            if ch.action == Action::Create {
                for setting in &ch.settings {
                    println!("      - {setting}");
                }
            }
        }
        for (_, n) in notices.iter().filter(|(s, _)| s == id) {
            println!("  ! {n}");
        }
    }
    println!("\nPlan: {} to create, {} to update, {} unchanged.", total[0], total[1], total[2]);
}

/// Resource kinds in the order a reader expects them: what others depend on
/// first.
const KIND_ORDER: &[&str] = &[
    "kms_key",
    "kms_alias",
    "vpc",
    "subnet",
    "route_table",
    "vpc_endpoint",
    "security_group",
    "db_subnet_group",
    "db_cluster_parameter_group",
    "db_cluster",
    "db_instance",
    "dynamodb_table",
    "iam_role",
    "s3_bucket",
    "s3_replica_bucket",
    "lambda_function",
    "lambda_alias",
    "load_balancer",
    "target_group",
    "listener",
    "lambda_permission",
    "sns_topic",
    "alarm",
    "dashboard",
    "ssm_parameter",
];

/// A kind's place in [`KIND_ORDER`]; unknown kinds after every known one.
fn kind_rank(kind: &str) -> usize {
    KIND_ORDER.iter().position(|k| *k == kind).unwrap_or(KIND_ORDER.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_a_step_records_has_a_place_in_the_plan_order() {
        let sources = [
            include_str!("../steps/alb.rs"),
            include_str!("../steps/audit.rs"),
            include_str!("../steps/database.rs"),
            include_str!("../steps/dynamodb.rs"),
            include_str!("../steps/iam.rs"),
            include_str!("../steps/kms.rs"),
            include_str!("../steps/lambda.rs"),
            include_str!("../steps/monitoring.rs"),
            include_str!("../steps/network/mod.rs"),
            include_str!("../steps/network/interface.rs"),
            include_str!("../steps/params.rs"),
        ];
        let re = regex::Regex::new(r#"Res::new\(\s*STEP,\s*"([a-z_0-9]+)""#).unwrap();
        let kinds: Vec<&str> =
            sources.iter().flat_map(|s| re.captures_iter(s).map(|c| c.get(1).unwrap().as_str())).collect();
        assert!(kinds.len() > 20, "the pattern still finds the kinds: {kinds:?}");
        for k in kinds {
            assert!(kind_rank(k) < KIND_ORDER.len(), "{k} is missing from KIND_ORDER");
        }
        assert!(kind_rank("vpc") < kind_rank("subnet") && kind_rank("subnet") < kind_rank("route_table"));
        assert_eq!(kind_rank("something_new"), KIND_ORDER.len());
    }
}

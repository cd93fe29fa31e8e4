//! Planning: every step in plan mode (the same code path as apply, with
//! mutations only recorded), the recorded changes ordered by the step's
//! place in the migration and the kinds it declares, and counted.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::engine::dag::{Dag, Status};
use crate::engine::{Action, Ctx, DynStep};

/// What a plan found.
pub struct Plan {
    pub reports: Vec<crate::engine::dag::Report>,
    pub changes: Vec<crate::engine::Change>,
    pub notices: Vec<(String, String)>,
    /// Dev identifiers found in copied values, by step.
    pub references: Vec<(String, crate::steps::common::references::Reference)>,
    pub counts: BTreeMap<String, [usize; 3]>,
    pub total: [usize; 3],
    pub failed: Vec<String>,
    /// How long the apply will take on AWS's clock, and its critical path.
    pub estimate: crate::engine::estimate::Estimate,
}

impl Plan {
    /// Resources to create or update.
    pub fn pending(&self) -> usize {
        self.total[0] + self.total[1]
    }
}

impl Plan {
    /// The plan as `plan --format json` prints it (SPEC's schema): a summary
    /// and, per step in the DAG's order, its status, counts, changes and
    /// notices.
    pub fn document(&self, dag: &Dag, migration: &str, account: &str) -> Value {
        let Plan { reports, changes, notices, references, counts, total, failed, estimate } = self;
        let steps: Vec<_> = dag
            .steps()
            .iter()
            .map(|s| {
                let id = s.id();
                let status = reports
                    .iter()
                    .find(|r| r.step == id)
                    .map(|r| match &r.status {
                        Status::Done => "planned",
                        Status::Skipped(_) => "skipped",
                        Status::Failed(_) => "failed",
                        Status::Blocked(_) => "blocked",
                        Status::Interrupted(_) => "interrupted",
                    })
                    .unwrap_or_default();
                let c = counts.get(id).copied().unwrap_or_default();
                json!({
                    "step": id,
                    "status": status,
                    "create": c[0], "update": c[1], "unchanged": c[2],
                    "changes": changes.iter().filter(|x| x.step == id).collect::<Vec<_>>(),
                    "notices": notices.iter().filter(|(s, _)| s == id).map(|(_, n)| n).collect::<Vec<_>>(),
                    "references": references.iter().filter(|(s, _)| s == id).map(|(_, r)| r).collect::<Vec<_>>(),
                })
            })
            .collect();
        let named = references.iter().filter(|(_, r)| !r.found.is_mapped() && !r.kept).count();
        let kept = references.iter().filter(|(_, r)| r.kept).count();
        json!({
            "migration": migration,
            "account": account,
            "summary": {"create": total[0], "update": total[1], "unchanged": total[2], "failed": failed.len(),
                        "references": {"mapped": references.len() - named - kept, "named": named, "kept": kept}},
            "steps": steps,
            "expected_duration": estimate,
        })
    }
}

/// Runs every step in plan mode (preflight already passed).
pub async fn compute(ctx: &Ctx, dag: &Dag) -> Plan {
    ctx.outputs.schedule(dag.steps().iter().map(|s| s.id()));
    let reports = dag.execute(8, |s| s.run(ctx), &|id| ctx.outputs.ended(id)).await;
    // Resources inside a step are worked on side by side, so the order the
    // changes were recorded in varies run to run: list them by kind (in
    // dependency order) and name; a resource's own changes keep their order.
    let mut changes = ctx.changes();
    let steps = dag.steps();
    changes.sort_by(|a, b| {
        (rank(steps, &a.step, &a.kind), &a.kind, &a.name).cmp(&(rank(steps, &b.step, &b.kind), &b.kind, &b.name))
    });
    let notices = ctx.notices();
    let mut references = ctx.references();
    references.sort_by(|a, b| {
        (rank(steps, &a.0, ""), &a.1.place, &a.1.found.dev).cmp(&(rank(steps, &b.0, ""), &b.1.place, &b.1.found.dev))
    });
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
    let estimate = estimate(ctx, dag, &changes);
    Plan { reports, changes, notices, references, counts, total, failed, estimate }
}

/// The apply's expected duration: per step its declared waits for what it
/// creates and its other work (typical, or as this journal's earlier
/// applies observed), along the DAG (a step with `early` dependencies
/// starts beside them).
fn estimate(ctx: &Ctx, dag: &Dag, changes: &[crate::engine::Change]) -> crate::engine::estimate::Estimate {
    use crate::engine::estimate::{history, step_estimate, Estimate, Node};
    let history = history(ctx.journal.as_deref(), &["apply"]);
    let mut estimates = Vec::new();
    let mut nodes = Vec::new();
    for s in dag.steps() {
        let mine: Vec<&crate::engine::Change> =
            changes.iter().filter(|c| c.step == s.id() && c.action != Action::Noop).collect();
        let mut created: BTreeMap<String, usize> = BTreeMap::new();
        for c in mine.iter().filter(|c| c.action == Action::Create) {
            *created.entry(c.kind.clone()).or_default() += 1;
        }
        let e = step_estimate(s.id(), s.waits(), &created, mine.len(), &history);
        nodes.push(Node { id: s.id(), after: s.deps().to_vec(), early: s.early().to_vec(), seconds: e.seconds });
        estimates.push(e);
    }
    Estimate::of(estimates, &nodes)
}

/// Where a change sorts: its step's place in the migration's order, then its
/// kind's place in what the step declares ([`crate::engine::Declared::kinds`]); a kind the step
/// does not declare after its others.
fn rank(steps: &[std::sync::Arc<dyn DynStep>], step: &str, kind: &str) -> (usize, usize) {
    let i = steps.iter().position(|s| s.id() == step).unwrap_or(steps.len());
    let k = steps.get(i).and_then(|s| s.kinds().iter().position(|x| *x == kind)).unwrap_or(usize::MAX);
    (i, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_a_step_records_is_one_it_declares() {
        // Each step's source: its file, or every file of its directory
        // (the endpoints step is network/interface.rs).
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/steps");
        let read_all = |path: std::path::PathBuf, skip: &str| -> String {
            if path.is_file() {
                return std::fs::read_to_string(&path).unwrap();
            }
            let mut files: Vec<_> = std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            files
                .into_iter()
                .filter(|f| f.file_name().is_some_and(|n| n != skip))
                .map(|f| std::fs::read_to_string(f).unwrap())
                .collect()
        };
        let source = |id: &str| match id {
            "endpoints" => read_all(dir.join("network/interface.rs"), ""),
            "network" => read_all(dir.join("network"), "interface.rs"),
            id if dir.join(id).is_dir() => read_all(dir.join(id), ""),
            id => read_all(dir.join(format!("{id}.rs")), ""),
        };
        let ids = [
            "alb",
            "audit",
            "database",
            "dynamodb",
            "iam",
            "kms",
            "lambda",
            "monitoring",
            "network",
            "endpoints",
            "params",
        ];
        let sources: Vec<(&str, String)> = ids.iter().map(|id| (*id, source(id))).collect();
        let steps = crate::steps::all();
        assert_eq!(sources.len(), steps.len(), "every step's source is read here");
        // A kind is written as the step's constant (`kind::VPC`) or, in a
        // step without them, as a literal.
        let re =
            regex::Regex::new(r#"Res::new\(\s*STEP,\s*(?:"([a-z_0-9]+)"|(?:super::)?kind::([A-Z_0-9]+))"#).unwrap();
        let mut found = 0;
        for (id, source) in &sources {
            let step = steps.iter().find(|s| s.id() == *id).unwrap_or_else(|| panic!("no step {id}"));
            assert!(!step.kinds().is_empty(), "{id} declares no kind");
            for kind in re.captures_iter(source).map(|c| c.get(1).or(c.get(2)).unwrap().as_str().to_ascii_lowercase()) {
                assert!(step.kinds().contains(&kind.as_str()), "{id} records {kind} but does not declare it");
                found += 1;
            }
        }
        assert!(found > 20, "the pattern still finds the kinds ({found})");
        let network = rank(&steps, "network", "vpc");
        assert!(
            network < rank(&steps, "network", "subnet")
                && rank(&steps, "network", "subnet") < rank(&steps, "network", "route_table")
        );
        assert!(rank(&steps, "kms", "kms_key") < network, "steps in the migration's order");
        assert_eq!(rank(&steps, "network", "something_new").1, usize::MAX);
    }
}

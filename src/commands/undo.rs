//! What `rollback` and `destroy` share: journal records replayed newest
//! first, each marked `undone` once reversed, both idempotent (an
//! interrupted one finishes on the next call). The replay and the sweep are
//! the engine's ([`crate::engine::undo`]); this gathers what is at stake,
//! lists it, asks and reports.

use std::collections::BTreeMap;

use crate::engine::journal::{Journal, Op, Record};
use crate::engine::undo::{at_risk, describe, sweep_preview, without_settings_of_deleted, Tally};
use crate::engine::{AtRisk, Ctx, DynStep, Swept};
use crate::error::Result;

/// Names listed per kind before a group is summarised as a count.
const NAMES_PER_GROUP: usize = 3;

/// What an undo will do, gathered (read only) before anything is asked.
pub struct Preview {
    /// The records to undo, newest first, as chosen.
    pub todo: Vec<Record>,
    /// Those undone by a call of their own (settings of deleted resources
    /// go with them).
    work: Vec<Record>,
    /// How many setting changes go with a deleted resource.
    dropped: usize,
    /// Destroy only: what the sweep would remove beyond the journal.
    sweep: Option<Sweep>,
    /// Data the deletions would take with them.
    pub at_risk: Vec<AtRisk>,
    /// How long the undo will take on AWS's clock.
    estimate: crate::engine::estimate::Estimate,
}

/// Destroy's sweep as the prompt shows it.
struct Sweep {
    /// Per step, where it looks ([`crate::engine::About::sweeps`]).
    scope: Vec<(&'static str, &'static str)>,
    found: Vec<(&'static str, Swept)>,
    /// Looks that failed (the sweep itself will report them again).
    failures: Vec<String>,
}

impl Preview {
    /// Reads what undoing `todo` (and, for destroy, the sweep) would delete.
    pub async fn gather(ctx: &Ctx, steps: &[std::sync::Arc<dyn DynStep>], todo: Vec<Record>, sweeping: bool) -> Self {
        let (work, dropped) = without_settings_of_deleted(&todo);
        let dropped = dropped.values().map(Vec::len).sum();
        let sweep = if sweeping {
            let (found, failures) = sweep_preview(ctx, steps, &todo).await;
            let scope = steps.iter().rev().filter(|s| !s.sweeps().is_empty()).map(|s| (s.id(), s.sweeps())).collect();
            Some(Sweep { scope, found, failures })
        } else {
            None
        };
        let swept = sweep.as_ref().map_or(&[][..], |s| &s.found[..]);
        let at_risk = at_risk(ctx, steps, &work, swept).await;
        let history = crate::engine::estimate::history(ctx.journal.as_deref(), &["destroy", "rollback"]);
        let estimate = crate::engine::undo::estimate(&todo, steps, &history);
        Preview { todo, work, dropped, sweep, at_risk, estimate }
    }

    /// The list before a prompt (or a dry run's output): account and
    /// region, every change (`full`) or per step its resources by kind,
    /// the sweep, the data at stake and the totals.
    pub fn print(&self, ctx: &Ctx, title: &str, command: &str, full: bool) {
        let m = &ctx.cfg.migration;
        println!("{title}\naccount {}, region {} (replicas: {})", ctx.account, m.region, m.replica_region);
        let lines = if full {
            self.work.iter().map(|r| (r.intent.step.clone(), describe(r))).collect()
        } else {
            grouped(&self.work)
        };
        for (step, line) in lines {
            println!("  - [{step}] {line}");
        }
        if let Some(sweep) = &self.sweep {
            let (name, suffix) = (&m.name, ctx.suffix());
            println!("then the sweep: what carries paymig:migration={name} and paymig:suffix={suffix} but is not in the journal,");
            if full {
                println!("looking only at:");
                for (step, scope) in &sweep.scope {
                    println!("  [{step}] {scope}");
                }
            } else {
                println!("where paymig creates it (`paymig {command} --dry-run` says where it looks):");
            }
            if sweep.found.is_empty() && sweep.failures.is_empty() {
                println!("  nothing else found");
            }
            for (step, s) in &sweep.found {
                println!("  - [{step}] sweep {s}");
            }
            for f in &sweep.failures {
                println!("  ! could not look: {f}");
            }
        }
        if !self.at_risk.is_empty() {
            println!("data that would be deleted:");
            for r in &self.at_risk {
                println!("  ! {r}");
            }
        }
        let deletions = self.work.iter().filter(|r| r.intent.op != Op::Update).count();
        let restores = self.work.len() - deletions;
        let dropped = match self.dropped {
            0 => String::new(),
            n => format!("; {n} setting change(s) on resources that are deleted go with them"),
        };
        let swept = match self.sweep.as_ref().map_or(0, |s| s.found.len()) {
            0 => String::new(),
            n => format!(", {n} to sweep"),
        };
        println!(
            "{} change(s) to undo: {deletions} deletion(s), {restores} restore(s){swept}{dropped}",
            self.work.len()
        );
        if !self.work.is_empty() {
            println!("{}", self.estimate.line("expected duration"));
        }
        if !full && !self.work.is_empty() {
            println!("(every change: `paymig {command} --dry-run`, or -v)");
        }
    }

    /// What the operator types to confirm: the migration's name when data
    /// would be deleted, else y/yes.
    pub fn confirm_word<'a>(&self, ctx: &'a Ctx) -> Option<&'a str> {
        (!self.at_risk.is_empty()).then_some(ctx.cfg.migration.name.as_str())
    }

    /// Names the data at stake as events (`--log-format json` readers and
    /// unattended logs see it too).
    pub fn log_at_risk(&self) {
        for r in &self.at_risk {
            tracing::warn!(kind = %r.kind, name = %r.name, holds = %r.holds, "data at risk");
        }
    }
}

/// Per step (in undo order), its records by action and kind: names where
/// few, else a count and what the names share.
fn grouped(work: &[Record]) -> Vec<(String, String)> {
    let mut steps: Vec<&str> = Vec::new();
    let mut groups: BTreeMap<(&str, bool, &str), Vec<&Record>> = BTreeMap::new();
    let mut order: Vec<(&str, bool, &str)> = Vec::new();
    for r in work {
        let step = r.intent.step.as_str();
        if !steps.contains(&step) {
            steps.push(step);
        }
        let key = (step, r.intent.op == Op::Update, r.intent.kind.as_str());
        if !groups.contains_key(&key) {
            order.push(key);
        }
        groups.entry(key).or_default().push(r);
    }
    let mut out = Vec::new();
    for step in steps {
        for key in order.iter().filter(|k| k.0 == step) {
            let recs = &groups[key];
            let (_, update, kind) = *key;
            if update && recs.len() <= NAMES_PER_GROUP {
                out.extend(recs.iter().map(|r| (step.to_owned(), describe(r))));
                continue;
            }
            let mut names: Vec<&str> = recs.iter().map(|r| r.intent.name.as_str()).collect();
            names.dedup();
            let what = if names.len() <= NAMES_PER_GROUP { names.join(", ") } else { shared(&names) };
            let line = if update {
                format!("restore {} setting(s) of {} {kind} {what}", recs.len(), names.len())
            } else if recs.len() <= NAMES_PER_GROUP {
                format!("delete {kind} {what}")
            } else {
                format!("delete {} {kind} {what}", recs.len())
            };
            out.push((step.to_owned(), line));
        }
    }
    out
}

/// What many names share: `under /prod/acme/`, `named payments-prod-…`, or
/// the first two and an ellipsis.
fn shared(names: &[&str]) -> String {
    let first = names.first().copied().unwrap_or_default();
    let mut len = first.len();
    for n in &names[1..] {
        len = len.min(first.bytes().zip(n.bytes()).take_while(|(a, b)| a == b).count());
    }
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    let prefix = &first[..len];
    match prefix.rfind('/') {
        Some(i) if i > 0 => format!("under {}", &prefix[..=i]),
        _ if prefix.len() >= 3 => format!("named {prefix}…"),
        _ => format!("({}, {}, …)", names[0], names[1]),
    }
}

/// Listens for signals and opens the journal run, then replays.
pub async fn begin(
    journal: &Journal,
    command: &str,
    replay: impl std::future::Future<Output = Tally>,
) -> Result<(Tally, std::time::Instant)> {
    crate::signals::listen();
    let started = std::time::Instant::now();
    journal.begin_run(command)?;
    Ok((replay.await, started))
}

/// Whether the list before the prompt names every change: unattended
/// (`--yes`: the log keeps it all) or at `-v`.
pub fn in_full(yes: bool) -> bool {
    yes || crate::logging::verbose() > 0
}

pub fn finish(
    ctx: &Ctx,
    journal: &Journal,
    started: std::time::Instant,
    command: &str,
    tally: Tally,
    swept: Vec<(&'static str, Swept)>,
) -> Result<()> {
    for (step, s) in &swept {
        tracing::debug!(step, kind = s.kind, name = %s.name, action = "swept", "undone");
        crate::progress::println(format!("  - swept [{step}] {s}"));
    }
    let names: Vec<String> = swept.iter().map(|(step, s)| format!("[{step}] {s}")).collect();
    let fields = serde_json::json!({"deleted": tally.deleted, "restored": tally.restored, "held_back": tally.held, "failures": tally.failures.len(), "swept": names.len(), "swept_resources": names});
    let summary = tally.to_string();
    let ended = super::end_run(ctx, journal, tally.failures, fields)?;
    println!(
        "paymig {command}: {}: {summary}, {} swept, {} failed ({})",
        ended.status,
        swept.len(),
        ended.failures(),
        super::elapsed(started.elapsed())
    );
    ended.exit(&ctx.aws)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::journal::Intent;

    fn rec(step: &str, op: Op, kind: &str, name: &str) -> Record {
        Record {
            seq: 0,
            run: "r".into(),
            intent: Intent {
                step: step.into(),
                op,
                kind: kind.into(),
                key: format!("{kind}/{name}"),
                name: name.into(),
                prev: serde_json::Value::Null,
                data: serde_json::Value::Null,
            },
            id: None,
            arn: None,
            done_data: serde_json::Value::Null,
            undone: false,
        }
    }

    #[test]
    fn many_resources_of_a_kind_are_a_count_and_what_their_names_share() {
        let mut work: Vec<Record> =
            (0..61).map(|i| rec("params", Op::Create, "ssm_parameter", &format!("/prod/acme/p{i}"))).collect();
        work.push(rec("dynamodb", Op::Create, "dynamodb_table", "sessions-prod"));
        work.push(rec("dynamodb", Op::Create, "dynamodb_table", "orders-prod"));
        work.extend((0..4).map(|i| rec("network", Op::Create, "subnet", &format!("payments-prod-private-{i}"))));
        let lines = grouped(&work);
        assert_eq!(
            lines,
            vec![
                ("params".to_owned(), "delete 61 ssm_parameter under /prod/acme/".to_owned()),
                ("dynamodb".to_owned(), "delete dynamodb_table sessions-prod, orders-prod".to_owned()),
                ("network".to_owned(), "delete 4 subnet named payments-prod-private-…".to_owned()),
            ]
        );
        assert_eq!(shared(&["a-prod", "b-prod", "c-prod", "d-prod"]), "(a-prod, b-prod, …)");
    }
}

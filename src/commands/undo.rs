//! `paymig rollback` (the newest run that changed something) and `paymig
//! destroy` (every run, then a sweep of what is tagged for the migration):
//! journal records replayed newest first, each marked `undone` once reversed.
//! Both are idempotent: an interrupted one finishes on the next call.

use crate::config::Config;
use crate::engine::journal::{Journal, Op, Record};
use crate::engine::{Ctx, Mode};
use crate::error::{Error, Result};

pub async fn rollback(cfg: Config, yes: bool) -> Result<()> {
    super::require_confirmable(yes, "paymig rollback")?;
    let (_lock, journal) = super::lock_and_open(&cfg, "rollback")?;
    let records = journal.records();
    // The newest apply/switch/params run with something still to undo.
    let undoable = ["apply", "switch", "params"];
    let runs = journal.runs();
    let target = runs
        .iter()
        .rev()
        .filter(|r| undoable.contains(&r.command.as_str()))
        .find(|r| records.iter().any(|rec| rec.run == r.id && rec.is_live()));
    let Some(target) = target else {
        println!("paymig rollback: nothing to roll back");
        return Ok(());
    };
    let todo: Vec<Record> = records.into_iter().filter(|r| r.run == target.id && r.is_live()).rev().collect();
    let ctx = super::connect(cfg, Mode::Apply, Some(journal.clone())).await?;
    super::confirm(yes, &format!("roll back run {} ({} changes) in account {}", target.id, todo.len(), ctx.account))?;
    journal.begin_run("rollback")?;
    println!("paymig rollback: undoing run {} ({}, started {})", target.id, target.command, target.started);
    let failures = replay(&ctx, &journal, &todo, "rollback").await;
    finish(&ctx, &journal, failures, Vec::new())
}

pub async fn destroy(cfg: Config, yes: bool) -> Result<()> {
    super::require_confirmable(yes, "paymig destroy")?;
    let (_lock, journal) = super::lock_and_open(&cfg, "destroy")?;
    let todo: Vec<Record> = journal.records().into_iter().filter(Record::is_live).rev().collect();
    let dag = super::build_dag()?;
    let ctx = super::connect(cfg, Mode::Apply, Some(journal.clone())).await?;
    super::confirm(
        yes,
        &format!("destroy everything migration {:?} created in account {}", ctx.cfg.migration.name, ctx.account),
    )?;
    journal.begin_run("destroy")?;
    println!("paymig destroy: undoing {} journaled change(s)", todo.len());
    let mut failures = replay(&ctx, &journal, &todo, "destroy").await;
    // Then whatever is still tagged for the migration (a lost journal, a
    // resource created outside it), dependents first.
    let mut swept = Vec::new();
    for step in dag.steps().iter().rev() {
        match step.sweep(&ctx).await {
            Ok(lines) => swept.extend(lines.into_iter().map(|l| format!("[{}] {l}", step.id()))),
            Err(e) => failures.push(format!("[{}] sweep: {e}", step.id())),
        }
    }
    finish(&ctx, &journal, failures, swept)
}

/// Undoes a chunk of sibling records (one record, or up to the step's
/// batch of sibling creates in one call) and journals each; per record
/// `Err((message, fatal))` — fatal when the journal itself cannot be written.
async fn undo_chunk(
    ctx: &Ctx,
    journal: &Journal,
    steps: &[std::sync::Arc<dyn crate::engine::Step>],
    chunk: &[&Record],
) -> Vec<Result<(), (String, bool)>> {
    let r = chunk[0];
    let Some(step) = steps.iter().find(|s| s.id() == r.intent.step) else {
        let why = |r: &Record| format!("{}: no step {:?} in this version to undo it", r.intent.key, r.intent.step);
        return chunk.iter().map(|r| Err((why(r), false))).collect();
    };
    let results = if chunk.len() == 1 { vec![step.undo(ctx, r).await] } else { step.undo_creates(ctx, chunk).await };
    chunk.iter().zip(results).map(|(r, result)| journal_undo(journal, r, result)).collect()
}

/// Journals one record's undo outcome.
fn journal_undo(
    journal: &Journal,
    r: &Record,
    result: std::result::Result<(), crate::engine::StepError>,
) -> Result<(), (String, bool)> {
    match result {
        Ok(()) => {
            journal.undone(r.seq).map_err(|e| (e.to_string(), true))?;
            println!(
                "  - [{}] {:?} {} {} {}",
                r.intent.step,
                r.intent.op,
                r.intent.kind,
                r.intent.name,
                r.id.as_deref().unwrap_or("")
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!(step = %r.intent.step, key = %r.intent.key, error = %e, "undo failed");
            Err((format!("[{}] {}: {e}", r.intent.step, r.intent.key), false))
        }
    }
}

/// Consecutive creates of one step and kind with distinct keys are siblings
/// (subnets, parameters, tables…): nothing of one depends on another, so
/// they are undone side by side. Everything else keeps its order.
fn sibling_groups(records: &[Record]) -> Vec<Vec<&Record>> {
    let mut groups: Vec<Vec<&Record>> = Vec::new();
    for r in records {
        match groups.last_mut() {
            Some(g)
                if r.intent.op == Op::Create
                    && g[0].intent.op == Op::Create
                    && g[0].intent.step == r.intent.step
                    && g[0].intent.kind == r.intent.kind
                    && !g.iter().any(|x| x.intent.key == r.intent.key) =>
            {
                g.push(r)
            }
            _ => groups.push(vec![r]),
        }
    }
    groups
}

/// Undoes `records` in the given order (siblings side by side, up to
/// `parallelism`); returns the failures.
async fn replay(ctx: &Ctx, journal: &Journal, records: &[Record], command: &str) -> Vec<String> {
    use crate::progress::{self, State};
    use futures::StreamExt;
    let steps = crate::steps::all();
    let mut failures = Vec::new();
    // Progress per step: running at its first record, done after its last.
    let mut remaining: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    let mut order: Vec<&'static str> = Vec::new();
    for r in records {
        remaining.entry(r.intent.step.as_str()).or_default().0 += 1;
        if let Some(s) = steps.iter().find(|s| s.id() == r.intent.step) {
            if !order.contains(&s.id()) {
                order.push(s.id());
            }
        }
    }
    progress::start(command, &order);
    let mut started = std::collections::BTreeSet::new();
    let steps = &steps;
    'groups: for group in sibling_groups(records) {
        let step_id = group[0].intent.step.as_str();
        if started.insert(step_id) {
            progress::set(step_id, State::Running, "");
        }
        // Sibling creates go in batches where the step has a batch delete.
        let batch = steps.iter().find(|s| s.id() == step_id).map_or(1, |s| s.undo_batch().max(1));
        let results: Vec<Result<(), (String, bool)>> = futures::stream::iter(group.chunks(batch).map(|chunk| {
            crate::aws::in_lane(format!("{step_id}/{}", chunk[0].intent.key), undo_chunk(ctx, journal, steps, chunk))
        }))
        .buffered(ctx.parallelism.max(1))
        .flat_map(futures::stream::iter)
        .collect()
        .await;
        for result in results {
            let mut fatal = false;
            let failed_here = match result {
                Ok(()) => 0,
                Err((message, is_fatal)) => {
                    failures.push(message);
                    fatal = is_fatal;
                    1
                }
            };
            if let Some((left, failed)) = remaining.get_mut(step_id) {
                *left -= 1;
                *failed += failed_here;
                if *left == 0 {
                    let (state, note) = if *failed == 0 {
                        (State::Done, String::new())
                    } else {
                        (State::Failed, format!("{failed} failed"))
                    };
                    progress::set(step_id, state, &note);
                }
            }
            if fatal {
                break 'groups;
            }
        }
    }
    failures
}

fn finish(ctx: &Ctx, journal: &Journal, failures: Vec<String>, swept: Vec<String>) -> Result<()> {
    for s in &swept {
        println!("  - swept {s}");
    }
    let stats = ctx.aws.stats.summary();
    journal.end_run(if failures.is_empty() { "ok" } else { "failed" }, stats.mutating)?;
    crate::progress::finish(
        if failures.is_empty() { "ok" } else { "failed" },
        &serde_json::json!({"failures": failures.len(), "swept": swept.len(), "read_calls": stats.read, "mutating_calls": stats.mutating, "retries": stats.retries}),
    );
    super::report_calls(&ctx.aws);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::StepsFailed { failed: failures.len(), summary: failures.join("; ") })
    }
}

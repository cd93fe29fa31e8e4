//! Reverse scheduling: journal records undone newest first, following the
//! DAG backwards (a step after every step that depends on it, independent
//! steps side by side), siblings inside a step side by side (in batches where
//! the step deletes in batches), each record journaled `undone` once
//! reversed. `rollback` and `destroy` choose the records; this replays them.

use crate::engine::dag::Dag;
use crate::engine::journal::{Journal, Op, Record, Run};
use crate::engine::{AtRisk, Ctx, Swept};

/// A journal key without its `#setting` part: the resource it is about.
pub fn base_key(key: &str) -> &str {
    key.split_once('#').map_or(key, |(k, _)| k)
}

/// What undoing `r` does, in words.
pub fn describe(r: &Record) -> String {
    let id = r.id.as_deref().filter(|id| *id != r.intent.name).map(|id| format!(" ({id})")).unwrap_or_default();
    match r.intent.op {
        // KMS never deletes a key at once: it is scheduled, and usable
        // (cancellable) until the window ends.
        Op::Create | Op::Adopt if r.intent.kind == "kms_key" => format!(
            "schedule deletion of kms_key {}{id}: deleted after a {}-day window",
            r.intent.name,
            crate::steps::kms::PENDING_WINDOW_DAYS
        ),
        Op::Create | Op::Adopt => format!("delete {} {}{id}", r.intent.kind, r.intent.name),
        Op::Update => {
            let setting = r.intent.key.split_once('#').map_or("a setting", |(_, s)| s);
            // What apply changed it from and to: undo puts `from` back.
            match (r.intent.data["from"].as_str(), r.intent.data["to"].as_str()) {
                (Some(from), Some(to)) => {
                    format!("restore {} {}: {setting}: {to} → {from}", r.intent.kind, r.intent.name)
                }
                _ => format!("restore {} {}: {setting}", r.intent.kind, r.intent.name),
            }
        }
    }
}

/// Splits `todo` into the records to undo and, per create, the updates of a
/// resource that the same undo deletes: reverting a setting of a resource
/// about to be deleted is at best wasted and on AWS often refused (a table's
/// TTL may change once an hour; a function mid-update answers
/// ResourceConflictException), so they are journaled undone with it.
pub fn without_settings_of_deleted(todo: &[Record]) -> (Vec<Record>, std::collections::BTreeMap<u64, Vec<u64>>) {
    use std::collections::BTreeMap;
    let created: BTreeMap<&str, u64> = todo
        .iter()
        .filter(|r| matches!(r.intent.op, Op::Create | Op::Adopt))
        .map(|r| (r.intent.key.as_str(), r.seq))
        .collect();
    let mut dropped: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut work = Vec::new();
    for r in todo {
        let owner = (r.intent.op == Op::Update).then(|| created.get(base_key(&r.intent.key))).flatten();
        match owner {
            Some(create) => dropped.entry(*create).or_default().push(r.seq),
            None => work.push(r.clone()),
        }
    }
    (work, dropped)
}

/// One record's undo outcome.
#[derive(Debug)]
enum Outcome {
    /// Reversed (and journaled): what its op was.
    Undone(Op),
    Failed(String),
    /// The journal could not be written: nothing more may be undone.
    Fatal(String),
    /// A signal came first: never started.
    NotStarted,
}

/// Undoes a chunk of sibling records (one record, or up to the step's
/// batch of sibling creates in one call) and journals each; one outcome per
/// record.
async fn undo_chunk(
    ctx: &Ctx,
    journal: &Journal,
    steps: &[std::sync::Arc<dyn crate::engine::DynStep>],
    dropped: &Dropped,
    chunk: &[&Record],
) -> Vec<Outcome> {
    let r = chunk[0];
    if crate::signals::stopping() {
        return chunk.iter().map(|_| Outcome::NotStarted).collect();
    }
    let Some(step) = steps.iter().find(|s| s.id() == r.intent.step) else {
        let why = |r: &Record| format!("{}: no step {:?} in this version to undo it", r.intent.key, r.intent.step);
        return chunk.iter().map(|r| Outcome::Failed(why(r))).collect();
    };
    let results = if chunk.len() == 1 { vec![step.undo(ctx, r).await] } else { step.undo_creates(ctx, chunk).await };
    chunk.iter().zip(results).map(|(r, result)| journal_undo(journal, dropped, r, result)).collect()
}

/// Per create (by seq), the updates of its resource that go with it.
type Dropped = std::collections::BTreeMap<u64, Vec<u64>>;

/// Journals one record's undo outcome.
fn journal_undo(
    journal: &Journal,
    dropped: &Dropped,
    r: &Record,
    result: std::result::Result<(), crate::engine::StepError>,
) -> Outcome {
    match result {
        Ok(()) => {
            // The resource is gone: its setting changes went with it.
            let seqs = dropped.get(&r.seq).into_iter().flatten().chain(std::iter::once(&r.seq));
            for seq in seqs {
                if let Err(e) = journal.undone(*seq) {
                    return Outcome::Fatal(e.to_string());
                }
            }
            let action = if r.intent.op == Op::Update { "restored" } else { "deleted" };
            tracing::debug!(
                step = %r.intent.step,
                key = %r.intent.key,
                kind = %r.intent.kind,
                name = %r.intent.name,
                id = r.id.as_deref().unwrap_or_default(),
                action,
                "undone"
            );
            crate::progress::println(format!("  done [{}] {}", r.intent.step, describe(r)));
            Outcome::Undone(r.intent.op)
        }
        Err(e) => {
            tracing::error!(step = %r.intent.step, key = %r.intent.key, error = %e, "undo failed");
            Outcome::Failed(format!("[{}] {}: {e}", r.intent.step, r.intent.key))
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

/// Undo's schedule: the records of steps this version does not know (they
/// fail, named), then per step its records (newest first) and the steps
/// whose undo it waits for — every step with records that depends on it,
/// directly or through steps without records (the DAG reversed).
struct Schedule<'r> {
    unknown: Vec<&'r Record>,
    steps: Vec<Scheduled<'r>>,
}

struct Scheduled<'r> {
    id: &'static str,
    records: Vec<&'r Record>,
    after: Vec<&'static str>,
}

fn schedule<'r>(records: &'r [Record], steps: &[std::sync::Arc<dyn crate::engine::DynStep>]) -> Schedule<'r> {
    let mut unknown = Vec::new();
    let mut by_step: std::collections::BTreeMap<&str, Vec<&Record>> = std::collections::BTreeMap::new();
    for r in records {
        if steps.iter().any(|s| s.id() == r.intent.step) {
            by_step.entry(r.intent.step.as_str()).or_default().push(r);
        } else {
            unknown.push(r);
        }
    }
    // Reverse DAG order: what depends on others first (the display order).
    let scheduled: Vec<(&'static str, Vec<&Record>)> =
        steps.iter().rev().filter_map(|s| Some((s.id(), by_step.remove(s.id())?))).collect();
    let ids: Vec<&'static str> = scheduled.iter().map(|(id, _)| *id).collect();
    let steps = scheduled
        .into_iter()
        .map(|(id, records)| {
            let after = ids.iter().copied().filter(|other| *other != id && undo_reaches(other, id, steps)).collect();
            Scheduled { id, records, after }
        })
        .collect();
    Schedule { unknown, steps }
}

/// Whether undoing step `to` must wait for undoing `from`: `from` depends
/// on `to`, directly or through others, by a dependency that is not
/// [`crate::engine::About::undo_apart`].
fn undo_reaches(from: &str, to: &str, steps: &[std::sync::Arc<dyn crate::engine::DynStep>]) -> bool {
    let Some(step) = steps.iter().find(|s| s.id() == from) else { return false };
    step.deps().iter().filter(|d| !step.undo_apart().contains(d)).any(|d| *d == to || undo_reaches(d, to, steps))
}

/// Whether step `from` depends on step `to`, directly or through others.
fn reaches(from: &str, to: &str, steps: &[std::sync::Arc<dyn crate::engine::DynStep>]) -> bool {
    let deps = steps.iter().find(|s| s.id() == from).map_or(&[][..], |s| s.deps());
    deps.iter().any(|d| *d == to || reaches(d, to, steps))
}

/// How long undoing `records` will take on AWS's clock: each step's
/// declared undo waits for the resources it deletes and its other work,
/// along the same schedule [`replay`] follows.
pub fn estimate(
    records: &[Record],
    steps: &[std::sync::Arc<dyn crate::engine::DynStep>],
    history: &crate::engine::estimate::History,
) -> crate::engine::estimate::Estimate {
    use crate::engine::estimate::{step_estimate, Estimate, Node};
    let (records, _) = without_settings_of_deleted(records);
    let plan = schedule(&records, steps);
    let mut estimates = Vec::new();
    let mut nodes = Vec::new();
    for s in &plan.steps {
        let mut deleted: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for r in s.records.iter().filter(|r| r.intent.op != Op::Update) {
            *deleted.entry(r.intent.kind.clone()).or_default() += 1;
        }
        let specs = steps.iter().find(|x| x.id() == s.id).map_or(&[][..], |x| x.undo_waits());
        let e = step_estimate(s.id, specs, &deleted, s.records.len(), history);
        nodes.push(Node { id: s.id, after: s.after.clone(), early: vec![], seconds: e.seconds });
        estimates.push(e);
    }
    Estimate::of(estimates, &nodes)
}

/// Undoes `records` (newest first) as a dataflow over the DAG reversed: a
/// step starts the moment every step that depends on it is undone (never
/// waiting for unrelated slower steps), up to `parallelism` steps at once;
/// inside a step sibling creates go side by side (in batches where the step
/// has a batch delete). A failure holds back only what it may still be
/// using: the rest of its step's records (created before it: a VPC before
/// its subnets) and the steps whose undo waits for its step — deleting those
/// would meet `DependencyViolation` until the wait bound (an hour), never
/// succeed. Unrelated steps go on; what is held back stays journaled for the
/// re-run. A signal or a journal failure starts nothing new. Returns what
/// was deleted, restored and held back, and the failures.
pub async fn replay(ctx: &Ctx, journal: &Journal, dag: &Dag, records: &[Record], command: &str) -> Tally {
    use crate::progress::{self, State};
    use futures::stream::{FuturesUnordered, StreamExt};
    use std::sync::atomic::{AtomicBool, Ordering};
    let steps = dag.steps();
    let (records, dropped) = without_settings_of_deleted(records);
    let (records, dropped) = (&records, &dropped);
    let plan = schedule(records, steps);
    let order: Vec<&'static str> = plan.steps.iter().map(|s| s.id).collect();
    progress::start(command, &order);
    let fatal = AtomicBool::new(false);
    let mut total = Tally::default();
    for r in &plan.unknown {
        total.add(undo_step(ctx, journal, steps, dropped, &fatal, vec![r]).await);
    }
    let parallelism = ctx.parallelism.max(1);
    let (mut started, mut finished) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    let mut running = FuturesUnordered::new();
    loop {
        // (the step, when it started, what it did)
        let halted = fatal.load(Ordering::Relaxed) || crate::signals::stopping();
        for s in &plan.steps {
            if halted || running.len() >= parallelism {
                break;
            }
            if started.contains(s.id) || !s.after.iter().all(|a| finished.contains(a)) {
                continue;
            }
            started.insert(s.id);
            if let Some(first) = s.after.iter().find(|a| total.stopped.contains(**a)) {
                // Everything it waited for has ended, so the steps after
                // it in this order see it finished on this same pass.
                finished.insert(s.id);
                total.stopped.insert(s.id);
                total.held += s.records.len();
                let why = format!(
                    "held back: [{first}] did not finish undoing, and may still use these; re-run once it is fixed"
                );
                tracing::warn!(step = s.id, resources = s.records.len(), "{why}");
                progress::set(s.id, State::Blocked, &why);
                continue;
            }
            let fatal = &fatal;
            let recs = s.records.clone();
            running.push(async move {
                let began = std::time::Instant::now();
                (s.id, began, undo_step(ctx, journal, steps, dropped, fatal, recs).await)
            });
        }
        if running.is_empty()
            && !halted
            && plan.steps.iter().any(|s| !started.contains(s.id) && s.after.iter().all(|a| finished.contains(a)))
        {
            continue;
        }
        let Some((id, began, tally)) = running.next().await else { break };
        let status = if tally.failures.is_empty() && tally.held == 0 { "done" } else { "failed" };
        ctx.step_time(id, began, began.elapsed(), status, tally.deleted + tally.restored);
        finished.insert(id);
        total.add(tally);
    }
    for s in plan.steps.iter().filter(|s| !started.contains(s.id)) {
        progress::set(s.id, State::Blocked, "not started: the run was asked to stop");
    }
    // What a signal (or a journal failure) kept from starting.
    total.not_started =
        records.len().saturating_sub(total.deleted + total.restored + total.failures.len() + total.held);
    total
}

/// What an undo did: resources deleted, settings restored, failures (one
/// line each).
#[derive(Debug, Default)]
pub struct Tally {
    pub deleted: usize,
    pub restored: usize,
    pub failures: Vec<String>,
    /// Records left in place behind a failure that may still use them.
    pub held: usize,
    /// Records never started (a signal stopped the run first).
    pub not_started: usize,
    /// The steps that failed or were held back: the sweep leaves them,
    /// and what they may still use, alone.
    pub stopped: std::collections::BTreeSet<&'static str>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.deleted += other.deleted;
        self.restored += other.restored;
        self.held += other.held;
        self.failures.extend(other.failures);
        self.stopped.extend(other.stopped);
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} deleted, {} restored", self.deleted, self.restored)?;
        if self.held > 0 {
            write!(f, ", {} held back behind a failure (re-run to resume)", self.held)?;
        }
        if self.not_started > 0 {
            write!(f, ", {} not started (re-run to resume)", self.not_started)?;
        }
        Ok(())
    }
}

/// One step's records (newest first): its sibling groups in order, each
/// side by side; returns the failures. After a group with a failure the
/// step's older records are held back (they may contain what failed);
/// stops early once a journal write failed anywhere (`fatal`).
async fn undo_step(
    ctx: &Ctx,
    journal: &Journal,
    steps: &[std::sync::Arc<dyn crate::engine::DynStep>],
    dropped: &Dropped,
    fatal: &std::sync::atomic::AtomicBool,
    recs: Vec<&Record>,
) -> Tally {
    use crate::progress::{self, State};
    use futures::StreamExt;
    use std::sync::atomic::Ordering;
    let step_id = recs[0].intent.step.clone();
    let known = steps.iter().find(|s| s.id() == step_id);
    if known.is_some() {
        progress::set(&step_id, State::Running, "");
    }
    let batch = known.map_or(1, |s| s.undo_batch().max(1));
    let owned: Vec<Record> = recs.into_iter().cloned().collect();
    let mut failures = Vec::new();
    let mut tally = Tally::default();
    let groups = sibling_groups(&owned);
    let total = groups.iter().map(Vec::len).sum::<usize>();
    let mut ended = 0;
    for group in groups {
        if fatal.load(Ordering::Relaxed) {
            break;
        }
        if !failures.is_empty() {
            tally.held = total - ended;
            tracing::warn!(
                step = %step_id,
                resources = tally.held,
                "held back {} older resource(s) of [{step_id}]: created before what failed, they may contain it; re-run once it is fixed",
                tally.held
            );
            break;
        }
        ended += group.len();
        let results: Vec<Outcome> = futures::stream::iter(group.chunks(batch).map(|chunk| {
            crate::aws::in_lane(
                format!("{step_id}/{}", chunk[0].intent.key),
                undo_chunk(ctx, journal, steps, dropped, chunk),
            )
        }))
        .buffered(ctx.parallelism.max(1))
        .flat_map(futures::stream::iter)
        .collect()
        .await;
        for result in results {
            match result {
                Outcome::Undone(Op::Update) => tally.restored += 1,
                Outcome::Undone(_) => tally.deleted += 1,
                Outcome::Failed(message) => failures.push(message),
                Outcome::Fatal(message) => {
                    failures.push(message);
                    fatal.store(true, Ordering::Relaxed);
                }
                Outcome::NotStarted => {}
            }
        }
    }
    if known.is_some() {
        let mut note = tally.to_string();
        let state = if failures.is_empty() {
            State::Done
        } else {
            note = format!("{note}, {} failed", failures.len());
            State::Failed
        };
        progress::set(&step_id, state, &note);
    }
    if !failures.is_empty() {
        if let Some(known) = known {
            tally.stopped.insert(known.id());
        }
    }
    tally.failures = failures;
    tally
}

/// Destroy's second pass: whatever is still tagged for the migration (a
/// lost journal, a resource created outside it), where each step's
/// [`crate::engine::About::sweeps`] says it looks, each step's sweep in
/// reverse order so dependents go first; a signal stops before the next
/// step. Returns `[step]` and each resource removed (or, with `look`, each
/// it would remove); failures go to the tally.
pub async fn sweep(
    ctx: &Ctx,
    steps: &[std::sync::Arc<dyn crate::engine::DynStep>],
    tally: &mut Tally,
    look: bool,
) -> Vec<(&'static str, Swept)> {
    let mut swept = Vec::new();
    for step in steps.iter().rev() {
        if crate::signals::stopping() {
            break;
        }
        // What a failed undo may still use fails the same way here.
        if tally.stopped.iter().any(|f| *f == step.id() || undo_reaches(f, step.id(), steps)) {
            continue;
        }
        match step.sweep(ctx, look).await {
            Ok(found) => swept.extend(found.into_iter().map(|s| (step.id(), s))),
            Err(e) => tally.failures.push(format!("[{}] sweep: {e}", step.id())),
        }
    }
    swept
}

/// What the sweep would remove beyond `todo`'s resources (the replay's):
/// read only, for the dry run and the prompt.
pub async fn sweep_preview(
    ctx: &Ctx,
    steps: &[std::sync::Arc<dyn crate::engine::DynStep>],
    todo: &[Record],
) -> (Vec<(&'static str, Swept)>, Vec<String>) {
    let mut tally = Tally::default();
    let found = sweep(ctx, steps, &mut tally, true).await;
    let journaled = |s: &Swept| {
        todo.iter().any(|r| {
            matches!(r.intent.op, Op::Create | Op::Adopt)
                && (r.intent.name == s.name || r.id.as_deref() == Some(s.name.as_str()))
        })
    };
    (found.into_iter().filter(|(_, s)| !journaled(s)).collect(), tally.failures)
}

/// The data deleting `work`'s resources and `swept` would take with them,
/// each step asked about its own; a step that cannot tell says so as an
/// entry (better a vague warning than none).
pub async fn at_risk(
    ctx: &Ctx,
    steps: &[std::sync::Arc<dyn crate::engine::DynStep>],
    work: &[Record],
    swept: &[(&'static str, Swept)],
) -> Vec<AtRisk> {
    use std::collections::BTreeMap;
    let mut per_step: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for r in work.iter().filter(|r| matches!(r.intent.op, Op::Create | Op::Adopt)) {
        per_step.entry(r.intent.step.as_str()).or_default().push((r.intent.kind.clone(), r.intent.name.clone()));
    }
    for (step, s) in swept {
        per_step.entry(step).or_default().push((s.kind.to_owned(), s.name.clone()));
    }
    let mut out = Vec::new();
    for (id, resources) in per_step {
        let Some(step) = steps.iter().find(|s| s.id() == id) else { continue };
        match step.at_risk(ctx, &resources).await {
            Ok(found) => out.extend(found),
            Err(e) => out.push(AtRisk {
                kind: id.to_owned(),
                name: format!("[{id}]"),
                holds: format!("could not tell what data its resources hold ({e})"),
            }),
        }
    }
    out
}

/// What destroy's replay undoes: every live record, newest first.
pub fn destroy_target(journal: Option<&Journal>) -> Vec<Record> {
    journal.map(|j| j.records().into_iter().filter(Record::is_live).rev().collect()).unwrap_or_default()
}

/// The run `rollback` undoes (the newest apply/switch/params run with
/// something live, or the one named) and its live records, newest first. A
/// named run is refused while a later run depends on it: a later live change
/// to one of its resources, or to a resource of a step that depends on one
/// of its steps (undoing a VPC under a later run's function would fail);
/// the refusal says why and what to do.
pub fn rollback_target(
    journal: &Journal,
    dag: &Dag,
    named: Option<&str>,
) -> Result<Option<(Run, Vec<Record>)>, String> {
    let records = journal.records();
    let undoable = ["apply", "switch", "params"];
    let runs = journal.runs();
    let live_in = |id: &str| records.iter().any(|rec| rec.run == id && rec.is_live());
    let target = match named {
        None => runs.iter().rev().filter(|r| undoable.contains(&r.command.as_str())).find(|r| live_in(&r.id)),
        Some(id) => {
            let Some(run) = runs.iter().find(|r| r.id == id) else {
                let known: Vec<String> = runs.iter().map(|r| format!("{} ({})", r.id, r.command)).collect();
                return Err(format!(
                    "--run {id}: no such run in the journal\nhelp: `paymig status` lists the runs; known: {}",
                    known.join(", ")
                ));
            };
            if !undoable.contains(&run.command.as_str()) {
                return Err(format!(
                    "--run {id}: a {} run changes nothing that rollback can undo\nhelp: name an apply, switch or params run",
                    run.command
                ));
            }
            let position = runs.iter().position(|r| r.id == id).unwrap_or_default();
            let later: Vec<&str> = runs[position + 1..].iter().map(|r| r.id.as_str()).collect();
            let mine: Vec<&Record> = records.iter().filter(|r| r.run == id && r.is_live()).collect();
            let steps = dag.steps();
            let blocking: Vec<String> = records
                .iter()
                .filter(|r| r.is_live() && later.contains(&r.run.as_str()))
                .filter(|r| mine.iter().any(|m| depends_on(r, m, steps)))
                .map(|r| format!("{} ({} in run {})", r.intent.name, r.intent.kind, r.run))
                .collect();
            if !blocking.is_empty() {
                return Err(format!(
                    "--run {id}: later runs depend on it: {}\nhelp: roll those runs back first (`paymig rollback` undoes the newest), or use `paymig destroy`; nothing was changed",
                    blocking.join(", ")
                ));
            }
            Some(run)
        }
    };
    let Some(target) = target.cloned() else { return Ok(None) };
    let todo: Vec<Record> = records.into_iter().filter(|r| r.run == target.id && r.is_live()).rev().collect();
    if todo.is_empty() {
        return Ok(None);
    }
    Ok(Some((target, todo)))
}

/// Whether `later` (a record of a later run) needs what `earlier` made.
fn depends_on(later: &Record, earlier: &Record, steps: &[std::sync::Arc<dyn crate::engine::DynStep>]) -> bool {
    if base_key(&later.intent.key) == base_key(&earlier.intent.key) {
        return true;
    }
    reaches(&later.intent.step, &earlier.intent.step, steps)
}

#[cfg(test)]
mod tests;

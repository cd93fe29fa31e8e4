//! The engine: the step contract, the context steps run in, the DAG executor,
//! the journal and the lock. A step observes before it acts; every mutation
//! goes through [`Ctx::create`] or [`Ctx::update`], which journal an intent
//! first and the outcome after — and in plan mode only record the change.

pub mod apply;
pub mod dag;
pub mod estimate;
pub mod journal;
pub mod lock;
pub mod plan;
pub mod step;
pub mod store;
pub mod undo;
pub mod validate;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::aws::Aws;
use crate::config::Config;
use journal::{Intent, Journal, JournalError, Op};
pub use step::{About, AtRisk, Declared, DynStep, Grant, Step, Swept};

/// Whether a command may change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Observe and record what would change; never mutate.
    Plan,
    /// Observe, then mutate through the journal.
    Apply,
}

/// What `apply` would do (or did) to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Noop,
}

/// One planned or performed change to one resource: resources are counted,
/// not calls. A new resource's settings (versioning, policy, rotation … set
/// right after its create) are listed under it; an existing resource with
/// changed settings is one `Update` listing them.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub step: String,
    pub action: Action,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// For a create: the settings applied to the new resource; for an
    /// update: every setting changed (with its values where shown).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
    /// The values of the settings that show them: `{setting, from, to}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Value>,
    #[serde(skip)]
    key: String,
}

/// What an update changes: the setting (the journal key's last part) and,
/// where it can be shown, its value before and after (`7 → 100`). Values
/// that are secrets or may hold them (parameter values of excluded names,
/// environment values) are never given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub setting: String,
    pub values: Option<(String, String)>,
}

impl Detail {
    /// A setting changing from `from` to `to`.
    pub fn change(setting: impl Into<String>, from: impl std::fmt::Display, to: impl std::fmt::Display) -> Detail {
        Detail { setting: setting.into(), values: Some((from.to_string(), to.to_string())) }
    }

    /// A change between two JSON forms of a setting: each top-level field
    /// that differs, compact and cut to a readable length (`threshold 80 →
    /// 95`); the whole value when it is not an object.
    pub fn between(setting: impl Into<String>, have: &Value, want: &Value) -> Detail {
        fn compact(v: &Value) -> String {
            let s = match v {
                Value::Null => "none".to_owned(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if s.chars().count() > 60 {
                format!("{}…", s.chars().take(59).collect::<String>())
            } else {
                s
            }
        }
        let (mut from, mut to) = (Vec::new(), Vec::new());
        match (have.as_object(), want.as_object()) {
            (Some(h), Some(w)) => {
                let keys: std::collections::BTreeSet<&String> = h.keys().chain(w.keys()).collect();
                for k in keys {
                    let (a, b) = (h.get(k).unwrap_or(&Value::Null), w.get(k).unwrap_or(&Value::Null));
                    if a != b {
                        from.push(format!("{} {}", k.replace('_', " "), compact(a)));
                        to.push(format!("{} {}", k.replace('_', " "), compact(b)));
                    }
                }
            }
            _ => {
                from.push(compact(have));
                to.push(compact(want));
            }
        }
        Detail::change(setting, from.join(", "), to.join(", "))
    }

    /// As plan and rollback show it: `setting: from → to`.
    pub fn shown(&self) -> String {
        match &self.values {
            Some((from, to)) => format!("{}: {from} → {to}", self.setting),
            None => self.setting.clone(),
        }
    }
}

impl From<&str> for Detail {
    fn from(s: &str) -> Detail {
        Detail { setting: s.to_owned(), values: None }
    }
}

impl From<String> for Detail {
    fn from(s: String) -> Detail {
        Detail { setting: s, values: None }
    }
}

/// A step failure, naming the resource and the call.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// An AWS call failed (after the SDK's retries); the failure is typed.
    #[error("{resource}: {op} failed: {failure}")]
    Aws { resource: String, op: String, failure: Box<crate::aws::AwsFailure> },
    /// A wait for AWS (a cluster becoming available, a table ACTIVE, ENIs
    /// released) ran past its bound: the resource is slow, not wrong.
    #[error("{resource}: {what} not reached within {}s\nhelp: AWS is still working on it; re-run the same command to resume the wait (or raise [migration] max_wait_minutes)", .waited.as_secs())]
    Timeout { resource: String, what: String, waited: Duration },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{0}")]
    Invalid(String),
    /// A signal asked the run to stop before this change was started.
    #[error("not started: the run was asked to stop (re-run to resume)")]
    Interrupted,
    /// A signal stopped a step part way: what it did and what it left, in
    /// words (`444 copied, 1,056 not started`).
    #[error("interrupted: {0} (re-run to resume)")]
    Stopped(String),
    /// Two desired states for one resource in one run (a paymig bug).
    #[error("{0}: two desired states for one resource in one run; nothing was written for the second (one resource, one definition)\nhelp: this is a defect in paymig; please report it with the output of `paymig plan`")]
    Conflict(String),
}

impl StepError {
    /// Whether a signal, not a failure, ended the work.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, StepError::Interrupted | StepError::Stopped(_))
    }

    /// Many items' errors as one: those a signal kept from starting are
    /// counted (`interrupted: 444 copied, 1,056 not started`), distinct
    /// failures named once each with how often they occurred.
    pub fn summarise(done: usize, verb: &str, errors: Vec<StepError>) -> Option<StepError> {
        use crate::engine::step::thousands;
        let total = errors.len();
        let (stopped, failed): (Vec<StepError>, Vec<StepError>) =
            errors.into_iter().partition(|e| matches!(e, StepError::Interrupted));
        if failed.is_empty() {
            return (!stopped.is_empty()).then(|| {
                StepError::Stopped(format!(
                    "{} {verb}, {} not started",
                    thousands(done as u64),
                    thousands(stopped.len() as u64)
                ))
            });
        }
        let mut seen: Vec<(String, usize)> = Vec::new();
        for e in &failed {
            let text = e.to_string();
            match seen.iter_mut().find(|(t, _)| *t == text) {
                Some((_, n)) => *n += 1,
                None => seen.push((text, 1)),
            }
        }
        let listed: Vec<String> =
            seen.into_iter().map(|(t, n)| if n == 1 { t } else { format!("{t} (×{n})") }).collect();
        let stopped = match stopped.len() {
            0 => String::new(),
            n => format!("; {} not started: the run was asked to stop (re-run to resume)", thousands(n as u64)),
        };
        Some(StepError::Invalid(format!(
            "{} of {} failed ({} {verb}): {}{stopped}",
            thousands(failed.len() as u64),
            thousands(total as u64 + done as u64),
            thousands(done as u64),
            listed.join("; ")
        )))
    }

    /// An error-mapping closure for an SDK call on `resource`.
    pub fn aws<E>(
        resource: impl Into<String>,
        op: &'static str,
    ) -> impl FnOnce(
        aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    ) -> StepError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let resource = resource.into();
        move |e| StepError::Aws { resource, op: op.to_owned(), failure: Box::new(crate::aws::AwsFailure::of(&e)) }
    }

    /// A read of `resource` by id: `None` when it answers that the resource
    /// does not exist, any other failure an error (a denied or throttled
    /// read must never pass for "gone").
    pub fn found<T, E>(
        result: Result<
            T,
            aws_smithy_runtime_api::client::result::SdkError<
                E,
                aws_smithy_runtime_api::client::orchestrator::HttpResponse,
            >,
        >,
        resource: impl Into<String>,
        op: &'static str,
    ) -> Result<Option<T>, StepError>
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        match result.map_err(StepError::aws(resource, op)) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An error-mapping closure for an SDK waiter on `resource` waiting for
    /// `what` (`"available"`, `"ACTIVE"`): running out of time is a
    /// [`StepError::Timeout`] (slow, resumable), a failed poll an AWS
    /// failure, a failure state (the resource will never get there) invalid.
    pub fn waiting<O, E>(
        resource: impl Into<String>,
        what: impl Into<String>,
        max_wait: Duration,
    ) -> impl FnOnce(aws_smithy_runtime_api::client::waiters::error::WaiterError<O, E>) -> StepError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        use aws_smithy_runtime_api::client::waiters::error::WaiterError;
        let (resource, what) = (resource.into(), what.into());
        move |e| match e {
            WaiterError::ExceededMaxWait(_) => StepError::Timeout { resource, what, waited: max_wait },
            WaiterError::OperationFailed(op) => StepError::Aws {
                resource,
                op: format!("waiting for {what}"),
                failure: Box::new(crate::aws::AwsFailure::of(op.error())),
            },
            WaiterError::FailureState(_) => {
                StepError::Invalid(format!("{resource}: reached a state from which it cannot become {what}"))
            }
            other => StepError::Invalid(format!("{resource}: waiting for {what}: {other}")),
        }
    }

    /// The AWS failure behind this error, if it is one.
    pub fn failure(&self) -> Option<&crate::aws::AwsFailure> {
        match self {
            StepError::Aws { failure, .. } => Some(failure.as_ref()),
            _ => None,
        }
    }

    /// The call answered that its resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.failure().is_some_and(crate::aws::AwsFailure::is_not_found)
    }

    /// The call answered exactly this service error code.
    pub fn is_code(&self, code: &str) -> bool {
        self.failure().is_some_and(|f| f.is(code))
    }

    /// Another resource still depends on it (EC2 `DependencyViolation`).
    pub fn is_dependency_violation(&self) -> bool {
        self.failure().is_some_and(crate::aws::AwsFailure::is_dependency_violation)
    }

    /// The resource is busy with an earlier change.
    pub fn is_in_progress(&self) -> bool {
        self.failure().is_some_and(crate::aws::AwsFailure::is_in_progress)
    }

    /// The caller's identity may not make this call.
    pub fn is_access_denied(&self) -> bool {
        self.failure().is_some_and(crate::aws::AwsFailure::is_access_denied)
    }

    /// Throttled (after the SDK's own retries).
    pub fn is_throttle(&self) -> bool {
        self.failure().is_some_and(crate::aws::AwsFailure::is_throttle)
    }

    /// The service's message contains `text` (for the few conditions AWS
    /// tells only in words, such as IAM propagation).
    pub fn message_contains(&self, text: &str) -> bool {
        self.failure().is_some_and(|f| f.message.contains(text))
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Skipped(String),
}

/// Values steps hand to the steps that depend on them (the key's ARN, the
/// VPC's subnets …), one value per type: each publishing step defines its own
/// type ([`crate::steps::kms::Key`], [`crate::steps::network::Vpc`] …), so
/// the engine knows none of them and a new step adds no field here. In plan
/// mode, ids of resources that do not exist yet are placeholders (see
/// [`planned_id`]).
#[derive(Default)]
pub struct Outputs {
    values: Mutex<HashMap<TypeId, Box<dyn Any + Send>>>,
    /// The steps this run schedules, and those that have ended (done,
    /// skipped, failed or blocked): what [`Outputs::wait`] may still expect.
    steps: Mutex<(std::collections::HashSet<&'static str>, std::collections::HashSet<&'static str>)>,
    changed: tokio::sync::Notify,
}

impl Outputs {
    /// Publishes `value`, replacing what was published of its type.
    pub fn publish<T: Any + Send>(&self, value: T) {
        self.values.lock().expect("outputs poisoned").insert(TypeId::of::<T>(), Box::new(value));
        self.changed.notify_waiters();
    }

    /// The steps a run is about to execute: a step waiting for another's
    /// value waits only for one of these.
    pub fn schedule(&self, steps: impl IntoIterator<Item = &'static str>) {
        self.steps.lock().expect("outputs poisoned").0.extend(steps);
    }

    /// `step` has ended, whatever its outcome: nothing more will come from it.
    pub fn ended(&self, step: &'static str) {
        self.steps.lock().expect("outputs poisoned").1.insert(step);
        self.changed.notify_waiters();
    }

    /// What `producer` publishes of type `T`, as soon as it is published,
    /// for a step that needs one value of a step it does not depend on
    /// (the functions need the cluster's endpoints, which exist as soon as
    /// the restore is accepted, not when it ends). `None` once `producer`
    /// has ended without publishing it, or when this run does not schedule
    /// it. A producer always precedes its waiters in the DAG's order, so
    /// even one step at a time cannot deadlock.
    pub async fn wait<T: Any + Send + Clone>(&self, producer: &'static str) -> Option<T> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = self.peek::<T>() {
                return Some(v);
            }
            {
                let steps = self.steps.lock().expect("outputs poisoned");
                if !steps.0.contains(producer) || steps.1.contains(producer) {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// What is published of type `T`, if anything.
    pub fn peek<T: Any + Send + Clone>(&self) -> Option<T> {
        let map = self.values.lock().expect("outputs poisoned");
        map.get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref::<T>()).cloned()
    }

    /// What is published of type `T`; its default when nothing is (the step
    /// that publishes it was skipped or has not run).
    pub fn get<T: Any + Send + Clone + Default>(&self) -> T {
        self.peek::<T>().unwrap_or_default()
    }

    /// Changes the published `T` in place (starting from its default): for
    /// a step that publishes piece by piece from concurrent work.
    pub fn update<T: Any + Send + Default>(&self, change: impl FnOnce(&mut T)) {
        {
            let mut map = self.values.lock().expect("outputs poisoned");
            let value = map.entry(TypeId::of::<T>()).or_insert_with(|| Box::new(T::default()));
            change(value.downcast_mut::<T>().expect("one value per type"));
        }
        self.changed.notify_waiters();
    }
}

/// The id a plan uses for a resource that does not exist yet.
pub fn planned_id(kind: &str) -> String {
    format!("(new {kind})")
}

/// Whether `id` is a plan placeholder rather than a real id.
pub fn is_planned(id: &str) -> bool {
    id.starts_with("(new ")
}

/// A resource a step manages: its kind, stable journal key and prod name.
#[derive(Debug, Clone)]
pub struct Res {
    pub step: &'static str,
    pub kind: &'static str,
    pub key: String,
    pub name: String,
}

impl Res {
    pub fn new(step: &'static str, kind: &'static str, key: impl Into<String>, name: impl Into<String>) -> Self {
        Res { step, kind, key: format!("{step}/{}", key.into()), name: name.into() }
    }
}

/// Everything a step runs with.
pub struct Ctx {
    pub cfg: Config,
    pub aws: Aws,
    pub mode: Mode,
    pub journal: Option<Arc<Journal>>,
    /// The prod account id.
    pub account: String,
    pub outputs: Outputs,
    /// How many steps, and within a step how many resources, may be worked
    /// on at once (`--parallelism`).
    pub parallelism: usize,
    changes: Mutex<Vec<Change>>,
    notices: Mutex<Vec<(String, String)>>,
    /// Dev identifiers found in copied values, per step.
    references: Mutex<Vec<(String, crate::steps::common::references::Reference)>>,
    /// Every resource key (and `key#setting`) a desired state was recorded
    /// for in this run: a second one is refused (see [`Ctx::claim`]).
    claimed: Mutex<std::collections::HashSet<String>>,
    /// When this context was made: waits and step times are measured from it.
    pub started: std::time::Instant,
    /// The waits and step times of this run, for its `run_end` entry.
    observed: Mutex<estimate::Observation>,
}

impl Ctx {
    /// Runs `f` for every item — one resource each — at most `parallelism`
    /// at once, each in its own lane of the call log. Every item is
    /// attempted; the first error (in item order) is returned.
    pub async fn each<'a, T, F, Fut>(&'a self, items: impl IntoIterator<Item = T>, f: F) -> Result<(), StepError>
    where
        T: std::fmt::Display,
        F: Fn(T) -> Fut,
        Fut: Future<Output = Result<(), StepError>> + 'a,
    {
        self.map(items, f).await.map(|_| ())
    }

    /// Like [`Ctx::each`], returning every item's result in item order.
    pub async fn map<'a, T, R, F, Fut>(&'a self, items: impl IntoIterator<Item = T>, f: F) -> Result<Vec<R>, StepError>
    where
        T: std::fmt::Display,
        F: Fn(T) -> Fut,
        Fut: Future<Output = Result<R, StepError>> + 'a,
    {
        use futures::StreamExt;
        let results: Vec<Result<R, StepError>> = futures::stream::iter(items.into_iter().map(|item| {
            let lane = format!("{}/{item}", crate::aws::lane());
            let work = f(item);
            // Items not started when a signal arrives are never started.
            crate::aws::in_lane(lane, async move {
                if crate::signals::stopping() {
                    return Err(StepError::Interrupted);
                }
                work.await
            })
        }))
        .buffered(self.parallelism.max(1))
        .collect()
        .await;
        results.into_iter().collect()
    }

    pub fn new(cfg: Config, aws: Aws, mode: Mode, journal: Option<Arc<Journal>>, account: String) -> Self {
        Ctx {
            cfg,
            aws,
            mode,
            journal,
            account,
            outputs: Outputs::default(),
            parallelism: 16,
            changes: Mutex::new(Vec::new()),
            notices: Mutex::new(Vec::new()),
            references: Mutex::new(Vec::new()),
            claimed: Mutex::new(std::collections::HashSet::new()),
            started: std::time::Instant::now(),
            observed: Mutex::new(estimate::Observation::default()),
        }
    }

    /// Runs `wait` (one of the long waits AWS imposes) and, when it
    /// succeeds, records how long it took for the next plan's estimate.
    pub async fn timed<T>(
        &self,
        step: &str,
        kind: estimate::Wait,
        resource: &str,
        wait: impl Future<Output = Result<T, StepError>>,
    ) -> Result<T, StepError> {
        let began = std::time::Instant::now();
        let out = wait.await?;
        let seen = estimate::Observed {
            step: step.to_owned(),
            wait: kind,
            resource: resource.to_owned(),
            at_s: began.duration_since(self.started).as_secs_f64(),
            seconds: began.elapsed().as_secs_f64(),
        };
        // One figure per resource and wait in a run: a second wait for the
        // same thing (the interfaces, waited for before each role) finds
        // it done and says nothing new.
        let mut o = self.observed.lock().expect("observed poisoned");
        match o.waits.iter_mut().find(|w| w.step == step && w.wait == kind && w.resource == resource) {
            Some(w) if w.seconds >= seen.seconds => {}
            Some(w) => *w = seen,
            None => o.waits.push(seen),
        }
        Ok(out)
    }

    /// Records a step's time in this run (its waits are already recorded).
    pub fn step_time(&self, step: &str, started: std::time::Instant, elapsed: Duration, status: &str, changes: usize) {
        let mut o = self.observed.lock().expect("observed poisoned");
        let start_s = started.saturating_duration_since(self.started).as_secs_f64();
        let spans: Vec<(f64, f64)> = o.waits.iter().filter(|w| w.step == step).map(|w| (w.at_s, w.seconds)).collect();
        o.steps.push(estimate::StepTime {
            step: step.to_owned(),
            start_s,
            seconds: elapsed.as_secs_f64(),
            status: status.to_owned(),
            changes,
            waited_s: estimate::union_seconds(spans),
        });
    }

    /// What this run saw (waits, step times).
    pub fn observation(&self) -> estimate::Observation {
        self.observed.lock().expect("observed poisoned").clone()
    }

    /// The environment suffix.
    pub fn suffix(&self) -> &str {
        self.cfg.suffix()
    }

    pub fn is_plan(&self) -> bool {
        self.mode == Mode::Plan
    }

    /// The longest a waiter may wait for one resource.
    pub fn max_wait(&self) -> Duration {
        Duration::from_secs(self.cfg.migration.max_wait_minutes * 60)
    }

    /// A notice for the operator, shown by plan and apply.
    pub fn notice(&self, step: &str, message: impl Into<String>) {
        let message = message.into();
        // Shown with the plan or the summary; logged for -v and JSON.
        tracing::debug!(notice_step = step, "{message}");
        self.notices.lock().expect("notices poisoned").push((step.to_owned(), message));
    }

    /// A dev identifier found in a value `step` copies (mapped, named or
    /// kept), for plan, apply and validate to show; one entry per place and
    /// identifier.
    pub fn reference(&self, step: &str, r: crate::steps::common::references::Reference) {
        let mut all = self.references.lock().expect("references poisoned");
        if !all.iter().any(|(s, x)| s == step && x.place == r.place && x.found.dev == r.found.dev) {
            all.push((step.to_owned(), r));
        }
    }

    /// Every reference recorded, by step.
    pub fn references(&self) -> Vec<(String, crate::steps::common::references::Reference)> {
        self.references.lock().expect("references poisoned").clone()
    }

    pub fn changes(&self) -> Vec<Change> {
        self.changes.lock().expect("changes poisoned").clone()
    }

    pub fn notices(&self) -> Vec<(String, String)> {
        self.notices.lock().expect("notices poisoned").clone()
    }

    fn record(&self, res: &Res, action: Action, detail: impl Into<Detail>) {
        let d: Detail = detail.into();
        let detail = d.shown();
        let values: Vec<Value> = d
            .values
            .iter()
            .map(|(from, to)| serde_json::json!({"setting": d.setting, "from": from, "to": to}))
            .collect();
        let mut changes = self.changes.lock().expect("changes poisoned");
        if action == Action::Update {
            if let Some(c) = changes.iter_mut().rev().find(|c| c.key == res.key) {
                c.values.extend(values);
                match c.action {
                    Action::Create => c.settings.push(detail),
                    Action::Noop | Action::Update => {
                        c.action = Action::Update;
                        c.settings.push(detail);
                        c.detail = c.settings.join("; ");
                    }
                }
                return;
            }
        }
        let settings = if action == Action::Update { vec![detail.clone()] } else { Vec::new() };
        changes.push(Change {
            step: res.step.to_owned(),
            action,
            kind: res.kind.to_owned(),
            name: res.name.clone(),
            detail,
            settings,
            values,
            key: res.key.clone(),
        });
    }

    /// One resource, one desired state per run: a step (or two steps) that
    /// decides about the same journal key twice would write two definitions
    /// to one resource — the second silently winning, and every re-run
    /// rewriting both. Refused loudly instead, before any call.
    fn claim(&self, key: &str) -> Result<(), StepError> {
        // No new intent once a signal asked the run to stop.
        if !self.is_plan() && crate::signals::stopping() {
            return Err(StepError::Interrupted);
        }
        if self.claimed.lock().expect("claims poisoned").insert(key.to_owned()) {
            Ok(())
        } else {
            Err(StepError::Conflict(key.to_owned()))
        }
    }

    fn journal(&self) -> Result<&Journal, StepError> {
        self.journal.as_deref().ok_or_else(|| StepError::Invalid("a mutation was attempted without a journal".into()))
    }

    /// Claims `res` and records it unchanged; the journal to complete in
    /// apply mode, `None` in plan mode.
    fn found(&self, res: &Res) -> Result<Option<&Journal>, StepError> {
        self.claim(&res.key)?;
        self.record(res, Action::Noop, "");
        if self.is_plan() {
            return Ok(None);
        }
        self.journal().map(Some)
    }

    /// Records that `res` exists, found by name alone: it is paymig's only if
    /// `ours` (it carries the migration's tags) or the journal already knows
    /// it. A resource that predates paymig is never adopted — destroy must
    /// not delete what paymig did not create — but an intent a killed run
    /// left open on it is completed.
    pub fn existing(&self, res: &Res, id: &str, arn: Option<&str>, ours: bool) -> Result<(), StepError> {
        if ours {
            return self.unchanged(res, id, arn);
        }
        let Some(journal) = self.found(res)? else { return Ok(()) };
        match journal.latest(&res.key) {
            Some(r) if !r.undone && r.id.is_none() && r.intent.op != Op::Update => {
                journal.done(r.seq, id, arn, Value::Null)?;
            }
            Some(r) if !r.undone => {}
            _ => {
                tracing::info!(step = res.step, resource = %res.name, "exists and predates paymig: managed, never adopted or deleted")
            }
        }
        Ok(())
    }

    /// Records that `res` exists as desired, found by the migration's tags
    /// (so it is paymig's). In apply mode, makes sure the journal knows it:
    /// completes an intent a killed run left open, or adopts a resource the
    /// journal has never seen (so destroy covers it).
    pub fn unchanged(&self, res: &Res, id: &str, arn: Option<&str>) -> Result<(), StepError> {
        let Some(journal) = self.found(res)? else { return Ok(()) };
        match journal.latest(&res.key) {
            Some(r) if !r.undone && r.id.as_deref() == Some(id) => Ok(()),
            Some(r) if !r.undone && r.id.is_none() && r.intent.op != Op::Update => {
                tracing::info!(step = res.step, resource = %res.name, id, "completing an intent a previous run left open");
                journal.done(r.seq, id, arn, Value::Null)?;
                Ok(())
            }
            Some(r) if !r.undone && r.intent.op == Op::Update => Ok(()),
            _ => {
                tracing::info!(step = res.step, resource = %res.name, id, "adopting an existing resource");
                let seq = journal.intent(Intent {
                    step: res.step.into(),
                    op: Op::Adopt,
                    kind: res.kind.into(),
                    key: res.key.clone(),
                    name: res.name.clone(),
                    prev: Value::Null,
                    data: Value::Null,
                })?;
                journal.done(seq, id, arn, Value::Null)?;
                Ok(())
            }
        }
    }

    /// The idempotency token (EC2's `ClientToken`) for creating `res`: one per
    /// intent. AWS remembers a token long after the resource is gone —
    /// reused with other parameters it answers
    /// `IdempotentParameterMismatch`, with the same ones it returns the first
    /// (possibly deleted) resource — so a fixed token per resource breaks
    /// the second migration after a destroy. The token of a create intent a
    /// killed run left open on the same key is reused: the call may have
    /// happened, and the same token then returns that resource instead of a
    /// second one. Every other intent gets a new random token; the caller
    /// records it in the intent's data under `client_token`.
    pub fn client_token(&self, res: &Res) -> String {
        let open = self
            .journal
            .as_deref()
            .and_then(|j| j.latest(&res.key))
            .filter(|r| !r.undone && r.id.is_none() && r.intent.op == Op::Create);
        if let Some(token) = open.and_then(|r| r.intent.data["client_token"].as_str().map(str::to_owned)) {
            return token;
        }
        let nonce: [u8; 16] = rand::random();
        hex::encode(nonce)
    }

    /// A step observed that the change behind `key` is still to be made, so
    /// an intent a killed run left without outcome never took effect: close
    /// it before recording the new one, keeping the journal consistent.
    fn supersede(&self, journal: &Journal, key: &str) -> Result<(), StepError> {
        if let Some(r) = journal.latest(key).filter(|r| !r.undone && r.id.is_none()) {
            tracing::info!(key, seq = r.seq, "closing an intent a previous run left without outcome");
            journal.undone(r.seq)?;
        }
        Ok(())
    }

    /// After `step` converged successfully, resolves every intent of it still
    /// without outcome: prod is now as desired, so an open update took effect
    /// (`done`; rollback restores its previous value), and an open create whose
    /// resource the step neither found nor created never happened (`undone`).
    /// These are what a run killed between a call and its `done` leaves.
    pub fn settle(&self, step: &str) -> Result<(), StepError> {
        if self.is_plan() {
            return Ok(());
        }
        let journal = self.journal()?;
        for r in journal.records().into_iter().filter(|r| r.intent.step == step && !r.undone && r.id.is_none()) {
            if r.intent.op == Op::Update {
                let id = r.intent.data["id"].as_str().unwrap_or_default().to_owned();
                tracing::info!(step, key = %r.intent.key, "an update a killed run made took effect");
                journal.done(r.seq, &id, None, Value::Null)?;
            } else {
                tracing::info!(step, key = %r.intent.key, "a create a killed run intended never happened");
                journal.undone(r.seq)?;
            }
        }
        Ok(())
    }

    /// Creates `res` through the journal: `intent`, the call, `done`. In plan
    /// mode records the change and returns `None` without calling.
    pub async fn create<T, F, Fut>(
        &self,
        res: &Res,
        detail: impl Into<String>,
        data: Value,
        call: F,
    ) -> Result<Option<T>, StepError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Created<T>, StepError>>,
    {
        self.claim(&res.key)?;
        self.record(res, Action::Create, detail.into());
        if self.is_plan() {
            return Ok(None);
        }
        let journal = self.journal()?;
        self.supersede(journal, &res.key)?;
        let seq = journal.intent(Intent {
            step: res.step.into(),
            op: Op::Create,
            kind: res.kind.into(),
            key: res.key.clone(),
            name: res.name.clone(),
            prev: Value::Null,
            data,
        })?;
        let created = call().await?;
        journal.done(seq, &created.id, created.arn.as_deref(), created.data)?;
        // Per-resource events are detail (-v); the summary counts them.
        tracing::debug!(kind = res.kind, resource = %res.name, id = %created.id, "created");
        Ok(Some(created.value))
    }

    /// Changes a setting of `res` through the journal, recording `prev` so
    /// rollback can restore it.
    pub async fn update<F, Fut>(
        &self,
        res: &Res,
        id: &str,
        detail: impl Into<Detail>,
        prev: impl Serialize,
        call: F,
    ) -> Result<(), StepError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), StepError>>,
    {
        let d: Detail = detail.into();
        let detail = d.setting.clone();
        let key = format!("{}#{}", res.key, detail);
        self.claim(&key)?;
        self.record(res, Action::Update, d.clone());
        if self.is_plan() {
            return Ok(());
        }
        let journal = self.journal()?;
        self.supersede(journal, &key)?;
        let seq = journal.intent(Intent {
            step: res.step.into(),
            op: Op::Update,
            kind: res.kind.into(),
            key,
            name: res.name.clone(),
            prev: serde_json::to_value(prev).expect("previous values serialize"),
            // The values shown, for rollback to say what it puts back.
            data: match &d.values {
                Some((from, to)) => serde_json::json!({ "id": id, "from": from, "to": to }),
                None => serde_json::json!({ "id": id }),
            },
        })?;
        call().await?;
        journal.done(seq, id, None, Value::Null)?;
        tracing::debug!(kind = res.kind, resource = %res.name, %detail, "updated");
        Ok(())
    }
}

/// What a create call returns to the journal.
pub struct Created<T> {
    pub value: T,
    pub id: String,
    pub arn: Option<String>,
    pub data: Value,
}

impl Created<String> {
    /// A created resource known by its id.
    pub fn id(id: impl Into<String>) -> Self {
        let id = id.into();
        Created { value: id.clone(), id, arn: None, data: Value::Null }
    }

    /// The resource `op` created, known by the id it returned; an answer
    /// without one is an error naming the call.
    pub fn returned(id: Option<String>, op: &str) -> Result<Self, StepError> {
        id.map(Created::id).ok_or_else(|| StepError::Invalid(format!("{op} returned no id")))
    }
}

/// Retries `op` with exponential backoff while `retryable` says the error is
/// transient (IAM/EC2 eventual consistency); bounded in attempts.
pub async fn retry_eventual<T, Fut: Future<Output = Result<T, StepError>>>(
    what: &str,
    retryable: impl Fn(&StepError) -> bool,
    op: impl FnMut() -> Fut,
) -> Result<T, StepError> {
    let backoff = backon::ExponentialBuilder::default().with_min_delay(Duration::from_millis(250));
    retry_with(what, backoff.with_max_delay(Duration::from_secs(15)).with_max_times(8), retryable, op).await
}

/// Retries `op` while `retryable` says AWS is not ready yet, for as long as
/// AWS may take (`bound`, from `[migration] max_wait_minutes`): backoff from
/// 1 s to 30 s, with jitter. For states that last minutes — ENIs that keep a
/// security group in use for up to 45 minutes, backups not yet available on
/// a new table — where [`retry_eventual`]'s eight attempts would give up.
pub async fn retry_until<T, Fut: Future<Output = Result<T, StepError>>>(
    what: &str,
    bound: Duration,
    retryable: impl Fn(&StepError) -> bool,
    op: impl FnMut() -> Fut,
) -> Result<T, StepError> {
    let backoff = backon::ExponentialBuilder::default().with_min_delay(Duration::from_secs(1));
    let backoff = backoff.with_max_delay(Duration::from_secs(30)).without_max_times().with_total_delay(Some(bound));
    retry_with(what, backoff, retryable, op).await
}

/// The delay before the next read of a resource that has been waited for
/// `elapsed`: a twentieth of it, between 1 s and 15 s. Whatever the scale of
/// the wait, the state change is seen at most ~5% (or 1 s) late; a
/// 10-minute Aurora restore is read every 15 s.
pub fn poll_delay(elapsed: Duration) -> Duration {
    (elapsed / 20).clamp(Duration::from_secs(1), Duration::from_secs(15))
}

/// Reads `check` until it answers `Some` (the resource reached `what`), at
/// [`poll_delay`] intervals, for at most `[migration] max_wait_minutes`
/// (then [`StepError::Timeout`]), with a progress line. `check` returns an
/// error for a state from which `what` cannot be reached. Used instead of
/// the SDK's waiters where they back off far past the moment AWS is ready
/// (RDS's: 30 s doubling up to 30 minutes, a random delay in between, so a
/// 10-minute restore is commonly seen 5–10 minutes late).
pub async fn poll_until<T, F, Fut>(
    ctx: &Ctx,
    step: &str,
    resource: &str,
    what: &str,
    mut check: F,
) -> Result<T, StepError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, StepError>>,
{
    let started = std::time::Instant::now();
    let bound = ctx.max_wait();
    let polled = async {
        loop {
            if let Some(v) = check().await? {
                return Ok(v);
            }
            let elapsed = started.elapsed();
            if elapsed >= bound {
                return Err(StepError::Timeout { resource: resource.to_owned(), what: what.to_owned(), waited: bound });
            }
            tokio::time::sleep(poll_delay(elapsed).min(bound - elapsed)).await;
        }
    };
    crate::progress::while_waiting(step, &format!("{resource} to become {what}"), polled).await
}

/// The one retry loop behind both: `backoff` with jitter, each retry logged
/// with the error and the delay.
async fn retry_with<T, F, Fut>(
    what: &str,
    backoff: backon::ExponentialBuilder,
    retryable: impl Fn(&StepError) -> bool,
    op: F,
) -> Result<T, StepError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
{
    use backon::Retryable;
    op.retry(backoff.with_jitter())
        .when(retryable)
        .notify(
            |e, d| tracing::info!(what, error = %e, delay_ms = d.as_millis() as u64, "AWS is not ready yet; retrying"),
        )
        .await
}

#[cfg(test)]
mod poll_tests {
    use super::*;

    #[test]
    fn polls_are_a_twentieth_of_the_wait_between_one_and_fifteen_seconds() {
        assert_eq!(poll_delay(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(poll_delay(Duration::from_secs(60)), Duration::from_secs(3));
        assert_eq!(poll_delay(Duration::from_secs(600)), Duration::from_secs(15));
        assert_eq!(poll_delay(Duration::from_secs(3600)), Duration::from_secs(15));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn plan_ctx() -> Ctx {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations.toml")).unwrap();
        let mut cfg = Config::parse(std::path::Path::new("migrations.toml"), &text).unwrap();
        (cfg.source.profile, cfg.target.profile) = (None, None);
        let aws = Aws::connect(&cfg).await;
        Ctx::new(cfg, aws, Mode::Plan, None, "123456789012".into())
    }

    #[tokio::test]
    async fn one_resource_gets_one_desired_state_per_run() {
        let ctx = plan_ctx().await;
        let alarm = Res::new("monitoring", "alarm", "alarm/x-prod", "x-prod");
        let create = || async { Ok(Created::id("x-prod")) };
        assert!(ctx.create(&alarm, "first", Value::Null, create).await.unwrap().is_none(), "plan mode: no call");
        let second = ctx.create(&alarm, "second", Value::Null, create).await.unwrap_err();
        assert!(matches!(&second, StepError::Conflict(k) if k == "monitoring/alarm/x-prod"), "{second}");
        assert!(matches!(ctx.unchanged(&alarm, "x-prod", None), Err(StepError::Conflict(_))));
        assert_eq!(ctx.changes().len(), 1, "the refused state is not recorded");

        // Observing a resource, then changing two of its settings, is one
        // desired state; the same setting twice is not.
        let table = Res::new("dynamodb", "dynamodb_table", "table/t", "t");
        ctx.existing(&table, "t", None, false).unwrap();
        ctx.update(&table, "t", "ttl", Value::Null, || async { Ok(()) }).await.unwrap();
        ctx.update(&table, "t", "pitr", Value::Null, || async { Ok(()) }).await.unwrap();
        let again = ctx.update(&table, "t", "ttl", Value::Null, || async { Ok(()) }).await.unwrap_err();
        assert!(matches!(&again, StepError::Conflict(k) if k == "dynamodb/table/t#ttl"), "{again}");
    }

    // The crash-safety state machine: what each observation does with what a
    // run killed between a call and its `done` left in the journal.

    /// An apply context over a fresh in-memory journal, with a run begun.
    async fn apply_ctx() -> Ctx {
        let plan = plan_ctx().await;
        let store = Arc::new(store::memory::MemoryStore::default());
        let (journal, _) = Journal::open(store, "payments", true).unwrap();
        journal.begin_run("apply").unwrap();
        Ctx::new(plan.cfg, plan.aws, Mode::Apply, Some(Arc::new(journal)), plan.account)
    }

    /// An intent left without outcome, as a killed run leaves it.
    fn open_intent(ctx: &Ctx, res: &Res, op: Op) -> u64 {
        let data = if op == Op::Update { json!({"id": "t-1"}) } else { Value::Null };
        ctx.journal()
            .unwrap()
            .intent(Intent {
                step: res.step.into(),
                op,
                kind: res.kind.into(),
                key: res.key.clone(),
                name: res.name.clone(),
                prev: Value::Null,
                data,
            })
            .unwrap()
    }

    fn record(ctx: &Ctx, seq: u64) -> journal::Record {
        ctx.journal().unwrap().records().into_iter().find(|r| r.seq == seq).unwrap()
    }

    #[tokio::test]
    async fn a_resource_found_by_its_tags_completes_the_intent_a_killed_run_left() {
        let ctx = apply_ctx().await;
        let res = Res::new("dynamodb", "dynamodb_table", "table/t", "t");
        let seq = open_intent(&ctx, &res, Op::Create);
        ctx.unchanged(&res, "t-1", Some("arn:t")).unwrap();
        let r = record(&ctx, seq);
        assert_eq!((r.id.as_deref(), r.arn.as_deref(), r.undone), (Some("t-1"), Some("arn:t"), false));
        assert_eq!(ctx.journal().unwrap().records().len(), 1, "completed, not adopted a second time");
    }

    #[tokio::test]
    async fn a_resource_the_journal_never_saw_is_adopted_only_when_it_is_ours() {
        let ctx = apply_ctx().await;
        let ours = Res::new("dynamodb", "dynamodb_table", "table/a", "a");
        ctx.unchanged(&ours, "a-1", None).unwrap();
        let adopted = ctx.journal().unwrap().latest(&ours.key).unwrap();
        assert_eq!((adopted.intent.op, adopted.id.as_deref()), (Op::Adopt, Some("a-1")));
        // Found by name alone, without the migration's tags: managed, never
        // adopted (destroy must not delete it).
        let theirs = Res::new("dynamodb", "dynamodb_table", "table/b", "b");
        ctx.existing(&theirs, "b-1", None, false).unwrap();
        assert!(ctx.journal().unwrap().latest(&theirs.key).is_none());
        // …but an intent a killed run left on it is completed.
        let other = Res::new("dynamodb", "dynamodb_table", "table/c", "c");
        let seq = open_intent(&ctx, &other, Op::Create);
        ctx.existing(&other, "c-1", None, false).unwrap();
        assert_eq!(record(&ctx, seq).id.as_deref(), Some("c-1"));
    }

    #[tokio::test]
    async fn a_create_still_to_make_supersedes_the_intent_that_never_took_effect() {
        let ctx = apply_ctx().await;
        let res = Res::new("dynamodb", "dynamodb_table", "table/t", "t");
        let seq = open_intent(&ctx, &res, Op::Create);
        let id = ctx.create(&res, "again", Value::Null, || async { Ok(Created::id("t-2")) }).await.unwrap();
        assert_eq!(id.as_deref(), Some("t-2"));
        assert!(record(&ctx, seq).undone, "the old intent is closed");
        let latest = ctx.journal().unwrap().latest(&res.key).unwrap();
        assert!(latest.seq > seq && latest.id.as_deref() == Some("t-2") && !latest.undone);
    }

    #[tokio::test]
    async fn settle_resolves_what_the_step_neither_found_nor_made() {
        let ctx = apply_ctx().await;
        let created = Res::new("dynamodb", "dynamodb_table", "table/gone", "gone");
        let updated = Res::new("dynamodb", "dynamodb_table", "table/t", "t");
        let elsewhere = Res::new("kms", "kms_key", "key", "k");
        let (c, u, e) = (
            open_intent(&ctx, &created, Op::Create),
            open_intent(&ctx, &updated, Op::Update),
            open_intent(&ctx, &elsewhere, Op::Create),
        );
        ctx.settle("dynamodb").unwrap();
        assert!(record(&ctx, c).undone, "a create that never happened is undone");
        let u = record(&ctx, u);
        assert_eq!((u.id.as_deref(), u.undone), (Some("t-1"), false), "an update that took effect is done");
        let e = record(&ctx, e);
        assert!(e.id.is_none() && !e.undone, "another step's intent is left to that step");
        // Nothing of the step is left open: the journal is consistent.
        assert!(ctx
            .journal()
            .unwrap()
            .records()
            .iter()
            .filter(|r| r.intent.step == "dynamodb")
            .all(|r| r.undone || r.id.is_some()));
    }
}

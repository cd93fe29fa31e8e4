//! The context every step runs in ([`Ctx`]): configuration, clients, mode,
//! bounded concurrency, what the run records (changes, notices, references,
//! step times).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::journal::Journal;
use super::*;
use crate::aws::Aws;
use crate::config::Config;

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
    pub(super) changes: Mutex<Vec<Change>>,
    pub(super) notices: Mutex<Vec<(String, String)>>,
    /// Dev identifiers found in copied values, per step.
    pub(super) references: Mutex<Vec<(String, crate::steps::common::references::Reference)>>,
    /// Every resource key (and `key#setting`) a desired state was recorded
    /// for in this run: a second one is refused (see [`Ctx::claim`]).
    pub(super) claimed: Mutex<std::collections::HashSet<String>>,
    /// When this context was made: waits and step times are measured from it.
    pub started: std::time::Instant,
    /// The waits and step times of this run, for its `run_end` entry.
    pub(super) observed: Mutex<estimate::Observation>,
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
        self.map_bounded(items, f).await.map(|_| ())
    }

    /// Like [`Ctx::each`], returning every item's result in item order.
    pub async fn map_bounded<'a, T, R, F, Fut>(
        &'a self,
        items: impl IntoIterator<Item = T>,
        f: F,
    ) -> Result<Vec<R>, StepError>
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
}

/// A context for the engine's unit tests: the reference configuration, SDK
/// clients that are built but never called, and, in apply mode, a fresh
/// in-memory journal with a run begun.
#[cfg(test)]
pub(crate) async fn test_ctx(mode: Mode) -> Ctx {
    let cfg = test_config();
    let aws = Aws::connect(&cfg).await;
    test_ctx_with(mode, cfg, aws)
}

/// The reference configuration without profiles.
#[cfg(test)]
pub(crate) fn test_config() -> Config {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations.toml")).unwrap();
    let mut cfg = Config::parse(std::path::Path::new("migrations.toml"), &text).unwrap();
    (cfg.source.profile, cfg.target.profile) = (None, None);
    cfg
}

/// [`test_ctx`] over given clients (a replay script's, [`crate::aws::replay`]).
#[cfg(test)]
pub(crate) fn test_ctx_with(mode: Mode, cfg: Config, aws: Aws) -> Ctx {
    let journal = (mode != Mode::Plan).then(|| {
        let store = Arc::new(super::store::memory::MemoryStore::default());
        let (journal, _) = Journal::open(store, "payments", true).unwrap();
        journal.begin_run("apply").unwrap();
        Arc::new(journal)
    });
    Ctx::new(cfg, aws, mode, journal, "123456789012".into())
}

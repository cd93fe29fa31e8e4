//! The step DAG: built once (unknown dependencies and cycles are errors at
//! build time) and executed with bounded concurrency. A failed step blocks its
//! dependents; independent steps run to completion.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};

use super::{DynStep, Outcome, StepError};

/// A DAG construction error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DagError {
    #[error("step {0:?} is defined twice")]
    Duplicate(String),
    #[error("step {step:?} depends on unknown step {dep:?}")]
    UnknownDependency { step: String, dep: String },
    #[error("the steps {0:?} form a dependency cycle")]
    Cycle(Vec<String>),
}

/// How one step ended in an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Done,
    Skipped(String),
    Failed(String),
    /// Not run because a dependency failed or was blocked.
    Blocked(String),
    /// Stopped part way by a signal: what it finished and what it left.
    Interrupted(String),
}

/// One step's result.
#[derive(Debug, Clone)]
pub struct Report {
    pub step: &'static str,
    pub status: Status,
    /// When it started (when it was given its status, if it never ran).
    pub started: Instant,
    pub elapsed: Duration,
}

/// Steps in a valid dependency order.
pub struct Dag {
    steps: Vec<Arc<dyn DynStep>>,
}

impl Dag {
    /// Validates the graph and orders it topologically (stable: among ready
    /// steps, declaration order wins).
    pub fn new(steps: Vec<Arc<dyn DynStep>>) -> Result<Self, DagError> {
        let ids: Vec<(&'static str, &'static [&'static str])> = steps.iter().map(|s| (s.id(), s.deps())).collect();
        let order = topo_order(&ids)?;
        let mut by_id: BTreeMap<&str, Arc<dyn DynStep>> = steps.iter().map(|s| (s.id(), s.clone())).collect();
        Ok(Dag { steps: order.into_iter().map(|id| by_id.remove(id).expect("ordered id exists")).collect() })
    }

    /// Steps in dependency order.
    pub fn steps(&self) -> &[Arc<dyn DynStep>] {
        &self.steps
    }

    pub fn get(&self, id: &str) -> Option<&Arc<dyn DynStep>> {
        self.steps.iter().find(|s| s.id() == id)
    }

    /// Runs `run` for every step, at most `parallelism` at once, each as soon
    /// as all its dependencies are done or skipped; `ended` hears of every
    /// step once it has its final status (done, skipped, failed, blocked).
    pub async fn execute<'a, F>(
        &'a self,
        parallelism: usize,
        run: F,
        ended: &(dyn Fn(&'static str) + Sync),
    ) -> Vec<Report>
    where
        F: Fn(&'a Arc<dyn DynStep>) -> BoxFuture<'a, Result<Outcome, StepError>>,
    {
        let parallelism = parallelism.max(1);
        let mut status: BTreeMap<&'static str, Status> = BTreeMap::new();
        let mut reports = Vec::new();
        let mut started: BTreeSet<&'static str> = BTreeSet::new();
        let mut running = FuturesUnordered::new();
        loop {
            // Block every step whose dependency failed or was blocked.
            let mut changed = true;
            while changed {
                changed = false;
                for s in &self.steps {
                    if started.contains(s.id()) {
                        continue;
                    }
                    if let Some(bad) = s.deps().iter().find(|d| {
                        matches!(status.get(*d), Some(Status::Failed(_) | Status::Blocked(_) | Status::Interrupted(_)))
                    }) {
                        let st = Status::Blocked(format!("dependency {bad} did not finish"));
                        tracing::warn!(step = s.id(), "blocked: dependency {bad} did not finish");
                        crate::progress::set(s.id(), crate::progress::State::Blocked, &format!("{bad} did not finish"));
                        status.insert(s.id(), st.clone());
                        ended(s.id());
                        reports.push(Report {
                            step: s.id(),
                            status: st,
                            started: Instant::now(),
                            elapsed: Duration::ZERO,
                        });
                        started.insert(s.id());
                        changed = true;
                    }
                }
            }
            for s in &self.steps {
                if running.len() >= parallelism {
                    break;
                }
                // A dependency the step may start beside (`early`) only has
                // to be running; it waits for that one's outputs itself.
                let ready = !started.contains(s.id())
                    && s.deps().iter().all(|d| {
                        matches!(status.get(d), Some(Status::Done | Status::Skipped(_)))
                            || (s.early().contains(d) && started.contains(d) && !status.contains_key(d))
                    });
                if ready && crate::signals::stopping() {
                    let st = Status::Blocked("not started: the run was asked to stop".into());
                    crate::progress::set(s.id(), crate::progress::State::Blocked, "interrupted");
                    status.insert(s.id(), st.clone());
                    ended(s.id());
                    reports.push(Report { step: s.id(), status: st, started: Instant::now(), elapsed: Duration::ZERO });
                    started.insert(s.id());
                } else if ready {
                    started.insert(s.id());
                    crate::progress::set(s.id(), crate::progress::State::Running, "");
                    let fut = run(s);
                    let id = s.id();
                    running.push(async move {
                        let t = Instant::now();
                        let r = crate::aws::in_lane(id.to_owned(), fut).await;
                        (id, r, t, t.elapsed())
                    });
                }
            }
            let Some((id, result, started_at, elapsed)) = running.next().await else {
                break;
            };
            let st = match result {
                Ok(Outcome::Done) => Status::Done,
                Ok(Outcome::Skipped(why)) => Status::Skipped(why),
                Err(e) if e.is_interrupted() => Status::Interrupted(e.to_string()),
                Err(e) => Status::Failed(e.to_string()),
            };
            let (state, note) = match &st {
                Status::Done => (crate::progress::State::Done, ""),
                Status::Skipped(why) => (crate::progress::State::Skipped, why.as_str()),
                Status::Interrupted(e) => (crate::progress::State::Blocked, e.as_str()),
                Status::Failed(e) | Status::Blocked(e) => (crate::progress::State::Failed, e.as_str()),
            };
            crate::progress::set(id, state, note);
            status.insert(id, st.clone());
            ended(id);
            reports.push(Report { step: id, status: st, started: started_at, elapsed });
        }
        reports
    }
}

/// Kahn's algorithm over `(id, deps)`; stable in declaration order.
fn topo_order(nodes: &[(&'static str, &'static [&'static str])]) -> Result<Vec<&'static str>, DagError> {
    let mut seen = BTreeSet::new();
    for (id, _) in nodes {
        if !seen.insert(*id) {
            return Err(DagError::Duplicate((*id).into()));
        }
    }
    for (id, deps) in nodes {
        if let Some(d) = deps.iter().find(|d| !seen.contains(*d)) {
            return Err(DagError::UnknownDependency { step: (*id).into(), dep: (*d).into() });
        }
    }
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::new();
    while order.len() < nodes.len() {
        let next = nodes.iter().find(|(id, deps)| !done.contains(id) && deps.iter().all(|d| done.contains(d)));
        match next {
            Some((id, _)) => {
                done.insert(id);
                order.push(*id);
            }
            None => {
                let rest = nodes.iter().filter(|(id, _)| !done.contains(id)).map(|(id, _)| (*id).to_owned()).collect();
                return Err(DagError::Cycle(rest));
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::journal::Record;
    use crate::engine::{About, Ctx, Declared, Step};
    use std::sync::Mutex;

    #[test]
    fn orders_dependencies_first_and_rejects_cycles() {
        let nodes: Vec<(&'static str, &'static [&'static str])> =
            vec![("lambda", &["iam", "network"]), ("iam", &["kms"]), ("network", &[]), ("kms", &[])];
        assert_eq!(topo_order(&nodes).unwrap(), vec!["network", "kms", "iam", "lambda"]);
        let cyclic: Vec<(&'static str, &'static [&'static str])> = vec![("a", &["b"]), ("b", &["a"]), ("c", &[])];
        assert_eq!(topo_order(&cyclic), Err(DagError::Cycle(vec!["a".into(), "b".into()])));
        let unknown: Vec<(&'static str, &'static [&'static str])> = vec![("a", &["zz"])];
        assert!(matches!(topo_order(&unknown), Err(DagError::UnknownDependency { .. })));
        let dup: Vec<(&'static str, &'static [&'static str])> = vec![("a", &[]), ("a", &[])];
        assert!(matches!(topo_order(&dup), Err(DagError::Duplicate(_))));
    }

    /// A step driven through `execute`'s closure; it may start beside its
    /// `early` dependencies.
    struct Fake {
        id: &'static str,
        deps: &'static [&'static str],
        early: &'static [&'static str],
    }

    impl Declared for Fake {
        fn about(&self) -> &'static About {
            &About::NONE
        }
        fn id(&self) -> &'static str {
            self.id
        }
        fn deps(&self) -> &'static [&'static str] {
            self.deps
        }
        fn early(&self) -> &'static [&'static str] {
            self.early
        }
    }

    impl Step for Fake {
        async fn run(&self, _ctx: &Ctx) -> Result<Outcome, StepError> {
            unreachable!("driven through execute's closure")
        }
        async fn undo(&self, _ctx: &Ctx, _r: &Record) -> Result<(), StepError> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn an_early_dependency_only_has_to_be_running_and_a_full_one_done() {
        let steps: Vec<Arc<dyn DynStep>> = vec![
            Arc::new(Fake { id: "network", deps: &[], early: &[] }),
            Arc::new(Fake { id: "database", deps: &["network"], early: &["network"] }),
            Arc::new(Fake { id: "lambda", deps: &["network"], early: &[] }),
        ];
        let dag = Dag::new(steps).unwrap();
        let log = Mutex::new(Vec::new());
        dag.execute(
            4,
            |s| {
                let (id, log) = (s.id(), &log);
                Box::pin(async move {
                    log.lock().unwrap().push(format!("{id} start"));
                    if id == "network" {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                    log.lock().unwrap().push(format!("{id} end"));
                    Ok(Outcome::Done)
                })
            },
            &|_| {},
        )
        .await;
        let log = log.into_inner().unwrap();
        let at = |e: &str| log.iter().position(|x| x == e).unwrap();
        assert!(at("database start") < at("network end"), "started beside network: {log:?}");
        assert!(at("lambda start") > at("network end"), "a full dependency waits: {log:?}");
    }

    #[tokio::test]
    async fn failure_blocks_dependents_and_independent_steps_finish() {
        let steps: Vec<Arc<dyn DynStep>> = vec![
            Arc::new(Fake { id: "kms", deps: &[], early: &[] }),
            Arc::new(Fake { id: "network", deps: &[], early: &[] }),
            Arc::new(Fake { id: "database", deps: &["kms", "network"], early: &[] }),
            Arc::new(Fake { id: "monitoring", deps: &["database"], early: &[] }),
            Arc::new(Fake { id: "params", deps: &["network"], early: &[] }),
        ];
        let dag = Dag::new(steps).unwrap();
        let log = Mutex::new(Vec::new());
        let reports = dag
            .execute(
                2,
                |s| {
                    let fail = s.id() == "kms";
                    let id = s.id();
                    let log = &log;
                    Box::pin(async move {
                        tokio::task::yield_now().await;
                        log.lock().unwrap().push(id);
                        if fail {
                            Err(StepError::Invalid("boom".into()))
                        } else {
                            Ok(Outcome::Done)
                        }
                    })
                },
                &|_| {},
            )
            .await;
        let by: BTreeMap<_, _> = reports.iter().map(|r| (r.step, r.status.clone())).collect();
        assert!(matches!(by["kms"], Status::Failed(_)));
        assert_eq!(by["network"], Status::Done);
        assert_eq!(by["params"], Status::Done);
        assert!(matches!(by["database"], Status::Blocked(_)));
        assert!(matches!(by["monitoring"], Status::Blocked(_)));
        let ran = log.lock().unwrap().clone();
        assert!(!ran.contains(&"database") && !ran.contains(&"monitoring"));
    }

    #[tokio::test]
    async fn respects_the_parallelism_bound() {
        let steps: Vec<Arc<dyn DynStep>> = ["a", "b", "c", "d", "e"]
            .into_iter()
            .map(|id| Arc::new(Fake { id, deps: &[], early: &[] }) as Arc<dyn DynStep>)
            .collect();
        let dag = Dag::new(steps).unwrap();
        let now = std::sync::atomic::AtomicUsize::new(0);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        use std::sync::atomic::Ordering::SeqCst;
        dag.execute(
            2,
            |_| {
                let (now, peak) = (&now, &peak);
                Box::pin(async move {
                    let n = now.fetch_add(1, SeqCst) + 1;
                    peak.fetch_max(n, SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    now.fetch_sub(1, SeqCst);
                    Ok(Outcome::Done)
                })
            },
            &|_| {},
        )
        .await;
        assert_eq!(peak.load(SeqCst), 2);
    }
}

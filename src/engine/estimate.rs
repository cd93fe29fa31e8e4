//! How long a run will take on AWS's clock, and why. A migration's duration
//! is set by a few long waits AWS imposes (the Aurora restore and its
//! instances, the release of Lambda's network interfaces); everything else
//! happens in their shadow or takes seconds. `plan` and `destroy --dry-run`
//! say how long and what they wait for:
//!
//! - each step declares the waits its creates (and its deletions) cost
//!   ([`crate::engine::About::waits`], [`crate::engine::About::undo_waits`]),
//!   and how several of one kind compose (one after another, side by side);
//! - a wait lasts AWS's typical time ([`Wait::typical`], with its source) or,
//!   once this journal has seen it, the median of the last five observed;
//! - each step's other work is its changes times a per-change time (typical,
//!   or observed for that step);
//! - the run lasts as long as its critical path through the DAG
//!   ([`critical_path`]).
//!
//! Every apply, rollback and destroy records its waits and step times in its
//! `run_end` journal entry ([`Observation`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A long wait AWS imposes, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// RestoreDBClusterFromSnapshot until the cluster is `available`.
    AuroraRestore,
    /// CreateDBInstance until the instance is `available`.
    AuroraInstance,
    /// DeleteDBInstance until the instance is gone.
    AuroraInstanceDeleted,
    /// DeleteDBCluster until the cluster is gone.
    AuroraClusterDeleted,
    /// CreateTable until the table is `ACTIVE`.
    TableActive,
    /// CreateFunction until the function is `Active`.
    FunctionActive,
    /// CreateVpcEndpoint (interface) until it is `available`.
    InterfaceEndpoint,
    /// DeleteVpcEndpoints until it is gone.
    InterfaceEndpointDeleted,
    /// CreateLoadBalancer until it is `active`.
    LoadBalancer,
    /// DeleteFunction until Lambda has released its network interfaces.
    InterfacesReleased,
}

impl Wait {
    pub const ALL: [Wait; 10] = [
        Wait::AuroraRestore,
        Wait::AuroraInstance,
        Wait::AuroraInstanceDeleted,
        Wait::AuroraClusterDeleted,
        Wait::TableActive,
        Wait::FunctionActive,
        Wait::InterfaceEndpoint,
        Wait::InterfaceEndpointDeleted,
        Wait::LoadBalancer,
        Wait::InterfacesReleased,
    ];

    /// AWS's typical time for it (before [`scale`]).
    pub fn typical(self) -> Duration {
        Duration::from_secs(match self {
            Wait::AuroraRestore => 600,
            Wait::AuroraInstance => 480,
            Wait::AuroraInstanceDeleted => 300,
            Wait::AuroraClusterDeleted => 120,
            Wait::TableActive => 20,
            Wait::FunctionActive => 10,
            Wait::InterfaceEndpoint => 90,
            Wait::InterfaceEndpointDeleted => 60,
            Wait::LoadBalancer => 180,
            Wait::InterfacesReleased => 1200,
        })
    }

    /// Where the typical figure comes from.
    pub fn source(self) -> &'static str {
        match self {
            Wait::AuroraRestore => "RDS API reference: a restore takes ~10–20 min; the low end",
            Wait::AuroraInstance => "RDS API reference: each Aurora instance ~5–10 min",
            Wait::AuroraInstanceDeleted | Wait::AuroraClusterDeleted => {
                "no AWS figure; minutes as commonly observed (terraform-provider-aws waits for it)"
            }
            Wait::TableActive => "DynamoDB: CREATING typically lasts seconds to a minute for an empty table",
            Wait::FunctionActive => "Lambda: State=Pending after CreateFunction (function_active_v2 waiter)",
            Wait::InterfaceEndpoint | Wait::InterfaceEndpointDeleted => {
                "VPC: interface endpoints are pending/deleting for a minute or two"
            }
            Wait::LoadBalancer => "ELB: a new ALB is provisioning for a few minutes",
            Wait::InterfacesReleased => {
                "Lambda keeps a deleted function's VPC interfaces 20–45 min (terraform-provider-aws PR 10347, issue 32130); the low end"
            }
        }
    }

    /// In words, as the critical path names it.
    pub fn words(self) -> &'static str {
        match self {
            Wait::AuroraRestore => "restore",
            Wait::AuroraInstance => "instances",
            Wait::AuroraInstanceDeleted => "instances deleted",
            Wait::AuroraClusterDeleted => "cluster deleted",
            Wait::TableActive => "tables ACTIVE",
            Wait::FunctionActive => "functions Active",
            Wait::InterfaceEndpoint => "interface endpoints available",
            Wait::InterfaceEndpointDeleted => "interface endpoints deleted",
            Wait::LoadBalancer => "load balancer active",
            Wait::InterfacesReleased => "Lambda's network interfaces released",
        }
    }
}

/// How several waits of one kind within a step compose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compose {
    /// One after another (tables created one at a time).
    Chain,
    /// Side by side (the instances, once the cluster is available).
    Side,
}

/// One wait a step declares: the journal kind of the resource whose create
/// (or deletion) costs it, the wait, and how several compose. A step's
/// declared waits happen in the order declared.
pub type WaitSpec = (&'static str, Wait, Compose);

/// The factor on typical times (`PAYMIG_TYPICAL_SCALE`, 1 unless set): the
/// AWS-timed benchmark runs AWS's durations times a factor, and so must the
/// estimate it checks.
pub fn scale() -> f64 {
    std::env::var("PAYMIG_TYPICAL_SCALE").ok().and_then(|v| v.parse().ok()).filter(|f: &f64| *f > 0.0).unwrap_or(1.0)
}

/// A change's typical time besides waits (its calls), and how many changes
/// of a step go side by side: ~2 calls of ~100 ms each, four at a time.
const TYPICAL_PER_CHANGE: f64 = 0.25;
const TYPICAL_SIDE_BY_SIDE: f64 = 4.0;

/// What a run saw, in its `run_end` entry: the waits and each step's time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    #[serde(default)]
    pub waits: Vec<Observed>,
    #[serde(default)]
    pub steps: Vec<StepTime>,
}

impl Observation {
    pub fn is_empty(&self) -> bool {
        self.waits.is_empty() && self.steps.is_empty()
    }
}

/// One wait as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub step: String,
    pub wait: Wait,
    pub resource: String,
    /// Seconds after the run's start that it began.
    pub at_s: f64,
    pub seconds: f64,
}

/// One step's time in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTime {
    pub step: String,
    /// Seconds after the run's start that it began.
    pub start_s: f64,
    pub seconds: f64,
    pub status: String,
    /// Resources it created, updated or deleted.
    pub changes: usize,
    /// Of its time, how long it waited on AWS (overlapping waits once).
    pub waited_s: f64,
}

/// The union of intervals' length: the time at least one wait ran.
pub fn union_seconds(mut spans: Vec<(f64, f64)>) -> f64 {
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut total, mut end) = (0.0, f64::MIN);
    for (start, seconds) in spans {
        let stop = start + seconds;
        if stop > end {
            total += stop - start.max(end);
            end = stop;
        }
    }
    total
}

/// What earlier runs of this journal saw: the waits by kind and each step's
/// time per change, newest last, for `command` (apply or destroy/rollback).
#[derive(Debug, Default, Clone)]
pub struct History {
    waits: BTreeMap<Wait, Vec<f64>>,
    per_change: BTreeMap<String, Vec<f64>>,
}

/// How many observations a median is taken over.
const RECENT: usize = 5;

impl History {
    /// From the observations of earlier runs (oldest first).
    pub fn of<'a>(observations: impl IntoIterator<Item = &'a Observation>) -> History {
        let mut h = History::default();
        for o in observations {
            for w in &o.waits {
                h.waits.entry(w.wait).or_default().push(w.seconds);
            }
            for s in o.steps.iter().filter(|s| s.changes > 0 && s.status == "done") {
                let work = (s.seconds - s.waited_s).max(0.0) / s.changes as f64;
                h.per_change.entry(s.step.clone()).or_default().push(work);
            }
        }
        h
    }

    fn median(values: Option<&Vec<f64>>) -> Option<(f64, usize)> {
        let v = values?;
        let mut recent: Vec<f64> = v.iter().rev().take(RECENT).copied().collect();
        if recent.is_empty() {
            return None;
        }
        recent.sort_by(f64::total_cmp);
        let n = recent.len();
        let m = if n % 2 == 1 { recent[n / 2] } else { (recent[n / 2 - 1] + recent[n / 2]) / 2.0 };
        Some((m, n))
    }

    /// A wait's expected seconds and on what it rests.
    pub fn wait(&self, w: Wait) -> (f64, Basis) {
        match Self::median(self.waits.get(&w)) {
            Some((m, n)) => (m, Basis::Observed(n)),
            None => (w.typical().as_secs_f64() * scale(), Basis::Typical),
        }
    }

    /// A step's work besides waits for `changes` changes.
    pub fn work(&self, step: &str, changes: usize) -> f64 {
        match Self::median(self.per_change.get(step)) {
            Some((per, _)) => per * changes as f64,
            None => (changes as f64 / TYPICAL_SIDE_BY_SIDE).ceil() * TYPICAL_PER_CHANGE,
        }
    }
}

/// What a figure rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "basis", content = "runs")]
pub enum Basis {
    /// AWS's typical time ([`Wait::typical`]).
    Typical,
    /// The median of this many earlier runs here.
    Observed(usize),
}

/// One step of an estimate: its expected time and the waits in it.
#[derive(Debug, Clone, Serialize)]
pub struct StepEstimate {
    pub step: &'static str,
    pub seconds: f64,
    pub waits: Vec<WaitEstimate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WaitEstimate {
    pub wait: Wait,
    pub seconds: f64,
    #[serde(flatten)]
    pub basis: Basis,
}

/// A step's expected time: its declared waits for the resources it creates
/// (or deletes; `counts`: how many per kind), in order, then its other work
/// for `changes` changes.
pub fn step_estimate(
    step: &'static str,
    specs: &[WaitSpec],
    counts: &BTreeMap<String, usize>,
    changes: usize,
    history: &History,
) -> StepEstimate {
    let mut waits = Vec::new();
    let mut seconds = 0.0;
    for (kind, wait, compose) in specs {
        let n = counts.get(*kind).copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        let (each, basis) = history.wait(*wait);
        let total = match compose {
            Compose::Chain => each * n as f64,
            Compose::Side => each,
        };
        seconds += total;
        waits.push(WaitEstimate { wait: *wait, seconds: total, basis });
    }
    seconds += history.work(step, changes);
    StepEstimate { step, seconds, waits }
}

/// One node of the critical-path computation.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: &'static str,
    /// Nodes that must finish before it starts.
    pub after: Vec<&'static str>,
    /// Of `after`, those it starts beside (assumed halfway through them).
    pub early: Vec<&'static str>,
    pub seconds: f64,
}

/// The run's expected length and its critical path (first to last): each
/// node starts when everything it follows has finished (an early one when
/// halfway through), and the path follows, from the node that finishes
/// last, whichever node held each one back.
pub fn critical_path(nodes: &[Node]) -> (f64, Vec<&'static str>) {
    let mut finish: BTreeMap<&'static str, (f64, Option<&'static str>)> = BTreeMap::new();
    let mut start: BTreeMap<&'static str, f64> = BTreeMap::new();
    // Nodes come in any order; resolve until every one is placed (a node
    // following an unknown node ignores it).
    let known: Vec<&'static str> = nodes.iter().map(|n| n.id).collect();
    while finish.len() < nodes.len() {
        let before = finish.len();
        for n in nodes {
            if finish.contains_key(n.id) {
                continue;
            }
            let deps: Vec<&'static str> = n.after.iter().copied().filter(|d| known.contains(d)).collect();
            if !deps.iter().all(|d| finish.contains_key(d)) {
                continue;
            }
            let mut begin = (0.0, None);
            for d in deps {
                let at = if n.early.contains(&d) {
                    start[d] + nodes.iter().find(|x| x.id == d).map_or(0.0, |x| x.seconds) / 2.0
                } else {
                    finish[d].0
                };
                if at > begin.0 {
                    begin = (at, Some(d));
                }
            }
            start.insert(n.id, begin.0);
            finish.insert(n.id, (begin.0 + n.seconds, begin.1));
        }
        if finish.len() == before {
            break; // a cycle: the DAG refuses those, so never here
        }
    }
    let Some((&last, &(total, _))) = finish.iter().max_by(|a, b| a.1 .0.total_cmp(&b.1 .0)) else {
        return (0.0, Vec::new());
    };
    let mut path = vec![last];
    let mut at = finish[last].1;
    while let Some(id) = at {
        path.push(id);
        at = finish[id].1;
    }
    path.reverse();
    (total, path)
}

/// What earlier runs of `commands` in this journal observed, oldest first.
pub fn history(journal: Option<&super::journal::Journal>, commands: &[&str]) -> History {
    let runs = journal.map(|j| j.runs()).unwrap_or_default();
    History::of(runs.iter().filter(|r| commands.contains(&r.command.as_str())).filter_map(|r| r.observed.as_ref()))
}

/// An estimate: the expected time, the critical path with each step's
/// time and waits.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub seconds: f64,
    pub critical_path: Vec<StepEstimate>,
    /// Every step's estimate, on the path or in its shadow.
    pub steps: Vec<StepEstimate>,
}

impl Estimate {
    /// From each step's estimate and the nodes' order constraints.
    pub fn of(steps: Vec<StepEstimate>, nodes: &[Node]) -> Estimate {
        let (seconds, path) = critical_path(nodes);
        // Steps with nothing to do are on no path worth naming.
        let critical_path =
            path.iter().filter_map(|id| steps.iter().find(|s| s.step == *id && s.seconds > 0.0).cloned()).collect();
        Estimate { seconds, critical_path, steps }
    }

    /// `expected duration ≈ 18 min on AWS's clock (critical path: network →
    /// database (restore ≈ 10 min, instances ≈ 8 min) → monitoring;
    /// everything else in its shadow)`.
    pub fn line(&self, what: &str) -> String {
        let path: Vec<String> = self
            .critical_path
            .iter()
            .map(|s| {
                let waits: Vec<String> = s
                    .waits
                    .iter()
                    .map(|w| {
                        let basis = match w.basis {
                            Basis::Typical => String::new(),
                            Basis::Observed(n) => format!(" (observed here, median of {n})"),
                        };
                        format!("{} ≈ {}{basis}", w.wait.words(), human(w.seconds))
                    })
                    .collect();
                if waits.is_empty() {
                    s.step.to_owned()
                } else {
                    format!("{} ({})", s.step, waits.join(", "))
                }
            })
            .collect();
        if path.is_empty() {
            return format!("{what}: nothing to change, nothing to wait for");
        }
        let shadow = if self.critical_path.iter().all(|s| s.waits.is_empty()) {
            "no long wait"
        } else {
            "everything else in its shadow"
        };
        format!("{what} ≈ {} on AWS's clock (critical path: {}; {shadow})", human(self.seconds), path.join(" → "))
    }
}

/// `2 h 5 min`, `19 min`, `4 min 30 s`, `45 s`.
pub fn human(seconds: f64) -> String {
    let s = seconds.round().max(0.0) as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=599 if s % 60 != 0 => format!("{} min {} s", s / 60, s % 60),
        60..=3599 => format!("{} min", (s + 30) / 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600 + 30) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &'static str, after: &[&'static str], early: &[&'static str], seconds: f64) -> Node {
        Node { id, after: after.to_vec(), early: early.to_vec(), seconds }
    }

    #[test]
    fn the_critical_path_is_what_holds_the_last_step_back() {
        // kms 2 s, network 10 s; database starts halfway through network
        // (early) and after kms, takes 600 s; lambda after network (20 s);
        // monitoring after database and lambda (5 s).
        let nodes = vec![
            node("monitoring", &["database", "lambda"], &[], 5.0),
            node("kms", &[], &[], 2.0),
            node("network", &[], &[], 10.0),
            node("database", &["kms", "network"], &["network"], 600.0),
            node("lambda", &["network"], &[], 20.0),
        ];
        let (total, path) = critical_path(&nodes);
        assert_eq!(total, 5.0 + 600.0 + 5.0, "database starts at 5 s (halfway through network)");
        assert_eq!(path, vec!["network", "database", "monitoring"]);
        // Without the early start it would wait for all of network.
        let mut strict = nodes.clone();
        strict[3].early.clear();
        assert_eq!(critical_path(&strict).0, 10.0 + 600.0 + 5.0);
        assert_eq!(critical_path(&[]), (0.0, vec![]));
    }

    #[test]
    fn waits_compose_in_order_and_observed_figures_replace_typical_ones() {
        let specs: [WaitSpec; 2] =
            [("db_cluster", Wait::AuroraRestore, Compose::Chain), ("db_instance", Wait::AuroraInstance, Compose::Side)];
        let counts = BTreeMap::from([("db_cluster".to_owned(), 1), ("db_instance".to_owned(), 3)]);
        let typical = step_estimate("database", &specs, &counts, 4, &History::default());
        let restore = Wait::AuroraRestore.typical().as_secs_f64();
        let instance = Wait::AuroraInstance.typical().as_secs_f64();
        // Instances side by side: one instance's time, however many.
        assert_eq!(typical.seconds, restore + instance + 0.25, "4 changes: one round of four side by side");
        assert!(typical.waits.iter().all(|w| w.basis == Basis::Typical));
        let seen = |seconds: f64| Observation {
            waits: vec![Observed {
                step: "database".into(),
                wait: Wait::AuroraRestore,
                resource: "c".into(),
                at_s: 1.0,
                seconds,
            }],
            steps: vec![StepTime {
                step: "database".into(),
                start_s: 0.0,
                seconds: seconds + 10.0,
                status: "done".into(),
                changes: 4,
                waited_s: seconds,
            }],
        };
        let runs: Vec<Observation> = [700.0, 900.0, 800.0].into_iter().map(seen).collect();
        let observed = step_estimate("database", &specs, &counts, 4, &History::of(&runs));
        let w = &observed.waits[0];
        assert_eq!((w.seconds, w.basis), (800.0, Basis::Observed(3)), "the median of the runs seen");
        assert_eq!(observed.seconds, 800.0 + instance + 10.0, "10 s of other work for 4 changes, as observed");
    }

    #[test]
    fn overlapping_waits_count_once_and_durations_read_as_people_say_them() {
        assert_eq!(union_seconds(vec![(0.0, 10.0), (5.0, 10.0), (20.0, 1.0)]), 16.0);
        assert_eq!(human(45.0), "45 s");
        assert_eq!(human(270.0), "4 min 30 s");
        assert_eq!(human(1140.0), "19 min");
        assert_eq!(human(7500.0), "2 h 5 min");
    }
}

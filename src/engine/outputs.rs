//! What steps hand each other ([`Outputs`]), how a step ended
//! ([`Outcome`]) and the resource a step manages ([`Res`]).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Mutex;

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

/// Whether a resource found by name is paymig's to manage and delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// It carries the migration's tags: adopted if the journal lacks it.
    Ours,
    /// Nothing on it says paymig made it: managed only if the journal knows
    /// it, never adopted (destroy must not delete what paymig did not
    /// create).
    Unproven,
}

impl Ownership {
    /// [`Ownership::Ours`] when the resource carries the migration's tags.
    pub fn of(tagged: bool) -> Self {
        if tagged {
            Ownership::Ours
        } else {
            Ownership::Unproven
        }
    }
}

//! The step contract, in three parts:
//!
//! - [`Declared`]: what a step says about itself (id, dependencies, the kinds
//!   it records, the IAM actions, ARNs and narrow grants it needs). `plan`,
//!   the DAG and `iam-policy` read these; nothing here talks to AWS.
//! - [`Step`]: what a step does, written as plain `async fn`s in each file
//!   under `src/steps/`.
//! - [`DynStep`]: the object-safe form the engine schedules. Every `Step` is
//!   one (a blanket impl), and that impl is where each step's run and undo get
//!   their `tracing` span, so no step can forget it.

use std::future::Future;

use futures::future::BoxFuture;
use serde_json::Value;
use tracing::Instrument;

use super::journal::Record;
use super::{Ctx, Outcome, StepError};
use crate::config::Config;

/// The ARNs a step's actions of one service reach, for a configuration and
/// the prod account: `(service, function)`.
pub type Scope = (&'static str, fn(&Config, &str) -> Vec<String>);

/// What a step declares about itself, as data (one `static` per step).
#[derive(Debug)]
pub struct About {
    /// Stable id (journal `step`, DAG node).
    pub id: &'static str,
    /// Steps that must finish first.
    pub deps: &'static [&'static str],
    /// Of `deps`, those the step may start beside once they are running:
    /// it waits for what it needs from them itself ([`super::Outputs::wait`])
    /// rather than for the rest of their work. Undo still follows `deps`.
    pub early: &'static [&'static str],
    /// Of `deps`, those whose undo need not wait for this step's undo: AWS
    /// deletes them while this step's resources still name them (a
    /// function still registered as a load balancer's target, a table
    /// named in a role's policy). Undo follows `deps` otherwise.
    pub undo_apart: &'static [&'static str],
    /// The resource kinds it records, in the order a reader expects them
    /// (what others depend on first): `plan` lists a step's resources so.
    pub kinds: &'static [&'static str],
    /// IAM actions (`service:Operation`) the step calls on the target side.
    pub actions: &'static [&'static str],
    /// IAM actions the step calls on the source (dev) side: reads only.
    pub source_actions: &'static [&'static str],
    /// The ARNs its actions of each service touch (`paymig iam-policy`
    /// scopes them so; actions AWS grants only on `*` aside). A service not
    /// listed: the step has nothing of it to act on.
    pub scopes: &'static [Scope],
    /// What destroy's sweep looks at, in words ("" when the step sweeps
    /// nothing): the dry run and the prompt say exactly this.
    pub sweeps: &'static str,
    /// The long waits AWS imposes on the step's creates, in the order they
    /// happen ([`super::estimate`]): what `plan`'s expected duration is made of.
    pub waits: &'static [super::estimate::WaitSpec],
    /// Likewise for undoing its creates (`destroy --dry-run`'s estimate).
    pub undo_waits: &'static [super::estimate::WaitSpec],
}

impl About {
    /// Nothing declared: the base of a step's `About` (`..About::NONE`).
    pub const NONE: About = About {
        id: "",
        deps: &[],
        early: &[],
        undo_apart: &[],
        kinds: &[],
        actions: &[],
        source_actions: &[],
        scopes: &[],
        sweeps: "",
        waits: &[],
        undo_waits: &[],
    };
}

/// What a step declares about itself: its [`About`], and what depends on
/// the configuration.
pub trait Declared: Send + Sync {
    fn about(&self) -> &'static About;
    fn id(&self) -> &'static str {
        self.about().id
    }
    fn deps(&self) -> &'static [&'static str] {
        self.about().deps
    }
    fn early(&self) -> &'static [&'static str] {
        self.about().early
    }
    fn undo_apart(&self) -> &'static [&'static str] {
        self.about().undo_apart
    }
    fn kinds(&self) -> &'static [&'static str] {
        self.about().kinds
    }
    fn actions(&self) -> &'static [&'static str] {
        self.about().actions
    }
    fn source_actions(&self) -> &'static [&'static str] {
        self.about().source_actions
    }
    fn sweeps(&self) -> &'static str {
        self.about().sweeps
    }
    fn waits(&self) -> &'static [super::estimate::WaitSpec] {
        self.about().waits
    }
    fn undo_waits(&self) -> &'static [super::estimate::WaitSpec] {
        self.about().undo_waits
    }
    /// The ARNs the step's actions of `service` touch in `account`
    /// ([`About::scopes`]); empty for a service it declares none of.
    fn resources(&self, cfg: &Config, account: &str, service: &str) -> Vec<String> {
        self.about().scopes.iter().find(|(s, _)| *s == service).map(|(_, arns)| arns(cfg, account)).unwrap_or_default()
    }
    /// How many sibling creates (one kind, distinct keys) the step reverses
    /// in one call of [`Step::undo_creates`]; 1 when the service has no
    /// batch delete.
    fn undo_batch(&self) -> usize {
        1
    }
    /// A grant narrower than "the service's ARNs" for one of its actions (a
    /// role passed to one service only, a service-linked role for one
    /// service): `iam-policy` makes it a statement of its own.
    fn grant(&self, _cfg: &Config, _account: &str, _action: &str) -> Option<Grant> {
        None
    }
}

/// One AWS service step of the migration.
///
/// Each step lives in its own file under `src/steps/`. `run` observes prod
/// (and reads dev through the read-only source clients), then creates or
/// updates through [`Ctx::create`]/[`Ctx::update`]; the same code serves
/// `plan` and `apply`. `undo` reverses one journal record; `sweep` finds what
/// is tagged for the migration but missing from the journal.
pub trait Step: Declared + 'static {
    /// Reads that must succeed before anything changes (dev resources exist,
    /// names are free, …): `Invalid` for what the user must fix, `Aws` for a
    /// read that failed (a runtime failure, exit 1).
    fn preflight(&self, _ctx: &Ctx) -> impl Future<Output = Vec<StepError>> + Send {
        async { Vec::new() }
    }
    /// Observes and converges (plan mode: only records the changes).
    fn run(&self, ctx: &Ctx) -> impl Future<Output = Result<Outcome, StepError>> + Send;
    /// Reverses one journal record of this step. Idempotent: a resource that
    /// is already gone counts as undone.
    fn undo(&self, ctx: &Ctx, record: &Record) -> impl Future<Output = Result<(), StepError>> + Send;
    /// Reverses several sibling creates at once (at most
    /// [`Declared::undo_batch`]); one result per record, in order.
    /// Idempotent like `undo`. The default undoes them one by one.
    fn undo_creates(&self, ctx: &Ctx, records: &[&Record]) -> impl Future<Output = Vec<Result<(), StepError>>> + Send {
        async move {
            let mut out = Vec::with_capacity(records.len());
            for r in records {
                out.push(Step::undo(self, ctx, r).await);
            }
            out
        }
    }
    /// Deletes what is still tagged for this migration after the journal has
    /// been replayed, where [`About::sweeps`] says it looks; returns each
    /// resource removed. `look` only: finds them, deletes nothing (the dry
    /// run and the confirmation prompt show them).
    fn sweep(&self, _ctx: &Ctx, _look: bool) -> impl Future<Output = Result<Vec<Swept>, StepError>> + Send {
        async { Ok(Vec::new()) }
    }
    /// What deleting these resources of the step (journal kind, name)
    /// would delete with them that is data (a table's items, a bucket's
    /// objects, a database), in words; read only.
    fn at_risk(
        &self,
        _ctx: &Ctx,
        _resources: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<AtRisk>, StepError>> + Send {
        async { Ok(Vec::new()) }
    }
    /// Read only: publishes, from what already exists, the values other
    /// steps read ([`super::Outputs`]). `validate` runs the steps side by
    /// side, so it calls this for every step first, in DAG order.
    fn observe(&self, _ctx: &Ctx) -> impl Future<Output = Result<(), StepError>> + Send {
        async { Ok(()) }
    }
    /// The step's dev-vs-prod comparisons and compliance checks for
    /// `validate` (read only: plan mode).
    fn validate(&self, _ctx: &Ctx) -> impl Future<Output = Result<crate::report::Findings, StepError>> + Send {
        async { Ok(crate::report::Findings::default()) }
    }
}

/// Writes [`Step`] methods that are the step module's own functions of the
/// same shape, as most steps' are: `run => converge` is
/// `async fn run(&self, ctx: &Ctx) -> Result<Outcome, StepError>` calling
/// `converge(ctx)`; likewise `preflight`, `undo` (`(ctx, record)`),
/// `undo_creates` (`(ctx, records)`), `sweep` and `validate`.
#[macro_export]
macro_rules! step_functions {
    ($($method:ident => $f:path),* $(,)?) => { $( $crate::step_functions!(@ $method $f); )* };
    (@ preflight $f:path) => {
        async fn preflight(&self, ctx: &$crate::engine::Ctx) -> Vec<$crate::engine::StepError> {
            $f(ctx).await
        }
    };
    (@ run $f:path) => {
        async fn run(&self, ctx: &$crate::engine::Ctx) -> Result<$crate::engine::Outcome, $crate::engine::StepError> {
            $f(ctx).await
        }
    };
    (@ undo $f:path) => {
        async fn undo(
            &self,
            ctx: &$crate::engine::Ctx,
            record: &$crate::engine::journal::Record,
        ) -> Result<(), $crate::engine::StepError> {
            $f(ctx, record).await
        }
    };
    (@ undo_creates $f:path) => {
        async fn undo_creates(
            &self,
            ctx: &$crate::engine::Ctx,
            records: &[&$crate::engine::journal::Record],
        ) -> Vec<Result<(), $crate::engine::StepError>> {
            $f(ctx, records).await
        }
    };
    (@ sweep $f:path) => {
        async fn sweep(
            &self,
            ctx: &$crate::engine::Ctx,
            look: bool,
        ) -> Result<Vec<$crate::engine::step::Swept>, $crate::engine::StepError> {
            $f(ctx, look).await
        }
    };
    (@ at_risk $f:path) => {
        async fn at_risk(
            &self,
            ctx: &$crate::engine::Ctx,
            resources: &[(String, String)],
        ) -> Result<Vec<$crate::engine::step::AtRisk>, $crate::engine::StepError> {
            $f(ctx, resources).await
        }
    };
    (@ validate $f:path) => {
        async fn validate(
            &self,
            ctx: &$crate::engine::Ctx,
        ) -> Result<$crate::report::Findings, $crate::engine::StepError> {
            $f(ctx).await
        }
    };
}

/// A [`Step`] as the engine holds it (`Arc<dyn DynStep>`): the same methods,
/// boxed, with the spans put on.
pub trait DynStep: Declared {
    fn preflight<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Vec<StepError>>;
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Outcome, StepError>>;
    fn undo<'a>(&'a self, ctx: &'a Ctx, record: &'a Record) -> BoxFuture<'a, Result<(), StepError>>;
    fn undo_creates<'a>(&'a self, ctx: &'a Ctx, records: &'a [&'a Record])
        -> BoxFuture<'a, Vec<Result<(), StepError>>>;
    fn sweep<'a>(&'a self, ctx: &'a Ctx, look: bool) -> BoxFuture<'a, Result<Vec<Swept>, StepError>>;
    fn at_risk<'a>(
        &'a self,
        ctx: &'a Ctx,
        resources: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<Vec<AtRisk>, StepError>>;
    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), StepError>>;
    fn validate<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<crate::report::Findings, StepError>>;
}

impl<T: Step> DynStep for T {
    fn preflight<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Vec<StepError>> {
        Box::pin(Step::preflight(self, ctx))
    }

    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(Step::run(self, ctx).instrument(tracing::info_span!("step", step = self.id())))
    }

    fn undo<'a>(&'a self, ctx: &'a Ctx, record: &'a Record) -> BoxFuture<'a, Result<(), StepError>> {
        let span = tracing::info_span!("undo", step = self.id(), key = %record.intent.key);
        Box::pin(Step::undo(self, ctx, record).instrument(span))
    }

    fn undo_creates<'a>(
        &'a self,
        ctx: &'a Ctx,
        records: &'a [&'a Record],
    ) -> BoxFuture<'a, Vec<Result<(), StepError>>> {
        let span = tracing::info_span!("undo", step = self.id(), records = records.len());
        Box::pin(Step::undo_creates(self, ctx, records).instrument(span))
    }

    fn sweep<'a>(&'a self, ctx: &'a Ctx, look: bool) -> BoxFuture<'a, Result<Vec<Swept>, StepError>> {
        Box::pin(Step::sweep(self, ctx, look).instrument(tracing::info_span!("sweep", step = self.id(), look)))
    }

    fn at_risk<'a>(
        &'a self,
        ctx: &'a Ctx,
        resources: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<Vec<AtRisk>, StepError>> {
        Box::pin(Step::at_risk(self, ctx, resources))
    }

    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(Step::observe(self, ctx))
    }

    fn validate<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<crate::report::Findings, StepError>> {
        Box::pin(Step::validate(self, ctx))
    }
}

/// A resource destroy's sweep found tagged for the migration but not in the
/// journal (and removed, unless it only looked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    /// The journal's kind for it (`dynamodb_table`, `vpc`, …).
    pub kind: &'static str,
    /// Its name, or its id where it has no name (a VPC, a key).
    pub name: String,
    /// What else an operator should know (`deletion scheduled in 7 days`).
    pub note: Option<String>,
}

impl Swept {
    pub fn new(kind: &'static str, name: impl Into<String>) -> Swept {
        Swept { kind, name: name.into(), note: None }
    }

    pub fn noted(mut self, note: impl Into<String>) -> Swept {
        self.note = Some(note.into());
        self
    }
}

impl std::fmt::Display for Swept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.replace('_', " "), self.name)?;
        if let Some(note) = &self.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

/// Data a deletion would take with it: `sessions-prod: DynamoDB table,
/// 1,204 items`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AtRisk {
    pub kind: String,
    pub name: String,
    /// What it is and what is at stake, in words (`DynamoDB table, 1,204
    /// items`, `Aurora cluster, restored 2 days ago, 2 instances`).
    pub holds: String,
}

impl std::fmt::Display for AtRisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.holds)
    }
}

/// `1204` as `1,204`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in the largest whole unit: `2 days`, `5 hours`, `12 minutes`.
pub fn age(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        0..=119 => (s, "second"),
        120..=7_199 => (s / 60, "minute"),
        7_200..=172_799 => (s / 3_600, "hour"),
        _ => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// One action's own IAM statement, declared by the step that calls it
/// ([`Declared::grant`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// The statement id's tail (after the step's).
    pub sid: &'static str,
    pub resources: Vec<String>,
    pub condition: Option<Value>,
}

impl Grant {
    /// `iam:PassRole` on `roles`, to `service` only.
    pub fn passed_to(sid: &'static str, roles: Vec<String>, service: &str) -> Grant {
        Grant {
            sid,
            resources: roles,
            condition: Some(serde_json::json!({"StringEquals": {"iam:PassedToService": service}})),
        }
    }

    /// `iam:CreateServiceLinkedRole` for `service`'s role only.
    pub fn service_linked_role(account: &str, service: &str) -> Grant {
        Grant {
            sid: "ServiceLinkedRole",
            resources: vec![format!("arn:aws:iam::{account}:role/aws-service-role/{service}/*")],
            condition: Some(serde_json::json!({"StringEquals": {"iam:AWSServiceName": service}})),
        }
    }
}

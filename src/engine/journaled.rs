//! The journaled operations: [`Ctx::create`] and [`Ctx::update`] journal
//! an intent before the call and the outcome after; adopting and claiming a
//! resource, client tokens, superseding a replaced one. Their crash-safety
//! tests are here.

use std::future::Future;

use serde::Serialize;
use serde_json::Value;

use super::journal::{Intent, Journal, Op};
use super::*;

impl Ctx {
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

    /// Records that `res` exists, found by name: it is paymig's only if it is
    /// [`Ownership::Ours`] (it carries the migration's tags) or the journal
    /// already knows it. A resource that predates paymig is never adopted —
    /// destroy must not delete what paymig did not create — but an intent a
    /// killed run left open on it is completed.
    pub fn existing(&self, res: &Res, id: &str, arn: Option<&str>, owner: Ownership) -> Result<(), StepError> {
        if owner == Ownership::Ours {
            return self.adopt(res, id, arn);
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

    /// Adopts `res`, found as desired and carrying the migration's tags (so
    /// it is paymig's): in apply mode, makes sure the journal knows it —
    /// completes an intent a killed run left open, or journals an adoption of
    /// a resource it has never seen (so destroy covers it).
    pub fn adopt(&self, res: &Res, id: &str, arn: Option<&str>) -> Result<(), StepError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn plan_ctx() -> Ctx {
        crate::engine::test_ctx(Mode::Plan).await
    }

    #[tokio::test]
    async fn one_resource_gets_one_desired_state_per_run() {
        let ctx = plan_ctx().await;
        let alarm = Res::new("monitoring", "alarm", "alarm/x-prod", "x-prod");
        let create = || async { Ok(Created::id("x-prod")) };
        assert!(ctx.create(&alarm, "first", Value::Null, create).await.unwrap().is_none(), "plan mode: no call");
        let second = ctx.create(&alarm, "second", Value::Null, create).await.unwrap_err();
        assert!(matches!(&second, StepError::Conflict(k) if k == "monitoring/alarm/x-prod"), "{second}");
        assert!(matches!(ctx.adopt(&alarm, "x-prod", None), Err(StepError::Conflict(_))));
        assert_eq!(ctx.changes().len(), 1, "the refused state is not recorded");

        // Observing a resource, then changing two of its settings, is one
        // desired state; the same setting twice is not.
        let table = Res::new("dynamodb", "dynamodb_table", "table/t", "t");
        ctx.existing(&table, "t", None, crate::engine::Ownership::Unproven).unwrap();
        ctx.update(&table, "t", "ttl", Value::Null, || async { Ok(()) }).await.unwrap();
        ctx.update(&table, "t", "pitr", Value::Null, || async { Ok(()) }).await.unwrap();
        let again = ctx.update(&table, "t", "ttl", Value::Null, || async { Ok(()) }).await.unwrap_err();
        assert!(matches!(&again, StepError::Conflict(k) if k == "dynamodb/table/t#ttl"), "{again}");
    }

    // The crash-safety state machine: what each observation does with what a
    // run killed between a call and its `done` left in the journal.

    /// An apply context over a fresh in-memory journal, with a run begun.
    async fn apply_ctx() -> Ctx {
        crate::engine::test_ctx(Mode::Apply).await
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
        ctx.adopt(&res, "t-1", Some("arn:t")).unwrap();
        let r = record(&ctx, seq);
        assert_eq!((r.id.as_deref(), r.arn.as_deref(), r.undone), (Some("t-1"), Some("arn:t"), false));
        assert_eq!(ctx.journal().unwrap().records().len(), 1, "completed, not adopted a second time");
    }

    #[tokio::test]
    async fn a_resource_the_journal_never_saw_is_adopted_only_when_it_is_ours() {
        let ctx = apply_ctx().await;
        let ours = Res::new("dynamodb", "dynamodb_table", "table/a", "a");
        ctx.adopt(&ours, "a-1", None).unwrap();
        let adopted = ctx.journal().unwrap().latest(&ours.key).unwrap();
        assert_eq!((adopted.intent.op, adopted.id.as_deref()), (Op::Adopt, Some("a-1")));
        // Found by name alone, without the migration's tags: managed, never
        // adopted (destroy must not delete it).
        let theirs = Res::new("dynamodb", "dynamodb_table", "table/b", "b");
        ctx.existing(&theirs, "b-1", None, crate::engine::Ownership::Unproven).unwrap();
        assert!(ctx.journal().unwrap().latest(&theirs.key).is_none());
        // …but an intent a killed run left on it is completed.
        let other = Res::new("dynamodb", "dynamodb_table", "table/c", "c");
        let seq = open_intent(&ctx, &other, Op::Create);
        ctx.existing(&other, "c-1", None, crate::engine::Ownership::Unproven).unwrap();
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

//! A resource's settings as a table. Each [`Setting`] reads its value in a
//! comparable JSON form, says what it should be, and writes it; [`converge`]
//! drives every setting of a resource in one loop — one journaled update per
//! setting that differs, recording the value before ([`SettingBefore`]) —
//! and [`restore`] writes a recorded value back on undo. Audit's bucket
//! settings, DynamoDB's table settings and KMS's key settings are tables of
//! this kind; a step adds a setting by adding a row, not another
//! check-then-update.

use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::{Ctx, Detail, Res, StepError};

/// One setting paymig owns on a kind of resource.
pub(crate) trait Setting: Copy + Send + Sync + 'static {
    /// What the settings belong to (a bucket and its clients, a table, a
    /// key): whatever reading and writing them needs.
    type Of: Send + Sync;

    /// Every setting, in the order they converge.
    const ALL: &'static [Self];

    /// The setting's name, as plan shows it and the journal records it.
    fn name(self) -> &'static str;

    /// Its value now, in the comparable form.
    fn read(self, ctx: &Ctx, of: &Self::Of) -> impl Future<Output = Result<Value, StepError>> + Send;

    /// Its value on a resource that does not exist yet (plan, before the
    /// create): unset unless the service has a default.
    fn absent(self) -> Value {
        Value::Null
    }

    /// The value paymig wants, given what is there.
    fn desired(self, ctx: &Ctx, of: &Self::Of, have: &Value) -> Value;

    /// Changes it from `have` to `want` (both in the comparable form).
    fn write(
        self,
        ctx: &Ctx,
        of: &Self::Of,
        have: &Value,
        want: &Value,
    ) -> impl Future<Output = Result<(), StepError>> + Send;

    /// The write as [`converge`] makes it (a step may retry what a new
    /// resource answers while AWS catches up); [`restore`] writes directly.
    fn converge_write(
        self,
        ctx: &Ctx,
        of: &Self::Of,
        have: &Value,
        want: &Value,
    ) -> impl Future<Output = Result<(), StepError>> + Send {
        self.write(ctx, of, have, want)
    }

    /// How plan and rollback show the change.
    fn detail(self, have: &Value, want: &Value) -> Detail {
        Detail::between(self.name(), have, want)
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.name() == name)
    }
}

/// A setting before an update (its comparable form; `null`: unset), as the
/// update's intent records it for undo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SettingBefore {
    pub(crate) setting: String,
    pub(crate) value: Value,
}

/// Converges every setting of `of` (the resource `res`, id `id`): each one
/// that differs from what is wanted is one journaled update. `exists`:
/// whether there is anything to read (not in plan before the create).
pub(crate) async fn converge<S: Setting>(
    ctx: &Ctx,
    res: &Res,
    id: &str,
    of: &S::Of,
    exists: bool,
) -> Result<(), StepError> {
    for &setting in S::ALL {
        let have = if exists { setting.read(ctx, of).await? } else { setting.absent() };
        let want = setting.desired(ctx, of, &have);
        if have != want {
            let before = SettingBefore { setting: setting.name().into(), value: have.clone() };
            ctx.update(res, id, setting.detail(&have, &want), before, || setting.converge_write(ctx, of, &have, &want))
                .await?;
        }
    }
    Ok(())
}

/// Undo of one update: writes the recorded value back when the setting no
/// longer has it. A setting this version does not know is an error naming
/// it.
pub(crate) async fn restore<S: Setting>(ctx: &Ctx, of: &S::Of, before: &SettingBefore) -> Result<(), StepError> {
    let Some(setting) = S::from_name(&before.setting) else {
        return Err(StepError::Invalid(format!("no setting {:?} in this version to restore", before.setting)));
    };
    let now = setting.read(ctx, of).await?;
    if now != before.value {
        setting.write(ctx, of, &now, &before.value).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Mode;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Two settings of a resource kept in memory, every write logged.
    #[derive(Debug, Clone, Copy)]
    enum Fake {
        Flag,
        Size,
    }

    #[derive(Default)]
    struct Store {
        values: Mutex<BTreeMap<&'static str, Value>>,
        writes: Mutex<Vec<String>>,
    }

    impl Setting for Fake {
        type Of = Store;
        const ALL: &'static [Fake] = &[Fake::Flag, Fake::Size];
        fn name(self) -> &'static str {
            match self {
                Fake::Flag => "flag",
                Fake::Size => "size",
            }
        }
        async fn read(self, _ctx: &Ctx, of: &Store) -> Result<Value, StepError> {
            Ok(of.values.lock().unwrap().get(self.name()).cloned().unwrap_or(Value::Null))
        }
        fn absent(self) -> Value {
            match self {
                Fake::Flag => json!("off"),
                Fake::Size => Value::Null,
            }
        }
        fn desired(self, _ctx: &Ctx, _of: &Store, have: &Value) -> Value {
            match self {
                Fake::Flag => json!("on"),
                // Whatever size it has is fine; none at all is not.
                Fake::Size if have.is_null() => json!(5),
                Fake::Size => have.clone(),
            }
        }
        async fn write(self, _ctx: &Ctx, of: &Store, have: &Value, want: &Value) -> Result<(), StepError> {
            of.writes.lock().unwrap().push(format!("{} {have} -> {want}", self.name()));
            of.values.lock().unwrap().insert(self.name(), want.clone());
            Ok(())
        }
    }

    fn res() -> Res {
        Res::new("fake", "thing", "thing/t", "t")
    }

    #[tokio::test]
    async fn each_setting_that_differs_is_one_journaled_update_and_restore_writes_it_back() {
        let ctx = crate::engine::test_ctx(Mode::Apply).await;
        let store = Store::default();
        store.values.lock().unwrap().extend([("flag", json!("off")), ("size", json!(7))]);
        converge::<Fake>(&ctx, &res(), "t", &store, true).await.unwrap();
        // Only the flag differed: one write, one journaled update with the
        // value before, the size left as it is.
        assert_eq!(*store.writes.lock().unwrap(), vec!["flag \"off\" -> \"on\""]);
        let records = ctx.journal.as_ref().unwrap().records();
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].intent.key, "fake/thing/t#flag");
        let before: SettingBefore = records[0].prev().unwrap();
        assert_eq!(before, SettingBefore { setting: "flag".into(), value: json!("off") });
        assert_eq!(records[0].intent.data["from"], "off", "plan and rollback show the values");

        // Undo: the recorded value goes back, once; a second restore finds
        // it already so and writes nothing.
        restore::<Fake>(&ctx, &store, &before).await.unwrap();
        restore::<Fake>(&ctx, &store, &before).await.unwrap();
        assert_eq!(store.values.lock().unwrap()["flag"], json!("off"));
        assert_eq!(store.writes.lock().unwrap().len(), 2, "{:?}", store.writes.lock().unwrap());
        let unknown = SettingBefore { setting: "colour".into(), value: Value::Null };
        let e = restore::<Fake>(&ctx, &store, &unknown).await.unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[tokio::test]
    async fn a_resource_still_to_create_shows_every_change_from_its_absent_values_and_writes_nothing() {
        let ctx = crate::engine::test_ctx(Mode::Plan).await;
        let store = Store::default();
        converge::<Fake>(&ctx, &res(), "t", &store, false).await.unwrap();
        assert!(store.writes.lock().unwrap().is_empty());
        // One change of the resource, naming each setting with its values.
        let shown: Vec<String> = ctx.changes().iter().map(|c| c.detail.to_string()).collect();
        assert_eq!(shown, vec!["flag: off → on; size: none → 5"]);
    }
}

//! A function's prod environment: every dev identifier mapped to its prod
//! counterpart or named, the overrides, the master secret's ARN.

use super::*;

/// Prod environment: dev's values with every dev identifier mapped to its
/// prod counterpart ([`references`]), then the overrides (the operator's
/// own values, taken as they are).
pub fn prod_environment(ctx: &Ctx, refs: &Counterparts, f: &DevFunction) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = dev_variables(f).map(|(k, v)| (k.clone(), refs.rewrite(v).0)).collect();
    if let Some(o) = ctx.cfg.lambda.overrides.get(&f.name) {
        let secret = refs.master_secret.as_deref().unwrap_or(MASTER_SECRET);
        env.extend(o.environment.iter().map(|(k, v)| (k.clone(), v.replace(MASTER_SECRET, secret))));
    }
    env
}

/// In an environment override, the ARN of the secret in which RDS keeps the
/// prod cluster's master credentials (the function reads them from Secrets
/// Manager; paymig never does). A function asking for it is deployed once
/// the database step has them managed, after the restore.
pub const MASTER_SECRET: &str = "{{database.master_user_secret_arn}}";

/// Whether a function's overrides ask for the master credentials' secret.
pub(super) fn wants_master_secret(ctx: &Ctx, f: &str) -> bool {
    ctx.cfg.lambda.overrides.get(f).is_some_and(|o| o.environment.values().any(|v| v.contains(MASTER_SECRET)))
}

/// A dev function's environment variables.
pub(super) fn dev_variables(f: &DevFunction) -> impl Iterator<Item = (&String, &String)> {
    f.config.environment().and_then(|e| e.variables()).into_iter().flatten()
}

/// The dev identifiers in the functions' environments, recorded for plan,
/// apply and validate (`<dev function>:<VARIABLE>`); an overridden variable
/// is the operator's value and is not dev's.
pub(super) fn record_references(ctx: &Ctx, refs: &Counterparts, f: &DevFunction) {
    let overridden = ctx.cfg.lambda.overrides.get(&f.name).map(|o| &o.environment);
    for (k, v) in dev_variables(f).filter(|(k, _)| overridden.is_none_or(|o| !o.contains_key(*k))) {
        references::record(ctx, STEP, &format!("{}:{k}", f.name), &refs.rewrite(v).1);
    }
}

/// The map for every dev value the functions copy.
pub(super) async fn counterparts(ctx: &Ctx, dev: &[DevFunction]) -> Result<Counterparts, StepError> {
    references::gather(ctx, dev.iter().flat_map(dev_variables).map(|(_, v)| v.as_str())).await
}

/// `refs` for function `f`: with the master credentials' secret when its
/// overrides ask for it — then it waits for the database step to have them
/// managed (after the restore); every other function goes on meanwhile.
pub(super) async fn counterparts_for(
    ctx: &Ctx,
    refs: &Counterparts,
    f: &DevFunction,
) -> Result<Counterparts, StepError> {
    let mut refs = refs.clone();
    if wants_master_secret(ctx, &f.name) {
        refs.master_secret = Some(crate::steps::database::master_secret_arn(ctx).await?.ok_or_else(|| {
            StepError::Invalid(format!(
                "[lambda.overrides.\"{}\"] environment: {MASTER_SECRET} names the prod cluster's master credentials, but there are none (no [source] db_cluster, or the database step did not finish)",
                f.name
            ))
        })?);
    }
    Ok(refs)
}

/// Environment values as SHA-256 digests: comparable, but a secret value
/// never reaches the journal, a log line or the validate report.
pub fn redact_environment<'a>(vars: impl Iterator<Item = (&'a String, &'a String)>) -> BTreeMap<String, String> {
    vars.map(|(k, v)| (k.clone(), format!("sha256:{}", &hex::encode(sha2::Sha256::digest(v.as_bytes()))[..16])))
        .collect()
}

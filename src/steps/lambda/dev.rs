//! The dev functions as paymig reads them, and what preflight checks of
//! them: layers shared with the prod account, the account's unreserved
//! concurrency.

use super::*;

/// Preflight, when dev is another account: every layer version of dev's own
/// that a dev function uses must grant the prod account
/// `lambda:GetLayerVersion` (CreateFunction in prod reads it), read through
/// the dev side (reads only). Layers of third accounts are theirs to share
/// and cannot be read from here; AWS refuses CreateFunction if they are not.
pub(super) async fn check_layers_shared(ctx: &Ctx, dev: &[DevFunction]) -> Vec<StepError> {
    let layers: BTreeMap<String, Vec<&str>> = dev.iter().fold(BTreeMap::new(), |mut m, f| {
        for arn in f.config.layers().iter().filter_map(|l| l.arn()) {
            m.entry(arn.to_owned()).or_default().push(f.name.as_str());
        }
        m
    });
    if layers.is_empty() {
        return vec![];
    }
    let dev_account = match ctx.aws.source.account_id().await {
        Ok(a) => a,
        Err(e) => return vec![StepError::Invalid(e)],
    };
    if dev_account == ctx.account {
        return vec![];
    }
    let mut problems = Vec::new();
    for (arn, users) in layers {
        // arn:aws:lambda:<region>:<account>:layer:<name>:<version>
        let parts: Vec<&str> = arn.split(':').collect();
        let (Some(owner), Some(name), Some(version)) = (parts.get(4), parts.get(6), parts.get(7)) else { continue };
        if *owner != dev_account {
            continue;
        }
        let Ok(number) = version.parse::<i64>() else { continue };
        let read =
            ctx.aws.source.lambda.get_layer_version_policy().layer_name(*name).version_number(number).send().await;
        let policy = match read.found(format!("dev layer {arn}"), "GetLayerVersionPolicy") {
            Ok(out) => out.and_then(|o| o.policy).and_then(|p| serde_json::from_str(&p).ok()).unwrap_or(Value::Null),
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if !crate::steps::common::policy::grants(&policy, &ctx.account, "lambda:GetLayerVersion") {
            problems.push(StepError::Invalid(format!(
                "[source] lambda_functions: {}: layer {arn} (account {dev_account}) does not grant the prod account {} lambda:GetLayerVersion, so CreateFunction in prod would be refused\nhelp: in the dev account run: aws lambda add-layer-version-permission --region {} --layer-name {name} --version-number {number} --statement-id paymig-prod-{} --action lambda:GetLayerVersion --principal {}",
                users.join(", "),
                ctx.account,
                parts.get(3).unwrap_or(&""),
                ctx.account,
                ctx.account
            )));
        }
    }
    problems
}

/// Preflight: the account keeps at least 100 unreserved after the
/// reservations. An endpoint without GetAccountSettings (the emulator) gets
/// a warning; AWS itself still refuses a reservation that breaks the rule.
pub(super) async fn check_concurrency(ctx: &Ctx) -> Result<(), StepError> {
    let wanted: i32 = ctx.cfg.source.lambda_functions.iter().filter_map(|f| reserved_for(ctx, f)).sum();
    if wanted == 0 {
        return Ok(());
    }
    let settings = match ctx.aws.target.lambda.get_account_settings().send().await {
        Ok(s) => s,
        Err(e) => {
            let failure = crate::aws::AwsFailure::of(&e);
            // An endpoint without the operation (the emulator answers 404) is
            // expected there and said once, quietly; anything else (a denial
            // above all) is a preflight failure naming the call.
            if failure.status == Some(404) && failure.code.is_none() {
                // Only an emulator lacks it (AWS always has it): said at -v.
                tracing::debug!("this endpoint has no Lambda GetAccountSettings; the 100-unreserved rule is left to PutFunctionConcurrency");
                return Ok(());
            }
            return Err(StepError::sdk("the account's Lambda concurrency", "GetAccountSettings", &e));
        }
    };
    let unreserved = settings.account_limit().and_then(|l| l.unreserved_concurrent_executions()).unwrap_or(0);
    // Reservations paymig already holds are given back before they are re-taken.
    let mut held = 0;
    for f in &ctx.cfg.source.lambda_functions {
        let name = ctx.cfg.names.prod(f);
        held += reserved_concurrency(ctx, &name).await?.unwrap_or(0);
    }
    if unreserved + held - wanted < MIN_UNRESERVED {
        return Err(StepError::Invalid(format!(
            "[lambda] reserved_concurrency: reserving {wanted} leaves {} unreserved in the account; AWS requires at least {MIN_UNRESERVED} — lower the reservations or raise the account quota",
            unreserved + held - wanted
        )));
    }
    Ok(())
}

pub(super) async fn read_dev(ctx: &Ctx) -> Result<Vec<DevFunction>, StepError> {
    use futures::StreamExt;
    let lane = crate::aws::lane();
    let reads = ctx.cfg.source.lambda_functions.clone().into_iter().map(|name: String| {
        crate::aws::in_lane(format!("{lane}/{name}"), async move {
            match ctx
                .aws
                .source
                .lambda
                .get_function()
                .function_name(&name)
                .send()
                .await
                .found(format!("dev function {name}"), "GetFunction")?
            {
                Some(f) => Ok(DevFunction {
                    name: name.clone(),
                    config: f.configuration.ok_or_else(|| {
                        StepError::Invalid(format!("dev function {name}: GetFunction returned no configuration"))
                    })?,
                }),
                None => Err(StepError::Invalid(format!(
                    "[source] lambda_functions: the dev function {name:?} does not exist"
                ))),
            }
        })
    });
    // In order, `parallelism` at a time.
    let read: Vec<Result<DevFunction, StepError>> =
        futures::stream::iter(reads).buffered(ctx.parallelism.max(1)).collect().await;
    read.into_iter().collect()
}

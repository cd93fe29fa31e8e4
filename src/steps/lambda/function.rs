//! The function itself (create or update its code and settings, waits for
//! `Active` and for updates, retried while a new role or key grant
//! propagates), its reserved concurrency and its `blue`/`green` aliases.

use super::*;

/// What a function update replaced, as its intent records it for rollback
/// (untagged: the journal's own JSON shapes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum Prev {
    /// Reserved concurrency before (`null`: unreserved).
    Reserved {
        #[serde(deserialize_with = "crate::engine::journal::present")]
        reserved: Option<i32>,
    },
    /// The settings before ([`settings_of`]).
    Settings { settings: SettingsBefore },
    /// The code digest before (code cannot be rolled back to bytes paymig
    /// no longer has; recorded for the report).
    Code {
        #[serde(deserialize_with = "crate::engine::journal::present")]
        code_sha256: Option<String>,
    },
}

impl Prev {
    pub(super) fn settings(have: &Value) -> Prev {
        Prev::Settings { settings: serde_json::from_value(have.clone()).expect("settings_of is an object") }
    }
}

/// A function's settings before an update: what rollback restores (role,
/// memory, timeout), and the rest as recorded (environment values only as
/// digests, so they are never restored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct SettingsBefore {
    pub(super) role: Option<String>,
    pub(super) memory: Option<i32>,
    pub(super) timeout: Option<i32>,
    #[serde(flatten)]
    pub(super) recorded: BTreeMap<String, Value>,
}

/// The settings paymig owns, comparable and journal-able (environment values
/// only as digests).
pub(super) fn settings_of(c: &FunctionConfiguration) -> Value {
    let mut subnets: Vec<String> = c.vpc_config().map(|v| v.subnet_ids().to_vec()).unwrap_or_default();
    subnets.sort();
    json!({
        "runtime": c.runtime().map(|r| r.as_str()),
        "handler": c.handler(),
        "memory": c.memory_size(),
        "timeout": c.timeout(),
        "role": c.role(),
        // Lambda keeps no key for a function without variables
        // (terraform-provider-aws #6366): there is nothing to compare.
        "kms_key": if has_variables(c) { c.kms_key_arn() } else { None },
        // No variables and an empty map are the same setting.
        "environment": c.environment().and_then(|e| e.variables()).map(|v| redact_environment(v.iter())).unwrap_or_default(),
        "subnets": subnets,
        "security_groups": c.vpc_config().map(|v| v.security_group_ids().to_vec()).unwrap_or_default(),
        "layers": c.layers().iter().filter_map(|l| l.arn()).collect::<Vec<_>>(),
        "tracing": c.tracing_config().and_then(|t| t.mode()).map(|m| m.as_str()),
        "ephemeral_storage": c.ephemeral_storage().map(|e| e.size()),
    })
}

/// Whether a function has environment variables (only then does Lambda keep
/// the key that encrypts them).
pub(super) fn has_variables(c: &FunctionConfiguration) -> bool {
    c.environment().and_then(|e| e.variables()).is_some_and(|v| !v.is_empty())
}

/// The key to send for a function with `env`: none without variables, which
/// Lambda would not keep (a key sent and then missing reads as drift on every
/// run).
pub(super) fn key_for<'a>(env: &BTreeMap<String, String>, key: &'a str) -> Option<&'a str> {
    (!env.is_empty()).then_some(key)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn desired_settings(
    ctx: &Ctx,
    refs: &Counterparts,
    f: &DevFunction,
    role: &str,
    key: &str,
    subnets: &[String],
    sg: &str,
) -> Value {
    let d = &f.config;
    let mut subnets = subnets.to_vec();
    subnets.sort();
    let env = prod_environment(ctx, refs, f);
    json!({
        "runtime": d.runtime().map(|r| r.as_str()),
        "handler": d.handler(),
        "memory": d.memory_size(),
        "timeout": d.timeout(),
        "role": role,
        "kms_key": key_for(&env, key),
        "environment": redact_environment(env.iter()),
        "subnets": subnets,
        "security_groups": [sg],
        "layers": d.layers().iter().filter_map(|l| l.arn()).collect::<Vec<_>>(),
        "tracing": d.tracing_config().and_then(|t| t.mode()).map(|m| m.as_str()),
        "ephemeral_storage": d.ephemeral_storage().map(|e| e.size()),
    })
}

/// A configuration update as plan and rollback show it: each setting that
/// differs, before and after (environment values are digests: only that
/// they changed).
pub(super) fn configuration_change(have: &Value, want: &Value) -> Detail {
    let show = |v: &Value| match v {
        Value::String(s) => s.rsplit('/').next().unwrap_or(s).to_owned(),
        Value::Null => "none".to_owned(),
        Value::Array(a) if a.is_empty() => "none".to_owned(),
        Value::Array(a) => {
            a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned)).collect::<Vec<_>>().join(" ")
        }
        other => other.to_string(),
    };
    let (mut from, mut to) = (Vec::new(), Vec::new());
    for (field, w) in want.as_object().into_iter().flatten() {
        let h = &have[field];
        if h == w {
            continue;
        }
        if field == "environment" {
            from.push("environment (values not shown)".to_owned());
            to.push("environment from dev, mapped".to_owned());
        } else {
            from.push(format!("{} {}", field.replace('_', " "), show(h)));
            to.push(format!("{} {}", field.replace('_', " "), show(w)));
        }
    }
    Detail::change("configuration", from.join(", "), to.join(", "))
}

/// Whether a function can take a change now: Active (not Pending) and its
/// last update finished.
pub(super) fn is_settled(c: &FunctionConfiguration) -> bool {
    use aws_sdk_lambda::types::{LastUpdateStatus, State};
    !matches!(c.state(), Some(State::Pending)) && !matches!(c.last_update_status(), Some(LastUpdateStatus::InProgress))
}

/// Waits (the SDK's waiter) until a new function is Active.
pub(super) async fn wait_active(ctx: &Ctx, name: &str) -> Result<(), StepError> {
    use aws_sdk_lambda::client::Waiters;
    let waiter = ctx.aws.target.lambda.wait_until_function_active_v2().function_name(name).wait(ctx.max_wait());
    crate::progress::while_waiting(STEP, &format!("{name} to become Active"), waiter)
        .await
        .map_err(StepError::waiting(name, "Active", ctx.max_wait()))?;
    Ok(())
}

/// Waits (the SDK's waiter) until a function's last update finished.
pub(super) async fn wait_updated(ctx: &Ctx, name: &str) -> Result<(), StepError> {
    use aws_sdk_lambda::client::Waiters;
    let waiter = ctx.aws.target.lambda.wait_until_function_updated_v2().function_name(name).wait(ctx.max_wait());
    crate::progress::while_waiting(STEP, &format!("{name}'s update to finish"), waiter)
        .await
        .map_err(StepError::waiting(name, "updated", ctx.max_wait()))?;
    Ok(())
}

/// How long a new role's or key grant's propagation may keep CreateFunction
/// refusing (terraform-provider-aws retries these for its propagation
/// timeout of two minutes).
pub(super) const PROPAGATION: std::time::Duration = std::time::Duration::from_secs(120);

pub(super) fn is_role_not_ready(e: &StepError) -> bool {
    // AWS says it only in words, as InvalidParameterValueException: the new
    // role is not yet visible to Lambda (IAM propagation), its permissions
    // not yet to EC2 or X-Ray ("does not have permissions to call
    // CreateNetworkInterface on EC2", "… PutTraceSegments on XRAY"), or the
    // key's grant for Lambda not yet usable ("… KMS key is invalid for
    // CreateGrant").
    e.is_code("InvalidParameterValueException")
        && (e.message_contains("cannot be assumed")
            || e.message_contains("does not have permissions to call")
            || e.message_contains("is invalid for CreateGrant"))
}

pub(super) async fn converge_function(ctx: &Ctx, refs: &Counterparts, f: &DevFunction) -> Result<(), StepError> {
    let refs = &counterparts_for(ctx, refs, f).await?;
    let lambda = &ctx.aws.target.lambda;
    let name = ctx.cfg.names.prod(&f.name);
    let res = Res::new(STEP, kind::LAMBDA_FUNCTION, format!("function/{name}"), &name);
    let role = ctx
        .outputs
        .get::<crate::steps::iam::ExecutionRoles>()
        .0
        .get(&f.name)
        .cloned()
        .unwrap_or_else(|| format!("arn:aws:iam::{}:role/{}", ctx.account, ctx.cfg.names.lambda_role(&f.name)));
    let key = crate::steps::kms::key_arn(ctx);
    let network = crate::steps::network::Vpc::of(ctx);
    let (subnets, sg) = (network.subnet_ids(), network.sg_compute);
    let want = desired_settings(ctx, refs, f, &role, &key, &subnets, &sg);
    let existing = lambda
        .get_function()
        .function_name(&name)
        .send()
        .await
        .found(&name, "GetFunction")?
        .and_then(|out| out.configuration);
    record_references(ctx, refs, f);
    let variables = prod_environment(ctx, refs, f);
    let env_key = key_for(&variables, &key).map(str::to_owned);
    let env = Environment::builder().set_variables(Some(variables.into_iter().collect())).build();
    let vpc = VpcConfig::builder()
        .set_subnet_ids(Some(subnets.iter().filter(|s| !is_planned(s)).cloned().collect()))
        .security_group_ids(&sg)
        .build();
    let d = &f.config;
    match existing {
        None => {
            let detail = format!(
                "{} from dev's package {}",
                d.runtime().map_or("?", |r| r.as_str()),
                d.code_sha256().unwrap_or("?")
            );
            let created = ctx
                .create(&res, detail, json!({"dev": f.name, "code_sha256": d.code_sha256()}), || async {
                    let package = staging::Package::of(ctx, &name, fetch_package(ctx, f).await?).await?;
                    let tags: std::collections::HashMap<String, String> =
                        crate::steps::common::prod_tags_as(ctx, |k, v| (k, v)).into_iter().collect();
                    let out = retry_until("CreateFunction", PROPAGATION, is_role_not_ready, || async {
                        lambda
                            .create_function()
                            .function_name(&name)
                            .set_runtime(d.runtime().cloned())
                            .set_handler(d.handler().map(str::to_owned))
                            .role(&role)
                            .code(package.code())
                            .set_memory_size(d.memory_size())
                            .set_timeout(d.timeout())
                            .set_architectures(Some(d.architectures().to_vec()))
                            .set_layers(Some(d.layers().iter().filter_map(|l| l.arn().map(str::to_owned)).collect()))
                            .set_tracing_config(
                                d.tracing_config()
                                    .and_then(|t| t.mode().cloned())
                                    .map(|m| TracingConfig::builder().mode(m).build()),
                            )
                            .set_ephemeral_storage(
                                d.ephemeral_storage()
                                    .map(|e| EphemeralStorage::builder().size(e.size()).build())
                                    .transpose()
                                    .map_err(|e| StepError::Invalid(e.to_string()))?,
                            )
                            .environment(env.clone())
                            .set_kms_key_arn(env_key.clone())
                            .vpc_config(vpc.clone())
                            .publish(true)
                            .set_tags(Some(tags.clone()))
                            .send()
                            .await
                            .on(&name, "CreateFunction")
                    })
                    .await?;
                    package.release(ctx).await?;
                    let arn = out.function_arn.unwrap_or_default();
                    Ok(Created {
                        value: out.version.unwrap_or_else(|| "1".into()),
                        id: name.clone(),
                        arn: Some(arn),
                        data: Value::Null,
                    })
                })
                .await?;
            if created.is_some() {
                // Pending until Lambda has set it up (its ENIs for a VPC
                // function): publishing meanwhile is refused.
                ctx.timed(STEP, Wait::FunctionActive, &name, wait_active(ctx, &name)).await?;
                converge_concurrency(ctx, &res, &f.name, &name, None).await?;
                converge_aliases(ctx, &name, false).await?;
            } else {
                // Plan: what apply sets up on the new function.
                converge_concurrency(ctx, &res, &f.name, &name, None).await?;
                converge_aliases(ctx, &name, true).await?;
            }
        }
        Some(current) => {
            // A failed read (a denial above all) is an error, never "not ours".
            let ours = lambda
                .list_tags()
                .resource(current.function_arn().unwrap_or_default())
                .send()
                .await
                .on(&name, "ListTags")?
                .tags()
                .is_some_and(|t| crate::steps::common::is_ours(ctx, t.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
            ctx.existing(&res, &name, current.function_arn(), crate::engine::Ownership::of(ours))?;
            // A run that stopped mid-update (or another tool) may have left
            // the function Pending or InProgress: a change now is refused.
            if !ctx.is_plan() && !is_settled(&current) {
                wait_active(ctx, &name).await?;
                wait_updated(ctx, &name).await?;
            }
            let have = settings_of(&current);
            if have != want && !is_planned(&sg) {
                let detail = configuration_change(&have, &want);
                ctx.update(&res, &name, detail, Prev::settings(&have), || async {
                    lambda
                        .update_function_configuration()
                        .function_name(&name)
                        .role(&role)
                        .set_runtime(d.runtime().cloned())
                        .set_handler(d.handler().map(str::to_owned))
                        .set_memory_size(d.memory_size())
                        .set_timeout(d.timeout())
                        .environment(env.clone())
                        .set_kms_key_arn(env_key.clone())
                        .vpc_config(vpc.clone())
                        .set_layers(Some(d.layers().iter().filter_map(|l| l.arn().map(str::to_owned)).collect()))
                        .send()
                        .await
                        .on(&name, "UpdateFunctionConfiguration")?;
                    // InProgress (about a minute for a VPC change): the next
                    // update or PublishVersion would be refused.
                    wait_updated(ctx, &name).await
                })
                .await?;
            }
            if current.code_sha256() != d.code_sha256() {
                ctx.update(
                    &res,
                    &name,
                    "code",
                    Prev::Code { code_sha256: current.code_sha256().map(String::from) },
                    || async {
                        let package = staging::Package::of(ctx, &name, fetch_package(ctx, f).await?).await?;
                        package
                            .update(lambda.update_function_code().function_name(&name))
                            .publish(true)
                            .send()
                            .await
                            .on(&name, "UpdateFunctionCode")?;
                        package.release(ctx).await?;
                        wait_updated(ctx, &name).await
                    },
                )
                .await?;
            }
            let reserved = reserved_concurrency(ctx, &name).await?;
            converge_concurrency(ctx, &res, &f.name, &name, Some(reserved)).await?;
            converge_aliases(ctx, &name, false).await?;
        }
    }
    Ok(())
}

pub(super) async fn converge_concurrency(
    ctx: &Ctx,
    res: &Res,
    dev: &str,
    name: &str,
    current: Option<Option<i32>>,
) -> Result<(), StepError> {
    let want = reserved_for(ctx, dev);
    let have = current.flatten();
    if want == have {
        return Ok(());
    }
    let lambda = &ctx.aws.target.lambda;
    let shown = |v: Option<i32>| v.map_or_else(|| "unreserved".to_owned(), |n| n.to_string());
    let detail = Detail::change("reserved concurrency", shown(have), shown(want));
    ctx.update(res, name, detail, Prev::Reserved { reserved: have }, || async {
        match want {
            Some(n) => {
                lambda
                    .put_function_concurrency()
                    .function_name(name)
                    .reserved_concurrent_executions(n)
                    .send()
                    .await
                    .on(name, "PutFunctionConcurrency")?;
            }
            None => {
                lambda
                    .delete_function_concurrency()
                    .function_name(name)
                    .send()
                    .await
                    .on(name, "DeleteFunctionConcurrency")?;
            }
        }
        Ok(())
    })
    .await
}

/// Aliases `blue` and `green` on the newest published version, created when
/// missing (never moved here: `switch` moves traffic between them).
pub(super) async fn converge_aliases(ctx: &Ctx, name: &str, new: bool) -> Result<(), StepError> {
    let lambda = &ctx.aws.target.lambda;
    if new && ctx.is_plan() {
        // A function the plan creates gets both aliases, on its first version.
        for alias in ALIASES {
            let res = Res::new(STEP, kind::LAMBDA_ALIAS, format!("alias/{name}:{alias}"), format!("{name}:{alias}"));
            ctx.create(&res, "-> its first published version", Value::Null, || async {
                Ok(Created::id(format!("{name}:{alias}")))
            })
            .await?;
        }
        return Ok(());
    }
    let versions: Vec<FunctionConfiguration> = lambda
        .list_versions_by_function()
        .function_name(name)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .on(name, "ListVersionsByFunction")?;
    let latest = versions.iter().filter_map(|v| v.version()?.parse::<u64>().ok()).max();
    for alias in ALIASES {
        let res = Res::new(STEP, kind::LAMBDA_ALIAS, format!("alias/{name}:{alias}"), format!("{name}:{alias}"));
        match lambda
            .get_alias()
            .function_name(name)
            .name(alias)
            .send()
            .await
            .found(format!("{name}:{alias}"), "GetAlias")?
        {
            Some(a) => ctx.existing(&res, &format!("{name}:{alias}"), a.alias_arn(), crate::engine::Ownership::Ours)?,
            None => {
                let version = latest.map_or_else(|| "$LATEST".to_owned(), |v| v.to_string());
                ctx.create(&res, format!("-> version {version}"), json!({"function": name}), || async {
                    let out = lambda
                        .create_alias()
                        .function_name(name)
                        .name(alias)
                        .function_version(&version)
                        .send()
                        .await
                        .on(format!("{name}:{alias}"), "CreateAlias")?;
                    Ok(Created { value: (), id: format!("{name}:{alias}"), arn: out.alias_arn, data: Value::Null })
                })
                .await?;
            }
        }
    }
    Ok(())
}

/// A prod function's reserved concurrency (`None`: unreserved, or the
/// function is gone).
pub(super) async fn reserved_concurrency(ctx: &Ctx, name: &str) -> Result<Option<i32>, StepError> {
    let out = ctx.aws.target.lambda.get_function_concurrency().function_name(name).send().await;
    Ok(out.found(name, "GetFunctionConcurrency")?.and_then(|c| c.reserved_concurrent_executions()))
}

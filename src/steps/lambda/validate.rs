//! validate: the prod functions against dev's.

use super::*;

pub(super) async fn validate(ctx: &Ctx, dev: &[DevFunction]) -> Result<crate::report::Findings, StepError> {
    use crate::report::{diff, Check, Findings, Resource};
    let lambda = &ctx.aws.target.lambda;
    let mut f = Findings::default();
    let key = crate::steps::kms::key_arn(ctx);
    let mut prod = Vec::new();
    for d in dev {
        let name = ctx.cfg.names.prod(&d.name);
        match lambda.get_function().function_name(&name).send().await {
            Ok(out) => prod.push((d, name, out)),
            Err(_) => f.resources.push(Resource::missing("lambda_function", &d.name, &name)),
        }
    }
    // Dev's values (what prod should hold) and prod's (what it holds: a
    // dev identifier still in it is a finding).
    let prod_values: Vec<String> = prod
        .iter()
        .flat_map(|(_, _, out)| {
            out.configuration().and_then(|c| c.environment()).and_then(|e| e.variables()).into_iter().flatten()
        })
        .map(|(_, v)| v.clone())
        .collect();
    let dev_values = dev.iter().flat_map(dev_variables).map(|(_, v)| v.as_str());
    let mut refs = references::gather(ctx, dev_values.chain(prod_values.iter().map(String::as_str))).await?;
    if dev.iter().any(|d| wants_master_secret(ctx, &d.name)) {
        refs.master_secret = crate::steps::database::master_secret_arn(ctx).await?;
    }
    for (d, name, out) in prod {
        let Some(c) = out.configuration.clone() else { continue };
        let overridden = ctx.cfg.lambda.overrides.get(&d.name).map(|o| &o.environment);
        let leftovers: Vec<(String, references::Found)> = c
            .environment()
            .and_then(|e| e.variables())
            .into_iter()
            .flatten()
            .filter(|(k, _)| overridden.is_none_or(|o| !o.contains_key(*k)))
            .flat_map(|(k, v)| refs.rewrite(v).1.into_iter().map(move |found| (format!("{}:{k}", d.name), found)))
            .collect();
        f.checks.extend(references::checks(ctx, &name, &leftovers));
        let have = settings_of(&c);
        let dv = settings_of(&d.config);
        let mut diffs = Vec::new();
        diff(&mut diffs, "name", &d.name, &name, true);
        for field in ["runtime", "handler", "memory", "timeout", "layers", "tracing", "ephemeral_storage"] {
            diff(&mut diffs, field, &dv[field], &have[field], false);
        }
        let want_env = json!(redact_environment(prod_environment(ctx, &refs, d).iter()));
        diff(&mut diffs, "environment", &dv["environment"], &have["environment"], have["environment"] == want_env);
        diff(&mut diffs, "role", &dv["role"], &have["role"], true);
        let want_key = json!(key_for(&prod_environment(ctx, &refs, d), &key));
        diff(&mut diffs, "kms_key", &dv["kms_key"], &have["kms_key"], have["kms_key"] == want_key);
        diff(&mut diffs, "vpc_subnets", &dv["subnets"], &have["subnets"], true);
        diff(
            &mut diffs,
            "code_sha256",
            d.config.code_sha256().unwrap_or_default(),
            c.code_sha256().unwrap_or_default(),
            false,
        );
        f.resources.push(Resource::compared("lambda_function", &d.name, &name, diffs));
        let reserved = reserved_concurrency(ctx, &name).await?;
        let want = reserved_for(ctx, &d.name);
        f.checks.push(Check::new(
            "lambda.reserved_concurrency",
            &name,
            reserved == want,
            format!("reserved {}, configured {}", crate::report::or_none(reserved), crate::report::or_none(want)),
        ));
        let (encrypted, detail) = if has_variables(&c) {
            let ok = c.kms_key_arn() == Some(key.as_str());
            (
                ok,
                if ok {
                    "environment encrypted with the prod key".to_owned()
                } else {
                    format!("environment encrypted with {}", c.kms_key_arn().unwrap_or("Lambda's default key"))
                },
            )
        } else {
            (true, "no environment variables to encrypt".to_owned())
        };
        f.checks.push(Check::new("lambda.cmk", &name, encrypted, detail));
        let tags: BTreeMap<String, String> = out.tags.map(|t| t.into_iter().collect()).unwrap_or_default();
        f.checks.extend(crate::steps::common::common_checks(ctx, &name, &tags));
    }
    Ok(f)
}

//! Dashboards: dev's bodies with every dev identifier mapped to prod or
//! named, the alarm widget added, and their converge.

use super::*;

// Dashboards

/// Rewrites a dashboard body: string values naming a listed dev resource (as
/// the whole value, a whole word of a title, or the last part of an ARN) and
/// dev alarm ARNs become their prod twins; numbers and structure stay.
pub fn rewrite_dashboard(
    body: &Value,
    names: &NameMap,
    alarm_names: &BTreeMap<String, String>,
    arn_from: &str,
    arn_to: &str,
) -> Value {
    match body {
        Value::String(s) => Value::String(rewrite_string(s, names, alarm_names, arn_from, arn_to)),
        Value::Array(a) => {
            Value::Array(a.iter().map(|v| rewrite_dashboard(v, names, alarm_names, arn_from, arn_to)).collect())
        }
        Value::Object(o) => Value::Object(
            o.iter().map(|(k, v)| (k.clone(), rewrite_dashboard(v, names, alarm_names, arn_from, arn_to))).collect(),
        ),
        other => other.clone(),
    }
}

pub(super) fn rewrite_string(
    s: &str,
    names: &NameMap,
    alarm_names: &BTreeMap<String, String>,
    arn_from: &str,
    arn_to: &str,
) -> String {
    if let Some(p) = names.known().get(s) {
        return p.clone();
    }
    if let Some(rest) = s.strip_prefix("arn:aws:") {
        let parts: Vec<&str> = rest.split(':').collect();
        if let Some(last) = parts.last() {
            let mapped = alarm_names.get(*last).or_else(|| names.known().get(*last)).cloned();
            if let Some(m) = mapped {
                let head = s[..s.len() - last.len()].replace(arn_from, arn_to);
                return format!("{head}{m}");
            }
        }
        return s.to_owned();
    }
    // Free text (titles): replace whole words that are known dev names.
    crate::naming::map_words(s, |w| names.known().get(w).or_else(|| alarm_names.get(w)).map(String::as_str))
}

/// Strings of a body that still look like dev identifiers.
pub fn dev_leftovers(body: &Value, names: &NameMap) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, names: &NameMap, out: &mut Vec<String>) {
        match v {
            Value::String(s) if names.looks_dev(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| walk(x, names, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, names, out)),
            _ => {}
        }
    }
    walk(body, names, &mut out);
    out
}

/// Appends a widget listing the migration's alarms below the others.
pub(super) fn with_alarm_widget(mut body: Value, title: &str, alarms: &[String]) -> Value {
    let bottom = body["widgets"]
        .as_array()
        .map(|w| w.iter().map(|x| x["y"].as_i64().unwrap_or(0) + x["height"].as_i64().unwrap_or(6)).max().unwrap_or(0))
        .unwrap_or(0);
    let widget = json!({"type": "alarm", "x": 0, "y": bottom, "width": 24, "height": 4,
        "properties": {"title": title, "alarms": alarms}});
    match body["widgets"].as_array_mut() {
        Some(w) => w.push(widget),
        None => body["widgets"] = json!([widget]),
    }
    body
}

/// Dev's account: prod's unless dev is reached through a role.
pub(super) async fn dev_account(ctx: &Ctx) -> Result<String, StepError> {
    match ctx.cfg.source.role_arn {
        Some(_) => ctx.aws.source.account_id().await.map_err(StepError::Invalid),
        None => Ok(ctx.account.clone()),
    }
}

/// Dev's dashboard `dev`, parsed.
pub(super) async fn dev_dashboard(ctx: &Ctx, dev: &str) -> Result<Value, StepError> {
    let read = ctx.aws.source.cloudwatch.get_dashboard().dashboard_name(dev).send().await;
    let body = read.on(dev, "GetDashboard")?.dashboard_body.unwrap_or_default();
    serde_json::from_str(&body).map_err(|e| StepError::Invalid(format!("dev dashboard {dev}: body is not JSON: {e}")))
}

/// Every string of a JSON value.
pub(super) fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => vec![],
    }
}

/// `v` with every string passed through `f`.
pub(super) fn map_strings(v: &Value, f: &mut impl FnMut(&str) -> String) -> Value {
    match v {
        Value::String(s) => Value::String(f(s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| map_strings(x, f)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), map_strings(x, f))).collect()),
        other => other.clone(),
    }
}

/// The dev identifiers left in a body, as the references map finds them.
pub(super) fn body_references(refs: &Counterparts, body: &Value) -> Vec<Found> {
    let mut found: Vec<Found> = strings(body).into_iter().flat_map(|s| refs.rewrite(s).1).collect();
    found.dedup();
    found
}

/// The prod twin of dev's dashboard `body`: dev's names, account and alarm
/// ARNs rewritten by structure, every other dev identifier through the
/// references map (endpoints, ids, the key…), and a widget of the prod
/// alarms; with the dev identifiers found.
pub(super) fn desired_dashboard(
    ctx: &Ctx,
    refs: &Counterparts,
    body: &Value,
    source_account: &str,
    alarm_names: &BTreeMap<String, String>,
    alarm_arns: &[String],
) -> (Value, Vec<Found>) {
    let (from, to) = (format!(":{source_account}:"), format!(":{}:", ctx.account));
    let rewritten = rewrite_dashboard(body, &ctx.cfg.names, alarm_names, &from, &to);
    let mut found = Vec::new();
    let mapped = map_strings(&rewritten, &mut |s| {
        let (v, f) = refs.rewrite(s);
        found.extend(f);
        v
    });
    found.dedup();
    (with_alarm_widget(mapped, &format!("{} alarms ({})", ctx.cfg.migration.name, ctx.suffix()), alarm_arns), found)
}

/// Dev's dashboards and the references map over their strings.
pub(super) async fn dev_dashboards(ctx: &Ctx) -> Result<(Vec<(String, Value)>, Counterparts), StepError> {
    let mut bodies = Vec::new();
    for dev in &ctx.cfg.source.dashboards {
        bodies.push((dev.clone(), dev_dashboard(ctx, dev).await?));
    }
    let refs = crate::steps::common::references::gather(ctx, bodies.iter().flat_map(|(_, b)| strings(b))).await?;
    Ok((bodies, refs))
}

pub(super) async fn converge_dashboards(
    ctx: &Ctx,
    alarm_names: &BTreeMap<String, String>,
    alarm_arns: &[String],
) -> Result<(), StepError> {
    let cw = &ctx.aws.target.cloudwatch;
    let source_account = dev_account(ctx).await?;
    let (bodies, refs) = dev_dashboards(ctx).await?;
    for (dev, body) in &bodies {
        let name = ctx.cfg.names.prod(dev);
        let res = Res::new(STEP, kind::DASHBOARD, format!("dashboard/{name}"), &name);
        let (want, found) = desired_dashboard(ctx, &refs, body, &source_account, alarm_names, alarm_arns);
        crate::steps::common::references::record(ctx, STEP, &format!("dashboard:{dev}"), &found);
        let current = cw
            .get_dashboard()
            .dashboard_name(&name)
            .send()
            .await
            .found(&name, "GetDashboard")?
            .and_then(|out| out.dashboard_body.and_then(|b| serde_json::from_str::<Value>(&b).ok()));
        let put = || async {
            cw.put_dashboard()
                .dashboard_name(&name)
                .dashboard_body(want.to_string())
                .send()
                .await
                .on(&name, "PutDashboard")?;
            Ok(())
        };
        match current {
            None => {
                ctx.create(&res, format!("rewritten from {dev}"), json!({"dev": dev}), || async {
                    put().await?;
                    Ok(Created { value: (), id: name.clone(), arn: None, data: Value::Null })
                })
                .await?;
            }
            Some(c) => {
                ctx.existing(&res, &name, None, crate::engine::Ownership::Unproven)?;
                if c != want {
                    ctx.update(&res, &name, "body", Prev::Dashboard { body: c.clone() }, put).await?;
                }
            }
        }
    }
    Ok(())
}

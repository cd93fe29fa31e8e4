//! params: String and StringList parameters under `[source] parameter_path`
//! copied to the same relative path under `[target] parameter_path`, with
//! type, description, tier, allowed pattern and data type, and prod tags.
//! SecureStrings are never read: dev is listed with DescribeParameters
//! (metadata only) and values are fetched only for String/StringList names,
//! never with decryption. Excluded and SecureString parameters are reported
//! by name only.

use crate::aws::Call;
use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_ssm::types::{ParameterMetadata, ParameterStringFilter, ParameterTier, ParameterType, Tag};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::journal::{Op, Record};
use crate::engine::{About, Created, Ctx, Declared, Outcome, Res, Step, StepError};
use crate::steps::common::arns;
use crate::steps::common::references::{self, Counterparts, Found};

const STEP: &str = "params";
/// GetParameters takes at most this many names.
const GET_BATCH: usize = 10;
/// DeleteParameters takes at most this many names.
const DELETE_BATCH: usize = 10;
/// At most this many PutParameter calls in flight, whatever `--parallelism`
/// says (SSM's default throughput is low; throttling is retried by the SDK's
/// adaptive retry).
const MAX_WRITE_CONCURRENCY: usize = 16;
const STANDARD_LIMIT: usize = 4096;
const ADVANCED_LIMIT: usize = 8192;

/// The params step. `overwrite` is set by `paymig params --overwrite`.
#[derive(Default)]
pub struct Params {
    pub overwrite: bool,
    report: Mutex<Report>,
}

/// What the step did or would do, by parameter name (never values).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub copied: Vec<String>,
    pub rewritten: Vec<String>,
    pub unchanged: Vec<String>,
    /// `(name, reason)`
    pub skipped: Vec<(String, String)>,
    /// Prod holds another value; not overwritten without `--overwrite`.
    pub conflicts: Vec<String>,
    pub overwritten: Vec<String>,
    /// `(name, dev-like word)`: copied unchanged, a warning.
    pub flagged: Vec<(String, String)>,
    /// `(name, reason)`: not written.
    pub rejected: Vec<(String, String)>,
}

impl Params {
    /// The step for `paymig params` (with `--overwrite`) or for apply.
    pub fn new(overwrite: bool) -> Self {
        Params { overwrite, report: Mutex::new(Report::default()) }
    }

    pub fn report(&self) -> Report {
        self.report.lock().expect("report poisoned").clone()
    }
}

/// The resource kinds this step records in the journal (what undo matches on).
pub mod kind {
    pub const SSM_PARAMETER: &str = "ssm_parameter";
}

static ABOUT: About = About {
    id: STEP,
    deps: &[],
    kinds: &[kind::SSM_PARAMETER],
    actions: &[
        "ssm:DescribeParameters",
        "ssm:GetParameters",
        "ssm:PutParameter",
        "ssm:DeleteParameter",
        "ssm:DeleteParameters",
        "ssm:AddTagsToResource",
    ],
    source_actions: &["ssm:DescribeParameters", "ssm:GetParameters"],
    scopes: &[("ssm", arns::parameters)],
    ..About::NONE
};

impl Declared for Params {
    fn about(&self) -> &'static About {
        &ABOUT
    }

    fn undo_batch(&self) -> usize {
        DELETE_BATCH
    }
}

impl Step for Params {
    async fn run(&self, ctx: &Ctx) -> Result<Outcome, StepError> {
        self.converge(ctx).await
    }

    crate::step_functions!(undo => undo, undo_creates => undo_creates, validate => validate);
}

/// A dev parameter to copy.
#[derive(Debug, Clone)]
struct Source {
    meta: ParameterMetadata,
    value: String,
}

/// What the value check decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// The value to write, whether it was rewritten, and the dev
    /// identifiers found in it (mapped or named).
    Ok {
        value: String,
        rewritten: bool,
        found: Vec<Found>,
    },
    Rejected(String),
}

/// Maps every dev identifier in the value to its prod counterpart
/// ([`references`]: names, the parameter path, endpoints, ARNs, ids, the
/// key), reports those without one, and applies SSM's rules.
pub fn check_value(refs: &Counterparts, value: &str, tier: &str, allowed_pattern: Option<&str>) -> Checked {
    if value.is_empty() {
        return Checked::Rejected("empty value".into());
    }
    let (out, found) = refs.rewrite(value);
    let rewritten = out != value;
    let limit = if tier == "Advanced" { ADVANCED_LIMIT } else { STANDARD_LIMIT };
    if out.len() > limit {
        return Checked::Rejected(format!("{} bytes exceed the {tier} tier's {limit}", out.len()));
    }
    if let Some(p) = allowed_pattern.filter(|p| !p.is_empty()) {
        match regex::Regex::new(p) {
            Ok(re) if !re.is_match(&out) => {
                return Checked::Rejected(format!(
                    "the {}value fails its AllowedPattern {p:?}",
                    if rewritten { "rewritten " } else { "" }
                ))
            }
            Ok(_) => {}
            Err(e) => return Checked::Rejected(format!("its AllowedPattern {p:?} is not a valid regex: {e}")),
        }
    }
    Checked::Ok { value: out, rewritten, found }
}

/// Metadata of every parameter under `path` (no values).
async fn describe(c: &aws_sdk_ssm::Client, path: &str) -> Result<Vec<ParameterMetadata>, StepError> {
    let root = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    // 50 per page, the most SSM allows (the default is 10): pages are a chain.
    let mut pages = c
        .describe_parameters()
        .max_results(50)
        .parameter_filters(
            ParameterStringFilter::builder().key("Path").option("Recursive").values(root).build().expect("key set"),
        )
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        out.extend(page.on(format!("parameters under {path}"), "DescribeParameters")?.parameters().iter().cloned());
    }
    Ok(out)
}

/// Values of String/StringList parameters, never decrypted: batches of 10
/// names, `parallelism` batches at once, each its own lane.
async fn values(
    c: &aws_sdk_ssm::Client,
    names: &[String],
    parallelism: usize,
) -> Result<BTreeMap<String, String>, StepError> {
    let lane = crate::aws::lane();
    let chunks: Vec<Vec<String>> = names.chunks(GET_BATCH).map(<[String]>::to_vec).collect();
    let batches = chunks.into_iter().enumerate().map(|(i, chunk): (usize, Vec<String>)| {
        crate::aws::in_lane(format!("{lane}/values-{i}"), async move {
            let n = chunk.len();
            c.get_parameters()
                .set_names(Some(chunk))
                .with_decryption(false)
                .send()
                .await
                .on(format!("{n} parameters"), "GetParameters")
        })
    });
    let pages: Vec<_> = futures::stream::iter(batches).buffer_unordered(parallelism.max(1)).collect().await;
    let mut out = BTreeMap::new();
    for got in pages {
        for p in got?.parameters() {
            if let (Some(n), Some(v)) = (p.name(), p.value()) {
                out.insert(n.to_owned(), v.to_owned());
            }
        }
    }
    Ok(out)
}

/// `[parameters] exclude`, compiled (config validation refused a bad glob).
fn excludes(cfg: &crate::config::Config) -> Result<globset::GlobSet, StepError> {
    cfg.parameters.excludes().map_err(|e| StepError::Invalid(format!("[parameters] exclude: {e}")))
}

fn is_secure(m: &ParameterMetadata) -> bool {
    m.r#type() == Some(&ParameterType::SecureString)
}

impl Params {
    async fn converge(&self, ctx: &Ctx) -> Result<Outcome, StepError> {
        let cfg = &ctx.cfg;
        let (src_path, dst_path) = (&cfg.source.parameter_path, &cfg.target.parameter_path);
        let excludes = excludes(cfg)?;
        let mut report = Report::default();

        // Dev and prod are listed side by side.
        let lane = crate::aws::lane();
        let (dev, prod_listed) = tokio::join!(
            crate::aws::in_lane(format!("{lane}/describe-dev"), describe(&ctx.aws.source.ssm, src_path)),
            crate::aws::in_lane(format!("{lane}/describe-prod"), describe(&ctx.aws.target.ssm, dst_path)),
        );
        let dev = dev?;
        let mut copy: Vec<ParameterMetadata> = Vec::new();
        for m in dev {
            let name = m.name().unwrap_or_default().to_owned();
            if is_secure(&m) {
                report.skipped.push((name, "SecureString: needs manual migration (its value is never read)".into()));
            } else if let Some(i) = excludes.matches(&name).first() {
                report
                    .skipped
                    .push((name, format!("excluded by [parameters] exclude {:?}", cfg.parameters.exclude[*i])));
            } else {
                copy.push(m);
            }
        }
        let names: Vec<String> = copy.iter().filter_map(|m| m.name().map(str::to_owned)).collect();
        let prod_meta: BTreeMap<String, ParameterMetadata> =
            prod_listed?.into_iter().filter_map(|m| Some((m.name()?.to_owned(), m))).collect();
        let readable: Vec<String> =
            prod_meta.values().filter(|m| !is_secure(m)).filter_map(|m| m.name().map(str::to_owned)).collect();
        // Dev and prod values side by side, too.
        let (dev_values, prod_values) = tokio::join!(
            crate::aws::in_lane(format!("{lane}/dev"), values(&ctx.aws.source.ssm, &names, ctx.parallelism)),
            crate::aws::in_lane(format!("{lane}/prod"), values(&ctx.aws.target.ssm, &readable, ctx.parallelism)),
        );
        let (dev_values, prod_values) = (dev_values?, prod_values?);
        let sources: Vec<Source> = copy
            .into_iter()
            .filter_map(|m| Some(Source { value: dev_values.get(m.name()?)?.clone(), meta: m }))
            .collect();
        // The prod counterparts of the dev identifiers the values hold.
        let refs = references::gather(ctx, sources.iter().map(|s| s.value.as_str())).await?;

        // Decide per parameter; collect the writes.
        let mut writes: Vec<(Source, String, String, Option<String>)> = Vec::new();
        for s in sources {
            let dev_name = s.meta.name().unwrap_or_default().to_owned();
            let Some(prod_name) = cfg.names.parameter(&dev_name) else { continue };
            let tier = s.meta.tier().map_or("Standard", |t| t.as_str()).to_owned();
            let checked = check_value(&refs, &s.value, &tier, s.meta.allowed_pattern());
            let (value, rewritten, found) = match checked {
                Checked::Rejected(why) => {
                    report.rejected.push((dev_name, why));
                    continue;
                }
                Checked::Ok { value, rewritten, found } => (value, rewritten, found),
            };
            references::record(ctx, STEP, &dev_name, &found);
            if !cfg.references.keeps(&dev_name) {
                report
                    .flagged
                    .extend(found.iter().filter(|f| !f.is_mapped()).map(|f| (dev_name.clone(), f.dev.clone())));
            }
            if rewritten {
                report.rewritten.push(prod_name.clone());
            }
            let res = Res::new(STEP, kind::SSM_PARAMETER, format!("parameter{prod_name}"), &prod_name);
            match (prod_meta.get(&prod_name), prod_values.get(&prod_name)) {
                (None, _) => writes.push((s, prod_name, value, None)),
                (Some(m), _) if is_secure(m) => report.conflicts.push(prod_name),
                (Some(_), Some(current)) if *current == value => {
                    ctx.existing(&res, &prod_name, None, crate::engine::Ownership::Unproven)?;
                    report.unchanged.push(prod_name);
                }
                (Some(_), current) => {
                    if self.overwrite {
                        writes.push((s, prod_name, value, Some(current.cloned().unwrap_or_default())));
                    } else {
                        report.conflicts.push(prod_name);
                    }
                }
            }
        }

        // Write with bounded concurrency; the SDK's adaptive retry absorbs
        // ThrottlingException.
        let tags: Vec<Tag> = cfg
            .prod_tags()
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key and value set"))
            .collect();
        let total = writes.len() as u64;
        let written = std::sync::atomic::AtomicU64::new(0);
        let results: Vec<Result<(String, bool), StepError>> =
            futures::stream::iter(writes.into_iter().map(|(s, prod_name, value, prev)| {
                let tags = tags.clone();
                let lane = format!("{}/{prod_name}", crate::aws::lane());
                crate::aws::in_lane(lane, async move {
                    let res = Res::new(STEP, kind::SSM_PARAMETER, format!("parameter{prod_name}"), &prod_name);
                    let put = |overwrite: bool| {
                        let mut req = ctx
                            .aws
                            .target
                            .ssm
                            .put_parameter()
                            .name(&prod_name)
                            .value(&value)
                            .set_type(s.meta.r#type().cloned())
                            .set_description(s.meta.description().map(str::to_owned))
                            .set_tier(s.meta.tier().cloned().filter(|t| *t != ParameterTier::IntelligentTiering))
                            .set_allowed_pattern(s.meta.allowed_pattern().map(str::to_owned))
                            .set_data_type(s.meta.data_type().map(str::to_owned))
                            .overwrite(overwrite);
                        if !overwrite {
                            req = req.set_tags(Some(tags.clone()));
                        }
                        req
                    };
                    match prev {
                        None => {
                            ctx.create(&res, "", Value::Null, || async {
                                put(false).send().await.on(&prod_name, "PutParameter")?;
                                Ok(Created { value: (), id: prod_name.clone(), arn: None, data: Value::Null })
                            })
                            .await?;
                            Ok((prod_name, false))
                        }
                        Some(previous) => {
                            ctx.update(
                                &res,
                                &prod_name,
                                "value",
                                ValueBefore {
                                    value: previous.clone(),
                                    kind: s.meta.r#type().map(|t| t.as_str().to_owned()),
                                },
                                || async {
                                    put(true).send().await.on(&prod_name, "PutParameter")?;
                                    Ok(())
                                },
                            )
                            .await?;
                            Ok((prod_name, true))
                        }
                    }
                })
            }))
            .buffer_unordered(ctx.parallelism.clamp(1, MAX_WRITE_CONCURRENCY))
            .inspect(|_| {
                let n = written.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                crate::progress::counter(STEP, "parameters copied", n, Some(total));
            })
            .collect()
            .await;
        let mut failures = Vec::new();
        for r in results {
            match r {
                Ok((name, true)) => report.overwritten.push(name),
                Ok((name, false)) => report.copied.push(name),
                Err(e) => failures.push(e),
            }
        }
        for (name, why) in &report.skipped {
            ctx.notice(STEP, format!("skipped {name}: {why}"));
        }
        for name in &report.conflicts {
            ctx.notice(
                STEP,
                format!(
                    "conflict: {name} exists in prod with another value; not overwritten (paymig params --overwrite)"
                ),
            );
        }
        for (name, why) in &report.rejected {
            ctx.notice(STEP, format!("rejected {name}: {why}"));
        }
        report.copied.sort();
        report.overwritten.sort();
        let rejected = report.rejected.len();
        let done = report.copied.len() + report.overwritten.len();
        *self.report.lock().expect("report poisoned") = report;
        if let Some(e) = StepError::summarise(done, "copied", failures) {
            return Err(e);
        }
        if rejected > 0 && !ctx.is_plan() {
            return Err(StepError::Invalid(format!(
                "{rejected} parameter(s) rejected (named above); fix them in dev and re-run"
            )));
        }
        Ok(Outcome::Done)
    }
}

/// Every copyable dev parameter against its prod twin; excluded and
/// SecureString parameters only by name (their prod twin must not exist).
async fn validate(ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
    use crate::report::{diff, Check, Findings, Resource};
    let cfg = &ctx.cfg;
    let (src_path, dst_path) = (&cfg.source.parameter_path, &cfg.target.parameter_path);
    let excludes = excludes(cfg)?;
    let mut f = Findings::default();
    let dev = describe(&ctx.aws.source.ssm, src_path).await?;
    let prod: BTreeMap<String, ParameterMetadata> = describe(&ctx.aws.target.ssm, dst_path)
        .await?
        .into_iter()
        .filter_map(|m| Some((m.name()?.to_owned(), m)))
        .collect();
    let (copyable, secret): (Vec<&ParameterMetadata>, Vec<&ParameterMetadata>) =
        dev.iter().partition(|m| !is_secure(m) && excludes.matches(m.name().unwrap_or_default()).is_empty());
    let names: Vec<String> = copyable.iter().filter_map(|m| m.name().map(str::to_owned)).collect();
    let dev_values = values(&ctx.aws.source.ssm, &names, ctx.parallelism).await?;
    let readable: Vec<String> =
        prod.values().filter(|m| !is_secure(m)).filter_map(|m| m.name().map(str::to_owned)).collect();
    let prod_values = values(&ctx.aws.target.ssm, &readable, ctx.parallelism).await?;
    let refs = references::gather(ctx, dev_values.values().chain(prod_values.values()).map(String::as_str)).await?;
    let mut leftovers = Vec::new();
    for m in copyable {
        let dev_name = m.name().unwrap_or_default();
        let Some(prod_name) = cfg.names.parameter(dev_name) else { continue };
        let Some(dev_value) = dev_values.get(dev_name) else { continue };
        let tier = m.tier().map_or("Standard", |t| t.as_str());
        let Checked::Ok { value: want, .. } = check_value(&refs, dev_value, tier, m.allowed_pattern()) else {
            continue;
        };
        if let Some(have) = prod_values.get(&prod_name) {
            leftovers.extend(refs.rewrite(have).1.into_iter().map(|f| (dev_name.to_owned(), f)));
        }
        match (prod.get(&prod_name), prod_values.get(&prod_name)) {
            (Some(pm), Some(have)) => {
                let mut d = Vec::new();
                diff(&mut d, "name", dev_name, &prod_name, true);
                diff(&mut d, "value", dev_value, have, *have == want);
                diff(&mut d, "type", format!("{:?}", m.r#type()), format!("{:?}", pm.r#type()), false);
                f.resources.push(Resource::compared("ssm_parameter", dev_name, &prod_name, d));
            }
            _ => f.resources.push(Resource::missing("ssm_parameter", dev_name, &prod_name)),
        }
    }
    f.checks.extend(references::checks(ctx, dst_path, &leftovers));
    let copied: Vec<String> =
        secret.iter().filter_map(|m| cfg.names.parameter(m.name()?)).filter(|p| prod.contains_key(p)).collect();
    f.checks.push(Check::new(
        "params.no_securestring_copied",
        dst_path,
        copied.is_empty(),
        if copied.is_empty() {
            format!("none of {} SecureString/excluded parameters in prod", secret.len())
        } else {
            format!("present in prod: {}", copied.join(", "))
        },
    ));
    Ok(f)
}

/// A parameter's value and type before an update (never a SecureString:
/// those are neither read nor migrated), as its intent records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ValueBefore {
    value: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    let ssm = &ctx.aws.target.ssm;
    let name = r.intent.name.as_str();
    match r.intent.op {
        Op::Create | Op::Adopt => {
            ssm.delete_parameter().name(name).send().await.gone(name, "DeleteParameter")?;
        }
        Op::Update => {
            let before: ValueBefore = r.prev()?;
            let ty = before.kind.as_deref().map(ParameterType::from);
            ssm.put_parameter()
                .name(name)
                .value(before.value)
                .set_type(ty)
                .overwrite(true)
                .send()
                .await
                .on(name, "PutParameter")?;
        }
    }
    Ok(())
}

/// Deletes created parameters ten at a time (DeleteParameters); a name SSM
/// reports as invalid (not found) is already gone, so it counts as undone.
/// Anything but a create is undone on its own.
async fn undo_creates(ctx: &Ctx, records: &[&Record]) -> Vec<Result<(), StepError>> {
    if records.len() < 2 || records.iter().any(|r| r.intent.op != Op::Create) {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            out.push(undo(ctx, r).await);
        }
        return out;
    }
    let names: Vec<String> = records.iter().map(|r| r.intent.name.clone()).collect();
    match ctx.aws.target.ssm.delete_parameters().set_names(Some(names)).send().await {
        Ok(out) => records
            .iter()
            .map(|r| {
                let name = r.intent.name.as_str();
                if out.deleted_parameters().iter().chain(out.invalid_parameters()).any(|n| n == name) {
                    Ok(())
                } else {
                    Err(StepError::Invalid(format!("DeleteParameters did not report {name}; re-run to retry")))
                }
            })
            .collect(),
        Err(e) => {
            let failure = crate::aws::AwsFailure::of(&e);
            records
                .iter()
                .map(|r| {
                    Err(StepError::Aws {
                        resource: r.intent.name.clone(),
                        op: "DeleteParameters".into(),
                        failure: Box::new(failure.clone()),
                    })
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The reference configuration's names, one account.
    fn names() -> Counterparts {
        let names = Config::parse(
            std::path::Path::new("m.toml"),
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations.toml")).unwrap(),
        )
        .unwrap()
        .names;
        Counterparts::new(names, "123456789012", "123456789012", "us-east-1")
    }

    #[test]
    fn known_names_and_paths_are_rewritten_and_unknown_dev_words_flagged() {
        let n = names();
        let ok = |v: &str| match check_value(&n, v, "Standard", None) {
            Checked::Ok { value, rewritten, found } => {
                (value, rewritten, found.iter().filter(|f| !f.is_mapped()).map(|f| f.dev.clone()).collect::<Vec<_>>())
            }
            Checked::Rejected(r) => panic!("{v}: {r}"),
        };
        assert_eq!(ok("sessions-dev"), ("sessions-prod".into(), true, vec![]));
        assert_eq!(ok("/dev/payments/table"), ("/prod/payments/table".into(), true, vec![]));
        // An endpoint is never rewritten by text: its `cluster-<id>` part is
        // the dev cluster's; without the prod cluster's own, it is named.
        let host = "payments-dev.cluster-abc.us-east-1.rds.amazonaws.com";
        assert_eq!(ok(host), (host.into(), false, vec![host.to_owned()]));
        assert_eq!(
            ok("legacy-dev.internal:8080"),
            ("legacy-dev.internal:8080".into(), false, vec!["legacy-dev".into()])
        );
        assert_eq!(ok("developer"), ("developer".into(), false, vec![]));
    }

    #[test]
    fn ssm_rules_reject_with_a_reason() {
        let n = names();
        assert_eq!(check_value(&n, "", "Standard", None), Checked::Rejected("empty value".into()));
        assert!(
            matches!(check_value(&n, &"x".repeat(4097), "Standard", None), Checked::Rejected(r) if r.contains("4096"))
        );
        assert!(matches!(check_value(&n, &"x".repeat(4097), "Advanced", None), Checked::Ok { .. }));
        assert!(
            matches!(check_value(&n, "sessions-dev", "Standard", Some("^[a-z]+-dev$")), Checked::Rejected(r) if r.contains("rewritten"))
        );
        assert!(matches!(check_value(&n, "42", "Standard", Some("^[0-9]+$")), Checked::Ok { .. }));
    }
}

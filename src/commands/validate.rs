//! `paymig validate`: every step's dev-vs-prod comparison and compliance
//! checks, rendered as Markdown (default), JSON (SPEC schema) or one
//! self-contained HTML page. Reads only; exit 3 on drift, a missing
//! component or a failed check.

use std::path::PathBuf;

use crate::cli::ReportFormat;
use crate::config::Config;
use crate::engine::{Mode, StepError};
use crate::error::{Error, Result};
use crate::report::Report;

pub async fn run(cfg: Config, format: ReportFormat, out: Option<PathBuf>) -> Result<()> {
    let journal = super::open_read_only(&cfg)?;
    let dag = super::build_dag()?;
    let ctx = super::connect(cfg, Mode::Plan, journal).await?;
    super::preflight(&ctx, &dag).await?;
    // The prod key, which several checks compare against.
    // A key that is not there is a finding of the kms step; one that could
    // not be read is a failure (exit 1), never reported as drift.
    let alias = ctx.cfg.names.kms_alias();
    match ctx.aws.target.kms.describe_key().key_id(&alias).send().await.map_err(StepError::aws(&alias, "DescribeKey")) {
        Ok(k) => ctx.outputs().kms_key_arn = k.key_metadata.and_then(|m| m.arn),
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            super::report_calls(&ctx.aws);
            return Err(Error::StepsFailed { lines: vec![format!("kms: {e}")] });
        }
    }
    let results = futures::future::join_all(dag.steps().iter().map(|s| s.validate(&ctx))).await;
    let mut findings = Vec::new();
    let mut errors = Vec::new();
    for (step, r) in dag.steps().iter().zip(results) {
        match r {
            Ok(mut f) => {
                for r in &mut f.resources {
                    r.tier = step.id().to_owned();
                }
                findings.push(f)
            }
            Err(e) => errors.push(format!("{}: {e}", step.id())),
        }
    }
    if !errors.is_empty() {
        super::report_calls(&ctx.aws);
        return Err(Error::StepsFailed { lines: errors });
    }
    let mut report = Report::from(findings);
    report.meta = crate::report::Meta {
        generated_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        paymig_version: env!("CARGO_PKG_VERSION").to_owned(),
        migration: ctx.cfg.migration.name.clone(),
        account: ctx.account.clone(),
        region: ctx.cfg.migration.region.clone(),
        run: ctx.journal.as_ref().and_then(|j| j.runs().last().map(|r| r.id.clone())),
    };
    let title = format!(
        "paymig validate: {} ({} -> {})",
        ctx.cfg.migration.name,
        ctx.cfg.source.name_suffix.trim_start_matches('-'),
        ctx.suffix()
    );
    let text = match format {
        ReportFormat::Md => report.to_markdown(&title),
        ReportFormat::Json => report.to_json(),
        ReportFormat::Html => report.to_html(&title),
    };
    match &out {
        Some(path) => std::fs::write(path, &text)
            .map_err(|e| Error::Usage(format!("cannot write the report to {}: {e}", path.display())))?,
        None => println!("{text}"),
    }
    let s = &report.summary;
    tracing::info!(
        resources = s.resources,
        matching = s.matching,
        differing = s.differing,
        missing = s.missing,
        checks_failed = s.checks_failed,
        "validate: {} resources, {} matching, {} with drift, {} missing; {} of {} checks failed",
        s.resources,
        s.matching,
        s.differing,
        s.missing,
        s.checks_failed,
        report.checks.len()
    );
    super::report_calls(&ctx.aws);
    if report.is_clean() {
        Ok(())
    } else {
        Err(Error::Drift(format!(
            "{} drifted, {} missing, {} failed check(s)",
            s.differing, s.missing, s.checks_failed
        )))
    }
}

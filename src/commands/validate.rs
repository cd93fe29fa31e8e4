//! `paymig validate`: every step's dev-vs-prod comparison and compliance
//! checks, rendered as Markdown (default), JSON (SPEC schema) or one
//! self-contained HTML page. Reads only; exit 3 on drift, a missing
//! component or a failed check.

use std::path::PathBuf;

use crate::cli::ReportFormat;
use crate::config::Config;
use crate::engine::Mode;
use crate::error::{Error, Result};
use crate::report::Report;

pub async fn run(cfg: Config, format: ReportFormat, out: Option<PathBuf>) -> Result<()> {
    let journal = super::open_read_only(&cfg)?;
    let dag = super::build_dag()?;
    let ctx = super::connect(cfg, Mode::Plan, journal).await?;
    super::preflight(&ctx, &dag).await?;
    // The prod key, which several checks compare against.
    if let Ok(k) = ctx.aws.target.kms.describe_key().key_id(ctx.cfg.names.kms_alias()).send().await {
        ctx.outputs().kms_key_arn = k.key_metadata.and_then(|m| m.arn);
    }
    let results = futures::future::join_all(dag.steps().iter().map(|s| s.validate(&ctx))).await;
    let mut findings = Vec::new();
    let mut errors = Vec::new();
    for (step, r) in dag.steps().iter().zip(results) {
        match r {
            Ok(f) => findings.push(f),
            Err(e) => errors.push(format!("{}: {e}", step.id())),
        }
    }
    if !errors.is_empty() {
        super::report_calls(&ctx.aws);
        return Err(Error::StepsFailed { failed: errors.len(), summary: errors.join("; ") });
    }
    let report = Report::from(findings);
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

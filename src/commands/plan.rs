//! `paymig plan`: preflight, then every step in plan mode — the same code path
//! as apply, with mutations only recorded ([`crate::engine::plan`]) — printed
//! as text or JSON.

use crate::cli::OutputFormat;
use crate::config::Config;
use crate::engine::dag::Status;
use crate::engine::plan::{compute, Plan};
use crate::engine::Action;
use crate::error::{Error, Result};

pub async fn run(cfg: Config, args: crate::cli::PlanArgs) -> Result<()> {
    let crate::cli::PlanArgs { format, detailed_exitcode } = args;
    let dag = super::build_dag()?;
    let ctx = super::open_reading(cfg).await?;
    super::announce_reads(&ctx);
    super::preflight(&ctx, &dag).await?;
    let plan = compute(&ctx, &dag).await;
    match format {
        OutputFormat::Json => print_json(&ctx, &dag, &plan),
        OutputFormat::Text => print_text(&ctx, &dag, &plan),
    }
    super::report_calls(&ctx.aws);
    if !plan.failed.is_empty() {
        Err(Error::StepsFailed { lines: plan.failed })
    } else if detailed_exitcode && plan.pending() > 0 {
        Err(Error::ChangesPending(plan.pending()))
    } else {
        Ok(())
    }
}

fn print_json(ctx: &crate::engine::Ctx, dag: &crate::engine::dag::Dag, plan: &Plan) {
    let doc = plan.document(dag, &ctx.cfg.migration.name, &ctx.account);
    println!("{}", serde_json::to_string_pretty(&doc).expect("plan serializes"));
}

const GREEN: &str = "32";
const YELLOW: &str = "33";
const MAGENTA: &str = "35";

use super::paint;

/// One reference as plan and apply show it: mapped (`dev → prod`), named
/// (`!`, copied unchanged, with why) or kept (`=`).
pub fn describe_reference(r: &crate::steps::common::references::Reference) -> String {
    let f = &r.found;
    match (&f.prod, r.kept) {
        (Some(p), _) => format!("{}: {} → {p}", r.place, f.dev),
        (None, true) => format!("= {}: {} kept as it is ([references] keep)", r.place, f.dev),
        (None, false) => format!(
            "! {}: {} is copied unchanged: {} (accept it with [references] keep, or change the dev value)",
            r.place,
            f.dev,
            f.why.as_deref().unwrap_or("no prod counterpart")
        ),
    }
}

/// The plan as text (also shown by `apply` before it asks).
pub fn print_text(ctx: &crate::engine::Ctx, dag: &crate::engine::dag::Dag, plan: &Plan) {
    let Plan { reports, changes, notices, references, counts, total, .. } = plan;
    println!(
        "paymig plan: migration {:?} into account {} ({})",
        ctx.cfg.migration.name, ctx.account, ctx.cfg.migration.region
    );
    for s in dag.steps() {
        let id = s.id();
        let c = counts.get(id).copied().unwrap_or_default();
        let report = reports.iter().find(|r| r.step == id);
        let state = match report.map(|r| &r.status) {
            Some(Status::Skipped(why)) => format!("skipped: {why}"),
            Some(Status::Failed(e)) => format!("FAILED: {e}"),
            Some(Status::Blocked(e)) => format!("blocked: {e}"),
            _ => format!("{} to create, {} to update, {} unchanged", c[0], c[1], c[2]),
        };
        println!("\n[{id}] {state}");
        for ch in changes.iter().filter(|x| x.step == id && x.action != Action::Noop) {
            // `+ ~ -` mark actions only; a new resource's settings are
            // indented under it with a neutral `·`.
            let sign = if ch.action == Action::Create { paint(GREEN, "+") } else { paint(YELLOW, "~") };
            match ch.action {
                Action::Update if ch.settings.len() > 1 => {
                    println!("  {sign} {} {}", ch.kind, ch.name);
                    for setting in &ch.settings {
                        println!("      · {setting}");
                    }
                }
                _ => {
                    let detail = if ch.detail.is_empty() { String::new() } else { format!(" ({})", ch.detail) };
                    println!("  {sign} {} {}{detail}", ch.kind, ch.name);
                }
            }
            if ch.action == Action::Create {
                for setting in &ch.settings {
                    println!("      · {setting}");
                }
            }
        }
        for (_, n) in notices.iter().filter(|(s, _)| s == id) {
            println!("  {} {n}", paint(MAGENTA, "!"));
        }
        let refs: Vec<_> = references.iter().filter(|(s, _)| s == id).map(|(_, r)| r).collect();
        if !refs.is_empty() {
            println!("  references to dev in copied values:");
            for r in refs {
                let line = describe_reference(r);
                match line.strip_prefix("! ") {
                    Some(rest) => println!("    {} {rest}", paint(MAGENTA, "!")),
                    None => println!("    {line}"),
                }
            }
        }
    }
    println!("\nPlan: {} to create, {} to update, {} unchanged.", total[0], total[1], total[2]);
    println!("{}", plan.estimate.line("expected duration"));
}

//! `status --format html`: one run drawn as a timeline — a bar per step
//! from the journal's times, the waits on AWS marked inside the bars, the
//! critical path highlighted, failures in their place. One self-contained
//! page (no network, no JavaScript).

use std::collections::BTreeMap;

use crate::engine::estimate::{human, Observation, StepTime};
use crate::engine::journal::Run;

/// A run's steps on one time axis.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub run: Run,
    pub steps: Vec<StepTime>,
    pub waits: Vec<crate::engine::estimate::Observed>,
    /// Seconds from the run's start to its last step's end.
    pub total: f64,
    /// The steps on the critical path, first to last.
    pub critical: Vec<String>,
    /// Where the times come from.
    pub source: &'static str,
}

impl Timeline {
    /// The timeline of `run`: its recorded step times, or (a run that
    /// ended without recording them — killed, or written by an older
    /// paymig) its journal entries' times per step. `deps` gives a step's
    /// dependencies (for an undo run: the steps that depend on it), for
    /// the critical path.
    pub fn of(run: &Run, spans: &BTreeMap<String, (f64, f64)>, deps: impl Fn(&str) -> Vec<String>) -> Timeline {
        let (steps, waits, source) = match &run.observed {
            Some(Observation { steps, waits }) if !steps.is_empty() => {
                (steps.clone(), waits.clone(), "the step times the run recorded")
            }
            _ => {
                let steps = spans
                    .iter()
                    .map(|(step, (start, end))| StepTime {
                        step: step.clone(),
                        start_s: *start,
                        seconds: (end - start).max(0.0),
                        status: run.status.clone().unwrap_or_else(|| "unfinished".into()),
                        changes: 0,
                        waited_s: 0.0,
                    })
                    .collect();
                (steps, Vec::new(), "the journal entries' times (the run recorded no step times)")
            }
        };
        // The axis starts with the first step (the run's reads before it —
        // preflight, the plan — are not drawn).
        let origin = steps.iter().map(|s| s.start_s).fold(f64::INFINITY, f64::min);
        let origin = if origin.is_finite() { origin } else { 0.0 };
        let mut steps = steps;
        for s in &mut steps {
            s.start_s -= origin;
        }
        let mut waits = waits;
        for w in &mut waits {
            w.at_s -= origin;
        }
        let total = steps.iter().map(|s| s.start_s + s.seconds).fold(0.0, f64::max);
        let critical = critical(&steps, deps);
        Timeline { run: run.clone(), steps, waits, total, critical, source }
    }

    pub fn to_html(&self, title: &str) -> String {
        let scale = self.total.max(0.001);
        let pct = |s: f64| format!("{:.3}%", (s / scale * 100.0).clamp(0.0, 100.0));
        let mut rows = String::new();
        let mut steps = self.steps.clone();
        steps.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        for s in &steps {
            let on_path = self.critical.contains(&s.step);
            let mut waits = String::new();
            let mut named = Vec::new();
            for w in self.waits.iter().filter(|w| w.step == s.step) {
                // Inside the bar: positions relative to the bar itself.
                let within = s.seconds.max(0.001);
                let left = ((w.at_s - s.start_s) / within * 100.0).clamp(0.0, 100.0);
                let width = (w.seconds / within * 100.0).clamp(0.0, 100.0 - left);
                waits.push_str(&format!(
                    "<span class=\"wait\" data-wait=\"{}\" style=\"left:{left:.3}%;width:{width:.3}%\" title=\"{}\"></span>",
                    h(&serde_json::to_value(w.wait).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()),
                    h(&format!("{} {} ≈ {}", w.resource, w.wait.words(), precise(w.seconds)))
                ));
                named.push(format!("{} {}", w.wait.words(), precise(w.seconds)));
            }
            let class = format!("bar {}{}", h(&s.status), if on_path { " critical" } else { "" });
            let label = if named.is_empty() {
                format!("{} · {}", s.step, precise(s.seconds))
            } else {
                format!("{} · {} ({})", s.step, precise(s.seconds), named.join(", "))
            };
            rows.push_str(&format!(
                "<div class=\"row\"><div class=\"name\">{step}</div><div class=\"track\"><div class=\"{class}\" data-step=\"{step}\" data-status=\"{status}\" style=\"left:{left};width:{width}\">{waits}</div></div><div class=\"label\">{label}</div></div>\n",
                step = h(&s.step),
                status = h(&s.status),
                left = pct(s.start_s),
                width = pct(s.seconds.max(scale * 0.002)),
                label = h(&label),
            ));
        }
        let ticks: String = (0..=4)
            .map(|i| {
                let at = self.total * f64::from(i) / 4.0;
                format!("<span class=\"tick\" style=\"left:{}\">{}</span>", pct(at), h(&precise(at)))
            })
            .collect();
        let r = &self.run;
        format!(
            r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;color:#1a1a1a}}
.row{{display:flex;align-items:center;margin:.25rem 0}}
.name{{width:8rem;font-weight:600}}
.track{{position:relative;flex:1;height:1.4rem;background:#f3f3f3}}
.label{{width:26rem;padding-left:.6rem;font-size:.85rem}}
.bar{{position:absolute;top:0;height:100%;background:#7aa7d6;overflow:hidden}}
.bar.failed,.bar.interrupted{{background:#d9534f}}
.bar.critical{{background:#2b5d94;outline:2px solid #e0a000}}
.wait{{position:absolute;top:0;height:100%;background:repeating-linear-gradient(45deg,rgba(255,255,255,.55) 0 4px,transparent 4px 8px)}}
.axis{{position:relative;height:1.2rem;margin-left:8rem;margin-right:26.6rem;font-size:.75rem;color:#555}}
.tick{{position:absolute;transform:translateX(-50%)}}
#legend span{{display:inline-block;margin-right:1.2rem}}
.key{{display:inline-block;width:1rem;height:.8rem;vertical-align:middle;margin-right:.3rem}}
</style></head><body>
<h1>{t}</h1>
<p id="meta">run {id} · {command} · started {started} · {status} · {total} from first step to last · times from {source}</p>
<p id="critical" data-steps="{critical_attr}">critical path: {critical}</p>
<p id="legend"><span><i class="key" style="background:#2b5d94;outline:2px solid #e0a000"></i>on the critical path</span><span><i class="key" style="background:#7aa7d6"></i>in its shadow</span><span><i class="key" style="background:repeating-linear-gradient(45deg,#bbb 0 4px,#7aa7d6 4px 8px)"></i>waiting on AWS</span><span><i class="key" style="background:#d9534f"></i>failed or interrupted</span></p>
<div id="timeline">
{rows}</div>
<div class="axis">{ticks}</div>
</body></html>
"#,
            t = h(title),
            id = h(&r.id),
            command = h(&r.command),
            started = h(&r.started),
            status = h(r.status.as_deref().unwrap_or("unfinished")),
            total = h(&precise(self.total)),
            source = h(self.source),
            critical_attr = h(&self.critical.join(" ")),
            critical = h(&if self.critical.is_empty() { "none".to_owned() } else { self.critical.join(" → ") }),
        )
    }
}

/// The critical path from the step times: from the step that ended last,
/// back through whichever of its dependencies ended last before it started
/// (or, for one started beside a dependency, the dependency itself).
fn critical(steps: &[StepTime], deps: impl Fn(&str) -> Vec<String>) -> Vec<String> {
    let end = |s: &StepTime| s.start_s + s.seconds;
    let Some(mut at) = steps.iter().max_by(|a, b| end(a).total_cmp(&end(b))) else { return Vec::new() };
    let mut path = vec![at.step.clone()];
    loop {
        let before: Vec<&StepTime> = deps(&at.step)
            .iter()
            .filter_map(|d| steps.iter().find(|s| &s.step == d))
            .filter(|d| d.start_s <= at.start_s + 0.001)
            .collect();
        let Some(next) = before.into_iter().max_by(|a, b| end(a).total_cmp(&end(b))) else { break };
        if path.contains(&next.step) {
            break;
        }
        path.push(next.step.clone());
        at = next;
    }
    path.reverse();
    path
}

/// A duration to a tenth of a second under ten seconds, else as people say it.
fn precise(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else {
        human(seconds)
    }
}

fn h(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, start: f64, seconds: f64) -> StepTime {
        StepTime { step: name.into(), start_s: start, seconds, status: "done".into(), changes: 1, waited_s: 0.0 }
    }

    #[test]
    fn the_critical_path_follows_what_ended_last_before_each_step() {
        let steps = vec![
            step("kms", 0.0, 1.0),
            step("network", 0.0, 10.0),
            step("database", 4.0, 100.0),
            step("lambda", 10.0, 5.0),
            step("monitoring", 104.0, 2.0),
        ];
        let deps = |s: &str| -> Vec<String> {
            match s {
                "database" => vec!["kms".into(), "network".into()],
                "lambda" => vec!["network".into()],
                "monitoring" => vec!["database".into(), "lambda".into()],
                _ => vec![],
            }
        };
        // database started beside network: network ended later, but started
        // before it, so it is what held database back.
        assert_eq!(critical(&steps, deps), vec!["network", "database", "monitoring"]);
    }
}

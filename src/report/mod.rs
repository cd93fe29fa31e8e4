//! The validate report (SPEC "validate report"): each step contributes its
//! dev-vs-prod comparisons and its compliance checks; this module holds the
//! model and renders it as Markdown, JSON or one self-contained HTML page.

pub mod timeline;

use serde::Serialize;

/// One field compared between dev and prod.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Difference {
    pub field: String,
    pub dev: String,
    pub prod: String,
    /// A difference the migration intends (renames, prod tags, config).
    pub expected: bool,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Match,
    Differs,
    Missing,
}

/// A dev resource and its prod twin.
#[derive(Debug, Clone, Serialize)]
pub struct Resource {
    /// The step (tier) that compared it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tier: String,
    pub kind: String,
    pub dev: String,
    pub prod: String,
    pub status: Status,
    pub differences: Vec<Difference>,
}

impl Resource {
    /// A compared pair; drift (an unexpected difference) makes it `differs`.
    pub fn compared(kind: &str, dev: &str, prod: &str, differences: Vec<Difference>) -> Resource {
        let status = if differences.iter().any(|d| !d.expected) { Status::Differs } else { Status::Match };
        Resource { tier: String::new(), kind: kind.into(), dev: dev.into(), prod: prod.into(), status, differences }
    }

    pub fn missing(kind: &str, dev: &str, prod: &str) -> Resource {
        Resource {
            tier: String::new(),
            kind: kind.into(),
            dev: dev.into(),
            prod: prod.into(),
            status: Status::Missing,
            differences: vec![],
        }
    }
}

/// A compliance check with a stable id.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: String,
    pub resource: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    pub fn new(id: &str, resource: &str, passed: bool, detail: impl Into<String>) -> Check {
        Check { id: id.into(), resource: resource.into(), passed, detail: detail.into() }
    }

    /// A check of one setting, its detail the state found (`point-in-time
    /// recovery: disabled`), whether it passed or not.
    pub fn setting(id: &str, resource: &str, passed: bool, setting: &str, state: impl std::fmt::Display) -> Check {
        Check::new(id, resource, passed, format!("{setting}: {state}"))
    }

    /// A check whose passing detail is `wanted`; a failure names what was
    /// found instead (`wanted — found: …`).
    pub fn wanted(id: &str, resource: &str, passed: bool, wanted: &str, found: impl std::fmt::Display) -> Check {
        let detail = if passed { wanted.to_owned() } else { format!("{wanted} — found: {found}") };
        Check::new(id, resource, passed, detail)
    }
}

/// `on` / `off`.
pub fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// Compares two values of a field, `expected` when the migration intends a
/// difference. Values are shown plainly (an optional value's `Some("x")` is
/// `x`, `None` is `(none)`), and two JSON documents (policies, dashboards,
/// alarm definitions) are compared path by path: one difference per path
/// that differs (`definition/threshold`), never two whole documents.
pub fn diff(out: &mut Vec<Difference>, field: &str, dev: impl ToString, prod: impl ToString, expected: bool) {
    let (dev, prod) = (plain(&dev.to_string()), plain(&prod.to_string()));
    if dev == prod {
        return;
    }
    let structured =
        |t: &str| serde_json::from_str::<serde_json::Value>(t).ok().filter(|v| v.is_object() || v.is_array());
    if let (Some(a), Some(b)) = (structured(&dev), structured(&prod)) {
        let mut paths = Vec::new();
        json_paths(&a, &b, String::new(), &mut paths);
        const MOST: usize = 20;
        let more = paths.len().saturating_sub(MOST);
        for (path, a, b) in paths.into_iter().take(MOST) {
            out.push(Difference { field: format!("{field}{path}"), dev: a, prod: b, expected });
        }
        if more > 0 {
            out.push(Difference {
                field: format!("{field} (+{more} more paths)"),
                dev: "…".into(),
                prod: "…".into(),
                expected,
            });
        }
        return;
    }
    out.push(Difference { field: field.into(), dev, prod, expected });
}

/// A long value cut for one terminal line.
fn cut(v: &str) -> String {
    let one_line = v.replace('\n', " ");
    if one_line.chars().count() > 100 {
        one_line.chars().take(99).chain(std::iter::once('…')).collect()
    } else {
        one_line
    }
}

/// A value as a person reads it: Rust's `Some("x")` / `None` / `"x"` shown
/// as `x` / `(none)` / `x`.
/// An optional value as a person reads it: the value, or `none`.
pub fn or_none<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

pub fn plain(text: &str) -> String {
    let t = text.trim();
    if t == "None" {
        return "(none)".into();
    }
    let t = t.strip_prefix("Some(").and_then(|x| x.strip_suffix(')')).unwrap_or(t);
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') && !t[1..t.len() - 1].contains('"') {
        return t[1..t.len() - 1].to_owned();
    }
    t.to_owned()
}

/// Every path (`/a/0/b`) where two JSON values differ, with both sides.
fn json_paths(a: &serde_json::Value, b: &serde_json::Value, at: String, out: &mut Vec<(String, String, String)>) {
    use serde_json::Value;
    let shown = |v: Option<&Value>| match v {
        None => "(absent)".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let path = format!("{at}/{k}");
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => json_paths(p, q, path, out),
                    (p, q) => out.push((path, shown(p), shown(q))),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let path = format!("{at}/{i}");
                match (x.get(i), y.get(i)) {
                    (Some(p), Some(q)) => json_paths(p, q, path, out),
                    (p, q) => out.push((path, shown(p), shown(q))),
                }
            }
        }
        (p, q) if p != q => out.push((at, shown(Some(p)), shown(Some(q)))),
        _ => {}
    }
}

/// When, where and by what the report was made (`meta` in the JSON form).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Meta {
    pub generated_at: String,
    pub paymig_version: String,
    pub migration: String,
    pub account: String,
    pub region: String,
    /// The newest run in the journal, if any.
    pub run: Option<String>,
}

/// What a step contributes.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Findings {
    pub resources: Vec<Resource>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub resources: usize,
    pub matching: usize,
    pub differing: usize,
    pub missing: usize,
    pub checks_failed: usize,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub resources: Vec<Resource>,
    pub checks: Vec<Check>,
    pub meta: Meta,
}

impl Report {
    /// The report of every step's findings (in step order): missing and
    /// drifting resources first, then the matching ones, each group by tier
    /// (the order of `findings`); failed checks first.
    pub fn from(findings: Vec<Findings>) -> Report {
        let mut r = Report::default();
        for f in findings {
            r.resources.extend(f.resources);
            r.checks.extend(f.checks);
        }
        // A resource failing a check does not match, whatever dev has: the
        // check is named among its differences.
        for res in r.resources.iter_mut().filter(|x| x.status != Status::Missing) {
            for c in r.checks.iter().filter(|c| !c.passed && c.resource == res.prod) {
                res.differences.push(Difference {
                    field: format!("check {}", c.id),
                    dev: "must pass".into(),
                    prod: c.detail.clone(),
                    expected: false,
                });
                res.status = Status::Differs;
            }
        }
        // Stable sorts: inside a status, the tiers keep their order.
        let rank = |s: Status| match s {
            Status::Missing => 0,
            Status::Differs => 1,
            Status::Match => 2,
        };
        r.resources.sort_by_key(|x| rank(x.status));
        r.checks.sort_by_key(|c| c.passed);
        r.summary = Summary {
            resources: r.resources.len(),
            matching: r.resources.iter().filter(|x| x.status == Status::Match).count(),
            differing: r.resources.iter().filter(|x| x.status == Status::Differs).count(),
            missing: r.resources.iter().filter(|x| x.status == Status::Missing).count(),
            checks_failed: r.checks.iter().filter(|c| !c.passed).count(),
        };
        r
    }

    /// Drift, a missing component or a failed check.
    pub fn is_clean(&self) -> bool {
        self.summary.differing == 0 && self.summary.missing == 0 && self.summary.checks_failed == 0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// The totals in one line.
    pub fn totals(&self) -> String {
        self.totals_with(|n| n.to_string())
    }

    /// [`Report::totals`] with the resource count written by `count`.
    fn totals_with(&self, count: impl Fn(usize) -> String) -> String {
        let s = &self.summary;
        format!(
            "{} resources: {} matching, {} with drift, {} missing · checks: {} of {} failed",
            count(s.resources),
            s.matching,
            s.differing,
            s.missing,
            s.checks_failed,
            self.checks.len()
        )
    }

    /// The summary a person reads at a terminal: what needs attention
    /// first (failed checks, drift, missing resources), the totals last;
    /// expected differences only counted.
    pub fn to_text(&self, title: &str, colour: bool) -> String {
        let paint = |code: &str, t: &str| if colour { format!("\x1b[{code}m{t}\x1b[0m") } else { t.to_owned() };
        let m = &self.meta;
        let mut out = format!(
            "{title}\naccount {}, {} · journal run {} · {}\n",
            m.account,
            m.region,
            m.run.as_deref().unwrap_or("none"),
            m.generated_at
        );
        let failed: Vec<&Check> = self.checks.iter().filter(|c| !c.passed).collect();
        if !failed.is_empty() {
            out += &format!("\n{}\n", paint("31;1", &format!("Failed checks ({})", failed.len())));
            for c in failed {
                out += &format!("  {} {}  {}: {}\n", paint("31", "✗"), c.id, c.resource, c.detail);
            }
        }
        let drifted: Vec<&Resource> = self.resources.iter().filter(|r| r.status == Status::Differs).collect();
        if !drifted.is_empty() {
            out += &format!("\n{}\n", paint("33;1", &format!("Drift ({})", drifted.len())));
            for r in drifted {
                out += &format!("  {} [{}] {} {}\n", paint("33", "~"), r.tier, r.kind, r.prod);
                for d in r.differences.iter().filter(|d| !d.expected) {
                    out += &format!("      {}: {} → {}\n", d.field, cut(&d.dev), cut(&d.prod));
                }
            }
        }
        let missing: Vec<&Resource> = self.resources.iter().filter(|r| r.status == Status::Missing).collect();
        if !missing.is_empty() {
            out += &format!("\n{}\n", paint("31;1", &format!("Missing in prod ({})", missing.len())));
            for r in missing {
                out += &format!("  {} [{}] {} {} (dev: {})\n", paint("31", "-"), r.tier, r.kind, r.prod, r.dev);
            }
        }
        let expected: usize = self.resources.iter().map(|r| r.differences.iter().filter(|d| d.expected).count()).sum();
        if self.is_clean() {
            out += &format!("\n{}\n", paint("32", "Every resource matches dev and every check passes."));
        }
        out += &format!(
            "\n{}\n{expected} expected difference(s) (renames, prod tags, the prod key, settings from the configuration) not listed\nthe whole report: paymig validate --format md (or json; or --format html --out report.html)",
            self.totals()
        );
        out
    }

    pub fn to_markdown(&self, title: &str) -> String {
        let m = &self.meta;
        let mut out = format!(
            "# {title}\n\n{} · paymig {} · migration `{}` · account {} · {} · journal run {}\n\n",
            m.generated_at,
            m.paymig_version,
            m.migration,
            m.account,
            m.region,
            m.run.as_deref().unwrap_or("(none)")
        );
        out += &format!("{}\n\n", self.totals_with(|n| format!("**{n}**")));
        out.push_str(
            "Expected differences (renames, prod tags, the prod key, settings from the configuration) are named by field; drift is shown in full.\n\n",
        );
        out.push_str(
            "## Resources\n\n| tier | kind | dev | prod | status | differences |\n|---|---|---|---|---|---|\n",
        );
        for r in &self.resources {
            let mut diffs: Vec<String> = r
                .differences
                .iter()
                .filter(|d| !d.expected)
                .map(|d| format!("**drift** {}: `{}` → `{}`", d.field, md(&d.dev), md(&d.prod)))
                .collect();
            let expected: Vec<&str> = r.differences.iter().filter(|d| d.expected).map(|d| d.field.as_str()).collect();
            if !expected.is_empty() {
                diffs.push(format!("expected: {}", expected.join(", ")));
            }
            out.push_str(
                &format!(
                    "| {} | {} | {} | {} | {:?} | {} |\n",
                    r.tier,
                    r.kind,
                    md(&r.dev),
                    md(&r.prod),
                    r.status,
                    diffs.join("<br>")
                )
                .replace("Match", "match")
                .replace("Differs", "**differs**")
                .replace("Missing", "**missing**"),
            );
        }
        out.push_str("\n## Checks\n\n| check | resource | result | detail |\n|---|---|---|---|\n");
        for c in &self.checks {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                c.id,
                md(&c.resource),
                if c.passed { "pass" } else { "**FAIL**" },
                md(&c.detail)
            ));
        }
        out
    }

    pub fn to_html(&self, title: &str) -> String {
        let s = &self.summary;
        let mut rows = String::new();
        for r in &self.resources {
            let mut diffs: Vec<String> = r
                .differences
                .iter()
                .filter(|d| !d.expected)
                .map(|d| {
                    format!(
                        "<li class=\"drift\">{}: <code>{}</code> → <code>{}</code></li>",
                        h(&d.field),
                        h(&d.dev),
                        h(&d.prod)
                    )
                })
                .collect();
            let expected: Vec<String> = r.differences.iter().filter(|d| d.expected).map(|d| h(&d.field)).collect();
            if !expected.is_empty() {
                diffs.push(format!("<li class=\"expected\">expected: {}</li>", expected.join(", ")));
            }
            let status = match r.status {
                Status::Match => "match",
                Status::Differs => "differs",
                Status::Missing => "missing",
            };
            rows.push_str(&format!(
                "<tr class=\"{status}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{status}</td><td><ul>{}</ul></td></tr>\n",
                h(&r.tier),
                h(&r.kind),
                h(&r.dev),
                h(&r.prod),
                diffs.join("")
            ));
        }
        let mut checks = String::new();
        for c in &self.checks {
            checks.push_str(&format!(
                "<tr class=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                if c.passed { "pass" } else { "fail" },
                h(&c.id),
                h(&c.resource),
                if c.passed { "pass" } else { "FAIL" },
                h(&c.detail)
            ));
        }
        format!(
            r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;color:#1a1a1a}}
table{{border-collapse:collapse;width:100%;margin-bottom:2rem}}
td,th{{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top;text-align:left}}
tr.differs,tr.missing,tr.fail{{background:#fde8e8}} tr.match,tr.pass{{background:#eefaf0}}
li.drift{{color:#b00020;font-weight:bold}} ul{{margin:0;padding-left:1.2rem}}
#summary{{font-size:1.1rem}}
</style></head><body>
<h1>{t}</h1>
<p id="meta">{meta}</p>
<p id="summary" data-clean="{clean}">{res} resources: {m} matching, {d} with drift, {mi} missing · checks: {cf} of {ct} failed</p>
<h2>Resources</h2>
<table id="resources"><tr><th>tier</th><th>kind</th><th>dev</th><th>prod</th><th>status</th><th>differences</th></tr>
{rows}</table>
<h2>Checks</h2>
<table id="checks"><tr><th>check</th><th>resource</th><th>result</th><th>detail</th></tr>
{checks}</table>
</body></html>
"#,
            t = h(title),
            meta = h(&format!(
                "{} · paymig {} · migration {} · account {} · {} · journal run {}",
                self.meta.generated_at,
                self.meta.paymig_version,
                self.meta.migration,
                self.meta.account,
                self.meta.region,
                self.meta.run.as_deref().unwrap_or("(none)")
            )),
            clean = self.is_clean(),
            res = s.resources,
            m = s.matching,
            d = s.differing,
            mi = s.missing,
            cf = s.checks_failed,
            ct = self.checks.len(),
        )
    }
}

fn h(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_plain_and_documents_are_compared_path_by_path() {
        assert_eq!(plain("Some(\"NEW_AND_OLD_IMAGES\")"), "NEW_AND_OLD_IMAGES");
        assert_eq!(plain("None"), "(none)");
        assert_eq!(plain("Some(5)"), "5");
        assert_eq!(plain("plain"), "plain");
        let mut d = Vec::new();
        diff(&mut d, "stream", "Some(\"KEYS_ONLY\")", "None", false);
        assert_eq!((d[0].dev.as_str(), d[0].prod.as_str()), ("KEYS_ONLY", "(none)"));
        let mut d = Vec::new();
        let a = serde_json::json!({"threshold": 80, "actions": ["t"], "stat": "Average"});
        let b = serde_json::json!({"threshold": 95, "actions": ["t", "u"], "stat": "Average"});
        diff(&mut d, "definition", a.to_string(), b.to_string(), false);
        let fields: Vec<&str> = d.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(fields, ["definition/actions/1", "definition/threshold"]);
        assert_eq!((d[1].dev.as_str(), d[1].prod.as_str()), ("80", "95"));
        assert_eq!(d[0].dev, "(absent)");
    }

    #[test]
    fn drift_and_failed_checks_make_a_report_unclean() {
        let mut d = Vec::new();
        diff(&mut d, "name", "sessions-dev", "sessions-prod", true);
        diff(&mut d, "billing", "PAY_PER_REQUEST", "PAY_PER_REQUEST", false);
        let ok = Findings {
            resources: vec![Resource::compared("dynamodb_table", "sessions-dev", "sessions-prod", d)],
            checks: vec![Check::new("dynamodb.pitr", "sessions-prod", true, "on")],
        };
        let r = Report::from(vec![ok.clone()]);
        assert!(r.is_clean());
        assert_eq!(r.resources[0].differences.len(), 1);
        let mut drift = Vec::new();
        diff(&mut drift, "gsis", "a,b", "a", false);
        let bad = Findings {
            resources: vec![Resource::compared("dynamodb_table", "x-dev", "x-prod", drift)],
            checks: vec![Check::new("dynamodb.pitr", "x-prod", false, "off")],
        };
        let r = Report::from(vec![ok, bad]);
        assert!(!r.is_clean());
        assert_eq!((r.summary.matching, r.summary.differing, r.summary.checks_failed), (1, 1, 1));
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["resources"][0]["status"], "differs", "drift comes first");
        assert_eq!(json["resources"][0]["differences"][0]["expected"], false);
        assert_eq!(json["checks"][0]["passed"], false, "failed checks come first");
        assert!(json["meta"].is_object(), "the JSON form carries its metadata");
        assert!(r.to_html("t").contains("<li class=\"drift\">gsis"));
        assert!(r.to_markdown("t").contains("**drift** gsis"));
    }

    #[test]
    fn html_escapes_everything() {
        let r =
            Report::from(vec![Findings { resources: vec![Resource::missing("x", "<script>", "b&c")], checks: vec![] }]);
        let html = r.to_html("<t>");
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;") && html.contains("b&amp;c"));
    }
}

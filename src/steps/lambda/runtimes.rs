//! Lambda's runtime deprecation table, as far as paymig migrates (Python
//! runtimes): after a runtime's deprecation date it gets no security
//! patches; from its block-create date AWS refuses CreateFunction with it,
//! from its block-update date UpdateFunctionConfiguration and
//! UpdateFunctionCode too. A migration creates functions, so preflight
//! refuses a runtime past its block-create date (naming the function and
//! the date) and warns, with the dates, about one that is deprecated.
//!
//! Sources: AWS Lambda's runtime deprecation table
//! (<https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html>) and
//! its runtime support policy; AWS has moved these dates before (python3.9's
//! block dates moved from early 2026 to 2027), so the table here is a floor:
//! check the live table when a date nears.

use time::macros::date;
use time::Date;

/// One runtime's deprecation dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprecation {
    pub runtime: &'static str,
    pub deprecated: Date,
    pub block_create: Date,
    pub block_update: Date,
}

/// The Python runtimes AWS has deprecated or scheduled, oldest first.
/// python3.10 and later are not scheduled in this table.
pub const TABLE: [Deprecation; 4] = [
    row("python3.6", date!(2022 - 07 - 18), date!(2022 - 07 - 18), date!(2022 - 08 - 17)),
    row("python3.7", date!(2023 - 12 - 04), date!(2024 - 01 - 09), date!(2024 - 02 - 08)),
    row("python3.8", date!(2024 - 10 - 14), date!(2025 - 02 - 28), date!(2025 - 03 - 31)),
    row("python3.9", date!(2025 - 12 - 15), date!(2027 - 02 - 01), date!(2027 - 03 - 03)),
];

/// One row of [`TABLE`]: the runtime, then its deprecation, block-create and
/// block-update dates.
const fn row(runtime: &'static str, deprecated: Date, block_create: Date, block_update: Date) -> Deprecation {
    Deprecation { runtime, deprecated, block_create, block_update }
}

/// What preflight says about a runtime on `today`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Supported and not deprecated.
    Supported,
    /// Deprecated, but functions can still be created with it: a warning.
    Deprecated(Deprecation),
    /// AWS refuses to create functions with it: a preflight error.
    Blocked(String),
}

/// The verdict on `runtime` for `today`.
pub fn verdict(runtime: &str, today: Date) -> Verdict {
    if let Some(d) = TABLE.iter().find(|d| d.runtime == runtime) {
        return if today >= d.block_create {
            Verdict::Blocked(format!(
                "runtime {runtime} was deprecated on {} and AWS refuses to create functions with it since {}; upgrade the dev function to python3.12 or newer first",
                d.deprecated, d.block_create
            ))
        } else if today >= d.deprecated {
            Verdict::Deprecated(*d)
        } else {
            Verdict::Supported
        };
    }
    let version = runtime.strip_prefix("python").and_then(|v| {
        let (major, minor) = v.split_once('.')?;
        Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
    });
    match version {
        Some(v) if v >= (3, 10) => Verdict::Supported,
        Some(_) => Verdict::Blocked(format!(
            "runtime {runtime} is long deprecated and AWS refuses to create functions with it; upgrade the dev function to python3.12 or newer first"
        )),
        None => Verdict::Blocked(format!("runtime {runtime:?} is not supported; paymig migrates Python functions")),
    }
}

/// The warning for a deprecated runtime still allowed on create.
pub fn warning(function: &str, d: &Deprecation) -> String {
    format!(
        "{function}: runtime {} is deprecated since {} (no security patches); AWS refuses to create functions with it from {} and to update them from {}: upgrade the dev function to python3.12 or newer",
        d.runtime, d.deprecated, d.block_create, d.block_update
    )
}

/// The date the table is read against: today (UTC), or `PAYMIG_TODAY`
/// (`YYYY-MM-DD`), which the tests set so that a verdict does not change
/// with the calendar.
pub fn today() -> Date {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    std::env::var("PAYMIG_TODAY")
        .ok()
        .and_then(|d| Date::parse(&d, &format).ok())
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().date())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_is_refused_from_its_block_create_date_and_warned_about_once_deprecated() {
        let before = date!(2025 - 12 - 14);
        let deprecated = date!(2026 - 12 - 06);
        let blocked = date!(2027 - 02 - 01);
        assert_eq!(verdict("python3.9", before), Verdict::Supported);
        let Verdict::Deprecated(d) = verdict("python3.9", deprecated) else { panic!("deprecated") };
        let w = warning("payment-processor-dev", &d);
        assert!(w.contains("2025-12-15") && w.contains("2027-02-01") && w.contains("2027-03-03"), "{w}");
        let Verdict::Blocked(why) = verdict("python3.9", blocked) else { panic!("blocked") };
        assert!(why.contains("2027-02-01"), "{why}");
        let Verdict::Blocked(why) = verdict("python3.8", deprecated) else { panic!("blocked") };
        assert!(why.contains("2025-02-28"), "{why}");
        assert!(matches!(verdict("python2.7", deprecated), Verdict::Blocked(_)));
        assert_eq!(verdict("python3.12", blocked), Verdict::Supported);
        assert!(matches!(verdict("nodejs20.x", deprecated), Verdict::Blocked(w) if w.contains("not supported")));
    }
}

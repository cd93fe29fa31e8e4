//! The migration's tags: what every taggable prod resource carries, and the
//! one meaning of "this resource is ours" — tagged with this migration
//! *and* this environment suffix (a staging run of the same migration in
//! the same account never adopts, reverts or sweeps prod's resources).

use std::collections::BTreeMap;

use crate::config::{TAG_MIGRATION, TAG_SUFFIX};
use crate::engine::Ctx;
use crate::report::Check;

/// Whether a resource's tags (key, value pairs, in whatever shape the
/// service returns them) mark it as this migration's, for this suffix.
pub fn is_ours<'a>(ctx: &Ctx, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    let (mut migration, mut suffix) = (false, false);
    for (k, v) in tags {
        migration |= k == TAG_MIGRATION && v == ctx.cfg.migration.name;
        suffix |= k == TAG_SUFFIX && v == ctx.suffix();
    }
    migration && suffix
}

/// The prod tags (`[tags]` and the `paymig:*` pair) in a service's own tag
/// type.
pub fn prod_tags_as<T>(ctx: &Ctx, tag: impl Fn(String, String) -> T) -> Vec<T> {
    ctx.cfg.prod_tags().into_iter().map(|(k, v)| tag(k, v)).collect()
}

/// The checks every prod resource gets: the required tags, and the
/// environment suffix in its name.
pub fn common_checks(ctx: &Ctx, name: &str, tags: &BTreeMap<String, String>) -> Vec<Check> {
    let missing: Vec<String> =
        ctx.cfg.prod_tags().into_iter().filter(|(k, v)| tags.get(k) != Some(v)).map(|(k, _)| k).collect();
    let suffix = ctx.suffix();
    vec![
        Check::new(
            "tags.present",
            name,
            missing.is_empty(),
            if missing.is_empty() {
                "all required tags".to_owned()
            } else {
                format!("missing or wrong: {}", missing.join(", "))
            },
        ),
        Check::new(
            "names.suffix",
            name,
            name.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == suffix)
                || name.contains(&format!("-{suffix}")),
            format!("contains -{suffix}"),
        ),
    ]
}

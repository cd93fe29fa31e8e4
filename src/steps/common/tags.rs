//! The migration's tags: what every taggable prod resource carries, and the
//! one meaning of "this resource is ours" — tagged with this migration
//! *and* this environment suffix (a staging run of the same migration in
//! the same account never adopts, reverts or sweeps prod's resources).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// What a re-tag replaced (an update's previous value): the tags before it
/// and the keys it set (and, for services that tag by ARN, the ARN). Undo
/// removes the keys that were added and puts back the values changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsBefore {
    pub tags: BTreeMap<String, String>,
    pub set: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

impl TagsBefore {
    /// Before setting `set` on a resource tagged `tags`.
    pub fn new<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>, set: impl IntoIterator<Item = String>) -> Self {
        TagsBefore {
            tags: tags.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            set: set.into_iter().collect(),
            arn: None,
        }
    }

    /// The keys the re-tag added: undo removes them.
    pub fn added(&self) -> Vec<String> {
        self.set.iter().filter(|k| !self.tags.contains_key(*k)).cloned().collect()
    }

    /// The keys the re-tag changed, with their values before: undo puts them back.
    pub fn changed(&self) -> BTreeMap<String, String> {
        self.set.iter().filter_map(|k| Some((k.clone(), self.tags.get(k)?.clone()))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undoing_a_retag_removes_what_it_added_and_restores_what_it_changed() {
        let before =
            TagsBefore::new([("Environment", "staging"), ("Team", "pay")], ["Environment".into(), "CostCenter".into()]);
        assert_eq!(before.added(), vec!["CostCenter".to_owned()]);
        assert_eq!(before.changed(), BTreeMap::from([("Environment".to_owned(), "staging".to_owned())]));
        // The journal's shape, as every version wrote it.
        let json = serde_json::json!({"tags": {"Environment": "staging", "Team": "pay"}, "set": ["Environment", "CostCenter"]});
        assert_eq!(serde_json::to_value(&before).unwrap(), json);
        assert_eq!(serde_json::from_value::<TagsBefore>(json).unwrap(), before);
        assert!(serde_json::from_value::<TagsBefore>(serde_json::json!({"tags": {}, "set": [], "x": 1})).is_err());
    }
}

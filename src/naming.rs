//! Prod names (SPEC "Naming and tags"): the name map from dev names to prod
//! names, names of resources that have no dev twin, and the AWS limits every
//! derived name is checked against in preflight.

use std::collections::BTreeMap;

/// Maps dev names to prod names for one migration.
#[derive(Debug, Clone)]
pub struct NameMap {
    /// The dev name-suffix tokens (`-dev` → `["dev"]`).
    dev_tokens: Vec<String>,
    migration: String,
    suffix: String,
    source_path: String,
    target_path: String,
    /// Every listed dev resource name and its prod twin, for rewriting
    /// references (environment variables, dashboards, parameters).
    known: BTreeMap<String, String>,
}

/// Replaces every whole word (letters, digits, `-`, `_`) of `s` that
/// `lookup` knows by what it gives; everything else is kept byte for byte.
pub fn map_words<'a>(s: &str, mut lookup: impl FnMut(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let mut flush = |word: &mut String, out: &mut String| {
        let w = std::mem::take(word);
        if !w.is_empty() {
            out.push_str(lookup(&w).unwrap_or(&w));
        }
    };
    for ch in s.chars() {
        if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
    out
}

impl NameMap {
    /// The map of `migration` with prod suffix `suffix`, dev suffix
    /// `dev_suffix` (`-dev`), the dev and prod parameter paths, and the dev
    /// names the configuration lists (rewritten wherever they are referenced).
    pub fn new<'a>(
        migration: &str,
        suffix: &str,
        dev_suffix: &str,
        (source_path, target_path): (&str, &str),
        listed: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        let mut map = NameMap {
            dev_tokens: dev_suffix.trim_start_matches('-').split('-').map(String::from).collect(),
            migration: migration.to_owned(),
            suffix: suffix.to_owned(),
            source_path: source_path.to_owned(),
            target_path: target_path.to_owned(),
            known: BTreeMap::new(),
        };
        let known = listed.into_iter().map(|d| (d.clone(), map.prod(d))).collect();
        map.known = known;
        map
    }

    /// The prod name of a dev-named resource: the dev suffix replaced by the
    /// prod suffix wherever it is a whole hyphen-delimited token, or the prod
    /// suffix appended when it does not occur.
    pub fn prod(&self, dev: &str) -> String {
        let tokens: Vec<&str> = dev.split('-').collect();
        let n = self.dev_tokens.len();
        let mut out: Vec<&str> = Vec::with_capacity(tokens.len() + 1);
        let mut replaced = false;
        let mut i = 0;
        while i < tokens.len() {
            if i + n <= tokens.len() && tokens[i..i + n].iter().zip(&self.dev_tokens).all(|(a, b)| a == b) {
                out.push(&self.suffix);
                replaced = true;
                i += n;
            } else {
                out.push(tokens[i]);
                i += 1;
            }
        }
        if !replaced {
            out.push(&self.suffix);
        }
        out.join("-")
    }

    /// Whether a dev name carries the dev suffix as a whole token (then the
    /// prod name replaces it).
    pub fn carries_dev_suffix(&self, dev: &str) -> bool {
        let tokens: Vec<&str> = dev.split('-').collect();
        let n = self.dev_tokens.len();
        tokens.windows(n).any(|w| w.iter().zip(&self.dev_tokens).all(|(a, b)| a == b))
    }

    /// The name of a resource with no dev twin: `<migration>-<kind>-<suffix>`.
    pub fn own(&self, kind: &str) -> String {
        format!("{}-{kind}-{}", self.migration, self.suffix)
    }

    /// The KMS alias of the prod key.
    pub fn kms_alias(&self) -> String {
        format!("alias/{}-{}", self.migration, self.suffix)
    }

    /// The replica bucket (in `replica_region`) of a prod audit bucket.
    pub fn replica_bucket(&self, dev_bucket: &str) -> String {
        format!("{}-replica", self.prod(dev_bucket))
    }

    /// The execution role of a prod function.
    pub fn lambda_role(&self, dev_function: &str) -> String {
        format!("{}-role", self.prod(dev_function))
    }

    /// A dev parameter name moved under the prod path.
    pub fn parameter(&self, dev_name: &str) -> Option<String> {
        dev_name.strip_prefix(&self.source_path).map(|rel| format!("{}{rel}", self.target_path))
    }

    /// The dev parameter path (`[source] parameter_path`).
    pub fn source_path(&self) -> &str {
        &self.source_path
    }

    /// The prod parameter path (`[target] parameter_path`).
    pub fn target_path(&self) -> &str {
        &self.target_path
    }

    /// Every listed dev name with its prod twin.
    pub fn known(&self) -> &BTreeMap<String, String> {
        &self.known
    }

    /// Rewrites every whole word (letters, digits, `-`, `_`) of `s` that is a
    /// listed dev name to its prod twin, and a leading dev parameter path to
    /// the prod one; everything else is kept byte for byte.
    pub fn rewrite_words(&self, s: &str) -> String {
        let out = map_words(s, |w| self.known.get(w).map(String::as_str));
        match out.strip_prefix(&self.source_path) {
            Some(rest) => format!("{}{rest}", self.target_path),
            None => out,
        }
    }

    /// Whether `s` still contains the dev suffix as a whole token (a dev
    /// identifier the name map could not rewrite).
    pub fn looks_dev(&self, s: &str) -> bool {
        let n = self.dev_tokens.len();
        s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).any(|word| {
            let t: Vec<&str> = word.split('-').collect();
            t.windows(n).any(|w| w.iter().zip(&self.dev_tokens).all(|(a, b)| a == b))
        })
    }
}

/// A name the migration derives, with the limits it must meet.
#[derive(Debug)]
pub struct Derived {
    pub section: &'static str,
    pub key: &'static str,
    pub kind: &'static str,
    pub name: String,
    pub max: usize,
    pub rule: Rule,
}

/// The characters and shape AWS accepts for a kind of name.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    Any,
    Bucket,
    /// Letters, digits, hyphens; starts with a letter; no `--`, no trailing `-`.
    Identifier,
    /// Letters, digits, hyphens and underscores.
    Function,
    /// Letters, digits, `_`, `-`, `.`.
    Table,
}

impl Derived {
    /// `Err(reason)` when the name breaks an AWS limit.
    pub fn check(&self) -> Result<(), String> {
        let len = self.name.chars().count();
        if len > self.max {
            return Err(format!("is {len} characters; AWS allows at most {}", self.max));
        }
        let ok = match self.rule {
            Rule::Any => true,
            Rule::Bucket => is_valid_bucket_name(&self.name),
            Rule::Identifier => {
                self.name.starts_with(|c: char| c.is_ascii_alphabetic())
                    && self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !self.name.contains("--")
                    && !self.name.ends_with('-')
            }
            Rule::Function => self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            Rule::Table => len >= 3 && self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        };
        if ok {
            Ok(())
        } else {
            Err("has characters or a shape AWS does not accept for it".into())
        }
    }
}

/// S3 bucket naming rules (3-63 characters, lower case, digits, `.` and `-`,
/// starting and ending with a letter or digit).
pub fn is_valid_bucket_name(b: &str) -> bool {
    let bytes = b.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !b.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(dev_suffix: &str) -> NameMap {
        NameMap {
            dev_tokens: dev_suffix.trim_start_matches('-').split('-').map(String::from).collect(),
            migration: "payments".into(),
            suffix: "prod".into(),
            source_path: "/dev/".into(),
            target_path: "/prod/".into(),
            known: BTreeMap::new(),
        }
    }

    #[test]
    fn replaces_whole_tokens_only() {
        let m = map("-dev");
        assert_eq!(m.prod("sessions-dev"), "sessions-prod");
        assert_eq!(m.prod("ledger-dev-cpu-high"), "ledger-prod-cpu-high");
        assert_eq!(m.prod("devices"), "devices-prod");
        assert_eq!(m.prod("payments-devx"), "payments-devx-prod");
        assert_eq!(m.prod("dev-payments"), "prod-payments");
    }

    #[test]
    fn multi_token_dev_suffix() {
        let m = map("-dev-eu");
        assert_eq!(m.prod("api-dev-eu-logs"), "api-prod-logs");
        assert_eq!(m.prod("api-dev-logs"), "api-dev-logs-prod");
    }

    #[test]
    fn own_names_and_parameters() {
        let m = map("-dev");
        assert_eq!(m.own("alb"), "payments-alb-prod");
        assert_eq!(m.kms_alias(), "alias/payments-prod");
        assert_eq!(m.parameter("/dev/db/host").as_deref(), Some("/prod/db/host"));
        assert_eq!(m.parameter("/other/x"), None);
    }

    #[test]
    fn dev_identifiers_are_detected() {
        let m = map("-dev");
        assert!(m.looks_dev("db.payments-dev.cluster.local"));
        assert!(!m.looks_dev("developer.example.com"));
    }

    #[test]
    fn bucket_names() {
        assert!(is_valid_bucket_name("payments-audit-prod"));
        assert!(!is_valid_bucket_name("Payments"));
        assert!(!is_valid_bucket_name("ab"));
        assert!(!is_valid_bucket_name(&"a".repeat(64)));
    }
}

//! TOML's errors turned into the file, line, key and what to do: missing
//! required keys, type errors in plain words, the nearest known key.

use super::*;

/// The keys a configuration must have (`section`, `key`; an empty key: the
/// section itself), as the raw structs require them.
pub(super) const REQUIRED: [(&str, &str); 9] = [
    ("migration", ""),
    ("migration", "name"),
    ("migration", "environment_suffix"),
    ("migration", "region"),
    ("migration", "replica_region"),
    ("tags", ""),
    ("source", ""),
    ("source", "vpc_id"),
    ("target", ""),
];

/// Every required key `text` lacks, not only the first serde meets.
pub(super) fn missing_required(text: &str) -> Vec<String> {
    let Ok(table) = text.parse::<toml::Table>() else { return Vec::new() };
    REQUIRED
        .iter()
        .filter(|(section, key)| match table.get(*section) {
            None => key.is_empty(),
            Some(t) => !key.is_empty() && t.get(*key).is_none(),
        })
        .map(|(section, key)| if key.is_empty() { format!("[{section}]") } else { format!("`{section}.{key}`") })
        .collect()
}

pub(super) fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    if e.message().starts_with("missing field") {
        let missing = missing_required(text);
        if missing.len() > 1 {
            return ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: format!("{} required keys are missing: {}", missing.len(), missing.join(", ")),
                help: Some("add each of them (the reference migrations.toml comments every key)".into()),
            };
        }
    }
    let mut message = plain_types(e.message().trim());
    // serde names the unknown key but not a key whose value has the wrong
    // type: name it from the line.
    if !message.starts_with("unknown field") {
        if let Some(key) = key_at_line(text, line) {
            message = format!("`{key}`: {message}");
        }
    }
    let help = nearest_key_help(&message);
    ConfigError::Parse { path: path.to_owned(), line, column, message, help }
}

/// serde's type names in words a person reads (`expected f64` → `expected
/// a number`).
pub(super) fn plain_types(message: &str) -> String {
    let mut out = message.to_owned();
    for (rust, words) in [
        ("f64", "a number"),
        ("f32", "a number"),
        ("u8", "a whole number"),
        ("u16", "a whole number"),
        ("u32", "a whole number"),
        ("u64", "a whole number"),
        ("i32", "a whole number"),
        ("i64", "a whole number"),
        ("usize", "a whole number"),
        ("a boolean", "true or false"),
        ("a sequence", "a list ([…])"),
        ("a map", "a table ({…})"),
    ] {
        out = out.replace(&format!("expected {rust}"), &format!("expected {words}"));
        out = out.replace(&format!("invalid type: {rust}"), &format!("invalid type: {words}"));
    }
    out
}

/// `section.key` of the assignment on a 1-based line, if it is one.
pub(super) fn key_at_line(text: &str, line: usize) -> Option<String> {
    let mut section = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            section = t.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        } else if i + 1 == line {
            let key = t.split_once('=')?.0.trim().trim_matches('"');
            return Some(if section.is_empty() { key.to_owned() } else { format!("{section}.{key}") });
        }
    }
    None
}

/// 1-based line and column of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" message, names the
/// nearest valid key.
pub(super) fn nearest_key_help(message: &str) -> Option<String> {
    if !message.starts_with("unknown field") {
        return None;
    }
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let (unknown, valid) = quoted.split_first()?;
    let best = valid.iter().map(|k| (strsim::damerau_levenshtein(unknown, k), *k)).min()?;
    Some(if best.0 <= 3.max(unknown.len() / 3) {
        format!("did you mean `{}`? valid keys here: {}", best.1, valid.join(", "))
    } else {
        format!("valid keys here: {}", valid.join(", "))
    })
}

//! What a run would do, or did, to each resource: [`Mode`], [`Action`],
//! [`Change`] and the setting [`Detail`] a change names.

use serde::Serialize;
use serde_json::Value;

/// Whether a command may change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Observe and record what would change; never mutate.
    Plan,
    /// Observe, then mutate through the journal.
    Apply,
}

/// What `apply` would do (or did) to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Noop,
}

/// One planned or performed change to one resource: resources are counted,
/// not calls. A new resource's settings (versioning, policy, rotation … set
/// right after its create) are listed under it; an existing resource with
/// changed settings is one `Update` listing them.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub step: String,
    pub action: Action,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// For a create: the settings applied to the new resource; for an
    /// update: every setting changed (with its values where shown).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
    /// The values of the settings that show them: `{setting, from, to}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Value>,
    #[serde(skip)]
    pub(super) key: String,
}

/// What an update changes: the setting (the journal key's last part) and,
/// where it can be shown, its value before and after (`7 → 100`). Values
/// that are secrets or may hold them (parameter values of excluded names,
/// environment values) are never given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub setting: String,
    pub values: Option<(String, String)>,
}

impl Detail {
    /// A setting changing from `from` to `to`.
    pub fn change(setting: impl Into<String>, from: impl std::fmt::Display, to: impl std::fmt::Display) -> Detail {
        Detail { setting: setting.into(), values: Some((from.to_string(), to.to_string())) }
    }

    /// A change between two JSON forms of a setting: each top-level field
    /// that differs, compact and cut to a readable length (`threshold 80 →
    /// 95`); the whole value when it is not an object.
    pub fn between(setting: impl Into<String>, have: &Value, want: &Value) -> Detail {
        fn compact(v: &Value) -> String {
            let s = match v {
                Value::Null => "none".to_owned(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if s.chars().count() > 60 {
                format!("{}…", s.chars().take(59).collect::<String>())
            } else {
                s
            }
        }
        let (mut from, mut to) = (Vec::new(), Vec::new());
        match (have.as_object(), want.as_object()) {
            (Some(h), Some(w)) => {
                let keys: std::collections::BTreeSet<&String> = h.keys().chain(w.keys()).collect();
                for k in keys {
                    let (a, b) = (h.get(k).unwrap_or(&Value::Null), w.get(k).unwrap_or(&Value::Null));
                    if a != b {
                        from.push(format!("{} {}", k.replace('_', " "), compact(a)));
                        to.push(format!("{} {}", k.replace('_', " "), compact(b)));
                    }
                }
            }
            _ => {
                from.push(compact(have));
                to.push(compact(want));
            }
        }
        Detail::change(setting, from.join(", "), to.join(", "))
    }

    /// As plan and rollback show it: `setting: from → to`.
    pub fn shown(&self) -> String {
        match &self.values {
            Some((from, to)) => format!("{}: {from} → {to}", self.setting),
            None => self.setting.clone(),
        }
    }
}

impl From<&str> for Detail {
    fn from(s: &str) -> Detail {
        Detail { setting: s.to_owned(), values: None }
    }
}

impl From<String> for Detail {
    fn from(s: String) -> Detail {
        Detail { setting: s, values: None }
    }
}

//! A JSON value written as block YAML, for CloudFormation templates: maps
//! and lists in block style, strings quoted whenever YAML could read them as
//! something else. Intrinsic functions stay in their long form (`Fn::Sub:`,
//! `Ref:`), which every YAML reader takes as plain keys.

use serde_json::Value;

/// `v` as a YAML document.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    block(v, 0, &mut out);
    out
}

fn block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                out.push_str(&format!("{pad}{}:", key(k)));
                inline_or_nested(v, indent, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&format!("{pad}-"));
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key on the dash's line, the rest under it.
                        let mut first = true;
                        for (k, v) in m {
                            if first {
                                out.push_str(&format!(" {}:", key(k)));
                                first = false;
                            } else {
                                out.push_str(&format!("{pad}  {}:", key(k)));
                            }
                            inline_or_nested(v, indent + 2, out);
                        }
                    }
                    other => inline_or_nested(other, indent, out),
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{}\n", inline(scalar))),
    }
}

/// After `key:` (or `-`): a scalar or empty collection on the same line,
/// anything else on the lines below, indented.
fn inline_or_nested(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block(v, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block(v, indent + 2, out);
        }
        other => out.push_str(&format!(" {}\n", inline(other))),
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(m) if m.is_empty() => "{}".into(),
        other => serde_json::to_string(other).expect("JSON serializes"),
    }
}

fn key(k: &str) -> String {
    if k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '/'))
        && !k.is_empty()
        && !k.ends_with(':')
    {
        k.to_owned()
    } else {
        string_quoted(k)
    }
}

/// A string plain where YAML reads it back as the same string, else double
/// quoted (JSON's escaping is valid YAML).
fn string(s: &str) -> String {
    let plain_safe = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' ' | '(' | ')' | '@'))
        // A leading digit may read as a number, a date or a time.
        && !s.starts_with(['-', ' ', '.', '+'])
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && !s.ends_with(' ')
        && s.parse::<f64>().is_err()
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "~"
        );
    if plain_safe {
        s.to_owned()
    } else {
        string_quoted(s)
    }
}

fn string_quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_maps_lists_and_ambiguous_strings() {
        let v = json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {
                "Tags": [{"Key": "Environment", "Value": "production"}, {"Key": "n", "Value": "yes"}],
                "Versioned": true, "Days": 90, "Empty": [], "Arn": {"Fn::Sub": "arn:aws:s3:::${B}/*"}}}}
        });
        let y = to_yaml(&v);
        // serde_json's maps are sorted by key.
        let want = "AWSTemplateFormatVersion: \"2010-09-09\"
Resources:
  Bucket:
    Properties:
      Arn:
        Fn::Sub: \"arn:aws:s3:::${B}/*\"
      Days: 90
      Empty: []
      Tags:
        - Key: Environment
          Value: production
        - Key: \"n\"
          Value: \"yes\"
      Versioned: true
    Type: \"AWS::S3::Bucket\"
";
        assert_eq!(y, want);
    }
}

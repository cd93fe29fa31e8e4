//! IAM policy documents: the trust policy of a service role, reading the
//! documents IAM returns, and the no-wildcard-action rule.

use serde_json::{json, Value};

/// A role's trust policy: assumable by one AWS service.
pub fn trust_policy(service: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})
}

/// IAM returns policy documents URL-encoded.
pub fn decode_policy(doc: &str) -> Value {
    let decoded = if doc.trim_start().starts_with('{') { doc.to_owned() } else { percent_decode(doc) };
    serde_json::from_str(&decoded).unwrap_or(Value::Null)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A policy document's statements (IAM allows one object or a list).
pub fn statements(policy: &Value) -> Vec<&Value> {
    match &policy["Statement"] {
        Value::Array(a) => a.iter().collect(),
        s @ Value::Object(_) => vec![s],
        _ => vec![],
    }
}

/// A policy element that is one string or a list of them (`Action`,
/// `Resource`, a principal).
pub fn strings(element: &Value) -> Vec<String> {
    match element {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
        _ => vec![],
    }
}

/// The `Allow` statements of a policy document that name a wildcard action
/// (`*` or `service:*`, or any `*` pattern).
pub fn wildcard_actions(policy: &Value) -> Vec<String> {
    statements(policy)
        .into_iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| strings(&s["Action"]))
        .filter(|a| a.contains('*'))
        .collect()
}

/// Whether a resource policy (a key's, a layer version's) allows `account`
/// — its root, any principal of it, or everyone — `action` (or its
/// service's `*`). Conditions are not evaluated: a key grant limited to
/// `kms:ViaService` RDS still serves a restore, and an organization-wide
/// grant is the owner's to judge.
pub fn grants(policy: &Value, account: &str, action: &str) -> bool {
    let service_all = action.split_once(':').map(|(s, _)| format!("{s}:*")).unwrap_or_default();
    statements(policy).into_iter().filter(|s| s["Effect"] == "Allow").any(|s| {
        let principals = match &s["Principal"] {
            Value::String(p) => vec![p.clone()],
            p => strings(&p["AWS"]),
        };
        let ours =
            principals.iter().any(|p| p == "*" || p == account || p.starts_with(&format!("arn:aws:iam::{account}:")));
        ours && strings(&s["Action"]).iter().any(|a| a == "*" || *a == service_all || a.eq_ignore_ascii_case(action))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_read_encoded_or_plain_and_wildcards_are_found() {
        let doc = json!({"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:*"], "Resource": "*"}]});
        let encoded = doc.to_string().replace('{', "%7B").replace('}', "%7D").replace('"', "%22");
        assert_eq!(decode_policy(&encoded), doc);
        assert_eq!(decode_policy(&doc.to_string()), doc);
        assert_eq!(wildcard_actions(&doc), vec!["s3:*".to_owned()]);
        let deny = json!({"Statement": {"Effect": "Deny", "Action": "s3:*"}});
        assert!(wildcard_actions(&deny).is_empty(), "a Deny may name every action");
    }
}

//! `paymig ci-template`: CloudFormation for scheduled runs in CodeBuild,
//! built from the configuration and the same policy generator as
//! `iam-policy` ([`crate::permissions`]), so the build's permissions can
//! never disagree with what paymig needs.
//!
//! - the prod side ([`target`]): the state bucket behind `[migration]
//!   journal = "s3://…"` with its key, the CodeBuild project, its service
//!   role (the generated prod policy, the state bucket, the build's logs,
//!   `sts:AssumeRole` on `[source] role_arn`), and the EventBridge schedule
//!   with a role that may start that project only;
//! - the dev side ([`source`]): the read role `[source] role_arn` names,
//!   with exactly `iam-policy --side source`'s permissions, trusting only
//!   the prod build role.

pub mod yaml;

use serde_json::{json, Map, Value};

use crate::config::{Config, JournalLocation};

/// The default schedule: nightly at 03:00 UTC.
pub const NIGHTLY: &str = "cron(0 3 * * ? *)";

/// IAM's limit for one managed policy document, in characters (without
/// whitespace).
const MANAGED_POLICY_LIMIT: usize = 6_144;

/// Why a configuration cannot be scheduled as it is.
pub fn problems(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if !matches!(cfg.journal, JournalLocation::S3 { .. }) {
        out.push(format!(
            "{}: [migration] journal: a scheduled build starts on a fresh machine each time, so the journal must live in S3\nhelp: set journal = \"s3://<state-bucket>/paymig\" (the template creates that bucket)",
            cfg.path.display()
        ));
    }
    for (side, profile) in [("source", &cfg.source.profile), ("target", &cfg.target.profile)] {
        if let Some(p) = profile {
            out.push(format!(
                "{}: [{side}] profile = {p:?}: CodeBuild has no profiles; the build's service role is the prod identity{}\nhelp: remove the profile from the configuration the build uses",
                cfg.path.display(),
                if side == "source" { " and it assumes [source] role_arn" } else { "" }
            ));
        }
    }
    if cfg.source.role_arn.is_none() {
        out.push(format!(
            "{}: [source] role_arn: the build reads dev through a role there (ci-template --side source creates it)\nhelp: set role_arn = \"arn:aws:iam::<dev-account>:role/<name>\"",
            cfg.path.display()
        ));
    }
    out
}

/// Names the template gives: every one contains the environment suffix.
struct Names {
    project: String,
    build_role: String,
    schedule_role: String,
    schedule: String,
}

fn names(cfg: &Config) -> Names {
    let own = |kind: &str| cfg.names.own(kind);
    Names {
        project: own("build"),
        build_role: own("build-role"),
        schedule_role: own("schedule-role"),
        schedule: own("schedule"),
    }
}

fn tags(cfg: &Config) -> Value {
    Value::Array(cfg.prod_tags().iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect())
}

/// `s` with CloudFormation's substitution when it holds a `${…}`.
fn sub(s: &str) -> Value {
    if s.contains("${") {
        json!({"Fn::Sub": s})
    } else {
        Value::String(s.to_owned())
    }
}

/// A policy document with every string that names the account through
/// `${AWS::AccountId}` wrapped in `Fn::Sub`.
fn substituted(v: &Value) -> Value {
    match v {
        Value::String(s) => sub(s),
        Value::Array(a) => Value::Array(a.iter().map(substituted).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), substituted(v))).collect()),
        other => other.clone(),
    }
}

/// The statements split into managed-policy documents within IAM's size
/// limit, in order.
fn split_statements(statements: &[Value]) -> Vec<Vec<Value>> {
    let mut docs: Vec<Vec<Value>> = vec![Vec::new()];
    let mut size = 0;
    for s in statements {
        let len = serde_json::to_string(s).map(|t| t.len()).unwrap_or(0) + 1;
        if size + len > MANAGED_POLICY_LIMIT - 64 && !docs.last().is_some_and(Vec::is_empty) {
            docs.push(Vec::new());
            size = 0;
        }
        size += len;
        docs.last_mut().expect("one document").push(s.clone());
    }
    docs
}

/// How long a build may run: the longest wait paymig allows, plus the
/// Aurora chain on AWS's typical clock, plus an hour for everything else
/// (CodeBuild's maximum is 36 hours).
fn timeout_minutes(cfg: &Config) -> u64 {
    use crate::engine::estimate::Wait;
    let chain = (Wait::AuroraRestore.typical() + Wait::AuroraInstance.typical()).as_secs() / 60;
    (cfg.migration.max_wait_minutes + chain + 60).min(2160)
}

/// The prod account's template.
pub fn target(cfg: &Config, schedule: &str) -> Value {
    let JournalLocation::S3 { bucket, prefix } = &cfg.journal else { unreachable!("checked by problems()") };
    let n = names(cfg);
    let dev_account = cfg.source.role_arn.as_deref().and_then(|r| r.split(':').nth(4)).filter(|a| !a.is_empty());
    let policy = crate::permissions::policy(cfg, "${AWS::AccountId}", dev_account);
    let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    let mut resources = Map::new();

    // The state: key, bucket, policy.
    let admin = [
        "kms:DescribeKey",
        "kms:GetKeyPolicy",
        "kms:PutKeyPolicy",
        "kms:GetKeyRotationStatus",
        "kms:EnableKeyRotation",
        "kms:ListResourceTags",
        "kms:TagResource",
        "kms:UntagResource",
        "kms:UpdateKeyDescription",
        "kms:EnableKey",
        "kms:DisableKey",
        "kms:ScheduleKeyDeletion",
        "kms:CancelKeyDeletion",
    ];
    resources.insert(
        "StateKey".into(),
        json!({
            "Type": "AWS::KMS::Key",
            "Properties": {
                "Description": format!("paymig {}: the journal and build cache in {bucket}", cfg.migration.name),
                "EnableKeyRotation": true,
                "PendingWindowInDays": 7,
                "KeyPolicy": {"Version": "2012-10-17", "Statement": [
                    {"Sid": "AccountAdministers", "Effect": "Allow",
                     "Principal": {"AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
                     "Action": admin, "Resource": "*"},
                    // Use is granted by IAM policies in the account (the
                    // build role's StateKey statement): naming the role here
                    // would make the key and the role wait for each other.
                    {"Sid": "AccountIamPoliciesUse", "Effect": "Allow",
                     "Principal": {"AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
                     "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], "Resource": "*"},
                    {"Sid": "BuildLogsUse", "Effect": "Allow",
                     "Principal": {"Service": sub("logs.${AWS::Region}.amazonaws.com")},
                     "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey", "kms:DescribeKey"],
                     "Resource": "*",
                     "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": sub(&format!("arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/codebuild/{}", n.project))}}}
                ]},
                "Tags": tags(cfg),
            }
        }),
    );
    resources.insert(
        "StateBucket".into(),
        json!({
            "Type": "AWS::S3::Bucket",
            "Properties": {
                "BucketName": bucket,
                "VersioningConfiguration": {"Status": "Enabled"},
                "BucketEncryption": {"ServerSideEncryptionConfiguration": [{
                    "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": ["StateKey", "Arn"]}},
                    "BucketKeyEnabled": true
                }]},
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true
                },
                "LifecycleConfiguration": {"Rules": [
                    {"Id": "old-journal-versions", "Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 90}},
                    {"Id": "old-builds", "Status": "Enabled", "Prefix": "builds/", "ExpirationInDays": 30},
                    {"Id": "incomplete-uploads", "Status": "Enabled", "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}
                ]},
                "Tags": tags(cfg),
            }
        }),
    );
    resources.insert(
        "StateBucketPolicy".into(),
        json!({
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": "StateBucket"},
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"],
                    "Resource": [sub(&format!("arn:${{AWS::Partition}}:s3:::{bucket}")), sub(&format!("arn:${{AWS::Partition}}:s3:::{bucket}/*"))],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}}
                }]}
            }
        }),
    );

    // The build's service role: the generated policy (managed policies
    // within IAM's size limit), the state, the logs, the dev role.
    let mut managed = Vec::new();
    for (i, doc) in split_statements(&statements).into_iter().enumerate() {
        let id = format!("PaymigPolicy{}", i + 1);
        resources.insert(
            id.clone(),
            json!({
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {
                    "ManagedPolicyName": cfg.names.own(&format!("build-policy-{}", i + 1)),
                    "Description": "What paymig needs in prod (paymig iam-policy)",
                    "PolicyDocument": substituted(&json!({"Version": "2012-10-17", "Statement": doc})),
                }
            }),
        );
        managed.push(json!({"Ref": id}));
    }
    let logs = format!(
        "arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/codebuild/{}",
        n.project
    );
    let state_prefix = if prefix.is_empty() { "*".to_owned() } else { format!("{prefix}/*") };
    let mut inline = vec![
        json!({"Sid": "StateObjects", "Effect": "Allow",
               "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
               "Resource": [sub(&format!("arn:${{AWS::Partition}}:s3:::{bucket}/{state_prefix}")),
                            sub(&format!("arn:${{AWS::Partition}}:s3:::{bucket}/builds/*")),
                            sub(&format!("arn:${{AWS::Partition}}:s3:::{bucket}/reports/*"))]}),
        json!({"Sid": "StateList", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:GetBucketAcl"],
               "Resource": sub(&format!("arn:${{AWS::Partition}}:s3:::{bucket}"))}),
        json!({"Sid": "StateKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
               "Resource": {"Fn::GetAtt": ["StateKey", "Arn"]}}),
        json!({"Sid": "BuildLogs", "Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
               "Resource": [sub(&logs), sub(&format!("{logs}:*"))]}),
    ];
    // sts:AssumeRole on the dev role is already in the generated policy
    // when the source side has no profile of its own (checked above).
    if !statements.iter().any(|s| s["Action"].as_array().is_some_and(|a| a.iter().any(|x| x == "sts:AssumeRole"))) {
        if let Some(role) = &cfg.source.role_arn {
            inline.push(
                json!({"Sid": "AssumeDevReadRole", "Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": role}),
            );
        }
    }
    resources.insert(
        "BuildRole".into(),
        json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": n.build_role,
                "Description": "paymig's scheduled build: the prod identity",
                "AssumeRolePolicyDocument": trusted_by("codebuild.amazonaws.com"),
                "ManagedPolicyArns": managed,
                "Policies": [{"PolicyName": "state-and-logs", "PolicyDocument": {"Version": "2012-10-17", "Statement": inline}}],
                "Tags": tags(cfg),
            }
        }),
    );
    resources.insert(
        "BuildLogGroup".into(),
        json!({
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": format!("/aws/codebuild/{}", n.project),
                "RetentionInDays": 90,
                "KmsKeyId": {"Fn::GetAtt": ["StateKey", "Arn"]},
                "Tags": tags(cfg),
            }
        }),
    );
    resources.insert(
        "Project".into(),
        json!({
            "Type": "AWS::CodeBuild::Project",
            "Properties": {
                "Name": n.project,
                "Description": format!("paymig {}: plan, apply when changes are pending, validate", cfg.migration.name),
                "ServiceRole": {"Fn::GetAtt": ["BuildRole", "Arn"]},
                "EncryptionKey": {"Fn::GetAtt": ["StateKey", "Arn"]},
                "Source": {"Type": {"Ref": "SourceType"}, "Location": {"Ref": "SourceLocation"}, "BuildSpec": "buildspec.yml"},
                "Environment": {
                    "Type": "LINUX_CONTAINER", "ComputeType": "BUILD_GENERAL1_MEDIUM", "Image": "aws/codebuild/standard:7.0",
                    "EnvironmentVariables": [
                        {"Name": "PAYMIG_STATE_BUCKET", "Value": {"Ref": "StateBucket"}},
                        {"Name": "PAYMIG_CONFIG", "Value": {"Ref": "ConfigPath"}}
                    ]
                },
                "TimeoutInMinutes": timeout_minutes(cfg),
                "Artifacts": {"Type": "S3", "Location": {"Ref": "StateBucket"}, "Path": "reports", "NamespaceType": "BUILD_ID", "Name": "paymig-report", "Packaging": "ZIP"},
                "LogsConfig": {"CloudWatchLogs": {"Status": "ENABLED", "GroupName": {"Ref": "BuildLogGroup"}}},
                "Tags": tags(cfg),
            }
        }),
    );

    // The schedule and the role that may start this project only.
    resources.insert(
        "ScheduleRole".into(),
        json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": n.schedule_role,
                "Description": "EventBridge starts paymig's scheduled build",
                "AssumeRolePolicyDocument": trusted_by("events.amazonaws.com"),
                "Policies": [{"PolicyName": "start-build", "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Sid": "StartThisBuild", "Effect": "Allow", "Action": ["codebuild:StartBuild"],
                    "Resource": {"Fn::GetAtt": ["Project", "Arn"]}
                }]}}],
                "Tags": tags(cfg),
            }
        }),
    );
    resources.insert(
        "ScheduleRule".into(),
        json!({
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Name": n.schedule,
                "Description": format!("paymig {}: the scheduled build", cfg.migration.name),
                "ScheduleExpression": {"Ref": "ScheduleExpression"},
                "State": "ENABLED",
                "Targets": [{"Id": "paymig", "Arn": {"Fn::GetAtt": ["Project", "Arn"]}, "RoleArn": {"Fn::GetAtt": ["ScheduleRole", "Arn"]}}]
            }
        }),
    );
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("paymig {} ({}): scheduled runs in CodeBuild (paymig ci-template)", cfg.migration.name, cfg.suffix()),
        "Parameters": {
            "SourceType": {"Type": "String", "Default": "GITHUB", "Description": "Where CodeBuild gets the repository with migrations.toml and buildspec.yml",
                           "AllowedValues": ["CODECOMMIT", "GITHUB", "GITHUB_ENTERPRISE", "BITBUCKET", "S3"]},
            "SourceLocation": {"Type": "String", "Description": "The repository's URL (or the S3 object's path)"},
            "ConfigPath": {"Type": "String", "Default": "migrations.toml", "Description": "The configuration's path in the repository"},
            "ScheduleExpression": {"Type": "String", "Default": schedule, "Description": "When the build runs (EventBridge schedule expression)"}
        },
        "Resources": resources,
        "Outputs": {
            "BuildRoleArn": {"Description": "The prod identity: ci-template --side source's BuildRoleArn parameter", "Value": {"Fn::GetAtt": ["BuildRole", "Arn"]}},
            "Project": {"Value": {"Ref": "Project"}},
            "StateBucket": {"Value": {"Ref": "StateBucket"}}
        }
    })
}

/// The dev account's template: the read role.
pub fn source(cfg: &Config) -> Value {
    let role_arn = cfg.source.role_arn.as_deref().unwrap_or_default();
    let (path, name) = role_path_and_name(role_arn);
    let policy = crate::permissions::source_policy(cfg, "${AWS::AccountId}");
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("paymig {} ({}): the read-only role in the dev account (paymig ci-template --side source)", cfg.migration.name, cfg.suffix()),
        "Parameters": {
            "BuildRoleArn": {"Type": "String", "AllowedPattern": "^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$",
                             "Description": "The prod build role (the prod template's BuildRoleArn output)"}
        },
        "Resources": {
            "ReadRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": name,
                    "Path": path,
                    "Description": "paymig reads the dev stack (never writes)",
                    "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                        "Effect": "Allow", "Principal": {"AWS": {"Ref": "BuildRoleArn"}}, "Action": "sts:AssumeRole"
                    }]},
                    "Policies": [{"PolicyName": "paymig-read", "PolicyDocument": substituted(&policy)}],
                    "Tags": tags(cfg),
                }
            }
        },
        "Outputs": {"ReadRoleArn": {"Value": {"Fn::GetAtt": ["ReadRole", "Arn"]}}}
    })
}

/// `arn:aws:iam::1:role/ops/paymig-read` → (`/ops/`, `paymig-read`).
fn role_path_and_name(arn: &str) -> (String, String) {
    let resource = arn.split(':').nth(5).unwrap_or_default();
    let rest = resource.strip_prefix("role").unwrap_or(resource);
    match rest.rfind('/') {
        Some(i) => (if i == 0 { "/".to_owned() } else { rest[..=i].to_owned() }, rest[i + 1..].to_owned()),
        None => ("/".to_owned(), rest.to_owned()),
    }
}

/// A role's trust policy: `service` of this account (the confused-deputy
/// condition) may assume it.
fn trusted_by(service: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_split_into_path_and_name() {
        assert_eq!(role_path_and_name("arn:aws:iam::111:role/paymig-read"), ("/".into(), "paymig-read".into()));
        assert_eq!(
            role_path_and_name("arn:aws:iam::111:role/ops/ci/paymig-read"),
            ("/ops/ci/".into(), "paymig-read".into())
        );
    }

    #[test]
    fn statements_split_within_the_managed_policy_limit() {
        let big = |i: usize| json!({"Sid": format!("S{i}"), "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "x".repeat(1000)});
        let docs = split_statements(&(0..20).map(big).collect::<Vec<_>>());
        assert!(docs.len() > 1);
        assert_eq!(docs.iter().map(Vec::len).sum::<usize>(), 20, "every statement once, in order");
        for d in &docs {
            let text = serde_json::to_string(&json!({"Version": "2012-10-17", "Statement": d})).unwrap();
            assert!(text.len() <= MANAGED_POLICY_LIMIT, "{}", text.len());
        }
    }
}

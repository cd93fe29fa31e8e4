use super::*;

#[test]
fn key_policy_has_no_wildcard_action() {
    let p = key_policy("123456789012", "us-east-1");
    for st in p["Statement"].as_array().unwrap() {
        for a in st["Action"].as_array().unwrap() {
            let a = a.as_str().unwrap();
            assert!(!a.contains('*'), "wildcard action {a}");
        }
    }
    let text = p.to_string();
    for svc in [
        "rds.us-east-1",
        "dynamodb.us-east-1",
        "lambda.us-east-1",
        "sns.us-east-1",
        "cloudwatch.amazonaws.com",
        "logs.us-east-1",
    ] {
        assert!(text.contains(svc), "{svc} missing");
    }
}

// The key's settings against the SDK's clients over a scripted HTTP
// client (crate::aws::replay).

use crate::aws::replay::{self, Answer, Script};
use crate::engine::Mode;

fn replaying(script: &std::sync::Arc<Script>, mode: Mode) -> Ctx {
    let cfg = crate::engine::test_config();
    let aws = replay::aws(script, &cfg.migration.region);
    crate::engine::test_ctx_with(mode, cfg, aws)
}

#[tokio::test]
async fn plan_reads_rotation_and_policy_and_shows_what_would_change_without_writing() {
    let drifted = json!({"Version": "2012-10-17", "Statement": []});
    let script = Script::new([
        Answer::json("GetKeyRotationStatus", json!({"KeyRotationEnabled": false})),
        Answer::json("GetKeyPolicy", json!({"Policy": drifted.to_string(), "PolicyName": "default"})),
    ]);
    let ctx = replaying(&script, Mode::Plan);
    let key = key_res(&ctx);
    settings::converge::<KeySetting>(&ctx, &key, "k-1", &KeyRef::new("k-1", &key.name), true).await.unwrap();
    assert_eq!(script.asked(), ["GetKeyRotationStatus", "GetKeyPolicy"], "reads only");
    let shown: Vec<String> = ctx.changes().iter().map(|c| c.detail.to_string()).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0]
            .starts_with("rotation: off → on; key policy: Id none, Statement [] → Id paymig-key-policy, Statement [{"),
        "{shown:?}"
    );
}

#[tokio::test]
async fn undo_of_a_key_already_pending_deletion_is_done() {
    // Restoring rotation on a key scheduled for deletion: KMS refuses
    // with KMSInvalidStateException, and there is nothing to restore.
    let script = Script::new([Answer::json_error("GetKeyRotationStatus", 400, "KMSInvalidStateException")]);
    let ctx = replaying(&script, Mode::Apply);
    let before = SettingBefore { setting: "rotation".into(), value: json!("off") };
    let r = settings::restore::<KeySetting>(&ctx, &KeyRef::new("k-1", "k-1"), &before).await;
    assert!(matches!(&r, Err(e) if key_gone(e)), "{r:?}");
    assert_eq!(script.asked(), ["GetKeyRotationStatus"]);
}

#[test]
fn previous_values_of_this_and_earlier_versions_read_back() {
    let cases = [
        (
            json!({"setting": "rotation", "value": "off"}),
            Prev::Setting(SettingBefore { setting: "rotation".into(), value: json!("off") }),
        ),
        (json!({"rotation": false}), Prev::Rotation { rotation: false }),
        (json!({"policy": {"Version": "2012-10-17"}}), Prev::Policy { policy: json!({"Version": "2012-10-17"}) }),
        (json!({"target_key_id": "k-0"}), Prev::AliasTarget { target_key_id: "k-0".into() }),
    ];
    for (json, prev) in cases {
        assert_eq!(serde_json::from_value::<Prev>(json.clone()).unwrap(), prev, "{json}");
        assert_eq!(serde_json::to_value(&prev).unwrap(), json);
    }
}

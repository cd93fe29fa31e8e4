//! `journal = "s3://bucket/prefix"`: the journal and its lease lock in S3,
//! with conditional writes (moto honours If-None-Match and If-Match on
//! PutObject and If-Match on DeleteObject).

use aws_sdk_s3::primitives::ByteStream;
use std::sync::Arc;

use paymig::testing::Holder;
use paymig::testing::{AcquireError, Acquired, Remote, RemoteError, RemoteSpec};
use paymig::testing::{Intent, Journal, Op};

use crate::support::World;

pub const BUCKET: &str = "paymig-state-ci";

pub fn remote_journal(config: String) -> String {
    let start = config.find("\njournal = ").expect("journal key") + 1;
    let end = start + config[start..].find('\n').expect("end of line");
    format!("{}journal = \"s3://{BUCKET}/builds\"{}", &config[..start], &config[end..])
}

pub async fn keys(w: &World, prefix: &str) -> Vec<String> {
    let out = w.prod.s3.list_objects_v2().bucket(BUCKET).prefix(prefix).send().await.unwrap();
    let mut keys: Vec<String> = out.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
    keys.sort();
    keys
}

async fn body(w: &World, key: &str) -> String {
    let out = w.prod.s3.get_object().bucket(BUCKET).key(key).send().await.unwrap();
    String::from_utf8(out.body.collect().await.unwrap().into_bytes().to_vec()).unwrap()
}

async fn put_lock(w: &World, key: &str, holder: &Holder) {
    w.prod
        .s3
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(serde_json::to_vec(holder).unwrap()))
        .send()
        .await
        .unwrap();
}

fn other_build(renewed: &str) -> Holder {
    Holder {
        pid: 4242,
        host: "codebuild-host-a".into(),
        started: "2026-11-24T03:00:00Z".into(),
        command: "apply".into(),
        build_id: Some("paymig-nightly:0b5e".into()),
        renewed: Some(renewed.into()),
        lease_seconds: Some(120),
    }
}

fn intent(i: usize) -> Intent {
    Intent {
        step: "params".into(),
        op: Op::Create,
        kind: "ssm_parameter".into(),
        key: i.to_string(),
        name: format!("/prod/p{i}"),
        prev: serde_json::Value::Null,
        data: serde_json::Value::Null,
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journal_and_its_lease_live_in_s3() {
    let w = World::with(Default::default(), |t| remote_journal(crate::without_database(t))).await;
    w.prod.s3.create_bucket().bucket(BUCKET).send().await.unwrap();

    let apply = w.paymig(["apply", "--yes"]).run();
    apply.expect_code(0);
    assert!(!w.journal_path().exists(), "nothing is journaled locally");
    // One object per entry, numbered 1..N without a gap, each a journal line
    // of this migration; the lease is given back at the end.
    let entries = keys(&w, "builds/payments/journal/").await;
    assert!(entries.len() > 50, "{entries:?}");
    for (i, key) in entries.iter().enumerate() {
        let line: serde_json::Value = serde_json::from_str(&body(&w, key).await).unwrap();
        assert_eq!(line["seq"], (i + 1) as u64, "{key}");
        assert_eq!(line["migration"], "payments");
    }
    assert!(keys(&w, "builds/payments/lock.json").await.is_empty(), "the lease is released");

    // The journal is read back from S3: a re-apply is a no-op that writes
    // only its run's start and end, and status counts every entry.
    let again = w.paymig(["apply", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);
    assert_eq!(keys(&w, "builds/payments/journal/").await.len(), entries.len() + 2);
    let status = w.paymig(["status", "--format", "json"]).run();
    status.expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(doc["entries"], (entries.len() + 2) as u64);
    assert_eq!(doc["journal"], format!("s3://{BUCKET}/builds"));
    assert!(doc["lock"].is_null(), "{doc}");

    // A live lease held by another build: refused with exit 4 naming it,
    // before any AWS call of the migration; status shows the holder.
    put_lock(&w, "builds/payments/lock.json", &other_build(&now())).await;
    let held = w.paymig(["apply", "--yes"]).run();
    held.expect_code(4);
    assert!(held.stderr.contains("build paymig-nightly:0b5e") && held.stderr.contains("pid 4242"), "{}", held.stderr);
    assert!(!held.stderr.contains("API calls:"), "nothing of the migration ran: {}", held.stderr);
    let status = w.paymig(["status"]).run();
    status.expect_code(0);
    assert!(status.stdout.contains("held by `paymig apply` (pid 4242 on codebuild-host-a"), "{}", status.stdout);

    // The same lease after it ran out (a cancelled build): taken over with a
    // message, and the run finishes the job from the journal.
    put_lock(&w, "builds/payments/lock.json", &other_build("2026-01-01T00:00:00Z")).await;
    let status = w.paymig(["status", "--format", "json"]).run();
    assert!(serde_json::from_str::<serde_json::Value>(&status.stdout).unwrap()["lock"].is_null());
    let destroy = w.paymig(["destroy", "--yes"]).run();
    destroy.expect_code(0);
    assert!(
        destroy.stderr.contains("took over the lock") && destroy.stderr.contains("paymig-nightly:0b5e"),
        "{}",
        destroy.stderr
    );
    assert!(keys(&w, "builds/payments/lock.json").await.is_empty());
    assert_eq!(crate::inventory(&w).await, Default::default(), "destroy found everything in the S3 journal");
}

fn spec(sdk: &aws_config::SdkConfig, lease_seconds: u64) -> RemoteSpec {
    RemoteSpec {
        bucket: BUCKET.into(),
        prefix: "unit".into(),
        migration: "payments".into(),
        region: "us-east-1".into(),
        profile: None,
        role_arn: None,
        lease_seconds,
        sdk: Some(sdk.clone()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_writers_never_interleave_and_a_taken_over_lease_stops_writing() {
    let w = World::with(Default::default(), crate::without_database).await;
    w.prod.s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let sdk = crate::support::fixture::sdk_config(&w.moto.endpoint, "us-east-1").await;
    // The remote journal's calls are synchronous (its own thread): drive it
    // from a blocking thread, as paymig's steps do.
    tokio::task::spawn_blocking(move || {
        {
            let a = Remote::connect(spec(&sdk, 4)).unwrap();
            let b = Remote::connect(spec(&sdk, 4)).unwrap();
            // Entry 1 can be written once: the second writer is refused.
            a.put(1, b"{\"seq\":1}\n".to_vec()).unwrap();
            assert!(matches!(b.put(1, b"{\"seq\":1}\n".to_vec()), Err(RemoteError::Conflict(_))));

            // One lease at a time; the loser learns who holds it.
            assert!(matches!(a.acquire(Holder::me("apply")), Ok(Acquired::Fresh)));
            match b.acquire(Holder::me("destroy")) {
                Err(AcquireError::Held(h)) => assert_eq!(h.command, "apply"),
                other => panic!("expected Held, got {other:?}"),
            }
            // `a` keeps renewing (every second for a 4 s lease): after 5 s
            // its lease is still live.
            std::thread::sleep(std::time::Duration::from_secs(5));
            assert!(matches!(b.acquire(Holder::me("destroy")), Err(AcquireError::Held(_))));

            // Someone overwrites the lock behind a's back: a's next renewal
            // is refused and a stops writing.
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(put_lock(&w, "unit/payments/lock.json", &other_build(&now())));
            std::thread::sleep(std::time::Duration::from_millis(2500));
            assert!(matches!(a.put(2, b"{}\n".to_vec()), Err(RemoteError::Conflict(m)) if m.contains("taken over")));
            drop(a);
            // a did not delete a lock it no longer holds.
            assert_eq!(rt.block_on(keys(&w, "unit/payments/lock.json")).len(), 1);

            // Many single-entry objects are folded into one checkpoint when
            // the journal is next opened for writing; nothing is lost.
            let mut s = spec(&sdk, 60);
            s.prefix = "folded".into();
            let open = |read_only: bool| {
                let store = Arc::new(Remote::connect(s.clone()).unwrap());
                Journal::open(store, "payments", !read_only).unwrap().0
            };
            let j = open(false);
            j.begin_run("apply").unwrap();
            for i in 0..450 {
                let seq = j.intent(intent(i)).unwrap();
                j.done(seq, &format!("id-{i}"), None, serde_json::Value::Null).unwrap();
            }
            j.end_run("succeeded", 450).unwrap();
            drop(j);
            assert_eq!(rt.block_on(keys(&w, "folded/payments/journal/")).len(), 902);
            assert_eq!(open(true).len(), 902, "a read-only open never folds");
            let j = open(false);
            assert_eq!(j.len(), 902);
            assert!(rt.block_on(keys(&w, "folded/payments/journal/")).is_empty());
            assert_eq!(rt.block_on(keys(&w, "folded/payments/checkpoint/")).len(), 1);
            j.begin_run("apply").unwrap();
            drop(j);
            let j = open(true);
            assert_eq!(j.len(), 903);
            assert_eq!(j.records().len(), 450);
            assert!(j.records().iter().all(|r| r.id.as_deref() == Some(&format!("id-{}", r.intent.key)[..])));
        }
    })
    .await
    .unwrap();
}

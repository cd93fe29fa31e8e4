use super::*;
use crate::engine::dag::Dag;
use crate::engine::journal::Intent;
use serde_json::Value;

fn rec(seq: u64, step: &str, op: Op, kind: &str, key: &str) -> Record {
    Record {
        seq,
        run: "r".into(),
        intent: Intent {
            step: step.into(),
            op,
            kind: kind.into(),
            key: key.into(),
            name: key.into(),
            prev: Value::Null,
            data: Value::Null,
        },
        id: Some(key.into()),
        arn: None,
        done_data: Value::Null,
        undone: false,
    }
}

#[test]
fn each_step_waits_only_for_the_steps_that_depend_on_it() {
    // Newest first, interleaved the way a parallel apply journals them.
    let records = vec![
        rec(9, "params", Op::Create, "ssm_parameter", "p/2"),
        rec(8, "network", Op::Create, "subnet", "n/subnet-b"),
        rec(7, "params", Op::Create, "ssm_parameter", "p/1"),
        rec(6, "database", Op::Create, "db_cluster", "d/cluster"),
        rec(5, "kms", Op::Create, "kms_key", "k/key"),
        rec(4, "network", Op::Create, "subnet", "n/subnet-a"),
        rec(3, "gone", Op::Create, "thing", "g/1"),
        rec(2, "network", Op::Create, "vpc", "n/vpc"),
        rec(1, "lambda", Op::Create, "lambda_function", "l/f"),
        rec(0, "alb", Op::Create, "load_balancer", "a/lb"),
    ];
    let steps = crate::steps::all();
    let plan = schedule(&records, &steps);
    assert_eq!(plan.unknown.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3], "the unknown step apart");
    let of = |id: &str| plan.steps.iter().find(|s| s.id == id).unwrap();
    let sorted = |id: &str| {
        let mut a = of(id).after.clone();
        a.sort();
        a
    };
    // params depends on nothing and nothing on it: it starts at once.
    assert!(sorted("params").is_empty());
    // database, lambda and alb depend on network: network waits for them.
    // kms waits for database; not for lambda, whose only way to the key
    // is through iam, which declares kms apart (a role's policy may name
    // a deleted key).
    assert_eq!(sorted("kms"), vec!["database"]);
    assert!(sorted("database").is_empty());
    // The functions need not wait for the load balancer (undo_apart).
    assert!(sorted("lambda").is_empty());
    assert_eq!(sorted("network"), vec!["alb", "database", "lambda"]);
    // Inside a step the newest-first order is kept.
    let seqs = |id: &str| of(id).records.iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(seqs("network"), vec![8, 4, 2]);
    assert_eq!(seqs("params"), vec![9, 7]);
    // Every record exactly once.
    let all: usize = plan.steps.iter().map(|s| s.records.len()).sum::<usize>() + plan.unknown.len();
    assert_eq!(all, records.len());
}

#[test]
fn only_consecutive_creates_of_one_kind_with_distinct_keys_are_siblings() {
    let subnets =
        [(5, Op::Create, "a"), (4, Op::Create, "b"), (3, Op::Update, "b"), (2, Op::Create, "c"), (1, Op::Create, "c")];
    let records: Vec<Record> =
        subnets.into_iter().map(|(seq, op, key)| rec(seq, "network", op, "subnet", key)).collect();
    let groups: Vec<Vec<u64>> = sibling_groups(&records).iter().map(|g| g.iter().map(|r| r.seq).collect()).collect();
    assert_eq!(groups, vec![vec![5, 4], vec![3], vec![2], vec![1]]);
}

/// A step whose undo fails for the keys in `fails` and logs every
/// undo and sweep it is asked for.
struct Undoer {
    id: &'static str,
    deps: &'static [&'static str],
    fails: &'static [&'static str],
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl crate::engine::Declared for Undoer {
    fn about(&self) -> &'static crate::engine::About {
        &crate::engine::About::NONE
    }
    fn id(&self) -> &'static str {
        self.id
    }
    fn deps(&self) -> &'static [&'static str] {
        self.deps
    }
}

impl crate::engine::Step for Undoer {
    async fn run(&self, _ctx: &Ctx) -> Result<crate::engine::Outcome, crate::engine::StepError> {
        unreachable!("undo only")
    }
    async fn undo(&self, _ctx: &Ctx, r: &Record) -> Result<(), crate::engine::StepError> {
        self.log.lock().unwrap().push(format!("undo {}", r.intent.key));
        if self.fails.contains(&r.intent.key.as_str()) {
            return Err(crate::engine::StepError::Invalid(format!("{} refused", r.intent.key)));
        }
        Ok(())
    }
    async fn sweep(&self, _ctx: &Ctx, _look: bool) -> Result<Vec<Swept>, crate::engine::StepError> {
        self.log.lock().unwrap().push(format!("sweep {}", self.id));
        Ok(Vec::new())
    }
}

/// Journals creates (oldest first: `(step, kind, key)`) in one run and
/// replays their undo newest first with `fails` failing; returns the
/// tally, what was undone or swept, in order, and the records still live.
async fn undo_with(
    creates: &[(&str, &str, &str)],
    fails: &'static [&'static str],
) -> (Tally, Vec<String>, Vec<String>) {
    let ctx = crate::engine::test_ctx(crate::engine::Mode::Apply).await;
    let journal = ctx.journal.clone().unwrap();
    let journal = &*journal;
    for (step, kind, key) in creates {
        let intent = Intent {
            step: (*step).into(),
            op: Op::Create,
            kind: (*kind).into(),
            key: (*key).into(),
            name: (*key).into(),
            prev: Value::Null,
            data: Value::Null,
        };
        let seq = journal.intent(intent).unwrap();
        journal.done(seq, key, None, Value::Null).unwrap();
    }
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let step = |id, deps| -> std::sync::Arc<dyn crate::engine::DynStep> {
        std::sync::Arc::new(Undoer { id, deps, fails, log: log.clone() })
    };
    let dag = Dag::new(vec![step("network", &[]), step("monitoring", &[]), step("lambda", &["network"])]).unwrap();
    let todo = destroy_target(Some(journal));
    let mut tally = replay(&ctx, journal, &dag, &todo, "destroy").await;
    sweep(&ctx, dag.steps(), &mut tally, false).await;
    let live = journal.records().into_iter().filter(Record::is_live).map(|r| r.intent.key).collect();
    let log = log.lock().unwrap().clone();
    (tally, log, live)
}

const STACK: [(&str, &str, &str); 5] = [
    ("network", "vpc", "vpc"),
    ("network", "subnet", "subnet-a"),
    ("network", "subnet", "subnet-b"),
    ("monitoring", "alarm", "alarm"),
    ("lambda", "lambda_function", "function"),
];

#[tokio::test]
async fn a_failed_delete_holds_back_what_was_created_before_it_in_its_step() {
    let (tally, log, live) = undo_with(&STACK, &["subnet-b"]).await;
    // Both subnets were tried (siblings), the VPC that holds them was not:
    // its delete could only meet DependencyViolation until the bound.
    assert!(log.contains(&"undo subnet-a".to_owned()) && log.contains(&"undo subnet-b".to_owned()), "{log:?}");
    assert!(!log.contains(&"undo vpc".to_owned()), "the VPC is held back: {log:?}");
    assert_eq!((tally.deleted, tally.held, tally.failures.len(), tally.not_started), (3, 1, 1, 0));
    assert!(tally.failures[0].contains("subnet-b refused"), "{:?}", tally.failures);
    assert!(tally.to_string().contains("1 held back behind a failure (re-run to resume)"), "{tally}");
    assert_eq!(live, vec!["vpc", "subnet-b"], "what was not undone stays journaled for the re-run");
    // The sweep leaves the failed step alone; the others are swept.
    assert!(!log.contains(&"sweep network".to_owned()), "{log:?}");
    assert!(log.contains(&"sweep monitoring".to_owned()) && log.contains(&"sweep lambda".to_owned()), "{log:?}");
}

#[tokio::test]
async fn a_failed_step_holds_back_the_steps_it_may_still_use_and_no_other() {
    let (tally, log, live) = undo_with(&STACK, &["function"]).await;
    // The function may still use the network (its interfaces): network
    // is neither undone nor swept; monitoring is independent and is.
    assert!(!log.iter().any(|l| l.starts_with("undo vpc") || l.starts_with("undo subnet")), "{log:?}");
    assert!(log.contains(&"undo alarm".to_owned()), "{log:?}");
    assert!(!log.contains(&"sweep network".to_owned()) && !log.contains(&"sweep lambda".to_owned()), "{log:?}");
    assert!(log.contains(&"sweep monitoring".to_owned()), "{log:?}");
    assert_eq!((tally.deleted, tally.held, tally.failures.len(), tally.not_started), (1, 3, 1, 0));
    assert_eq!(live, vec!["vpc", "subnet-a", "subnet-b", "function"]);
    assert!(tally.stopped.contains("network") && tally.stopped.contains("lambda"), "{:?}", tally.stopped);
}

#[tokio::test]
async fn without_a_failure_everything_is_undone_and_swept() {
    let (tally, log, live) = undo_with(&STACK, &[]).await;
    assert_eq!((tally.deleted, tally.held, tally.failures.len()), (5, 0, 0));
    assert!(live.is_empty(), "{live:?}");
    let at = |e: &str| log.iter().position(|x| x == e).unwrap_or_else(|| panic!("{e} missing: {log:?}"));
    assert!(at("undo function") < at("undo subnet-a") && at("undo subnet-b") < at("undo vpc"), "{log:?}");
    assert!(at("sweep lambda") < at("sweep network"), "dependents are swept first: {log:?}");
}

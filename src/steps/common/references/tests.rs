use super::*;

fn map() -> Counterparts {
    let names = NameMap::new(
        "payments",
        "prod",
        "-dev",
        ("/dev/", "/prod/"),
        [
            "sessions-dev".to_owned(),
            "payment-processor-dev".to_owned(),
            "payments-audit-dev".to_owned(),
            "payments-dev".to_owned(),
        ]
        .iter(),
    );
    let mut c = Counterparts::new(names, "111111111111", "222222222222", "us-east-1");
    c.exact.insert(
        "payments-dev.cluster-abc.us-east-1.rds.amazonaws.com".into(),
        Target::Prod("payments-prod.cluster-xyz.us-east-1.rds.amazonaws.com".into()),
    );
    c.exact.insert(
        "payments-dev-1.abc.us-east-1.rds.amazonaws.com".into(),
        Target::Missing("its prod instance does not exist yet".into()),
    );
    c.exact.insert("vpc-0123456789abcdef0".into(), Target::Prod("vpc-0fedcba9876543210".into()));
    c.exact.insert("subnet-0aaaaaaaa".into(), Target::Prod("subnet-0bbbbbbbb".into()));
    c.exact.insert("alias/payments-dev-key".into(), Target::Prod("alias/payments-prod".into()));
    c.roles.insert("payment-processor-dev-role".into(), "payment-processor-prod-role".into());
    c.topics.insert(
        "arn:aws:sns:us-east-1:111111111111:payments-dev-alerts".into(),
        "arn:aws:sns:us-east-1:222222222222:payments-alarms-prod".into(),
    );
    c.streams.insert(
        "sessions-dev".into(),
        Target::Prod(
            "arn:aws:dynamodb:us-east-1:222222222222:table/sessions-prod/stream/2026-12-01T00:00:00.000".into(),
        ),
    );
    c.key = Some((
        "11111111-2222-3333-4444-555555555555".into(),
        "arn:aws:kms:us-east-1:222222222222:key/11111111-2222-3333-4444-555555555555".into(),
        "alias/payments-prod".into(),
    ));
    c
}

#[test]
fn endpoints_become_the_prod_clusters_own_and_a_missing_instance_is_named() {
    let c = map();
    let (v, found) = c.rewrite("postgres://app@payments-dev.cluster-abc.us-east-1.rds.amazonaws.com:5432/payments");
    assert_eq!(v, "postgres://app@payments-prod.cluster-xyz.us-east-1.rds.amazonaws.com:5432/payments");
    assert!(found.iter().all(Found::is_mapped), "{found:?}");
    let (v, found) = c.rewrite("payments-dev-1.abc.us-east-1.rds.amazonaws.com");
    assert_eq!(v, "payments-dev-1.abc.us-east-1.rds.amazonaws.com", "copied unchanged, not guessed");
    assert!(found.len() == 1 && !found[0].is_mapped(), "{found:?}");
}

#[test]
fn arns_are_mapped_by_account_and_name_and_other_accounts_are_left_alone() {
    let c = map();
    let cases = [
        (
            "arn:aws:dynamodb:us-east-1:111111111111:table/sessions-dev",
            "arn:aws:dynamodb:us-east-1:222222222222:table/sessions-prod",
        ),
        (
            "arn:aws:dynamodb:us-east-1:111111111111:table/sessions-dev/index/by-user",
            "arn:aws:dynamodb:us-east-1:222222222222:table/sessions-prod/index/by-user",
        ),
        (
            "arn:aws:dynamodb:us-east-1:111111111111:table/sessions-dev/stream/2025-01-01T00:00:00.000",
            "arn:aws:dynamodb:us-east-1:222222222222:table/sessions-prod/stream/2026-12-01T00:00:00.000",
        ),
        (
            "arn:aws:lambda:us-east-1:111111111111:function:payment-processor-dev:blue",
            "arn:aws:lambda:us-east-1:222222222222:function:payment-processor-prod:blue",
        ),
        ("arn:aws:s3:::payments-audit-dev/2026/*", "arn:aws:s3:::payments-audit-prod/2026/*"),
        (
            "arn:aws:iam::111111111111:role/payment-processor-dev-role",
            "arn:aws:iam::222222222222:role/payment-processor-prod-role",
        ),
        (
            "arn:aws:ssm:us-east-1:111111111111:parameter/dev/payments/x",
            "arn:aws:ssm:us-east-1:222222222222:parameter/prod/payments/x",
        ),
        (
            "arn:aws:sns:us-east-1:111111111111:payments-dev-alerts",
            "arn:aws:sns:us-east-1:222222222222:payments-alarms-prod",
        ),
        (
            "arn:aws:kms:us-east-1:111111111111:key/99999999-8888-7777-6666-555555555555",
            "arn:aws:kms:us-east-1:222222222222:key/11111111-2222-3333-4444-555555555555",
        ),
        (
            "arn:aws:kms:us-east-1:111111111111:alias/payments-dev-key",
            "arn:aws:kms:us-east-1:222222222222:alias/payments-prod",
        ),
        (
            "arn:aws:rds:us-east-1:111111111111:cluster:payments-dev",
            "arn:aws:rds:us-east-1:222222222222:cluster:payments-prod",
        ),
    ];
    for (dev, prod) in cases {
        let (v, found) = c.rewrite(dev);
        assert_eq!(v, prod, "{dev}");
        assert!(found.iter().all(Found::is_mapped), "{dev}: {found:?}");
    }
    // Another account's ARN (a shared layer) is not dev's.
    let layer = "arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV2:68";
    assert_eq!(c.rewrite(layer), (layer.to_owned(), vec![]));
    // Dev's own resource without a prod twin is named, unchanged.
    let queue = "arn:aws:sqs:us-east-1:111111111111:payments-dev-dlq";
    let (v, found) = c.rewrite(queue);
    assert_eq!(v, queue);
    assert!(found.len() == 1 && found[0].why.as_deref().is_some_and(|w| w.contains("sqs")), "{found:?}");
}

#[test]
fn ids_keys_words_and_paths_map_and_unknown_dev_words_are_named() {
    let c = map();
    let (v, found) = c.rewrite("vpc-0123456789abcdef0 subnet-0aaaaaaaa alias/payments-dev-key sessions-dev");
    assert_eq!(v, "vpc-0fedcba9876543210 subnet-0bbbbbbbb alias/payments-prod sessions-prod");
    assert_eq!(found.len(), 4);
    let (v, found) = c.rewrite("sg-0123456789abcdef0");
    assert!(v == "sg-0123456789abcdef0" && found.len() == 1 && !found[0].is_mapped(), "{found:?}");
    let (v, found) = c.rewrite("/dev/payments/table");
    assert_eq!((v.as_str(), found.len()), ("/prod/payments/table", 1));
    let (v, found) = c.rewrite("legacy-batch-dev.internal");
    assert_eq!(v, "legacy-batch-dev.internal");
    assert!(found.len() == 1 && found[0].dev == "legacy-batch-dev" && !found[0].is_mapped(), "{found:?}");
    // Nothing dev-like: nothing found.
    assert_eq!(c.rewrite("INFO"), ("INFO".to_owned(), vec![]));
}

//! Gateway endpoints for S3 and DynamoDB (no NAT gateways), with their
//! policies scoped to the migration's buckets and tables.

use super::*;

/// Endpoint policies: named actions on the migration's own buckets and
/// tables only — never `"Action": "*"` (the AWS default).
pub fn endpoint_policy(ctx: &Ctx, service: &str) -> Value {
    let n = &ctx.cfg.names;
    let (m, s) = (&ctx.cfg.migration.name, ctx.suffix());
    if service == "s3" {
        let mut buckets: Vec<String> = ctx.cfg.source.audit_buckets.iter().map(|b| n.prod(b)).collect();
        if buckets.is_empty() {
            buckets.push(format!("{m}-*-{s}"));
        }
        let resources: Vec<String> =
            buckets.iter().flat_map(|b| [format!("arn:aws:s3:::{b}"), format!("arn:aws:s3:::{b}/*")]).collect();
        json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "MigrationBucketsOnly", "Effect": "Allow", "Principal": "*",
            "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:ListBucket", "s3:ListBucketVersions",
                       "s3:GetBucketLocation", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            "Resource": resources}]})
    } else {
        let region = &ctx.cfg.migration.region;
        let account = &ctx.account;
        let mut tables: Vec<String> = ctx.cfg.source.dynamodb_tables.iter().map(|t| n.prod(t)).collect();
        if tables.is_empty() {
            tables.push(format!("{m}-*-{s}"));
        }
        let resources: Vec<String> = tables
            .iter()
            .flat_map(|t| {
                [
                    format!("arn:aws:dynamodb:{region}:{account}:table/{t}"),
                    format!("arn:aws:dynamodb:{region}:{account}:table/{t}/index/*"),
                ]
            })
            .collect();
        json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "MigrationTablesOnly", "Effect": "Allow", "Principal": "*",
            "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query",
                       "dynamodb:Scan", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem",
                       "dynamodb:DescribeTable"],
            "Resource": resources}]})
    }
}

pub(super) async fn converge_endpoints(
    ctx: &Ctx,
    vpc_id: &str,
    existing: &[VpcEndpoint],
    route_tables: &[String],
) -> Result<(), StepError> {
    let ec2 = &ctx.aws.target.ec2;
    let region = &ctx.cfg.migration.region;
    for service in GATEWAY_SERVICES {
        let service_name = format!("com.amazonaws.{region}.{service}");
        let name = ctx.cfg.names.own(&format!("{service}-endpoint"));
        let res = Res::new(STEP, kind::VPC_ENDPOINT, format!("endpoint/{service}"), &name);
        let policy = endpoint_policy(ctx, service);
        let found = existing.iter().find(|e| e.service_name() == Some(service_name.as_str()) && interface::live(e));
        match found {
            Some(e) => {
                let id = e.vpc_endpoint_id().unwrap_or_default().to_owned();
                ctx.adopt(&res, &id, None)?;
                converge_tags(ctx, &res, &id, e.tags()).await?;
                let have: BTreeSet<&str> = e.route_table_ids().iter().map(String::as_str).collect();
                let want: BTreeSet<&str> = route_tables.iter().map(String::as_str).filter(|r| !is_planned(r)).collect();
                let add: Vec<String> = want.difference(&have).map(|s| s.to_string()).collect();
                let remove: Vec<String> = have.difference(&want).map(|s| s.to_string()).collect();
                let current_policy: Value =
                    e.policy_document().and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null);
                if !add.is_empty() || !remove.is_empty() {
                    let prev = Prev::RouteTables { route_tables: have.iter().map(|s| s.to_string()).collect() };
                    ctx.update(&res, &id, "route tables", prev, || async {
                        ec2.modify_vpc_endpoint()
                            .vpc_endpoint_id(&id)
                            .set_add_route_table_ids(Some(add.clone()))
                            .set_remove_route_table_ids(Some(remove.clone()))
                            .send()
                            .await
                            .on(&name, "ModifyVpcEndpoint")?;
                        Ok(())
                    })
                    .await?;
                }
                converge_endpoint_policy(ctx, &res, &id, &name, current_policy, &policy).await?;
            }
            None => {
                let token = ctx.client_token(&res);
                let spec_tags = tag_spec(ctx, ResourceType::VpcEndpoint, &name);
                let rts: Vec<String> = route_tables.to_vec();
                ctx.create(
                    &res,
                    format!("gateway {service_name} on {} route tables", rts.len()),
                    json!({"vpc": vpc_id, "client_token": token}),
                    || {
                        create_endpoint(
                            &name,
                            ec2.create_vpc_endpoint()
                                .vpc_id(vpc_id)
                                .vpc_endpoint_type(VpcEndpointType::Gateway)
                                .service_name(&service_name)
                                .set_route_table_ids(Some(rts))
                                .policy_document(policy.to_string())
                                .client_token(token)
                                .tag_specifications(spec_tags),
                        )
                    },
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Sends a CreateVpcEndpoint, retried while the subnets, route tables or
/// group it names are too new for EC2 to find (eventual consistency; its
/// ClientToken makes a retry return the same endpoint); the new id.
pub(super) async fn create_endpoint(
    name: &str,
    request: aws_sdk_ec2::operation::create_vpc_endpoint::builders::CreateVpcEndpointFluentBuilder,
) -> Result<Created<String>, StepError> {
    let out = retry_eventual("CreateVpcEndpoint", is_not_found_yet, || {
        let request = request.clone();
        async move { request.send().await.on(name, "CreateVpcEndpoint") }
    })
    .await?;
    Created::returned(out.vpc_endpoint.and_then(|e| e.vpc_endpoint_id), "CreateVpcEndpoint")
}

/// The prefix lists of the S3 and DynamoDB gateway endpoints (the compute
/// group's HTTPS egress goes to them and nowhere else).
pub(super) async fn endpoint_prefix_lists(ctx: &Ctx) -> Result<Vec<String>, StepError> {
    let region = &ctx.cfg.migration.region;
    let names = [format!("com.amazonaws.{region}.s3"), format!("com.amazonaws.{region}.dynamodb")];
    let out = ctx
        .aws
        .target
        .ec2
        .describe_prefix_lists()
        .filters(Filter::builder().name("prefix-list-name").set_values(Some(names.to_vec())).build())
        .send()
        .await
        .on("gateway endpoint prefix lists", "DescribePrefixLists")?;
    let mut ids: Vec<String> = out
        .prefix_lists()
        .iter()
        .filter(|p| p.prefix_list_name().is_some_and(|n| names.iter().any(|x| x == n)))
        .filter_map(|p| p.prefix_list_id().map(str::to_owned))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Makes an endpoint's policy `want` (gateway and interface endpoints alike),
/// journaling the one it replaces.
pub(super) async fn converge_endpoint_policy(
    ctx: &Ctx,
    res: &Res,
    id: &str,
    name: &str,
    current: Value,
    want: &Value,
) -> Result<(), StepError> {
    if &current == want {
        return Ok(());
    }
    ctx.update(res, id, "endpoint policy", Prev::Policy { policy: current }, || async {
        let ec2 = &ctx.aws.target.ec2;
        ec2.modify_vpc_endpoint()
            .vpc_endpoint_id(id)
            .policy_document(want.to_string())
            .send()
            .await
            .on(name, "ModifyVpcEndpoint")?;
        Ok(())
    })
    .await
}

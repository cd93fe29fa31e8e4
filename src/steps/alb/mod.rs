//! alb: the blue-green front door. An internal ALB `<migration>-alb-<suffix>`
//! in the prod private subnets with the ALB security group; target groups
//! `<migration>-blue-<suffix>` and `<migration>-green-<suffix>` (Lambda
//! targets by default: the first listed function's `blue` and `green`
//! aliases, each with an invoke permission scoped to its target group's ARN;
//! health checks on `[blue_green] health_check_path`); and a listener on
//! `[blue_green] listener_port` forwarding with weights — live colour 100,
//! the other 0. Lambda target groups reject `deregistration_delay`: there
//! draining is the gradual weighted shift of `switch`; `ip` target groups get
//! a 30-second deregistration delay.

use crate::aws::Call;
use crate::engine::estimate::{Compose, Wait};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, LoadBalancerSchemeEnum, LoadBalancerStateEnum, LoadBalancerTypeEnum,
    ProtocolEnum, Tag, TargetDescription, TargetGroupAttribute, TargetGroupTuple, TargetTypeEnum,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{Colour, TargetType};
use crate::engine::journal::{Op, Record};
use crate::engine::{is_planned, planned_id, poll_until, About, Created, Ctx, Declared, Outcome, Res, Step, StepError};
use crate::steps::common::arns;

pub mod shift;

pub struct Alb;

const STEP: &str = "alb";
pub const COLOURS: [&str; 2] = ["blue", "green"];
const DRAIN_SECONDS: &str = "30";

/// The resource kinds this step records in the journal (what undo matches on).
pub mod kind {
    pub const LOAD_BALANCER: &str = "load_balancer";
    pub const TARGET_GROUP: &str = "target_group";
    pub const LISTENER: &str = "listener";
    pub const LAMBDA_PERMISSION: &str = "lambda_permission";
}

static ABOUT: About = About {
    id: STEP,
    deps: &["network", "lambda"],
    // Lambda deletes a function still registered as a target (the target
    // group goes after): the functions, whose interfaces' release sets
    // destroy's length, need not wait for the load balancer.
    undo_apart: &["lambda"],
    kinds: &[kind::LOAD_BALANCER, kind::TARGET_GROUP, kind::LISTENER, kind::LAMBDA_PERMISSION],
    actions: &[
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:RegisterTargets",
        "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:AddTags",
        // The first ALB of an account creates ELB's service-linked role.
        "iam:CreateServiceLinkedRole",
        "lambda:AddPermission",
        "lambda:RemovePermission",
        "lambda:GetPolicy",
    ],
    scopes: &[("elasticloadbalancing", arns::load_balancer), ("lambda", arns::functions)],
    waits: &[("load_balancer", Wait::LoadBalancer, Compose::Chain)],
    ..About::NONE
};

impl Declared for Alb {
    fn about(&self) -> &'static About {
        &ABOUT
    }

    fn grant(&self, _cfg: &crate::config::Config, account: &str, action: &str) -> Option<crate::engine::Grant> {
        (action == "iam:CreateServiceLinkedRole")
            .then(|| crate::engine::Grant::service_linked_role(account, "elasticloadbalancing.amazonaws.com"))
    }
}

impl Step for Alb {
    crate::step_functions!(run => converge, undo => undo, validate => validate);
}

fn tags(ctx: &Ctx) -> Vec<Tag> {
    super::common::prod_tags_as(ctx, |k, v| Tag::builder().key(k).value(v).build())
}

/// The weights with `live` taking all traffic.
pub fn weights(live: &str) -> [(String, i32); 2] {
    COLOURS.map(|c| (c.to_owned(), if c == live { 100 } else { 0 }))
}

/// The listener's forward action over the two target groups.
pub fn forward(groups: &[(String, String)], weights: &[(String, i32)]) -> Action {
    let tuples: Vec<TargetGroupTuple> = groups
        .iter()
        .map(|(colour, arn)| {
            let w = weights.iter().find(|(c, _)| c == colour).map_or(0, |(_, w)| *w);
            TargetGroupTuple::builder().target_group_arn(arn).weight(w).build()
        })
        .collect();
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(ForwardActionConfig::builder().set_target_groups(Some(tuples)).build())
        .build()
}

/// The live front door as `switch` needs it.
#[derive(Debug, Clone)]
pub struct Front {
    pub listener_arn: String,
    /// `(colour, target group ARN)`
    pub groups: Vec<(String, String)>,
    /// `(colour, weight)`
    pub weights: Vec<(String, i32)>,
}

/// A listener's forward action before a weight shift, as its intent records
/// it for rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WeightsBefore {
    /// `(colour, target group ARN)`
    pub(crate) groups: Vec<(String, String)>,
    /// `(colour, weight)`
    pub(crate) weights: Vec<(String, i32)>,
}

/// A function alias registered in a target group: undo deregisters it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TargetBefore {
    target: String,
}

/// The load balancer named `name`, if it exists.
async fn load_balancer(
    ctx: &Ctx,
    name: &str,
) -> Result<Option<aws_sdk_elasticloadbalancingv2::types::LoadBalancer>, StepError> {
    let out = ctx.aws.target.elbv2.describe_load_balancers().names(name).send().await;
    Ok(out
        .found(name, "DescribeLoadBalancers")?
        .and_then(|out| out.load_balancers.unwrap_or_default().into_iter().next()))
}

/// Finds the listener and target groups apply created, with current weights.
pub async fn locate(ctx: &Ctx) -> Result<Option<Front>, StepError> {
    let elb = &ctx.aws.target.elbv2;
    let name = ctx.cfg.names.own("alb");
    let lb = load_balancer(ctx, &name).await?.and_then(|l| l.load_balancer_arn);
    let Some(lb) = lb else { return Ok(None) };
    let port = i32::from(ctx.cfg.blue_green.listener_port);
    let listeners = elb.describe_listeners().load_balancer_arn(&lb).send().await.on(&name, "DescribeListeners")?;
    let Some(l) = listeners.listeners().iter().find(|l| l.port() == Some(port)) else { return Ok(None) };
    let mut groups = Vec::new();
    for colour in COLOURS {
        let tg = ctx.cfg.names.own(colour);
        let out = elb.describe_target_groups().names(&tg).send().await.on(&tg, "DescribeTargetGroups")?;
        let Some(arn) = out.target_groups().first().and_then(|t| t.target_group_arn()) else { return Ok(None) };
        groups.push((colour.to_owned(), arn.to_owned()));
    }
    let tuples = l
        .default_actions()
        .first()
        .and_then(|a| a.forward_config())
        .map(|f| f.target_groups().to_vec())
        .unwrap_or_default();
    let weights = groups
        .iter()
        .map(|(c, arn)| {
            (
                c.clone(),
                tuples
                    .iter()
                    .find(|t| t.target_group_arn() == Some(arn.as_str()))
                    .and_then(|t| t.weight())
                    .unwrap_or(0),
            )
        })
        .collect();
    Ok(Some(Front { listener_arn: l.listener_arn().unwrap_or_default().to_owned(), groups, weights }))
}

fn function(ctx: &Ctx) -> Option<(String, String)> {
    let dev = ctx.cfg.source.lambda_functions.first()?;
    Some((dev.clone(), ctx.cfg.names.prod(dev)))
}

async fn converge(ctx: &Ctx) -> Result<Outcome, StepError> {
    let elb = &ctx.aws.target.elbv2;
    let name = ctx.cfg.names.own("alb");
    let lambda_targets = ctx.cfg.blue_green.target_type == TargetType::Lambda;
    if lambda_targets && function(ctx).is_none() {
        return Ok(Outcome::Skipped("no [source] lambda_functions to put behind the ALB".into()));
    }
    let network = super::network::Vpc::of(ctx);
    let (subnets, sg, vpc) = (super::network::one_per_zone(&network.subnets), network.sg_alb, network.id);
    // The load balancer.
    let res = Res::new(STEP, kind::LOAD_BALANCER, "alb", &name);
    // (ARN, whether it is active yet).
    let (lb_arn, active) = match load_balancer(ctx, &name).await? {
        Some(lb) => {
            let arn = lb.load_balancer_arn().unwrap_or_default().to_owned();
            ctx.adopt(&res, &arn, Some(&arn))?;
            (arn, lb.state().and_then(|s| s.code()) == Some(&LoadBalancerStateEnum::Active))
        }
        None => (String::new(), false),
    };
    if subnets.len() < 2 && !ctx.is_plan() {
        return Err(StepError::Invalid(format!(
            "{name}: an ALB needs subnets in at least two Availability Zones; the prod network has {}",
            subnets.len()
        )));
    }
    let lb_arn = if lb_arn.is_empty() {
        ctx.create(&res, format!("internal, {} subnets", subnets.len()), Value::Null, || async {
            let out = elb
                .create_load_balancer()
                .name(&name)
                .scheme(LoadBalancerSchemeEnum::Internal)
                .r#type(LoadBalancerTypeEnum::Application)
                .set_subnets(Some(subnets.clone()))
                .security_groups(&sg)
                .set_tags(Some(tags(ctx)))
                .send()
                .await
                .on(&name, "CreateLoadBalancer")?;
            let arn = out.load_balancers().first().and_then(|l| l.load_balancer_arn()).unwrap_or_default().to_owned();
            Ok(Created { value: arn.clone(), id: arn.clone(), arn: Some(arn), data: Value::Null })
        })
        .await?
        .unwrap_or_else(|| planned_id("load balancer"))
    } else {
        lb_arn
    };

    // The target groups, their permissions and targets.
    let mut groups = Vec::new();
    for colour in COLOURS {
        let tg_name = ctx.cfg.names.own(colour);
        let res = Res::new(STEP, kind::TARGET_GROUP, format!("target-group/{colour}"), &tg_name);
        let found = elb
            .describe_target_groups()
            .names(&tg_name)
            .send()
            .await
            .found(&tg_name, "DescribeTargetGroups")?
            .and_then(|out| out.target_groups().first().and_then(|t| t.target_group_arn()).map(str::to_owned));
        let tg_arn = match found {
            Some(arn) => {
                ctx.adopt(&res, &arn, Some(&arn))?;
                arn
            }
            None => ctx
                .create(
                    &res,
                    format!(
                        "{} targets, health check {}",
                        if lambda_targets { "lambda" } else { "ip" },
                        ctx.cfg.blue_green.health_check_path
                    ),
                    Value::Null,
                    || async {
                        let mut req = elb
                            .create_target_group()
                            .name(&tg_name)
                            .health_check_enabled(true)
                            .health_check_path(&ctx.cfg.blue_green.health_check_path)
                            .set_tags(Some(tags(ctx)));
                        req = if lambda_targets {
                            req.target_type(TargetTypeEnum::Lambda)
                        } else {
                            req.target_type(TargetTypeEnum::Ip)
                                .protocol(ProtocolEnum::Http)
                                .port(i32::from(ctx.cfg.blue_green.listener_port))
                                .vpc_id(&vpc)
                        };
                        let out = req.send().await.on(&tg_name, "CreateTargetGroup")?;
                        let arn = out
                            .target_groups()
                            .first()
                            .and_then(|t| t.target_group_arn())
                            .unwrap_or_default()
                            .to_owned();
                        if !lambda_targets {
                            // Lambda target groups reject this attribute (AWS_FACTS §4).
                            elb.modify_target_group_attributes()
                                .target_group_arn(&arn)
                                .attributes(
                                    TargetGroupAttribute::builder()
                                        .key("deregistration_delay.timeout_seconds")
                                        .value(DRAIN_SECONDS)
                                        .build(),
                                )
                                .send()
                                .await
                                .on(&tg_name, "ModifyTargetGroupAttributes")?;
                        }
                        Ok(Created { value: arn.clone(), id: arn.clone(), arn: Some(arn), data: Value::Null })
                    },
                )
                .await?
                .unwrap_or_else(|| planned_id("target group")),
        };
        if lambda_targets {
            converge_lambda_target(ctx, colour, &tg_arn).await?;
        }
        groups.push((colour.to_owned(), tg_arn));
    }

    // The listener.
    let live = match ctx.cfg.blue_green.live {
        Colour::Blue => "blue",
        Colour::Green => "green",
    };
    let port = i32::from(ctx.cfg.blue_green.listener_port);
    let res = Res::new(STEP, kind::LISTENER, format!("listener/{port}"), format!("{name}:{port}"));
    let existing = if is_planned(&lb_arn) {
        None
    } else {
        elb.describe_listeners()
            .load_balancer_arn(&lb_arn)
            .send()
            .await
            .on(&name, "DescribeListeners")?
            .listeners()
            .iter()
            .find(|l| l.port() == Some(port))
            .and_then(|l| l.listener_arn())
            .map(str::to_owned)
    };
    match existing {
        Some(arn) => ctx.adopt(&res, &arn, Some(&arn))?,
        None => {
            let action = forward(&groups, &weights(live));
            ctx.create(&res, format!("HTTP {port}, {live} 100 / other 0"), Value::Null, || async {
                let out = elb
                    .create_listener()
                    .load_balancer_arn(&lb_arn)
                    .protocol(ProtocolEnum::Http)
                    .port(port)
                    .default_actions(action)
                    .set_tags(Some(tags(ctx)))
                    .send()
                    .await
                    .on(&name, "CreateListener")?;
                let arn = out.listeners().first().and_then(|l| l.listener_arn()).unwrap_or_default().to_owned();
                Ok(Created { value: (), id: arn.clone(), arn: Some(arn), data: Value::Null })
            })
            .await?;
        }
    }
    // A new load balancer is `provisioning` for a few minutes on AWS; its
    // targets and listener are configured meanwhile, and apply ends when it
    // serves (`switch` right after must find it active).
    if !active && !ctx.is_plan() && !is_planned(&lb_arn) {
        let provisioned = poll_until(ctx, STEP, &name, "active", || async {
            let out = elb
                .describe_load_balancers()
                .load_balancer_arns(&lb_arn)
                .send()
                .await
                .on(&name, "DescribeLoadBalancers")?;
            match out.load_balancers().first().and_then(|l| l.state()).and_then(|s| s.code()) {
                Some(LoadBalancerStateEnum::Active) => Ok(Some(())),
                Some(LoadBalancerStateEnum::Failed) => {
                    Err(StepError::Invalid(format!("{name}: the load balancer failed to provision")))
                }
                _ => Ok(None),
            }
        });
        ctx.timed(STEP, Wait::LoadBalancer, &name, provisioned).await?;
    }
    Ok(Outcome::Done)
}

/// The invoke permission for one target group and the alias registered in it.
async fn converge_lambda_target(ctx: &Ctx, colour: &str, tg_arn: &str) -> Result<(), StepError> {
    let Some((_, function)) = function(ctx) else { return Ok(()) };
    let (lambda, elb) = (&ctx.aws.target.lambda, &ctx.aws.target.elbv2);
    let sid = format!("paymig-alb-{colour}");
    let res =
        Res::new(STEP, kind::LAMBDA_PERMISSION, format!("permission/{colour}"), format!("{function}:{colour}#{sid}"));
    // No policy yet answers ResourceNotFoundException (and a plan that
    // creates the target group creates the function's aliases too).
    let policy = if is_planned(tg_arn) {
        String::new()
    } else {
        lambda
            .get_policy()
            .function_name(&function)
            .qualifier(colour)
            .send()
            .await
            .found(&function, "GetPolicy")?
            .and_then(|p| p.policy)
            .unwrap_or_default()
    };
    if policy.contains(&format!("\"{sid}\"")) {
        ctx.adopt(&res, &sid, None)?;
    } else {
        ctx.create(
            &res,
            format!("elasticloadbalancing.amazonaws.com may invoke {function}:{colour}, from its target group only"),
            json!({"function": function, "qualifier": colour}),
            || async {
                lambda
                    .add_permission()
                    .function_name(&function)
                    .qualifier(colour)
                    .statement_id(&sid)
                    .action("lambda:InvokeFunction")
                    .principal("elasticloadbalancing.amazonaws.com")
                    .source_arn(tg_arn)
                    .source_account(&ctx.account)
                    .send()
                    .await
                    .on(&function, "AddPermission")?;
                Ok(Created { value: (), id: sid.clone(), arn: None, data: Value::Null })
            },
        )
        .await?;
    }
    let alias_arn = format!("arn:aws:lambda:{}:{}:function:{function}:{colour}", ctx.cfg.migration.region, ctx.account);
    let registered = !is_planned(tg_arn) && {
        let health =
            elb.describe_target_health().target_group_arn(tg_arn).send().await.on(tg_arn, "DescribeTargetHealth")?;
        health.target_health_descriptions().iter().any(|d| d.target().and_then(|t| t.id()) == Some(alias_arn.as_str()))
    };
    if !registered {
        let tg_res = Res::new(STEP, kind::TARGET_GROUP, format!("target-group/{colour}"), ctx.cfg.names.own(colour));
        ctx.update(
            &tg_res,
            tg_arn,
            format!("register {function}:{colour}"),
            TargetBefore { target: alias_arn.to_string() },
            || async {
                elb.register_targets()
                    .target_group_arn(tg_arn)
                    .targets(TargetDescription::builder().id(&alias_arn).build())
                    .send()
                    .await
                    .on(tg_arn, "RegisterTargets")?;
                Ok(())
            },
        )
        .await?;
    }
    Ok(())
}

/// How long ELB may still hold a target group whose listener is gone.
const TARGET_GROUP_RELEASE: std::time::Duration = std::time::Duration::from_secs(180);

/// A target group still in use by a listener or rule being deleted.
fn is_in_use(e: &StepError) -> bool {
    e.is_code("ResourceInUse")
}

async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    let (elb, lambda) = (&ctx.aws.target.elbv2, &ctx.aws.target.lambda);
    let id = r.id.clone().unwrap_or_default();
    let result: Result<(), StepError> = match (r.intent.kind.as_str(), r.intent.op) {
        (kind::LISTENER, Op::Create | Op::Adopt) if !id.is_empty() => {
            elb.delete_listener().listener_arn(&id).send().await.map(|_| ()).on(&id, "DeleteListener")
        }
        (kind::LISTENER, Op::Update) => {
            // Restore the previous weights (journaled by switch).
            let listener = r.intent.data["id"].as_str().unwrap_or_default();
            let before: WeightsBefore = r.prev()?;
            elb.modify_listener()
                .listener_arn(listener)
                .default_actions(forward(&before.groups, &before.weights))
                .send()
                .await
                .map(|_| ())
                .on(listener, "ModifyListener")
        }
        // ELB answers ResourceInUse for a while after the listener or rule
        // that used the group is deleted (terraform waits 2 minutes).
        (kind::TARGET_GROUP, Op::Create | Op::Adopt) if !id.is_empty() => {
            crate::engine::retry_until("DeleteTargetGroup", TARGET_GROUP_RELEASE, is_in_use, || async {
                elb.delete_target_group().target_group_arn(&id).send().await.map(|_| ()).on(&id, "DeleteTargetGroup")
            })
            .await
        }
        (kind::TARGET_GROUP, Op::Update) => {
            let tg = r.intent.data["id"].as_str().unwrap_or_default();
            let before: TargetBefore = r.prev()?;
            elb.deregister_targets()
                .target_group_arn(tg)
                .targets(TargetDescription::builder().id(before.target).build())
                .send()
                .await
                .map(|_| ())
                .on(tg, "DeregisterTargets")
        }
        (kind::LOAD_BALANCER, Op::Create | Op::Adopt) if !id.is_empty() => {
            elb.delete_load_balancer().load_balancer_arn(&id).send().await.map(|_| ()).on(&id, "DeleteLoadBalancer")
        }
        (kind::LAMBDA_PERMISSION, Op::Create | Op::Adopt) => {
            let function = r.intent.data["function"].as_str().unwrap_or_default();
            let qualifier = r.intent.data["qualifier"].as_str().unwrap_or_default();
            let sid = r.intent.name.rsplit('#').next().unwrap_or_default();
            lambda
                .remove_permission()
                .function_name(function)
                .qualifier(qualifier)
                .statement_id(sid)
                .send()
                .await
                .map(|_| ())
                .on(function, "RemovePermission")
        }
        // A create whose outcome was never journaled: nothing to address by id.
        _ => Ok(()),
    };
    match result {
        // Already gone (InvalidTarget: the target was deregistered).
        Err(e) if e.is_not_found() || e.is_code("InvalidTarget") => Ok(()),
        other => other,
    }
}

async fn validate(ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
    use crate::report::{Check, Findings, Resource};
    let elb = &ctx.aws.target.elbv2;
    let mut f = Findings::default();
    let name = ctx.cfg.names.own("alb");
    let lb = load_balancer(ctx, &name).await?;
    let Some(lb) = lb else {
        f.resources.push(Resource::missing("load_balancer", "(prod only)", &name));
        return Ok(f);
    };
    f.resources.push(Resource::compared("load_balancer", "(prod only)", &name, vec![]));
    let scheme = lb.scheme().map_or("unknown", |s| s.as_str());
    f.checks.push(Check::setting("alb.internal", &name, scheme == "internal", "scheme", scheme));
    for colour in COLOURS {
        let tg = ctx.cfg.names.own(colour);
        match elb.describe_target_groups().names(&tg).send().await {
            Ok(out) if !out.target_groups().is_empty() => {
                f.resources.push(Resource::compared("target_group", "(prod only)", &tg, vec![]));
                let t = &out.target_groups()[0];
                let on = t.health_check_enabled() == Some(true);
                f.checks.push(Check::setting("alb.health_check", &tg, on, "health checks", crate::report::on_off(on)));
            }
            _ => f.resources.push(Resource::missing("target_group", "(prod only)", &tg)),
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alb_takes_the_first_subnet_of_each_zone() {
        let subnets: Vec<(String, String)> = [("a", "s1"), ("a", "s2"), ("b", "s3"), ("c", "s4"), ("c", "s5")]
            .iter()
            .map(|(z, s)| (z.to_string(), s.to_string()))
            .collect();
        assert_eq!(crate::steps::network::one_per_zone(&subnets), ["s1", "s3", "s4"]);
        assert!(crate::steps::network::one_per_zone(&[]).is_empty());
    }

    #[test]
    fn the_live_colour_takes_all_traffic() {
        assert_eq!(weights("blue"), [("blue".to_owned(), 100), ("green".to_owned(), 0)]);
        let a = forward(&[("blue".into(), "tg-b".into()), ("green".into(), "tg-g".into())], &weights("green"));
        let w: Vec<(Option<&str>, Option<i32>)> =
            a.forward_config().unwrap().target_groups().iter().map(|t| (t.target_group_arn(), t.weight())).collect();
        assert_eq!(w, [(Some("tg-b"), Some(0)), (Some("tg-g"), Some(100))]);
    }
}

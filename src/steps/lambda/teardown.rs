//! Undo of functions, their settings, concurrency and aliases.

use super::*;

pub(super) async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    let lambda = &ctx.aws.target.lambda;
    let name = r.intent.name.as_str();
    match (r.intent.kind.as_str(), r.intent.op) {
        (kind::LAMBDA_FUNCTION, Op::Create | Op::Adopt) => {
            lambda.delete_function().function_name(name).send().await.gone(name, "DeleteFunction")?;
        }
        (kind::STAGING_BUCKET, Op::Create | Op::Adopt) => staging::delete_bucket(ctx, name).await?,
        (kind::LAMBDA_ALIAS, Op::Create | Op::Adopt) => {
            let (function, alias) = name.rsplit_once(':').unwrap_or((name, ""));
            lambda.delete_alias().function_name(function).name(alias).send().await.gone(name, "DeleteAlias")?;
        }
        (kind::LAMBDA_FUNCTION, Op::Update) => {
            let result = match r.prev::<Prev>()? {
                Prev::Reserved { reserved } => match reserved {
                    Some(n) => lambda
                        .put_function_concurrency()
                        .function_name(name)
                        .reserved_concurrent_executions(n)
                        .send()
                        .await
                        .map(|_| ())
                        .on(name, "PutFunctionConcurrency"),
                    None => lambda
                        .delete_function_concurrency()
                        .function_name(name)
                        .send()
                        .await
                        .map(|_| ())
                        .on(name, "DeleteFunctionConcurrency"),
                },
                Prev::Settings { settings: s } => {
                    // Mid-update (the run being rolled back just changed it), a
                    // change is refused: wait for it to settle first.
                    match wait_updated(ctx, name).await {
                        Err(e) if !e.is_not_found() => return Err(e),
                        _ => {}
                    }
                    // The journal holds only digests of environment values (they may
                    // be secrets), so the environment is left as it is.
                    tracing::warn!(
                        function = name,
                        "rollback restores role, memory and timeout; the environment keeps its current values"
                    );
                    lambda
                        .update_function_configuration()
                        .function_name(name)
                        .set_role(s.role)
                        .set_memory_size(s.memory)
                        .set_timeout(s.timeout)
                        .send()
                        .await
                        .map(|_| ())
                        .on(name, "UpdateFunctionConfiguration")
                }
                // A code update cannot be undone to bytes paymig no longer
                // has; the previous version stays published.
                Prev::Code { .. } => Ok(()),
            };
            match result {
                Err(e) if e.is_not_found() => {}
                other => other?,
            }
        }
        (kind, op) => return Err(StepError::Invalid(format!("lambda cannot undo {op:?} of {kind}"))),
    }
    Ok(())
}

//! The engine: the step contract, the context steps run in, the DAG executor,
//! the journal and the lock. A step observes before it acts; every mutation
//! goes through [`Ctx::create`] or [`Ctx::update`], which journal an intent
//! first and the outcome after — and in plan mode only record the change.

pub mod apply;
mod change;
mod context;
pub mod dag;
mod error;
pub mod estimate;
pub mod journal;
mod journaled;
pub mod lock;
mod outputs;
pub mod plan;
pub mod step;
pub mod store;
pub mod undo;
pub mod validate;
mod wait;

pub use step::{About, AtRisk, Declared, DynStep, Grant, Step, Swept};

pub use change::{Action, Change, Detail, Mode};
pub use context::Ctx;
#[cfg(test)]
pub(crate) use context::{test_config, test_ctx, test_ctx_with};
pub use error::StepError;
pub use journaled::Created;
pub use outputs::{is_planned, planned_id, Outcome, Outputs, Ownership, Res};
pub use wait::{poll_delay, poll_until, retry_eventual, retry_until};

//! paymig: migrates a payment-processing stack from a dev AWS environment to
//! production through an ordered DAG of idempotent steps with a write-ahead
//! rollback journal. The binary (`main.rs`) only parses arguments and maps
//! the error to an exit code; everything else lives here. The crate's surface
//! is what `main.rs` calls (`cli`, `commands::run`, `error`, `logging`) and
//! the test hooks in [`testing`]; every other module is private, so the
//! compiler reports what nothing uses.

mod aws;
mod cicd;
pub mod cli;
pub mod commands;
mod config;
mod engine;
pub mod error;
pub mod logging;
mod naming;
mod permissions;
mod progress;
mod report;
mod signals;
mod steps;

/// Test hooks: what the integration tests (`tests/`) and the demo's seeding
/// example reach directly — the SDK error helpers, the call accounting, the
/// lock and the stores, the step list, the package download. Not an API.
#[doc(hidden)]
pub mod testing {
    pub use crate::aws::{describe_sdk_error, is_read_operation, Aws, AwsFailure, CallStats, Clients, Side};
    pub use crate::engine::dag::Dag;
    pub use crate::engine::journal::{Intent, Journal, Op};
    pub use crate::engine::lock::Lock;
    pub use crate::engine::store::file::FileStore;
    pub use crate::engine::store::s3::{AcquireError, Acquired, Remote, RemoteError, RemoteSpec};
    pub use crate::engine::store::who::hostname;
    pub use crate::engine::store::Holder;
    pub use crate::steps::all as all_steps;
    pub use crate::steps::common::decode_policy;
    pub use crate::steps::lambda::{code_sha256, download};
}

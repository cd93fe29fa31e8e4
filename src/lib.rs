//! paymig: migrates a payment-processing stack from a dev AWS environment to
//! production through an ordered DAG of idempotent steps with a write-ahead
//! rollback journal. The binary (`main.rs`) only parses arguments and maps
//! the error to an exit code; everything else lives here so integration tests
//! can reach the client layer.

pub mod aws;
pub mod cicd;
pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod error;
pub mod logging;
pub mod naming;
pub mod permissions;
pub mod progress;
pub mod report;
pub mod signals;
pub mod steps;

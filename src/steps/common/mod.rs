//! What every step shares: the migration's tags and the one test of
//! ownership ([`tags`]), IAM policy documents ([`policy`]) and the roles
//! paymig creates for AWS services ([`roles`]), the ARNs of the prod
//! resources ([`arns`]). A step that needs one of
//! these calls it here rather than writing its own.

pub mod arns;
pub mod policy;
pub mod references;
pub mod roles;
pub mod settings;
pub mod tags;

pub use policy::{decode_policy, statements, strings, wildcard_actions};
pub use tags::{common_checks, is_ours, prod_tags_as, TagsBefore};

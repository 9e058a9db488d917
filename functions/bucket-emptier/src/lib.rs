//! Empties an S3 bucket on the stack's Delete: every object version and delete marker, page
//! by page (ListObjectVersions, then DeleteObjects of up to 1,000 keys), so CloudFormation can
//! delete the bucket. Create and Update only record the bucket name as the physical id, so a
//! Delete is only ever sent when the bucket itself goes away (stack deletion, or replacement
//! by a bucket with a new name).

mod empty;
mod handler;

pub use empty::{Emptied, MAX_PASSES, empty_bucket};
pub use handler::{handle, on_request};

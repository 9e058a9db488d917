//! One invocation: the products persist changed in, how many entries were evicted and fences
//! raised out.

use inventory::ports::CacheInvalidator;
use inventory::{CacheInvalidateInput, CacheInvalidateOutput, PipelineError, steps};

/// One invocation: the products persist changed in, how many entries were evicted and
/// fences raised out. A payload that is not that list fails as `Inventory.InvalidPayload`.
pub async fn handle(
    payload: serde_json::Value,
    cache: &dyn CacheInvalidator,
) -> Result<CacheInvalidateOutput, PipelineError> {
    let input: CacheInvalidateInput = serde_json::from_value(payload).map_err(|e| {
        PipelineError::invalid_payload(format!(
            "the cache-invalidate input is not a product list: {e}"
        ))
    })?;
    steps::invalidate_cache(&input, cache).await
}

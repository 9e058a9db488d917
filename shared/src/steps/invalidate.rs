//! Cache-invalidate: the changed products fenced and evicted in one round trip.

use crate::error::PipelineError;
use crate::ports::CacheInvalidator;
use crate::steps::payloads::{CacheInvalidateInput, CacheInvalidateOutput};

/// Cache-invalidate: fence and evict the changed products in one round trip.
#[tracing::instrument(skip_all, fields(products = input.products.len()))]
pub async fn invalidate_cache(
    input: &CacheInvalidateInput,
    cache: &dyn CacheInvalidator,
) -> Result<CacheInvalidateOutput, PipelineError> {
    if input.products.is_empty() {
        return Ok(CacheInvalidateOutput::default());
    }
    cache.invalidate(&input.products).await
}

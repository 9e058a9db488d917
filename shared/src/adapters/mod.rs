//! Adapters: the ports implemented on real services. Each sits behind a Cargo feature.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "cache")]
pub mod cache;
#[cfg(feature = "custom-resource")]
pub mod custom_resource;
#[cfg(feature = "lambda")]
pub mod lambda;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "s3-export")]
pub mod s3_export;
#[cfg(feature = "s3")]
pub mod s3_rejections;
#[cfg(feature = "secrets")]
pub mod secrets;
#[cfg(feature = "tls")]
pub mod tls;

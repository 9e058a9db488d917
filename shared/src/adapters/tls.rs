//! The process-wide TLS set-up, chosen once for every binary: rustls' crypto provider.

/// Installs the AWS SDK's rustls crypto provider (aws-lc-rs) as the process default, unless
/// one is installed already. A connection that takes rustls' process default (`rediss://`
/// through the redis crate) needs one, and a binary that links both of rustls' providers
/// (sqlx enables ring, the AWS SDK aws-lc-rs) has none until one is chosen: rustls would panic
/// on the first such connection. Each binary that may open one calls this at the top of
/// `main`, and so do the tests that do.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race against another installer is fine: either provider works.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_twice_keeps_one_provider() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}

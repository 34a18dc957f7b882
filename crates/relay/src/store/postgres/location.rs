use crate::store::error::StoreError;
use std::sync::Arc;
use std::time::Duration;

/// Where a PostgreSQL store is, as given (`postgres://user@host:5432/db?sslmode=verify-full`).
#[derive(Clone)]
pub struct PgLocation {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: TlsMode,
    root_cert: Option<std::path::PathBuf>,
    shown: String,
}

/// libpq's `sslmode`s, with libpq's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, its certificate not checked (libpq's default).
    Prefer,
    /// TLS or no connection, its certificate not checked.
    Require,
    /// TLS, the certificate checked against the roots, not the host name.
    VerifyCa,
    /// TLS, the certificate checked against the roots and the host name.
    VerifyFull,
}

impl std::fmt::Debug for PgLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Display for PgLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PgLocation {
    /// Parses a `postgres://` or `postgresql://` URL. `sslmode` means what it means to libpq:
    /// `disable`, `prefer` (the default: TLS when offered, unchecked), `require` (TLS,
    /// unchecked), `verify-ca` (the certificate checked against the roots) or `verify-full`
    /// (and the host name: what a database across a network should use). The roots are the
    /// web's (Mozilla's list) plus `sslrootcert=FILE` (PEM), for a managed database's own CA.
    pub fn parse(url: &str) -> Result<PgLocation, String> {
        let parsed = url::Url::parse(url).map_err(|e| {
            format!(
                "{}: not a database URL ({e}); write postgres://USER@HOST:PORT/DATABASE",
                redact(url)
            )
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "{}: the store must be a postgres:// URL; for the embedded SQLite store leave it out and use --data DIR",
                redact(url)
            ));
        }
        let mut tls = TlsMode::Prefer;
        let mut root_cert = None;
        let mut kept = url::Url::parse(url).map_err(|e| e.to_string())?;
        let mut pairs = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "sslmode" => {
                    tls = match v.as_ref() {
                        "disable" => TlsMode::Disable,
                        "allow" | "prefer" => TlsMode::Prefer,
                        "require" => TlsMode::Require,
                        "verify-ca" => TlsMode::VerifyCa,
                        "verify-full" => TlsMode::VerifyFull,
                        other => {
                            return Err(format!(
                                "{}: sslmode={other} is not a mode; use disable, prefer, require or verify-full",
                                redact(url)
                            ))
                        }
                    }
                }
                "sslrootcert" => root_cert = Some(std::path::PathBuf::from(v.as_ref())),
                _ => pairs.push((k.into_owned(), v.into_owned())),
            }
        }
        kept.set_query(None);
        if !pairs.is_empty() {
            kept.query_pairs_mut().extend_pairs(pairs);
        }
        let mut config: tokio_postgres::Config = kept
            .as_str()
            .parse()
            .map_err(|e| format!("{}: {e}", redact(url)))?;
        config.ssl_mode(match tls {
            TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
            TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("hookflow-relay");
        }
        config.options("-c plan_cache_mode=force_custom_plan");
        Ok(PgLocation {
            config,
            tls,
            root_cert,
            shown: redact(url),
        })
    }

    /// The URL without its password, and how TLS is used: for reports.
    pub fn describe(&self) -> String {
        let tls = match self.tls {
            TlsMode::Disable => "TLS off",
            TlsMode::Prefer => "TLS when the server offers it, certificate not checked",
            TlsMode::Require => "TLS, certificate not checked",
            TlsMode::VerifyCa => "TLS, certificate checked against the roots",
            TlsMode::VerifyFull => "TLS, certificate and host name checked",
        };
        format!("{} ({tls})", self.shown)
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    pub(super) fn connector(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(file) = &self.root_cert {
            let pem = std::fs::read(file).map_err(|e| {
                StoreError::Unavailable(format!("sslrootcert {}: {e}", file.display()))
            })?;
            let mut added = 0;
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                let cert: rustls::pki_types::CertificateDer<'static> = cert.map_err(|e| {
                    StoreError::Unavailable(format!(
                        "sslrootcert {}: not a PEM certificate ({e:?})",
                        file.display()
                    ))
                })?;
                roots.add(cert).map_err(|e| {
                    StoreError::Unavailable(format!("sslrootcert {}: {e}", file.display()))
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(StoreError::Unavailable(format!(
                    "sslrootcert {}: no certificate in it",
                    file.display()
                )));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Unavailable(format!("TLS: {e}")))?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| StoreError::Unavailable(format!("TLS: {e}")))?;
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match self.tls {
            TlsMode::VerifyFull => verifier,
            TlsMode::VerifyCa => Arc::new(tls::ChainOnly(verifier)),
            TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => {
                Arc::new(tls::Unchecked(provider.signature_verification_algorithms))
            }
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }
}

/// The certificate checks of `require` and `verify-ca`, as libpq makes them.
pub(super) mod tls {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::crypto::WebPkiSupportedAlgorithms;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

    /// Any certificate (`prefer`, `require`): the session is encrypted and its handshake
    /// signed by the certificate's key, but who holds the key is not checked.
    #[derive(Debug)]
    pub struct Unchecked(pub WebPkiSupportedAlgorithms);

    impl ServerCertVerifier for Unchecked {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }

    /// The chain checked against the roots, not the host name (`verify-ca`).
    #[derive(Debug)]
    pub struct ChainOnly(pub Arc<WebPkiServerVerifier>);

    impl ServerCertVerifier for ChainOnly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            match self
                .0
                .verify_server_cert(end_entity, intermediates, name, ocsp, now)
            {
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
}

/// The URL without its password.
pub(super) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "the store URL".to_string(),
    }
}

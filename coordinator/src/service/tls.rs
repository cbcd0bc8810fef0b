//! The coordinator's TLS settings: its certificate and key, and for mutual TLS the CA
//! that signs the workers' and clients' certificates.
//!
//! Tokens say *who* may call; TLS keeps them (and the metrics) from being read or
//! changed on the network. With `client_ca` set, a peer without a certificate signed
//! by that CA fails the handshake before any RPC is read.

use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Paths of the PEM files, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Require client certificates signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the TLS {what} {path}: {reason}; make certificates as docs/security.md shows")]
pub struct TlsFileError {
    pub what: &'static str,
    pub path: PathBuf,
    pub reason: String,
}

/// Reads a PEM file, refusing one that holds no PEM block (a common mix-up with DER).
pub fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let bytes = std::fs::read(path).map_err(|err| TlsFileError {
        what,
        path: path.to_owned(),
        reason: err.to_string(),
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(TlsFileError {
            what,
            path: path.to_owned(),
            reason: "it is not PEM (no -----BEGIN line)".to_owned(),
        });
    }
    Ok(bytes)
}

impl ServerTlsFiles {
    /// The tonic configuration; every file is read now, so a typo fails the start.
    pub fn load(&self) -> Result<ServerTlsConfig, TlsFileError> {
        let cert = read_pem("certificate", &self.cert)?;
        let key = read_pem("key", &self.key)?;
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &self.client_ca {
            let ca = read_pem("client CA", ca)?;
            config = config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(false);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn missing_or_non_pem_files_fail_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let der = dir.path().join("cert.der");
        std::fs::write(&der, [0x30, 0x82, 0x01]).unwrap();
        let files = ServerTlsFiles {
            cert: der.clone(),
            key: dir.path().join("nope.pem"),
            client_ca: None,
        };
        let err = files.load().unwrap_err();
        assert_eq!(err.path, der);
        assert!(err.to_string().contains("not PEM"), "{err}");
        std::fs::write(&der, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let err = files.load().unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }
}

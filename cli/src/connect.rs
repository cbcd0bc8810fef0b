//! The flags every command that talks to a coordinator shares: its token and TLS.
//!
//! A token is read from `--token-file`, else `EXPCLUSTER_TOKEN`, else the file named by
//! `EXPCLUSTER_TOKEN_FILE`, else (for a command that knows the workspace) the
//! workspace's own `.expcluster/<role>.token`. It is never a flag value, so it does
//! not show in `ps` or shell history.

use clap::Args;
use expcluster_coordinator::service::auth::{Role, TOKEN_DIR};
use expcluster_worker::client::{ClientSecurity, ClientTlsFiles};
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone, Default)]
pub struct ConnectArgs {
    /// File holding the token (the coordinator's .expcluster/client.token for the CLI,
    /// .expcluster/worker.token for workers). Also EXPCLUSTER_TOKEN / EXPCLUSTER_TOKEN_FILE.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Speak TLS, trusting this CA (PEM) for the coordinator's certificate.
    #[arg(long, env = "EXPCLUSTER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM), for a coordinator that demands mutual TLS.
    #[arg(
        long,
        env = "EXPCLUSTER_TLS_CERT",
        requires = "tls_key",
        requires = "tls_ca"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, env = "EXPCLUSTER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name in the coordinator's certificate, if not the host of --coordinator.
    #[arg(long, env = "EXPCLUSTER_TLS_DOMAIN", requires = "tls_ca")]
    pub tls_domain: Option<String>,
}

impl ConnectArgs {
    /// The token and TLS settings; `workspace` gives the fallback token file of `role`.
    pub fn security(&self, role: Role, workspace: Option<&Path>) -> anyhow::Result<ClientSecurity> {
        let mut security = ClientSecurity::none().with_token_from(self.token_file.as_deref())?;
        if !security.has_token() {
            let fallback = workspace.map(|root| {
                root.join(TOKEN_DIR)
                    .join(format!("{}.token", role.as_str()))
            });
            if let Some(file) = fallback.filter(|file| file.is_file()) {
                security = security.with_token_from(Some(&file))?;
            }
        }
        if let Some(ca) = &self.tls_ca {
            security = security.with_tls(&ClientTlsFiles {
                ca: ca.clone(),
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
                domain: self.tls_domain.clone(),
            })?;
        }
        Ok(security)
    }
}

/// The coordinator's security flags.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Serve without tokens: anyone who can reach the port can run commands on the
    /// workers. Refused on any address but loopback.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Replace the workspace's tokens with new ones (workers and clients then need the
    /// new .expcluster/*.token files).
    #[arg(long, conflicts_with = "insecure_no_auth")]
    pub new_tokens: bool,
    /// Serve TLS with this certificate (PEM); see docs/security.md.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: accept only peers with a certificate signed by this CA (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl ServeArgs {
    /// Loads (or, at the first start, creates) the tokens and reads the TLS files;
    /// fails closed when a token file cannot be read.
    pub fn server_security(
        &self,
        workspace: &Path,
        listen: &str,
    ) -> anyhow::Result<expcluster_coordinator::service::server::ServerSecurity> {
        use expcluster_coordinator::service::auth::{Authenticator, TokenPolicy, Tokens};
        let auth = if self.insecure_no_auth {
            if let Some(address) = listen
                .parse::<std::net::SocketAddr>()
                .ok()
                .filter(|a| !a.ip().is_loopback())
            {
                // Checked again on the bound address; refusing before binding opens nothing.
                anyhow::bail!("refusing to serve {address} without authentication: --insecure-no-auth works on a loopback address only (127.0.0.1 or ::1)");
            }
            eprintln!("warning: serving WITHOUT authentication (--insecure-no-auth): anyone who can reach the port can run commands");
            Authenticator::insecure_no_auth()
        } else {
            let policy = if self.new_tokens {
                TokenPolicy::Regenerate
            } else {
                TokenPolicy::FirstStartOnly
            };
            let tokens = Tokens::load_or_create(workspace, policy)?;
            let verb = if tokens.created {
                "created new tokens"
            } else {
                "tokens"
            };
            eprintln!(
                "{verb}: workers use {} (--token-file), clients use {}",
                tokens.worker_file.display(),
                tokens.client_file.display()
            );
            Authenticator::new(&tokens)
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(
                expcluster_coordinator::service::tls::ServerTlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.tls_client_ca.clone(),
                }
                .load()?,
            ),
            _ => None,
        };
        Ok(expcluster_coordinator::service::server::ServerSecurity { auth, tls })
    }
}

//! Who may call what: the coordinator's bearer tokens and the role each RPC needs.
//!
//! A job runner executes commands on GPU nodes, so an open job API is remote code
//! execution by design (Ray's CVE-2023-48022). expcluster therefore has no
//! unauthenticated mode by default: two random tokens live in the workspace, one for
//! workers (register, lease, report) and one for clients (submit, status, cancel), each
//! in a 0600 file. Every RPC but the health check must carry the token of its role;
//! tokens are compared in constant time, against both roles every time, so neither the
//! timing nor the answer says how close a guess was.
//!
//! Invariant: the coordinator either holds both tokens, read whole from their files,
//! or it does not start. A token file that vanished or cannot be read is never replaced
//! silently, except at the very first start of a workspace, or when the operator asks
//! for new tokens.

use rand::TryRngCore;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// The metadata header that carries the token, as `Bearer <token>`.
pub const AUTH_HEADER: &str = "authorization";
/// Where the tokens live, relative to the workspace.
pub const TOKEN_DIR: &str = ".expcluster";
pub const WORKER_TOKEN_FILE: &str = "worker.token";
pub const CLIENT_TOKEN_FILE: &str = "client.token";
/// Written beside the tokens when they are first issued: from then on, token files
/// that are missing were lost, not never made. Kept in the coordinator's own state
/// directory because the workspace's other files say nothing about it: `expcluster
/// init` and a copied example leave an empty research log, and the embedded mode
/// writes a journal without ever issuing tokens.
pub const TOKENS_ISSUED_FILE: &str = "tokens.issued";
/// The one RPC anyone may call: a load balancer or a script checking liveness.
pub const HEALTH_PATH: &str = "/expcluster.v1.ClientService/Health";
const WORKER_SERVICE_PREFIX: &str = "/expcluster.v1.WorkerService/";
const CLIENT_SERVICE_PREFIX: &str = "/expcluster.v1.ClientService/";
/// Random bytes per token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Tokens longer than this are not ours; refusing them early bounds the comparison.
const MAX_TOKEN_LEN: usize = 256;

/// The two kinds of caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A worker: register, heartbeat, lease, report metrics, upload, complete.
    Worker,
    /// A researcher's CLI: submit, status, cancel, list workers.
    Client,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Client => "client",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Role::Worker => WORKER_TOKEN_FILE,
            Role::Client => CLIENT_TOKEN_FILE,
        }
    }
}

/// What an RPC path demands of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    Nothing,
    Role(Role),
    /// A path of no known service: any valid token (the router then answers UNIMPLEMENTED).
    AnyRole,
}

/// The role a gRPC method path (`/package.Service/Method`) needs.
pub fn requirement_for(path: &str) -> Requirement {
    if path == HEALTH_PATH {
        Requirement::Nothing
    } else if path.starts_with(WORKER_SERVICE_PREFIX) {
        Requirement::Role(Role::Worker)
    } else if path.starts_with(CLIENT_SERVICE_PREFIX) {
        Requirement::Role(Role::Client)
    } else {
        Requirement::AnyRole
    }
}

/// A secret; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A new random token, e.g. `ecw_<64 hex digits>` for a worker.
    pub fn generate(role: Role) -> Result<Self, AuthError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|err| AuthError::Random(err.to_string()))?;
        let prefix = match role {
            Role::Worker => "ecw_",
            Role::Client => "ecc_",
        };
        Ok(Self(format!("{prefix}{}", hex::encode(bytes))))
    }

    /// Parses a token read from a file or the environment (surrounding whitespace is
    /// dropped: editors add a newline).
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AuthError::Malformed("it is empty".to_owned()));
        }
        if text.len() > MAX_TOKEN_LEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::Malformed(format!(
                "a token is at most {MAX_TOKEN_LEN} printable ASCII characters"
            )));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Equality whose time does not depend on where the first difference is.
    pub fn matches(&self, presented: &[u8]) -> bool {
        // Lengths are public (every token of ours has the same length).
        self.0.len() == presented.len() && bool::from(self.0.as_bytes().ct_eq(presented))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("cannot read the token file {path}: {reason}; the coordinator does not start without its tokens: restore the file, or pass --new-tokens to make new ones (workers and clients then need the new files)")]
    Unreadable { path: PathBuf, reason: String },
    #[error("the token file {path} is missing but tokens were issued for this workspace before ({TOKEN_DIR}/{TOKENS_ISSUED_FILE}); the coordinator does not start without its tokens: restore it, or pass --new-tokens to make new ones (workers and clients then need the new files)")]
    Missing { path: PathBuf },
    #[error("cannot write the token file {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

/// When the coordinator may write new tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPolicy {
    /// Only at the first start of a workspace (no token files, none ever issued).
    FirstStartOnly,
    /// Replace both tokens now (`--new-tokens`): old workers are locked out.
    Regenerate,
}

/// Both tokens and the files they came from.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub worker: Token,
    pub client: Token,
    pub worker_file: PathBuf,
    pub client_file: PathBuf,
    /// Whether this start wrote them.
    pub created: bool,
}

impl Tokens {
    /// Tokens that live only in this process (the embedded mode, tests).
    pub fn ephemeral() -> Result<Self, AuthError> {
        Ok(Self {
            worker: Token::generate(Role::Worker)?,
            client: Token::generate(Role::Client)?,
            worker_file: PathBuf::new(),
            client_file: PathBuf::new(),
            created: true,
        })
    }

    pub fn token(&self, role: Role) -> &Token {
        match role {
            Role::Worker => &self.worker,
            Role::Client => &self.client,
        }
    }

    /// Reads the workspace's tokens, or writes them where `policy` allows: at the
    /// first start (neither file, and [`TOKENS_ISSUED_FILE`] absent) or when asked.
    pub fn load_or_create(workspace: &Path, policy: TokenPolicy) -> Result<Self, AuthError> {
        let dir = workspace.join(TOKEN_DIR);
        let worker_file = dir.join(Role::Worker.file_name());
        let client_file = dir.join(Role::Client.file_name());
        let neither = !exists(&worker_file)? && !exists(&client_file)?;
        let create =
            policy == TokenPolicy::Regenerate || (neither && !tokens_issued_before(workspace)?);
        let tokens = if create {
            create_private_dir(&dir)?;
            let worker = Token::generate(Role::Worker)?;
            let client = Token::generate(Role::Client)?;
            write_private(&worker_file, worker.expose())?;
            write_private(&client_file, client.expose())?;
            Self {
                worker,
                client,
                worker_file,
                client_file,
                created: true,
            }
        } else {
            Self {
                worker: read_token_file(&worker_file)?,
                client: read_token_file(&client_file)?,
                worker_file,
                client_file,
                created: false,
            }
        };
        // Also written when tokens are read: a workspace whose tokens came from a
        // version without the marker gets it at its next start. Written after the
        // tokens, so a crash in between leaves tokens that the next start reads.
        if !tokens_issued_before(workspace)? {
            write_private(
                &dir.join(TOKENS_ISSUED_FILE),
                "tokens were issued for this workspace; if the token files are lost, restore them or start the coordinator with --new-tokens",
            )?;
        }
        Ok(tokens)
    }
}

/// Whether a coordinator has issued tokens for this workspace: then missing token
/// files are lost tokens, not a first start.
pub fn tokens_issued_before(workspace: &Path) -> Result<bool, AuthError> {
    exists(&workspace.join(TOKEN_DIR).join(TOKENS_ISSUED_FILE))
}

fn exists(path: &Path) -> Result<bool, AuthError> {
    // symlink_metadata: a dangling link still counts as "there" (and then fails to read).
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(AuthError::Unreadable {
            path: path.to_owned(),
            reason: err.to_string(),
        }),
    }
}

/// Reads a token file (the coordinator's, or a copy on a worker node).
pub fn read_token_file(path: &Path) -> Result<Token, AuthError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(AuthError::Missing {
                path: path.to_owned(),
            })
        }
        Err(err) => {
            return Err(AuthError::Unreadable {
                path: path.to_owned(),
                reason: err.to_string(),
            })
        }
    };
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the token file can be read by other users: chmod 600 it");
        }
    }
    Token::parse(&text).map_err(|err| AuthError::Unreadable {
        path: path.to_owned(),
        reason: err.to_string(),
    })
}

fn create_private_dir(dir: &Path) -> Result<(), AuthError> {
    let failed = |err: std::io::Error| AuthError::Write {
        path: dir.to_owned(),
        reason: err.to_string(),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(failed)?;
    }
    Ok(())
}

/// Writes `text` (a token) to a fresh 0600 temp file, syncs it and renames it into place, so a
/// crash leaves the old text or the new one, never half of one.
fn write_private(path: &Path, text: &str) -> Result<(), AuthError> {
    let failed = |err: std::io::Error| AuthError::Write {
        path: path.to_owned(),
        reason: err.to_string(),
    };
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(failed)?;
    file.write_all(format!("{text}\n").as_bytes())
        .map_err(failed)?;
    file.sync_all().map_err(failed)?;
    drop(file);
    std::fs::rename(&temp, path).map_err(failed)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(failed)?;
    }
    Ok(())
}

/// Why a call was refused (mapped to a gRPC code in [`crate::service::auth_layer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token, a malformed one, or one of no role: UNAUTHENTICATED.
    Unauthenticated(String),
    /// A valid token of the wrong role: PERMISSION_DENIED.
    WrongRole(String),
}

/// The check every RPC goes through. `None` tokens: `--insecure-no-auth` (loopback only).
#[derive(Debug, Clone)]
pub struct Authenticator {
    tokens: Option<(Token, Token)>,
}

impl Authenticator {
    pub fn new(tokens: &Tokens) -> Self {
        Self {
            tokens: Some((tokens.worker.clone(), tokens.client.clone())),
        }
    }

    /// Lets every call through; the server refuses this on a non-loopback address.
    pub fn insecure_no_auth() -> Self {
        Self { tokens: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.tokens.is_some()
    }

    /// Checks the `authorization` header value (if any) of a call to `path`.
    pub fn check(&self, path: &str, header: Option<&[u8]>) -> Result<(), Refusal> {
        let requirement = requirement_for(path);
        let Some((worker, client)) = &self.tokens else {
            return Ok(());
        };
        if requirement == Requirement::Nothing {
            return Ok(());
        }
        let Some(header) = header else {
            return Err(Refusal::Unauthenticated(
                "this coordinator requires a token: pass --token-file (the workspace's .expcluster/client.token or worker.token) or set EXPCLUSTER_TOKEN_FILE".to_owned(),
            ));
        };
        let presented = header.strip_prefix(b"Bearer ").unwrap_or(b"");
        // Both comparisons always run: the time taken does not say which role matched.
        let is_worker = worker.matches(presented);
        let is_client = client.matches(presented);
        let role = match (is_worker, is_client) {
            (true, _) => Role::Worker,
            (false, true) => Role::Client,
            (false, false) => {
                return Err(Refusal::Unauthenticated(
                    "the token is not valid for this coordinator: use the current .expcluster/*.token of its workspace".to_owned(),
                ))
            }
        };
        match requirement {
            Requirement::Role(needed) if needed != role => Err(Refusal::WrongRole(format!(
                "a {} token cannot call {path}: use the {} token",
                role.as_str(),
                needed.as_str()
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;

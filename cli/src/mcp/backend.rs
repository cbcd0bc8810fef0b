//! What the tools act on: the workspace, and the coordinator that serves it.
//!
//! Local mode starts the embedded coordinator and its workers at the first tool that
//! needs them (so `init` can come first, and `validate` needs none) and keeps them
//! until the server ends: a submitted stage runs on between tool calls. Either way
//! the coordinator owns the workspace's files, so an idea update goes through it
//! (the `UpdateIdea` RPC).

use super::McpArgs;
use crate::commands::idea::ResearcherUpdate;
use crate::commands::submit::{check_config, local_slots};
use crate::embedded::EmbeddedCluster;
use anyhow::{bail, Context};
use expcluster_coordinator::service::auth::Role;
use expcluster_coordinator::stage::feedback::AppliedUpdate;
use expcluster_proto::v1;
use expcluster_worker::client::{channel, client_client, ClientClient, ClientSecurity};
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

pub struct Backend {
    /// Absolute; it may not exist yet (the `init` tool creates it). `None` only with
    /// `--coordinator` and no workspace at hand.
    workspace: Option<PathBuf>,
    target: Target,
}

enum Target {
    Embedded {
        workers: u32,
        slots: Option<u32>,
        cluster: Mutex<Option<EmbeddedCluster>>,
    },
    Remote {
        address: String,
        security: ClientSecurity,
    },
}

/// A client of the coordinator and its address (for error messages).
pub struct Connection {
    pub client: ClientClient,
    pub address: String,
}

impl Backend {
    pub fn new(workspace: anyhow::Result<PathBuf>, args: &McpArgs) -> anyhow::Result<Self> {
        let Some(address) = args.coordinator.coordinator.clone() else {
            return Ok(Self {
                workspace: Some(workspace?),
                target: Target::Embedded {
                    workers: args.local.workers.max(1),
                    slots: args.local.slots,
                    cluster: Mutex::new(None),
                },
            });
        };
        let workspace = workspace.ok();
        let security = args.connect.security(Role::Client, workspace.as_deref())?;
        Ok(Self {
            workspace,
            target: Target::Remote { address, security },
        })
    }

    /// The workspace's path, whether or not it exists yet.
    pub fn workspace_path(&self) -> anyhow::Result<&Path> {
        self.workspace.as_deref().context(
            "this server has no workspace: restart `expcluster mcp` with --workspace <dir> to read its files",
        )
    }

    /// The workspace, which must exist (made by `init`, or copied).
    pub fn workspace(&self) -> anyhow::Result<&Path> {
        let root = self.workspace_path()?;
        if !root.join("config.yaml").is_file() {
            bail!(
                "{} has no config.yaml yet: create the experiment with the init tool, then write its config.yaml",
                root.display()
            );
        }
        Ok(root)
    }

    /// Whether the coordinator is this process's own.
    pub fn is_embedded(&self) -> bool {
        matches!(self.target, Target::Embedded { .. })
    }

    /// A client of the coordinator, starting the embedded one if need be.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        match &self.target {
            Target::Remote { address, security } => Ok(Connection {
                client: client_client(channel(address, security)?, security),
                address: address.clone(),
            }),
            Target::Embedded {
                workers,
                slots,
                cluster,
            } => {
                let mut cluster = cluster.lock().await;
                let cluster = match &mut *cluster {
                    Some(cluster) => cluster,
                    empty => empty.insert(self.start_embedded(*workers, *slots).await?),
                };
                let security = &cluster.client_security;
                Ok(Connection {
                    client: client_client(channel(&cluster.address, security)?, security),
                    address: cluster.address.clone(),
                })
            }
        }
    }

    async fn start_embedded(
        &self,
        workers: u32,
        slots: Option<u32>,
    ) -> anyhow::Result<EmbeddedCluster> {
        let root = self.workspace()?;
        let ranks = check_config(root)?;
        let slots = local_slots(slots, workers, ranks)?;
        tracing::info!(workers, slots, "starting the embedded coordinator");
        EmbeddedCluster::start(root, workers, slots).await
    }

    /// Records a new version of the idea, as `expcluster idea update` does, through
    /// the coordinator (embedded or remote): it owns the workspace's files while it
    /// serves them, and refuses while a stage runs (its jobs were expanded from the
    /// current version).
    pub async fn update_idea(&self, update: ResearcherUpdate) -> anyhow::Result<AppliedUpdate> {
        let mut connection = self.connect().await?;
        let applied = connection
            .client
            .update_idea(v1::UpdateIdeaRequest {
                reason: update.reason,
                source: update.source,
                idea_md: update.new_idea_md,
                what_changed: update.what_changed,
            })
            .await
            .map_err(|status| crate::commands::status::explain(status, &connection.address))?
            .into_inner();
        Ok(AppliedUpdate {
            from_version: applied.from_version,
            to_version: applied.to_version,
            event_seq: applied.event_seq,
            diff: applied.diff,
        })
    }

    /// Stops the embedded coordinator and its workers (they finish nothing more; a
    /// later start resumes the stages from the journal).
    pub async fn shutdown(&self) {
        if let Target::Embedded { cluster, .. } = &self.target {
            if let Some(cluster) = cluster.lock().await.take() {
                cluster.shutdown().await;
            }
        }
    }
}

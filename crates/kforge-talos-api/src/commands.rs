//! One async function per `kforge talos …` operator command: call the API, render the
//! replies. The CLI layer parses flags, builds the client, prints `stdout`/`stderr` and
//! exits non-zero when [`CommandOutput::failed_nodes`] is not empty.

use std::time::SystemTime;

use kforge_secret::SecretString;
use serde::Serialize;

use crate::{
    ApplyOptions, BootstrapOptions, BootstrapOutcome, Error, NodeReply, RebootMode, ResetOptions,
    ServiceAction, TalosClient, Targets, UpgradeOptions, render,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

/// Rendered result of a command.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CommandOutput {
    pub stdout: String,
    /// Per-node errors and warnings.
    pub stderr: String,
    /// Nodes whose reply was an error.
    pub failed_nodes: Vec<String>,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.failed_nodes.is_empty()
    }
}

fn output<T: Serialize>(
    replies: &[NodeReply<T>],
    format: OutputFormat,
    table: impl FnOnce(&[NodeReply<T>]) -> String,
) -> CommandOutput {
    let stdout = match format {
        OutputFormat::Table => table(replies),
        OutputFormat::Json => render::to_json_string(replies),
    };
    CommandOutput {
        stdout,
        stderr: render::node_errors(replies).unwrap_or_default(),
        failed_nodes: replies
            .iter()
            .filter(|r| r.result.is_err())
            .map(|r| r.node.clone())
            .collect(),
    }
}

/// `kforge talos version`
pub async fn version(
    client: &TalosClient,
    targets: &Targets,
    format: OutputFormat,
) -> Result<CommandOutput, Error> {
    let replies = client.version(targets).await?;
    Ok(output(&replies, format, render::version_table))
}

/// `kforge talos services`; `now` dates the LAST CHANGE column.
pub async fn services(
    client: &TalosClient,
    targets: &Targets,
    format: OutputFormat,
    now: SystemTime,
) -> Result<CommandOutput, Error> {
    let replies = client.service_list(targets).await?;
    Ok(output(&replies, format, |r| render::services_table(r, now)))
}

/// `kforge talos service start|stop|restart ID`
pub async fn service(
    client: &TalosClient,
    targets: &Targets,
    action: ServiceAction,
    id: &str,
    format: OutputFormat,
) -> Result<CommandOutput, Error> {
    let replies = client.service(targets, action, id).await?;
    Ok(output(&replies, format, render::service_reply_table))
}

/// `kforge talos etcd members`
pub async fn etcd_members(
    client: &TalosClient,
    targets: &Targets,
    format: OutputFormat,
) -> Result<CommandOutput, Error> {
    let replies = client.etcd_member_list(targets, false).await?;
    Ok(output(&replies, format, render::etcd_members_table))
}

/// `kforge talos etcd status`
pub async fn etcd_status(
    client: &TalosClient,
    targets: &Targets,
    format: OutputFormat,
) -> Result<CommandOutput, Error> {
    let replies = client.etcd_status(targets).await?;
    Ok(output(&replies, format, render::etcd_status_table))
}

/// `kforge talos memory [--verbose]`
pub async fn memory(
    client: &TalosClient,
    targets: &Targets,
    format: OutputFormat,
    verbose: bool,
) -> Result<CommandOutput, Error> {
    let replies = client.memory(targets).await?;
    Ok(output(&replies, format, |r| {
        if verbose {
            render::memory_verbose(r)
        } else {
            render::memory_table(r)
        }
    }))
}

/// Output of `read`: raw file bytes (several nodes: concatenated in reply order).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReadOutput {
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub failed_nodes: Vec<String>,
}

/// `kforge talos read PATH`
pub async fn read(
    client: &TalosClient,
    targets: &Targets,
    path: &str,
) -> Result<ReadOutput, Error> {
    let replies = client.read(targets, path).await?;
    let mut out = ReadOutput {
        stderr: render::node_errors(&replies).unwrap_or_default(),
        ..Default::default()
    };
    for r in replies {
        match r.result {
            Ok(bytes) => out.stdout.extend_from_slice(&bytes),
            Err(_) => out.failed_nodes.push(r.node),
        }
    }
    Ok(out)
}

/// `kforge talos kubeconfig`: the admin kubeconfig of one node. The CLI decides where it
/// goes (a 0600 file via `kforge_secret::write_private`, or stdout on request).
pub async fn kubeconfig(client: &TalosClient, targets: &Targets) -> Result<SecretString, Error> {
    client.kubeconfig(targets).await
}

/// `kforge talos apply-config FILE [--insecure] [--mode …] [--dry-run]`; `config` is the
/// file's contents. Insecure (maintenance) mode is chosen when building the client.
pub async fn apply_config(
    client: &TalosClient,
    targets: &Targets,
    config: &[u8],
    options: ApplyOptions,
    format: OutputFormat,
) -> Result<CommandOutput, Error> {
    let replies = client.apply_configuration(targets, config, options).await?;
    let mut out = output(&replies, format, render::apply_config_table);
    out.stderr = render::apply_config_warnings(&replies) + &out.stderr;
    Ok(out)
}

/// `kforge talos bootstrap` (one node; idempotent).
pub async fn bootstrap(
    client: &TalosClient,
    targets: &Targets,
    options: BootstrapOptions,
    format: OutputFormat,
) -> Result<CommandOutput, Error> {
    let outcome = client.bootstrap(targets, options).await?;
    let node = match targets {
        Targets::Node(n) => n.clone(),
        Targets::Nodes(n) => n.first().cloned().unwrap_or_default(),
        Targets::Endpoint => client
            .endpoints()
            .first()
            .map(|e| e.host().to_string())
            .unwrap_or_default(),
    };
    let stdout = match format {
        OutputFormat::Json => render::to_json_string(&[NodeReply::ok(node, outcome)]),
        OutputFormat::Table => match outcome {
            BootstrapOutcome::Bootstrapped => format!("etcd bootstrap started on {node}\n"),
            BootstrapOutcome::AlreadyBootstrapped => {
                format!(
                    "etcd on {node} is already bootstrapped (etcd data directory is not empty)\n"
                )
            }
        },
    };
    Ok(CommandOutput {
        stdout,
        ..Default::default()
    })
}

/// `kforge talos reboot [--mode default|powercycle|force]`
pub async fn reboot(
    client: &TalosClient,
    targets: &Targets,
    mode: RebootMode,
    format: OutputFormat,
) -> Result<CommandOutput, Error> {
    let replies = client.reboot(targets, mode).await?;
    Ok(output(&replies, format, render::actor_table))
}

/// `kforge talos reset [--graceful] [--reboot] [--wipe-mode …]`
pub async fn reset(
    client: &TalosClient,
    targets: &Targets,
    options: &ResetOptions,
    format: OutputFormat,
) -> Result<CommandOutput, Error> {
    let replies = client.reset(targets, options).await?;
    Ok(output(&replies, format, render::actor_table))
}

/// `kforge talos upgrade --image …`
pub async fn upgrade(
    client: &TalosClient,
    targets: &Targets,
    options: &UpgradeOptions,
    format: OutputFormat,
) -> Result<CommandOutput, Error> {
    let replies = client.upgrade(targets, options).await?;
    Ok(output(&replies, format, render::upgrade_table))
}

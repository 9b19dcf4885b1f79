//! `kforge talos …`: low-level operator commands against the Talos API, rendered as tables
//! or JSON by `kforge-talos-api`.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use kforge_talos_api::commands::{self, CommandOutput, OutputFormat};
use kforge_talos_api::{
    ApplyMode, ApplyOptions, BootstrapOptions, ConnectionConfig, RebootMode, ResetOptions,
    ServiceAction, TalosClient, Targets,
};

use crate::Outcome;
use crate::cli::{EtcdWhat, ServiceActionArg, TalosCommand, TalosOutput, TalosTarget};
use crate::files::FsReader;
use crate::report::Hinted;

pub fn run(cmd: &TalosCommand) -> Result<Outcome> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(cmd))
}

fn target(cmd: &TalosCommand) -> &TalosTarget {
    match cmd {
        TalosCommand::Version(t)
        | TalosCommand::Services(t)
        | TalosCommand::Bootstrap(t)
        | TalosCommand::Reboot(t) => t,
        TalosCommand::Service { target, .. }
        | TalosCommand::Etcd { target, .. }
        | TalosCommand::Memory { target, .. }
        | TalosCommand::Read { target, .. }
        | TalosCommand::Kubeconfig { target, .. }
        | TalosCommand::ApplyConfig { target, .. }
        | TalosCommand::Reset { target, .. } => target,
    }
}

async fn run_async(cmd: &TalosCommand) -> Result<Outcome> {
    let t = target(cmd);
    let insecure = matches!(cmd, TalosCommand::ApplyConfig { insecure: true, .. });
    let client = connect(t, insecure).await?;
    let targets = Targets::nodes(&t.nodes);
    let format = match t.output {
        TalosOutput::Table => OutputFormat::Table,
        TalosOutput::Json => OutputFormat::Json,
    };
    let out: CommandOutput = match cmd {
        TalosCommand::Version(_) => commands::version(&client, &targets, format).await?,
        TalosCommand::Services(_) => {
            commands::services(&client, &targets, format, SystemTime::now()).await?
        }
        TalosCommand::Service { action, id, .. } => {
            let a = match action {
                ServiceActionArg::Start => ServiceAction::Start,
                ServiceActionArg::Stop => ServiceAction::Stop,
                ServiceActionArg::Restart => ServiceAction::Restart,
            };
            commands::service(&client, &targets, a, id, format).await?
        }
        TalosCommand::Etcd {
            what: EtcdWhat::Members,
            ..
        } => commands::etcd_members(&client, &targets, format).await?,
        TalosCommand::Etcd {
            what: EtcdWhat::Status,
            ..
        } => commands::etcd_status(&client, &targets, format).await?,
        TalosCommand::Memory { verbose, .. } => {
            commands::memory(&client, &targets, format, *verbose).await?
        }
        TalosCommand::Read { path, .. } => {
            let r = commands::read(&client, &targets, path).await?;
            std::io::stdout()
                .write_all(&r.stdout)
                .context("cannot write to stdout")?;
            CommandOutput {
                stdout: String::new(),
                stderr: r.stderr,
                failed_nodes: r.failed_nodes,
            }
        }
        TalosCommand::Kubeconfig { file, .. } => {
            let single = single_node(t)?;
            let kc = commands::kubeconfig(&client, &single).await?;
            kforge_secret::write_private(file, kc.as_bytes())
                .with_context(|| format!("cannot write {}", file.display()))?;
            eprintln!("wrote kubeconfig to {} (mode 0600)", file.display());
            CommandOutput::default()
        }
        TalosCommand::ApplyConfig {
            file,
            mode,
            dry_run,
            ..
        } => {
            let config = FsReader::new().read_plain(file)?;
            let mode: ApplyMode = mode.parse().map_err(|e: String| anyhow!(e))?;
            let mut options = ApplyOptions::new(mode);
            options.dry_run = *dry_run;
            commands::apply_config(&client, &targets, config.as_bytes(), options, format).await?
        }
        TalosCommand::Bootstrap(_) => {
            commands::bootstrap(
                &client,
                &single_node(t)?,
                BootstrapOptions::default(),
                format,
            )
            .await?
        }
        TalosCommand::Reboot(_) => {
            commands::reboot(&client, &targets, RebootMode::Default, format).await?
        }
        TalosCommand::Reset {
            no_graceful,
            reboot,
            ..
        } => {
            let options = ResetOptions {
                graceful: !no_graceful,
                reboot: *reboot,
                ..ResetOptions::default()
            };
            commands::reset(&client, &targets, &options, format).await?
        }
    };
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    Ok(if out.success() {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

/// Commands that act on exactly one node (bootstrap, kubeconfig).
fn single_node(t: &TalosTarget) -> Result<Targets> {
    match t.nodes.as_slice() {
        [] => Ok(Targets::Endpoint),
        [one] => Ok(Targets::Node(one.clone())),
        _ => bail!("this command acts on one node; pass a single -n/--nodes"),
    }
}

/// Builds the connection: insecure maintenance mode when asked, else mutual TLS from the
/// talosconfig (endpoints overridable with -e).
async fn connect(t: &TalosTarget, insecure: bool) -> Result<TalosClient> {
    let timeout = crate::commands::genconfig::parse_go_duration(&t.timeout)
        .with_context(|| format!("invalid --timeout `{}`", t.timeout))?;
    let config = if insecure {
        let endpoints = if t.endpoints.is_empty() {
            t.nodes.clone()
        } else {
            t.endpoints.clone()
        };
        if endpoints.is_empty() {
            bail!("--insecure needs the node's address: pass -n/--nodes or -e/--endpoints");
        }
        ConnectionConfig::insecure(&endpoints)?
    } else {
        let path = talosconfig_path(t)?;
        let text = FsReader::new().read_plain(&path)?;
        let tc = kforge_pki::Talosconfig::from_yaml(text.expose())
            .with_context(|| format!("invalid talosconfig {}", path.display()))?;
        let name = t.context.clone().unwrap_or_else(|| tc.context.clone());
        let ctx = tc
            .contexts
            .get(&name)
            .ok_or_else(|| anyhow!("talosconfig {} has no context `{name}`", path.display()))?;
        let endpoints = if t.endpoints.is_empty() {
            ctx.endpoints.clone()
        } else {
            t.endpoints.clone()
        };
        if endpoints.is_empty() {
            return Err(Hinted::new(
                format!("context `{name}` of {} has no endpoints", path.display()),
                "pass -e/--endpoints with a control-plane address",
            )
            .into());
        }
        ConnectionConfig::mutual_tls(&endpoints, &ctx.ca_pem()?, &ctx.crt_pem()?, &ctx.key_pem()?)?
    };
    Ok(TalosClient::connect(&config.with_call_timeout(timeout)).await?)
}

fn talosconfig_path(t: &TalosTarget) -> Result<PathBuf> {
    if let Some(p) = &t.talosconfig {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("TALOSCONFIG") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| anyhow!("no --talosconfig given and HOME is not set"))?;
    Ok(PathBuf::from(home).join(".talos/config"))
}

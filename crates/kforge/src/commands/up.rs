//! `kforge up`, `plan`, `health` and `drill failover`: the deploy engine (`kforge-deploy`)
//! against real nodes, with progress on the terminal, as plain lines, or as JSON events.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kforge_deploy::execute::{Apis, UpOptions};
use kforge_deploy::kube_http::{HttpKubeApi, HttpKubeConnector, HttpKubeOptions};
use kforge_deploy::talos::{TalosApi, TalosApiOptions, TalosCredentials};
use kforge_deploy::{
    DesiredCluster, Event, EventSink, FileStateStore, KubeconfigOutput, LineFormat, LineSink,
    NodeRef, PlanOptions, Role, Status,
};
use kforge_pki::Talosconfig;
use kforge_spec::Cluster;

use crate::Outcome;
use crate::cli::{DrillArgs, HealthArgs, ProgressOutput, UpArgs};
use crate::files::FsReader;
use crate::report::{Format, Hinted, print_diagnostics};

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Progress: a live display with one line per node on a terminal, plain lines otherwise,
/// JSON lines on request. All of it goes to stderr except JSON (stdout, for CI).
enum Progress {
    Live(LiveProgress),
    Lines(LineSink<Box<dyn std::io::Write + Send>>),
}

impl Progress {
    fn new(output: ProgressOutput) -> Progress {
        match output {
            ProgressOutput::Json => {
                Progress::Lines(LineSink::new(Box::new(std::io::stdout()), LineFormat::Json))
            }
            ProgressOutput::Plain => Progress::Lines(LineSink::new(
                Box::new(std::io::stderr()),
                LineFormat::Plain,
            )),
            ProgressOutput::Auto if std::io::stderr().is_terminal() => {
                Progress::Live(LiveProgress::new())
            }
            ProgressOutput::Auto => Progress::Lines(LineSink::new(
                Box::new(std::io::stderr()),
                LineFormat::Plain,
            )),
        }
    }

    fn finish(&self) {
        if let Progress::Live(l) = self {
            l.finish();
        }
    }
}

impl EventSink for Progress {
    fn emit(&self, event: Event) {
        match self {
            Progress::Live(l) => l.emit(event),
            Progress::Lines(s) => s.emit(event),
        }
    }
}

struct LiveProgress {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl LiveProgress {
    fn new() -> Self {
        LiveProgress {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn emit(&self, e: Event) {
        let key = e.node.clone().unwrap_or_else(|| "cluster".into());
        let mut bars = self
            .bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bar = bars.entry(key.clone()).or_insert_with(|| {
            let b = self.multi.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<22} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(key.clone());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        let mark = match e.status {
            Status::Done => "✓",
            Status::Skipped => "·",
            Status::Failed => "✗",
            Status::Started | Status::Waiting => "…",
        };
        bar.set_message(format!("{mark} {}: {}", e.phase, e.message));
        if e.status == Status::Failed {
            let _ = self
                .multi
                .println(format!("{key}: {} failed: {}", e.phase, e.message));
        }
    }

    fn finish(&self) {
        let bars = self
            .bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for b in bars.values() {
            b.finish();
        }
    }
}

/// The talosconfig as genconfig wrote it (SOPS-transparent).
fn talos_credentials(out_dir: &Path, reader: &FsReader) -> Result<TalosCredentials> {
    let plain = out_dir.join("talosconfig");
    let path = if plain.exists() {
        plain
    } else {
        out_dir.join("talosconfig.sops.yaml")
    };
    let text = reader.read_plain(&path).map_err(|e| {
        anyhow::Error::from(Hinted {
            message: format!("cannot read the talosconfig in {}", out_dir.display()),
            hint: Some(
                "run `kforge genconfig` (or `kforge up`) first, or pass -o/--out-dir".into(),
            ),
            source: Some(e.into()),
        })
    })?;
    let tc = Talosconfig::from_yaml(text.expose())
        .with_context(|| format!("invalid talosconfig {}", path.display()))?;
    Ok(TalosCredentials::from_talosconfig(&tc, None)?)
}

fn default_kubeconfig() -> Result<PathBuf> {
    if let Some(k) = std::env::var_os("KUBECONFIG").filter(|k| !k.is_empty())
        && let Some(first) = std::env::split_paths(&k).next()
    {
        return Ok(first);
    }
    let home =
        std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set; pass --kubeconfig"))?;
    Ok(PathBuf::from(home).join(".kube/config"))
}

pub fn up(args: &UpArgs, dry_run: bool) -> Result<Outcome> {
    // Checked before anything is generated or written.
    let step_timeout = match &args.step_timeout {
        Some(t) => {
            let max = super::genconfig::parse_go_duration(t)
                .with_context(|| format!("invalid --step-timeout `{t}`"))?;
            if max.is_zero() {
                anyhow::bail!("invalid --step-timeout `{t}`: must be more than zero");
            }
            Some(max)
        }
        None => None,
    };
    let reader = FsReader::new();
    let mut gen_args = args.generate.clone();
    gen_args.dry_run = dry_run;
    let Some(generated) = super::genconfig::generate(&gen_args, &reader)? else {
        return Ok(Outcome::Failure);
    };
    let cluster = &generated.cluster;
    if !dry_run {
        super::genconfig::write(&gen_args, &reader, &generated)?;
    }
    let desired = DesiredCluster::from_rendered(
        cluster.name(),
        &generated.rendered,
        cluster.file.bootstrap_node.clone(),
    )?;
    let tc = Talosconfig::from_yaml(generated.talosconfig().expose())
        .context("the generated talosconfig does not load")?;
    let credentials = TalosCredentials::from_talosconfig(&tc, None)?;
    let nodes = TalosApi::new(
        credentials,
        TalosApiOptions {
            port: args.talos_port,
            ..TalosApiOptions::default()
        },
    );
    let kube = HttpKubeConnector {
        options: HttpKubeOptions::default(),
    };
    let state = FileStateStore::in_dir(&generated.out_dir);
    let kubeconfig = if args.write_kubeconfig {
        KubeconfigOutput::Write {
            path: generated.out_dir.join("kubeconfig"),
        }
    } else {
        KubeconfigOutput::Merge {
            path: args
                .kubeconfig
                .clone()
                .map_or_else(default_kubeconfig, Ok)?,
            context: cluster.name().to_string(),
        }
    };
    let mut options = UpOptions {
        plan: PlanOptions { kubeconfig },
        observe: Default::default(),
        execute: Default::default(),
    };
    if let Some(max) = step_timeout {
        options.execute.timeouts = options.execute.timeouts.capped(max);
        options.observe.call_timeout = options.observe.call_timeout.min(max);
    }
    let progress = Progress::new(args.output);
    let apis = Apis {
        nodes: &nodes,
        kube: &kube,
        state: &state,
    };
    let rt = runtime()?;
    if dry_run {
        let plan = rt.block_on(kforge_deploy::execute::plan_cluster(
            &desired,
            apis,
            &progress,
            &options.plan,
            &options.observe,
        ));
        progress.finish();
        let plan = plan?;
        match args.output {
            ProgressOutput::Json => println!("{}", plan.to_json()),
            _ => print!("{plan}"),
        }
        return Ok(Outcome::Success);
    }
    let result = rt.block_on(kforge_deploy::execute::up(
        &desired, apis, &progress, &options,
    ));
    progress.finish();
    let (plan, report) = result?;
    // The summary goes to stderr, so it is shown with JSON events (stdout) too.
    if plan.is_noop() && !report.changed {
        eprintln!(
            "cluster `{}` is up to date; nothing changed",
            cluster.name()
        );
    } else {
        eprintln!(
            "cluster `{}` is up ({} step(s) in {:.1}s)",
            cluster.name(),
            report.steps.len(),
            report.duration.as_secs_f64()
        );
    }
    for t in &report.tuning {
        let passed = t.checks.iter().filter(|c| c.passed).count();
        eprintln!(
            "tuning verified on {}: {passed}/{} checks passed",
            t.node,
            t.checks.len()
        );
    }
    Ok(Outcome::Success)
}

/// Node references from the cluster file (first address of each node).
fn node_refs(cluster: &Cluster) -> Vec<NodeRef> {
    cluster
        .nodes
        .iter()
        .filter_map(|n| {
            n.ip_addresses.first().map(|ip| {
                NodeRef::new(
                    &n.hostname,
                    ip,
                    if n.control_plane {
                        Role::ControlPlane
                    } else {
                        Role::Worker
                    },
                )
            })
        })
        .collect()
}

struct Target {
    cluster: Cluster,
    nodes: TalosApi,
    kube: HttpKubeApi,
}

fn target(args: &HealthArgs) -> Result<Option<Target>> {
    let reader = FsReader::new();
    let loaded = super::load_cluster(&args.cluster, false, &reader);
    if loaded.has_errors() {
        print_diagnostics(&loaded.diagnostics, Format::Human);
        return Ok(None);
    }
    let Some(cluster) = loaded.cluster else {
        return Ok(None);
    };
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| cluster.base_dir.join("clusterconfig"));
    let nodes = TalosApi::new(
        talos_credentials(&out_dir, &reader)?,
        TalosApiOptions::default(),
    );
    let (kc_path, context) = match &args.kubeconfig {
        Some(p) => (p.clone(), Some(cluster.name().to_string())),
        None if out_dir.join("kubeconfig").exists() => (out_dir.join("kubeconfig"), None),
        None => (default_kubeconfig()?, Some(cluster.name().to_string())),
    };
    let text = reader.read_plain(&kc_path)?;
    let single =
        kforge_deploy::kubeconfig::extract(&text, context.as_deref()).with_context(|| {
            format!(
                "no usable context for cluster `{}` in {}",
                cluster.name(),
                kc_path.display()
            )
        })?;
    let kube = HttpKubeApi::from_kubeconfig(&single, HttpKubeOptions::default())
        .with_context(|| format!("cannot use the kubeconfig {}", kc_path.display()))?;
    Ok(Some(Target {
        cluster,
        nodes,
        kube,
    }))
}

pub fn health(args: &HealthArgs) -> Result<Outcome> {
    let Some(t) = target(args)? else {
        return Ok(Outcome::Failure);
    };
    let wait = super::genconfig::parse_go_duration(&args.wait)
        .with_context(|| format!("invalid --wait `{}`", args.wait))?;
    let progress = Progress::new(args.output);
    let options = kforge_deploy::HealthOptions {
        wait,
        ..Default::default()
    };
    let rt = runtime()?;
    let result = rt.block_on(kforge_deploy::health(
        &node_refs(&t.cluster),
        &t.nodes,
        &t.kube,
        &progress,
        &options,
    ));
    progress.finish();
    match result {
        Ok(report) => {
            println!("{report}");
            Ok(Outcome::Success)
        }
        Err(kforge_deploy::HealthError::Unhealthy {
            report,
            check,
            message,
        }) => {
            println!("{report}");
            eprintln!("error: the cluster is not healthy: {check}: {message}");
            Ok(Outcome::Failure)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn drill(args: &DrillArgs) -> Result<Outcome> {
    let Some(t) = target(&args.health)? else {
        return Ok(Outcome::Failure);
    };
    let vip = t
        .cluster
        .nodes
        .iter()
        .flat_map(|n| n.config.network_interfaces.iter().flatten())
        .find_map(|d| d.vip.as_ref().and_then(|v| v.ip.clone()));
    let options = kforge_deploy::DrillOptions {
        node: args.node.clone(),
        vip,
        ..Default::default()
    };
    let progress = Progress::new(args.health.output);
    let rt = runtime()?;
    let result = rt.block_on(kforge_deploy::drill_failover(
        &node_refs(&t.cluster),
        &t.nodes,
        &t.kube,
        &progress,
        &options,
    ));
    progress.finish();
    match result {
        Ok(report) => {
            println!("{report}");
            Ok(Outcome::Success)
        }
        Err(e) => Err(e.into()),
    }
}

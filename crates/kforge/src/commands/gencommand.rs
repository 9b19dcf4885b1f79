//! `kforge gencommand`: talosctl command lines in exactly talhelper's shapes, one per line,
//! each ending with `;`. The apply command's `--insecure` is an explicit choice (`--insecure`)
//! rather than something to remember.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use kforge_spec::{Cluster, Diagnostic};

use crate::Outcome;
use crate::cli::{GencommandArgs, GencommandKind};
use crate::files::FsReader;
use crate::report::{Format, print_diagnostics};

pub fn run(args: &GencommandArgs) -> Result<Outcome> {
    let reader = FsReader::new();
    let loaded = super::load_cluster(&args.cluster, false, &reader);
    let mut diags = loaded.diagnostics;
    let Some(cluster) = loaded.cluster else {
        print_diagnostics(&diags, Format::Human);
        return Ok(Outcome::Failure);
    };
    diags.extend(kforge_spec::validate::validate(&cluster, &reader));
    // Rendering (with placeholder secrets) gives each node's file name and installer image.
    let rendered = match kforge_machine::render_cluster(
        &cluster,
        &super::genconfig::placeholder_secrets(),
        &reader,
    ) {
        Ok(r) => r,
        Err(mut e) => {
            diags.append(&mut e);
            Vec::new()
        }
    };
    if diags.iter().any(Diagnostic::is_error) {
        print_diagnostics(&diags, Format::Human);
        return Ok(Outcome::Failure);
    }
    let out_dir = out_dir(args, &cluster);
    let lines = commands(args, &cluster, &rendered, &out_dir)?;
    for l in lines {
        println!("{l}");
    }
    Ok(Outcome::Success)
}

/// `-o` as given, else `clusterconfig` beside the cluster file, written like talhelper
/// writes it (`./clusterconfig` for a file in the current directory).
fn out_dir(args: &GencommandArgs, cluster: &Cluster) -> String {
    if let Some(o) = &args.out_dir {
        return o.display().to_string();
    }
    if cluster.base_dir.as_os_str().is_empty() {
        "./clusterconfig".into()
    } else {
        cluster.base_dir.join("clusterconfig").display().to_string()
    }
}

struct Target<'a> {
    hostname: &'a str,
    ip: &'a str,
    control_plane: bool,
    file: &'a str,
    image: &'a str,
}

fn commands(
    args: &GencommandArgs,
    cluster: &Cluster,
    rendered: &[kforge_machine::RenderedNode],
    out: &str,
) -> Result<Vec<String>> {
    let tc = format!(
        "--talosconfig={}",
        Path::new(out).join("talosconfig").display()
    );
    let extra = args.extra_flags.join(" ");
    let with_extra = |s: String| {
        if extra.is_empty() {
            s
        } else {
            format!("{s} {extra}")
        }
    };
    let all: Vec<Target<'_>> = rendered
        .iter()
        .flat_map(|r| {
            r.ip_addresses.iter().map(move |ip| Target {
                hostname: &r.hostname,
                ip,
                control_plane: r.control_plane,
                file: &r.filename,
                image: &r.installer_image,
            })
        })
        .collect();
    let selected: Vec<&Target<'_>> = match &args.node {
        None => all.iter().collect(),
        Some(n) => {
            let by_ip: Vec<&Target<'_>> = all.iter().filter(|t| t.ip == n).collect();
            let chosen = if by_ip.is_empty() {
                all.iter().filter(|t| t.hostname == n).collect()
            } else {
                by_ip
            };
            if chosen.is_empty() {
                bail!("node with IP or hostname {n} not found");
            }
            chosen
        }
    };
    // Commands that run once, against one control-plane node.
    let single_cp = || -> Result<&Target<'_>> {
        match &args.node {
            None => all
                .iter()
                .find(|t| t.control_plane)
                .ok_or_else(|| anyhow::anyhow!("the cluster has no control-plane node")),
            Some(n) => {
                let t = selected[0];
                if !t.control_plane {
                    let what = if t.ip == n { "IP" } else { "hostname" };
                    bail!("node with {what} {n} is not a controlplane node");
                }
                Ok(t)
            }
        }
    };
    let path = |f: &str| PathBuf::from(out).join(f).display().to_string();
    Ok(match args.kind {
        GencommandKind::Apply => selected
            .iter()
            .map(|t| {
                let insecure = if args.insecure { " --insecure" } else { "" };
                format!(
                    "{};",
                    with_extra(format!(
                        "talosctl apply-config {tc} --nodes={} --file={}{insecure}",
                        t.ip,
                        path(t.file)
                    ))
                )
            })
            .collect(),
        GencommandKind::Upgrade => selected
            .iter()
            .map(|t| {
                format!(
                    "{};",
                    with_extra(format!(
                        "talosctl upgrade {tc} --nodes={} --image={}",
                        t.ip, t.image
                    ))
                )
            })
            .collect(),
        GencommandKind::Reset => selected
            .iter()
            .map(|t| {
                format!(
                    "{};",
                    with_extra(format!("talosctl reset {tc} --nodes={}", t.ip))
                )
            })
            .collect(),
        GencommandKind::UpgradeK8s => {
            let k = cluster
                .file
                .kubernetes_version
                .as_deref()
                .unwrap_or("")
                .trim_start_matches('v');
            if k.is_empty() {
                bail!("kubernetesVersion is not set in the cluster file");
            }
            let t = single_cp()?;
            vec![format!(
                "{} --nodes={};",
                with_extra(format!("talosctl upgrade-k8s {tc} --to=v{k}")),
                t.ip
            )]
        }
        GencommandKind::Bootstrap | GencommandKind::Kubeconfig => {
            let verb = if matches!(args.kind, GencommandKind::Bootstrap) {
                "bootstrap"
            } else {
                "kubeconfig"
            };
            let t = single_cp()?;
            vec![format!(
                "{} --nodes={};",
                with_extra(format!("talosctl {verb} {tc}")),
                t.ip
            )]
        }
        GencommandKind::Health => {
            let node = match &args.node {
                Some(n) => n.clone(),
                None => single_cp()?.ip.to_string(),
            };
            vec![format!(
                "{};",
                with_extra(format!("talosctl health {tc} --nodes={node}"))
            )]
        }
    })
}

//! `kforge init`: the repository layout of seed 002 for a new cluster — a commented
//! `talconfig.yaml`, a fresh secrets bundle encrypted with SOPS/age (the plaintext never
//! touches disk), patch files, an output directory, a `.gitignore`, and creation rules in the
//! repository's `.sops.yaml` (added without disturbing what is there).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use kforge_pki::SecretsBundle;
use kforge_sops::config::{NewCreationRule, add_creation_rules};

use crate::Outcome;
use crate::cli::InitArgs;
use crate::files::{self, StagedDir};
use crate::report::Hinted;

pub fn run(args: &InitArgs) -> Result<Outcome> {
    let name = &args.cluster_name;
    if !kforge_spec::validate::is_dns_name(name) || name.contains('.') {
        bail!("`{name}` is not a valid cluster name; use lowercase letters, digits and `-`");
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("clusters").join(name).join("talos"));
    if dir.exists() {
        return Err(Hinted::new(
            format!("{} already exists", dir.display()),
            "kforge init never overwrites a cluster directory; choose another --dir or remove it first",
        )
        .into());
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let abs_dir = cwd.join(&dir);
    let root = repo_root(&abs_dir).unwrap_or_else(|| cwd.clone());
    let rel = abs_dir
        .strip_prefix(&root)
        .unwrap_or(&abs_dir)
        .to_string_lossy()
        .replace('\\', "/");
    let now = SystemTime::now();

    // .sops.yaml rules first: the secrets are encrypted according to them.
    let sops_path = root.join(".sops.yaml");
    let existing = if sops_path.exists() {
        files::read_text(&sops_path)
            .with_context(|| format!("cannot read {}", sops_path.display()))?
    } else {
        String::new()
    };
    let escaped = regex_escape(&rel);
    let rules = vec![
        NewCreationRule {
            path_regex: format!("^{escaped}/talsecret\\.sops\\.yaml$"),
            age: args.age.clone(),
            partial: None,
            mac_only_encrypted: false,
        },
        NewCreationRule {
            path_regex: format!("^{escaped}/clusterconfig/.*\\.sops\\.yaml$"),
            age: args.age.clone(),
            partial: None,
            mac_only_encrypted: false,
        },
    ];
    let update = add_creation_rules(&existing, &rules)
        .with_context(|| format!("cannot add creation rules to {}", sops_path.display()))?;

    let bundle = SecretsBundle::generate(now).context("cannot generate the secrets bundle")?;
    let config = files::encrypt_config_for_recipients(&args.age, now);
    let secrets = files::encrypt_for(Path::new("talsecret.sops.yaml"), &bundle.to_yaml(), &config)?;

    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let staged = StagedDir::new(&dir, &[])?;
    staged.write("talconfig.yaml", talconfig(name).as_bytes())?;
    staged.write("talsecret.sops.yaml", secrets.as_bytes())?;
    staged.write("patches/common.yaml", COMMON.as_bytes())?;
    staged.write("patches/controlplane.yaml", CONTROLPLANE.as_bytes())?;
    staged.write("patches/worker.yaml", WORKER.as_bytes())?;
    staged.write("clusterconfig/.gitkeep", b"")?;
    staged.write(".gitignore", GITIGNORE.as_bytes())?;
    staged.write(
        "kforge.schema.json",
        super::schema::schema_json().as_bytes(),
    )?;
    staged.commit()?;
    if !update.added.is_empty() {
        kforge_secret::write_private(&sops_path, update.text.as_bytes())
            .with_context(|| format!("cannot write {}", sops_path.display()))?;
        // .sops.yaml holds only public keys; keep it readable like sops does.
        set_mode(&sops_path, 0o644)?;
    }
    eprintln!(
        "created {}/ with talconfig.yaml, talsecret.sops.yaml (encrypted), patches/, clusterconfig/ and .gitignore",
        dir.display()
    );
    match (update.added.len(), update.already_present.len()) {
        (0, _) => eprintln!("{} already had rules for this cluster", sops_path.display()),
        (n, _) => eprintln!("added {n} creation rule(s) to {}", sops_path.display()),
    }
    eprintln!(
        "next: edit {}/talconfig.yaml, then `kforge genconfig -c {}/talconfig.yaml --encrypt`",
        dir.display(),
        dir.display()
    );
    Ok(Outcome::Success)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set permissions of {}", path.display()))
}

/// The nearest ancestor holding a `.git` directory or file.
fn repo_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .skip(1)
        .find(|p| p.join(".git").exists())
        .map(Path::to_path_buf)
}

fn regex_escape(s: &str) -> String {
    s.chars().fold(String::new(), |mut out, c| {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

fn talconfig(name: &str) -> String {
    format!(
        r#"# yaml-language-server: $schema=./kforge.schema.json
#
# Cluster file for `{name}` (talhelper's talconfig.yaml format, plus kforge's `hardware` and
# `profiles`). Generate configs with:
#   kforge genconfig -c talconfig.yaml --encrypt
# Check it with `kforge validate -c talconfig.yaml`.
clusterName: {name}
talosVersion: v1.12.11
kubernetesVersion: v1.35.0
# The Kubernetes API endpoint: the VIP shared by the control-plane nodes below.
endpoint: https://192.168.1.10:6443

# Patches for every node, applied after group and node patches.
patches:
  - "@./patches/common.yaml"

nodes:
  # Three control-plane nodes: etcd keeps quorum when one is lost.
  - hostname: {name}-cp-1
    ipAddress: 192.168.1.11
    controlPlane: true
    installDisk: /dev/sda
    networkInterfaces:
      - interface: eth0
        addresses: [192.168.1.11/24]
        routes:
          - network: 0.0.0.0/0
            gateway: 192.168.1.1
        vip:
          ip: 192.168.1.10
  - hostname: {name}-cp-2
    ipAddress: 192.168.1.12
    controlPlane: true
    installDisk: /dev/sda
    networkInterfaces:
      - interface: eth0
        addresses: [192.168.1.12/24]
        routes:
          - network: 0.0.0.0/0
            gateway: 192.168.1.1
        vip:
          ip: 192.168.1.10
  - hostname: {name}-cp-3
    ipAddress: 192.168.1.13
    controlPlane: true
    installDisk: /dev/sda
    networkInterfaces:
      - interface: eth0
        addresses: [192.168.1.13/24]
        routes:
          - network: 0.0.0.0/0
            gateway: 192.168.1.1
        vip:
          ip: 192.168.1.10
  # A worker. Add `hardware:` and `profiles:` for tuned nodes, e.g.
  #   hardware: {{cpus: 64, memory: 512GiB, disks: {{ledger: /dev/nvme1n1}}}}
  #   profiles: [{{name: solana-validator}}]
  - hostname: {name}-wk-1
    ipAddress: 192.168.1.21
    installDisk: /dev/sda

controlPlane:
  patches:
    - "@./patches/controlplane.yaml"
worker:
  patches:
    - "@./patches/worker.yaml"
"#
    )
}

const COMMON: &str = "# Applied to every node (strategic merge patch).\nmachine:\n  sysctls:\n    vm.max_map_count: \"262144\"\n";
const CONTROLPLANE: &str = "# Applied to control-plane nodes.\nmachine:\n  features:\n    kubePrism:\n      enabled: true\n      port: 7445\n";
const WORKER: &str = "# Applied to worker nodes.\nmachine:\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: \"true\"\n";
const GITIGNORE: &str = "# Plaintext secrets and generated configs never go to git; their SOPS-encrypted\n# *.sops.yaml copies (kforge genconfig --encrypt) do.\ntalsecret.yaml\ntalosconfig\nclusterconfig/*\n!clusterconfig/*.sops.yaml\n!clusterconfig/.gitkeep\n!clusterconfig/.gitignore\n";

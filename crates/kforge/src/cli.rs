//! Command-line interface definitions (clap). Commands live in `commands/`; this module only
//! describes arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::Format;

#[derive(Parser, Debug)]
#[command(
    name = "kforge",
    version,
    about = "From one cluster file (talhelper's talconfig.yaml) to Talos machine configs and a verified cluster",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a secrets bundle in `talosctl gen secrets` format
    #[command(
        after_help = "Examples:\n  kforge gensecret -o talsecret.yaml\n  kforge gensecret > talsecret.yaml"
    )]
    Gensecret(GensecretArgs),
    /// Generate every node's machine config and the talosconfig from the cluster file
    #[command(
        after_help = "Examples:\n  kforge genconfig -c clusters/infra/talos/talconfig.yaml\n  kforge genconfig --dry-run\n  kforge genconfig -c examples/solana/talconfig.yaml --new-secrets"
    )]
    Genconfig(GenconfigArgs),
    /// Check the cluster file (or generated machine configs) and report every problem at once
    #[command(
        after_help = "Examples:\n  kforge validate -c talconfig.yaml\n  kforge validate --format json\n  kforge validate nodeconfig --mode metal clusterconfig/*.yaml"
    )]
    Validate(ValidateArgs),
    /// Encrypt or decrypt files in SOPS format (age), compatible with the sops CLI
    #[command(
        subcommand,
        after_help = "Examples:\n  kforge sops encrypt --age age1… --in-place talenv.sops.yaml\n  kforge sops decrypt talsecret.sops.yaml"
    )]
    Sops(SopsCommand),
    /// Create a cluster directory (talconfig.yaml, encrypted secrets, patches, .sops.yaml rules)
    #[command(
        after_help = "Example:\n  kforge init infra --age age1j3hsfptdfsfwvkf504etjkrtmajny9csrfh5s24uqh6fchmg5dgqg087ek\n  # creates clusters/infra/talos/ and adds rules to ./.sops.yaml"
    )]
    Init(InitArgs),
    /// Deploy: apply configs, bootstrap etcd once, fetch the kubeconfig, wait for every node, apply profile manifests, verify tuning (resumable)
    #[command(
        after_help = "Examples:\n  kforge up -c clusters/infra/talos/talconfig.yaml\n  kforge up --dry-run          # print the plan, change nothing\n  kforge up --output json      # one JSON event per line, for CI"
    )]
    Up(UpArgs),
    /// Print what `kforge up` would do (same as `kforge up --dry-run`)
    #[command(after_help = "Example:\n  kforge plan -c talconfig.yaml --output json")]
    Plan(UpArgs),
    /// Check the cluster's health the way `talosctl health` does, with timings
    #[command(
        after_help = "Examples:\n  kforge health -c talconfig.yaml\n  kforge health --wait 10m"
    )]
    Health(HealthArgs),
    /// Exercises that prove the cluster survives failures
    #[command(
        subcommand,
        after_help = "Example:\n  kforge drill failover --node cp-2"
    )]
    Drill(DrillCommand),
    /// Run the whole job on simulated nodes: the solana example on loopback, `up`, `health`, `drill failover`, then tear it all down
    #[command(
        after_help = "Example:\n  kforge demo                  # about 30 s; needs `etcd` on PATH (Debian etcd-server)"
    )]
    Demo(DemoArgs),
    /// Talk to Talos nodes directly (the subset of talosctl kforge needs)
    #[command(
        subcommand,
        after_help = "Examples:\n  kforge talos version --talosconfig clusterconfig/talosconfig -n 10.0.1.11\n  kforge talos etcd members -n 10.0.1.11 -o json"
    )]
    Talos(TalosCommand),
    /// Print talosctl commands for the cluster (talhelper's shapes), one per line, ready for `| sh`
    #[command(
        after_help = "Examples:\n  kforge gencommand apply --insecure       # first apply, nodes in maintenance mode\n  kforge gencommand bootstrap\n  kforge gencommand upgrade -n infra-cp-1\n  kforge gencommand health --extra-flags=--wait-timeout=10m"
    )]
    Gencommand(GencommandArgs),
    /// Print the JSON schema of the cluster file, for editors
    #[command(
        after_help = "Example:\n  kforge schema > kforge.schema.json\n  # then, first line of talconfig.yaml:\n  # yaml-language-server: $schema=./kforge.schema.json"
    )]
    Schema,
    /// Print shell completions
    #[command(after_help = "Example:\n  kforge completion bash > /etc/bash_completion.d/kforge")]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
pub enum SopsCommand {
    /// Encrypt a YAML, JSON or dotenv file (recipients from --age or the nearest .sops.yaml)
    #[command(
        after_help = "Examples:\n  kforge sops encrypt --age age1… talenv.yaml > talenv.sops.yaml\n  kforge sops encrypt --in-place talsecret.sops.yaml"
    )]
    Encrypt(SopsEncryptArgs),
    /// Decrypt a SOPS file (identities from SOPS_AGE_KEY, SOPS_AGE_KEY_FILE or ~/.config/sops/age/keys.txt)
    #[command(
        after_help = "Examples:\n  kforge sops decrypt talsecret.sops.yaml\n  SOPS_AGE_KEY_FILE=key.txt kforge sops decrypt --in-place talenv.sops.yaml"
    )]
    Decrypt(SopsDecryptArgs),
}

#[derive(Args, Debug)]
pub struct SopsEncryptArgs {
    /// age recipient (repeatable)
    #[arg(long, value_name = "RECIPIENT")]
    pub age: Vec<String>,
    /// Replace the file instead of printing to stdout
    #[arg(short = 'i', long)]
    pub in_place: bool,
    /// File format (default: from the extension, as sops does)
    #[arg(long, value_name = "yaml|json|dotenv")]
    pub input_type: Option<String>,
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct SopsDecryptArgs {
    /// Replace the file instead of printing to stdout
    #[arg(short = 'i', long)]
    pub in_place: bool,
    /// File format (default: from the extension, as sops does)
    #[arg(long, value_name = "yaml|json|dotenv")]
    pub input_type: Option<String>,
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Name of the cluster
    pub cluster_name: String,
    /// age recipient the secrets are encrypted to (repeatable)
    #[arg(long, value_name = "RECIPIENT", required = true)]
    pub age: Vec<String>,
    /// Directory to create (default: clusters/<name>/talos)
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct GensecretArgs {
    /// Write to FILE (mode 0600) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Encrypt with SOPS/age before writing; the plaintext never touches disk (default file: talsecret.sops.yaml)
    #[arg(long)]
    pub encrypt: bool,
    /// age recipient (repeatable); default: the matching .sops.yaml creation rule
    #[arg(long, value_name = "RECIPIENT")]
    pub age: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ClusterFileArgs {
    /// The cluster file
    #[arg(
        short = 'c',
        long = "config-file",
        value_name = "FILE",
        default_value = "talconfig.yaml"
    )]
    pub config_file: PathBuf,
    /// Env files for substitution (default: talenv.yaml, talenv.sops.yaml, talenv.yml, talenv.sops.yml next to the cluster file)
    #[arg(short = 'e', long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Unknown keys in the cluster file are errors, not warnings
    #[arg(long)]
    pub strict: bool,
}

#[derive(Args, Debug, Clone)]
pub struct GenconfigArgs {
    #[command(flatten)]
    pub cluster: ClusterFileArgs,
    /// Output directory (default: `clusterconfig` next to the cluster file)
    #[arg(short = 'o', long = "out-dir", value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Secrets bundle (default: the last of talsecret.yaml, talsecret.sops.yaml, talsecret.yml, talsecret.sops.yml that exists next to the cluster file)
    #[arg(short = 's', long = "secret-file", value_name = "FILE")]
    pub secret_file: Vec<PathBuf>,
    /// Show what would change as a diff (secrets redacted) and write nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Generate a new secrets bundle when none exists, and save it (otherwise kforge refuses: new secrets mean a new PKI)
    #[arg(long)]
    pub new_secrets: bool,
    /// Do not create or update `.gitignore` in the output directory
    #[arg(long)]
    pub no_gitignore: bool,
    /// Omit `nodes` from the talosconfig
    #[arg(long)]
    pub disable_nodes_section: bool,
    /// Lifetime of the talosconfig client certificate (Go duration, e.g. 8760h)
    #[arg(long, default_value = "8760h")]
    pub crt_ttl: String,
    /// Write configs and the talosconfig SOPS-encrypted as `<name>.sops.yaml` (recipients from --age or .sops.yaml)
    #[arg(long)]
    pub encrypt: bool,
    /// age recipient for --encrypt (repeatable); default: the matching .sops.yaml creation rule
    #[arg(long, value_name = "RECIPIENT")]
    pub age: Vec<String>,
    /// Accepted for talhelper compatibility; kforge always computes schematic IDs offline
    #[arg(long, hide = true)]
    pub offline_mode: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum ProgressOutput {
    /// A live display on a terminal, plain lines otherwise
    Auto,
    Plain,
    /// One JSON event per line
    Json,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub generate: GenconfigArgs,
    /// Kubeconfig to merge the cluster's context into (default: first path of $KUBECONFIG, else ~/.kube/config)
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Write the kubeconfig to <out-dir>/kubeconfig instead of merging it
    #[arg(long)]
    pub write_kubeconfig: bool,
    /// Progress output
    #[arg(long, value_enum, default_value = "auto")]
    pub output: ProgressOutput,
    /// Port of the Talos API on every node
    #[arg(long, default_value_t = 50000, hide = true)]
    pub talos_port: u16,
    /// Give up on any one step (and any one API call) after this long (Go duration, e.g. 90s, 5m; default: each step's own deadline, 2-15m)
    #[arg(long, value_name = "DURATION")]
    pub step_timeout: Option<String>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Progress output
    #[arg(long, value_enum, default_value = "auto")]
    pub output: ProgressOutput,
    /// First three octets of the loopback addresses the nodes use (default: a free 127.77.N)
    #[arg(long, value_name = "A.B.C", hide = true)]
    pub subnet: Option<String>,
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    #[command(flatten)]
    pub cluster: ClusterFileArgs,
    /// Directory holding the talosconfig (default: `clusterconfig` next to the cluster file)
    #[arg(short = 'o', long = "out-dir", value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Kubeconfig with the cluster's context (default: <out-dir>/kubeconfig if present, else ~/.kube/config)
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// How long to keep checking before giving up (Go duration)
    #[arg(long, default_value = "5m")]
    pub wait: String,
    /// Progress output
    #[arg(long, value_enum, default_value = "auto")]
    pub output: ProgressOutput,
}

#[derive(Subcommand, Debug)]
pub enum DrillCommand {
    /// Stop etcd and the API on one control-plane node, prove the cluster keeps working and the VIP moves, restore it, prove it rejoins
    #[command(
        after_help = "Examples:\n  kforge drill failover              # the node holding the VIP\n  kforge drill failover --node cp-3"
    )]
    Failover(DrillArgs),
}

#[derive(Args, Debug)]
pub struct DrillArgs {
    #[command(flatten)]
    pub health: HealthArgs,
    /// The control-plane node to take down (default: the one holding the VIP)
    #[arg(long)]
    pub node: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct TalosTarget {
    /// talosconfig to use (default: $TALOSCONFIG, else ~/.talos/config); SOPS-encrypted files work
    #[arg(long, value_name = "FILE", global = true)]
    pub talosconfig: Option<PathBuf>,
    /// Context in the talosconfig (default: its current context)
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Endpoints to connect to (default: the talosconfig's); comma-separated or repeated
    #[arg(short = 'e', long, value_delimiter = ',', global = true)]
    pub endpoints: Vec<String>,
    /// Nodes the request is for (proxied by the endpoint); comma-separated or repeated
    #[arg(short = 'n', long, value_delimiter = ',', global = true)]
    pub nodes: Vec<String>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value = "table", global = true)]
    pub output: TalosOutput,
    /// Per-call deadline
    #[arg(long, default_value = "30s", global = true)]
    pub timeout: String,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum TalosOutput {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum TalosCommand {
    /// Talos version of each node
    #[command(after_help = "Example:\n  kforge talos version -n 10.0.1.11,10.0.1.12")]
    Version(TalosTarget),
    /// Services and their state
    #[command(after_help = "Example:\n  kforge talos services -n 10.0.1.11")]
    Services(TalosTarget),
    /// Start, stop or restart a service
    #[command(after_help = "Example:\n  kforge talos service restart etcd -n 10.0.1.12")]
    Service {
        #[arg(value_enum)]
        action: ServiceActionArg,
        /// Service id, e.g. etcd
        id: String,
        #[command(flatten)]
        target: TalosTarget,
    },
    /// etcd: members or status
    #[command(
        after_help = "Examples:\n  kforge talos etcd members -n 10.0.1.11\n  kforge talos etcd status -n 10.0.1.11,10.0.1.12,10.0.1.13"
    )]
    Etcd {
        #[arg(value_enum)]
        what: EtcdWhat,
        #[command(flatten)]
        target: TalosTarget,
    },
    /// Memory of each node (/proc/meminfo)
    #[command(after_help = "Example:\n  kforge talos memory -n 10.0.1.20 --verbose")]
    Memory {
        /// All fields, not only the summary
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        target: TalosTarget,
    },
    /// Print a file from a node, e.g. /proc/cmdline
    #[command(after_help = "Example:\n  kforge talos read /proc/cmdline -n 10.0.1.20")]
    Read {
        path: String,
        #[command(flatten)]
        target: TalosTarget,
    },
    /// Fetch the admin kubeconfig from a control-plane node
    #[command(after_help = "Example:\n  kforge talos kubeconfig ./kubeconfig -n 10.0.1.11")]
    Kubeconfig {
        /// Where to write it (mode 0600)
        #[arg(default_value = "kubeconfig")]
        file: PathBuf,
        #[command(flatten)]
        target: TalosTarget,
    },
    /// Apply a machine config to a node
    #[command(
        name = "apply-config",
        after_help = "Examples:\n  kforge talos apply-config clusterconfig/solana-cp-1.yaml --insecure -n 10.0.1.11\n  kforge talos apply-config clusterconfig/solana-cp-1.yaml --mode no-reboot -n 10.0.1.11"
    )]
    ApplyConfig {
        file: PathBuf,
        /// Maintenance mode: TLS without a client certificate and without verifying the node (first apply only)
        #[arg(long)]
        insecure: bool,
        /// auto, no-reboot, reboot, staged or try
        #[arg(long, default_value = "auto")]
        mode: String,
        /// Validate on the node without applying
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: TalosTarget,
    },
    /// Bootstrap etcd on one control-plane node (once per cluster)
    #[command(after_help = "Example:\n  kforge talos bootstrap -n 10.0.1.11")]
    Bootstrap(TalosTarget),
    /// Reboot nodes
    #[command(after_help = "Example:\n  kforge talos reboot -n 10.0.1.20")]
    Reboot(TalosTarget),
    /// Reset nodes (wipe and return to maintenance mode)
    #[command(after_help = "Example:\n  kforge talos reset --reboot -n 10.0.1.20")]
    Reset {
        /// Do not leave etcd cleanly first
        #[arg(long)]
        no_graceful: bool,
        /// Reboot afterwards instead of halting
        #[arg(long)]
        reboot: bool,
        #[command(flatten)]
        target: TalosTarget,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ServiceActionArg {
    Start,
    Stop,
    Restart,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum EtcdWhat {
    Members,
    Status,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum GencommandKind {
    Apply,
    Upgrade,
    UpgradeK8s,
    Bootstrap,
    Kubeconfig,
    Reset,
    Health,
}

#[derive(Args, Debug)]
pub struct GencommandArgs {
    /// Which command to print
    #[arg(value_enum)]
    pub kind: GencommandKind,
    #[command(flatten)]
    pub cluster: ClusterFileArgs,
    /// Directory holding talosconfig and the configs (default: `clusterconfig` next to the cluster file)
    #[arg(short = 'o', long = "out-dir", value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Only this node: an IP address or a hostname
    #[arg(short = 'n', long = "node", value_name = "NODE")]
    pub node: Option<String>,
    /// Flags added verbatim to every command (repeatable, or comma-separated)
    #[arg(long = "extra-flags", value_name = "FLAG", value_delimiter = ',')]
    pub extra_flags: Vec<String>,
    /// apply: add `--insecure` (nodes still in maintenance mode, before their first config)
    #[arg(long)]
    pub insecure: bool,
    /// Accepted for talhelper compatibility; kforge always computes schematic IDs offline
    #[arg(long, hide = true)]
    pub offline_mode: bool,
}

#[derive(Subcommand, Debug)]
pub enum ValidateCommand {
    /// Check machine config files the way Talos does (`talosctl validate`)
    #[command(
        after_help = "Examples:\n  kforge validate nodeconfig --mode metal clusterconfig/infra-infra-cp-1.yaml\n  kforge validate nodeconfig --mode container --strict clusterconfig/*.yaml"
    )]
    Nodeconfig(NodeconfigArgs),
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ModeArg {
    Metal,
    Container,
    Cloud,
}

#[derive(Args, Debug)]
pub struct NodeconfigArgs {
    /// Where the config runs
    #[arg(short = 'm', long, value_enum, default_value = "metal")]
    pub mode: ModeArg,
    /// Warnings are errors
    #[arg(long)]
    pub strict: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Machine config files (SOPS-encrypted ones are decrypted)
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ValidateArgs {
    #[command(subcommand)]
    pub command: Option<ValidateCommand>,
    #[command(flatten)]
    pub cluster: ClusterFileArgs,
    /// Do not substitute environment variables
    #[arg(long)]
    pub no_substitute: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

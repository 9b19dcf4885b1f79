//! `kforge genconfig`: secrets + cluster file → every node's machine config, the talosconfig
//! and `.gitignore`, written atomically (or shown as a redacted diff with `--dry-run`).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use kforge_machine::{CertAndKey, ClusterSecrets, RenderedNode};
use kforge_pki::{SecretsBundle, Talosconfig};
use kforge_secret::SecretString;
use kforge_spec::{Cluster, Diagnostic, Location};
use kforge_yaml::Value;
use sha2::{Digest, Sha256};

use crate::Outcome;
use crate::cli::GenconfigArgs;
use crate::files::{self, FsReader, StagedDir};
use crate::report::{Format, Hinted, print_diagnostics};

/// Default secrets file names, in talhelper's order; the last one that exists wins.
const SECRET_FILES: &[&str] = &[
    "talsecret.yaml",
    "talsecret.sops.yaml",
    "talsecret.yml",
    "talsecret.sops.yml",
];

/// A talosconfig certificate with less than this left is reissued.
const CERT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Everything `genconfig` produced, before anything is written.
pub struct Generated {
    pub cluster: Cluster,
    pub bundle: SecretsBundle,
    pub rendered: Vec<RenderedNode>,
    pub out_dir: PathBuf,
    /// File name → plaintext contents (node configs, then `talosconfig`).
    pub outputs: Vec<(String, SecretString)>,
    /// Where a bundle made with `--new-secrets` is saved.
    pub new_secrets_path: Option<PathBuf>,
}

impl Generated {
    /// The talosconfig text.
    pub fn talosconfig(&self) -> &SecretString {
        &self
            .outputs
            .last()
            .expect("talosconfig is always generated")
            .1
    }
}

pub fn run(args: &GenconfigArgs) -> Result<Outcome> {
    let reader = FsReader::new();
    let Some(generated) = generate(args, &reader)? else {
        return Ok(Outcome::Failure);
    };
    if args.dry_run {
        show_diff(args, &reader, &generated)?;
        return Ok(Outcome::Success);
    }
    write(args, &reader, &generated)?;
    for r in &generated.rendered {
        let name = if args.encrypt {
            sops_name(&r.filename)
        } else {
            r.filename.clone()
        };
        eprintln!(
            "generated config for {} in {}",
            r.hostname,
            generated.out_dir.join(name).display()
        );
    }
    let tc = if args.encrypt {
        sops_name("talosconfig")
    } else {
        "talosconfig".into()
    };
    eprintln!(
        "generated client config in {}",
        generated.out_dir.join(tc).display()
    );
    Ok(Outcome::Success)
}

/// Loads, validates and renders the cluster. Diagnostics are printed; `None` means there
/// were errors (nothing has been written).
pub fn generate(args: &GenconfigArgs, reader: &FsReader) -> Result<Option<Generated>> {
    let loaded = super::load_cluster(&args.cluster, false, reader);
    let mut diags = loaded.diagnostics;
    let Some(cluster) = loaded.cluster else {
        print_diagnostics(&diags, Format::Human);
        return Ok(None);
    };
    diags.extend(kforge_spec::validate::validate(&cluster, reader));
    if diags.iter().any(Diagnostic::is_error) {
        print_diagnostics(&diags, Format::Human);
        return Ok(None);
    }
    let (bundle, new_secrets_path) = match secrets(args, &cluster, reader) {
        Ok(s) => s,
        Err(SecretsProblem::Diagnostics(mut d)) => {
            diags.append(&mut d);
            print_diagnostics(&diags, Format::Human);
            return Ok(None);
        }
        Err(SecretsProblem::Fatal(e)) => {
            print_diagnostics(&diags, Format::Human);
            return Err(e);
        }
    };
    let rendered = match kforge_machine::render_cluster(
        &cluster,
        &ClusterSecrets::from_bundle(&bundle),
        reader,
    ) {
        Ok(r) => r,
        Err(mut e) => {
            diags.append(&mut e);
            print_diagnostics(&diags, Format::Human);
            return Ok(None);
        }
    };
    for r in &rendered {
        diags.extend(r.diagnostics.iter().cloned());
    }
    print_diagnostics(&diags, Format::Human);

    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| cluster.base_dir.join("clusterconfig"));
    let talosconfig = talosconfig(args, &cluster, &bundle, &out_dir, reader)?;
    let mut outputs: Vec<(String, SecretString)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in &rendered {
        if !seen.insert(r.filename.clone()) {
            bail!(
                "two nodes would be written to the same file `{}`; give them different hostnames or a different `filenameTmpl`",
                r.filename
            );
        }
        outputs.push((r.filename.clone(), r.to_yaml()));
    }
    outputs.push(("talosconfig".into(), talosconfig));
    Ok(Some(Generated {
        cluster,
        bundle,
        rendered,
        out_dir,
        outputs,
        new_secrets_path,
    }))
}

/// Prints what writing would change, as a redacted diff.
pub fn show_diff(args: &GenconfigArgs, reader: &FsReader, g: &Generated) -> Result<()> {
    for (name, text) in &g.outputs {
        let on_disk = if args.encrypt {
            sops_name(name)
        } else {
            name.clone()
        };
        let path = g.out_dir.join(&on_disk);
        let old = if path.exists() {
            Some(reader.read_plain(&path)?)
        } else {
            None
        };
        print_redacted_diff(&path, old.as_ref(), text);
    }
    if let Some(p) = &g.new_secrets_path {
        eprintln!("would write a new secrets bundle to {}", p.display());
    }
    Ok(())
}

/// Writes the output directory atomically (and a new secrets bundle before it).
pub fn write(args: &GenconfigArgs, reader: &FsReader, g: &Generated) -> Result<()> {
    let now = now();
    let outputs = &g.outputs;
    let written = if args.encrypt {
        encrypted_outputs(args, reader, &g.out_dir, outputs, now)?
    } else {
        Vec::new()
    };
    let managed: Vec<String> = if args.encrypt {
        written.iter().map(|(n, _)| n.clone()).collect()
    } else {
        outputs.iter().map(|(n, _)| n.clone()).collect()
    };
    let staged = StagedDir::new(&g.out_dir, &managed)?;
    if args.encrypt {
        for (name, bytes) in &written {
            staged.write(name, bytes)?;
        }
    } else {
        for (name, text) in outputs {
            staged.write(name, text.as_bytes())?;
        }
    }
    if !args.no_gitignore {
        // Plaintext names: with --encrypt they keep any plaintext sibling out of git.
        let path = staged.path().join(".gitignore");
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        let mut names: Vec<String> = outputs.iter().map(|(n, _)| n.clone()).collect();
        names.extend(extra_ignored(&staged));
        if let Some(updated) = files::gitignore_with(&existing, &names) {
            staged.write(".gitignore", updated.as_bytes())?;
        }
    }
    if let Some(p) = &g.new_secrets_path {
        // Saved before the configs are swapped in: configs must never exist without their secrets.
        let bundle_yaml = g.bundle.to_yaml();
        let bytes = if args.encrypt {
            let config = files::encrypt_config_for(p, &args.age, now)?;
            files::encrypt_for(p, &bundle_yaml, &config)?.into_bytes()
        } else {
            bundle_yaml.as_bytes().to_vec()
        };
        kforge_secret::write_private(p, &bytes)
            .with_context(|| format!("cannot save the new secrets bundle to {}", p.display()))?;
        eprintln!(
            "generated new secrets in {} (mode 0600); keep it safe and back it up",
            p.display()
        );
    }
    staged.commit()
}

/// Files `kforge up` keeps in the output directory that also hold secrets.
fn extra_ignored(staged: &StagedDir) -> Vec<String> {
    ["kubeconfig"]
        .iter()
        .filter(|f| staged.path().join(f).exists())
        .map(|f| f.to_string())
        .collect()
}

/// Whether two YAML texts hold the same documents (decrypted sops files come back in sops'
/// own layout, so bytes differ even when nothing changed).
fn same_documents(a: &str, b: &str) -> bool {
    let parse = |t: &str| {
        kforge_yaml::parse_all(t).map(|d| {
            d.iter()
                .map(kforge_yaml::Node::to_value)
                .collect::<Vec<_>>()
        })
    };
    matches!((parse(a), parse(b)), (Ok(x), Ok(y)) if x == y)
}

/// `x.yaml` → `x.sops.yaml`; `talosconfig` → `talosconfig.sops.yaml`.
fn sops_name(name: &str) -> String {
    match name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
    {
        Some(stem) => format!("{stem}.sops.yaml"),
        None => format!("{name}.sops.yaml"),
    }
}

/// The encrypted files to write. A file whose current ciphertext already decrypts to the new
/// plaintext is kept byte for byte, so re-running does not churn git history.
fn encrypted_outputs(
    args: &GenconfigArgs,
    reader: &FsReader,
    out_dir: &Path,
    outputs: &[(String, SecretString)],
    now: SystemTime,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for (name, text) in outputs {
        let enc_name = sops_name(name);
        let path = out_dir.join(&enc_name);
        if path.exists()
            && let Ok(current) = reader.read_plain(&path)
            && same_documents(current.expose(), text.expose())
        {
            out.push((
                enc_name,
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
            ));
            continue;
        }
        let config = files::encrypt_config_for(&path, &args.age, now)?;
        out.push((
            enc_name,
            files::encrypt_for(&path, text, &config)?.into_bytes(),
        ));
    }
    Ok(out)
}

enum SecretsProblem {
    Diagnostics(Vec<Diagnostic>),
    Fatal(anyhow::Error),
}

/// Finds and loads the secrets bundle, or generates one with `--new-secrets` (returning
/// where to save it).
fn secrets(
    args: &GenconfigArgs,
    cluster: &Cluster,
    reader: &FsReader,
) -> std::result::Result<(SecretsBundle, Option<PathBuf>), SecretsProblem> {
    let candidates: Vec<PathBuf> = if args.secret_file.is_empty() {
        SECRET_FILES
            .iter()
            .map(|f| cluster.base_dir.join(f))
            .collect()
    } else {
        args.secret_file.clone()
    };
    let existing = candidates.iter().rev().find(|p| p.exists());
    let Some(path) = existing else {
        if args.new_secrets {
            let bundle = SecretsBundle::generate(SystemTime::now())
                .context("cannot generate a secrets bundle")
                .map_err(SecretsProblem::Fatal)?;
            let target = if args.secret_file.is_empty() && args.encrypt {
                cluster.base_dir.join("talsecret.sops.yaml")
            } else {
                candidates[0].clone()
            };
            return Ok((bundle, Some(target)));
        }
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        return Err(SecretsProblem::Fatal(
            Hinted::new(
                format!("no secrets bundle found (looked for {})", looked.join(", ")),
                "a secrets bundle holds the cluster's CAs and tokens; generating new ones would create a new PKI that no \
                 running node trusts, so kforge will not do it silently. Pass the existing bundle with -s/--secret-file, \
                 or run with --new-secrets for a brand-new cluster (it is then saved next to the cluster file)",
            )
            .into(),
        ));
    };
    let text = reader.read_plain(path).map_err(SecretsProblem::Fatal)?;
    let text = match kforge_spec::env::substitute(text.expose(), path, &cluster.env) {
        Ok(s) => s.text,
        Err(d) => return Err(SecretsProblem::Diagnostics(d)),
    };
    match SecretsBundle::from_yaml(&text) {
        Ok(b) => Ok((b, None)),
        Err(e) => {
            let lines = kforge_spec::diagnostic::LineIndex::new(&text);
            let problems = e.problems();
            if problems.is_empty() {
                return Err(SecretsProblem::Fatal(
                    anyhow::Error::new(e)
                        .context(format!("invalid secrets bundle {}", path.display())),
                ));
            }
            Err(SecretsProblem::Diagnostics(
                problems
                    .iter()
                    .map(|p| {
                        let loc = p.pos.map(|pos| {
                            Location::in_line(path, pos.line, pos.col, 1, lines.line_text(pos.line))
                        });
                        Diagnostic::error("secrets", format!("invalid secrets bundle: {p}")).at(loc)
                    })
                    .collect(),
            ))
        }
    }
}

/// Renders the cluster with placeholder secrets, to find problems only rendering reveals
/// (patches that do not apply, profiles that do not fit the hardware, configs Talos rejects).
/// Node by node, so that the warnings of nodes that render are kept next to the errors of
/// nodes that do not.
pub fn render_checks(cluster: &Cluster, reader: &FsReader) -> Vec<Diagnostic> {
    let secrets = placeholder_secrets();
    cluster
        .nodes
        .iter()
        .flat_map(|node| {
            match kforge_machine::render::render_node(cluster, node, &secrets, reader) {
                Ok(n) => n.diagnostics,
                Err(d) => d,
            }
        })
        .collect()
}

/// Stand-ins for the secrets bundle, for rendering that only checks structure.
pub fn placeholder_secrets() -> ClusterSecrets {
    let placeholder = || SecretString::from("placeholder".to_string());
    let cert = || CertAndKey {
        crt: "placeholder".into(),
        key: placeholder(),
    };
    ClusterSecrets {
        cluster_id: placeholder(),
        cluster_secret: placeholder(),
        bootstrap_token: placeholder(),
        secretbox_encryption_secret: Some(placeholder()),
        aescbc_encryption_secret: None,
        trustd_token: placeholder(),
        os: cert(),
        k8s: cert(),
        k8s_aggregator: cert(),
        k8s_service_account_key: placeholder(),
        etcd: cert(),
    }
}

/// The talosconfig: context = cluster name, endpoints = control-plane IPs, nodes = all IPs,
/// with the existing client certificate kept while it is valid (so re-running changes
/// nothing), else a new one.
fn talosconfig(
    args: &GenconfigArgs,
    cluster: &Cluster,
    bundle: &SecretsBundle,
    out_dir: &Path,
    reader: &FsReader,
) -> Result<SecretString> {
    let name = cluster.name().to_string();
    let endpoints: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.control_plane)
        .flat_map(|n| n.ip_addresses.clone())
        .collect();
    let nodes: Vec<String> = if args.disable_nodes_section {
        Vec::new()
    } else {
        cluster
            .nodes
            .iter()
            .flat_map(|n| n.ip_addresses.clone())
            .collect()
    };
    let now = now();
    let name_on_disk = if args.encrypt {
        sops_name("talosconfig")
    } else {
        "talosconfig".to_string()
    };
    let existing = reader
        .read_plain(&out_dir.join(name_on_disk))
        .ok()
        .and_then(|t| Talosconfig::from_yaml(t.expose()).ok());
    let reusable = existing
        .as_ref()
        .and_then(|tc| tc.contexts.get(&name))
        .and_then(|ctx| {
            let crt = ctx.crt_pem().ok()?;
            let key = ctx.key_pem().ok()?;
            kforge_pki::client_cert_still_valid(bundle, &crt, &key, now, CERT_RENEW_BEFORE)
                .then_some((crt, key))
        });
    let (crt, key) = match reusable {
        Some(ck) => ck,
        None => {
            let ttl = parse_go_duration(&args.crt_ttl)
                .with_context(|| format!("invalid --crt-ttl `{}`", args.crt_ttl))?;
            let issued = kforge_pki::issue_talos_client_cert(
                bundle,
                kforge_pki::DEFAULT_TALOS_ROLES,
                now,
                ttl,
            )
            .context("cannot issue the talosconfig client certificate")?;
            (issued.crt_pem, issued.key_pem)
        }
    };
    Ok(Talosconfig::for_cluster(&name, &endpoints, &nodes, bundle, &crt, &key).to_yaml())
}

/// The current time, or `SOURCE_DATE_EPOCH` when set (reproducible output).
fn now() -> SystemTime {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or_else(SystemTime::now, |s| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(s)
        })
}

/// Go durations: `8760h`, `1h30m`, `90s`, `500ms`.
pub fn parse_go_duration(s: &str) -> Result<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        bail!("empty duration");
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            bail!("expected a number at `{rest}`");
        }
        let number = &rest[..num_len];
        let n: f64 = number
            .parse()
            .with_context(|| format!("`{number}` is not a number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            "" => {
                bail!("`{number}` has no unit (expected h, m, s, ms, us or ns, e.g. `{number}s`)")
            }
            u => bail!("unknown unit `{u}` (expected h, m, s, ms, us or ns)"),
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| anyhow!("`{s}` is too long a duration"))
}

/// Prints a unified diff of `path` against `new`, with every secret replaced by a short
/// fingerprint so changes show without revealing anything.
fn print_redacted_diff(path: &Path, old: Option<&SecretString>, new: &SecretString) {
    let new_text = redact(new.expose());
    let old_text = old.map(|o| redact(o.expose())).unwrap_or_default();
    if old.is_some() && old_text == new_text {
        eprintln!("{}: unchanged", path.display());
        return;
    }
    let diff = similar::TextDiff::from_lines(&old_text, &new_text);
    let label_old = if old.is_some() {
        path.display().to_string()
    } else {
        "/dev/null".into()
    };
    print!(
        "{}",
        diff.unified_diff()
            .context_radius(3)
            .header(&label_old, &path.display().to_string())
    );
}

/// The text with secret values (machine-config secret paths, talosconfig keys) replaced by
/// `<secret sha256:…>`.
pub fn redact(text: &str) -> String {
    let Ok(nodes) = kforge_yaml::parse_all(text) else {
        return "<not YAML; not shown>\n".into();
    };
    let mut docs: Vec<Value> = nodes.iter().map(kforge_yaml::Node::to_value).collect();
    for d in &mut docs {
        for path in kforge_machine::secrets::SECRET_PATHS {
            redact_at(d, path);
        }
        if let Some(Value::Object(ctxs)) = d.get_mut("contexts") {
            for (_, c) in ctxs.iter_mut() {
                redact_at(c, &["key"]);
            }
        }
    }
    kforge_yaml::to_string_multi(&docs, kforge_yaml::EmitOptions { indent: 2 })
}

fn redact_at(v: &mut Value, path: &[&str]) {
    let mut cur = v;
    for p in path {
        match cur.get_mut(*p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Value::String(s) = cur
        && !s.is_empty()
    {
        let digest = Sha256::digest(s.as_bytes());
        *s = format!("<secret sha256:{}>", hex::encode(&digest[..6]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_go_duration("8760h").unwrap(),
            Duration::from_secs(8760 * 3600)
        );
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert!(parse_go_duration("5d").is_err());
        assert!(
            parse_go_duration("5")
                .unwrap_err()
                .to_string()
                .contains("`5` has no unit")
        );
        assert!(parse_go_duration("99999999999999999999999h").is_err());
    }

    #[test]
    fn redaction_hides_secrets_but_shows_changes() {
        let a = redact("machine:\n  token: abc\n  ca:\n    crt: public\n    key: private\n");
        assert!(!a.contains("abc") && !a.contains("private") && a.contains("public"));
        assert_ne!(
            a,
            redact("machine:\n  token: abd\n  ca:\n    crt: public\n    key: private\n")
        );
    }
}

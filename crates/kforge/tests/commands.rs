//! CLI behaviour of gencommand, validate nodeconfig, gensecret, and genconfig on bad input
//! (exit code 1, a positioned `error:`, nothing written).

mod support;

use std::path::Path;

use support::*;

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let o = kforge(dir).args(args).output().unwrap();
    let (out, err) = text(&o);
    (o.status.code().unwrap_or(-1), out, err)
}

fn oracle(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&shared().join("oracle/talhelper").join(name), tmp.path());
    std::fs::copy(
        repo().join("crates/kforge/tests/fixtures/talsecret.yaml"),
        tmp.path().join("talsecret.yaml"),
    )
    .unwrap();
    tmp
}

#[test]
fn gencommand_matches_talhelper_multi_ip() {
    let tmp = oracle("04-docs-multi-ip");
    let d = tmp.path();
    let tc = "--talosconfig=./clusterconfig/talosconfig";
    let (code, out, _) = run(d, &["gencommand", "apply"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(
        lines[0],
        format!(
            "talosctl apply-config {tc} --nodes=192.168.10.11 --file=./clusterconfig/my-cluster-controller.yaml;"
        )
    );
    assert_eq!(
        lines[5],
        format!(
            "talosctl apply-config {tc} --nodes=192.168.10.16 --file=./clusterconfig/my-cluster-worker.yaml;"
        )
    );
    assert_eq!(
        run(d, &["gencommand", "apply", "-n", "192.168.10.15"]).1,
        format!(
            "talosctl apply-config {tc} --nodes=192.168.10.15 --file=./clusterconfig/my-cluster-worker.yaml;\n"
        )
    );
    assert_eq!(
        run(d, &["gencommand", "apply", "-n", "worker"])
            .1
            .lines()
            .count(),
        3
    );
    assert!(
        run(d, &["gencommand", "apply", "--extra-flags=--insecure"])
            .1
            .lines()
            .all(|l| l.ends_with(".yaml --insecure;"))
    );
    assert!(
        run(d, &["gencommand", "apply", "--insecure"])
            .1
            .lines()
            .all(|l| l.ends_with(".yaml --insecure;"))
    );
    assert_eq!(
        run(d, &["gencommand", "bootstrap"]).1,
        format!("talosctl bootstrap {tc} --nodes=192.168.10.11;\n")
    );
    assert_eq!(
        run(d, &["gencommand", "bootstrap", "--extra-flags=-e=1.2.3.4"]).1,
        format!("talosctl bootstrap {tc} -e=1.2.3.4 --nodes=192.168.10.11;\n")
    );
    assert_eq!(
        run(d, &["gencommand", "upgrade-k8s"]).1,
        format!("talosctl upgrade-k8s {tc} --to=v1.34.2 --nodes=192.168.10.11;\n")
    );
    assert_eq!(
        run(d, &["gencommand", "health"]).1,
        format!("talosctl health {tc} --nodes=192.168.10.11;\n")
    );
    let up = run(d, &["gencommand", "upgrade"]).1;
    assert!(up.lines().all(|l| l.contains("--image=factory.talos.dev/metal-installer/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:v1.11.5;")), "{up}");
    let (code, _, err) = run(d, &["gencommand", "bootstrap", "-n", "worker"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("error: node with hostname worker is not a controlplane node"),
        "{err}"
    );
    let (code, _, err) = run(d, &["gencommand", "reset", "-n", "nope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("error: node with IP or hostname nope not found"),
        "{err}"
    );
}

#[test]
fn gencommand_matches_talhelper_repo_example() {
    let tmp = oracle("01-repo-example");
    let d = tmp.path();
    let key = d.join("key.txt");
    let k = |args: &[&str]| {
        let o = kforge(d)
            .env("SOPS_AGE_KEY_FILE", &key)
            .args(args)
            .output()
            .unwrap();
        text(&o)
    };
    let tc = "--talosconfig=./clusterconfig/talosconfig";
    assert_eq!(
        k(&["gencommand", "apply"]).0,
        format!(
            "talosctl apply-config {tc} --nodes=192.168.200.11 --file=./clusterconfig/home-cluster-kmaster1.yaml;\ntalosctl apply-config {tc} --nodes=192.168.200.13 --file=./clusterconfig/home-cluster-kworker1.yaml;\n"
        )
    );
    assert_eq!(
        k(&["gencommand", "kubeconfig"]).0,
        format!("talosctl kubeconfig {tc} --nodes=192.168.200.11;\n")
    );
    assert_eq!(
        k(&["gencommand", "upgrade-k8s"]).0,
        format!("talosctl upgrade-k8s {tc} --to=v1.35.0 --nodes=192.168.200.11;\n")
    );
    assert_eq!(
        k(&["gencommand", "upgrade", "-n", "kmaster1"]).0,
        format!(
            "talosctl upgrade {tc} --nodes=192.168.200.11 --image=factory.talos.dev/metal-installer-secureboot/67a999813ff49ba00dc632aa48170dc866bda646b7ee4f944e2fb7dc50b522bd:v1.12.0;\n"
        )
    );
    assert!(
        k(&["gencommand", "bootstrap", "-n", "kworker1"])
            .1
            .contains("node with hostname kworker1 is not a controlplane node")
    );
}

#[test]
fn nodeconfig_validation_of_files() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &repo().join("crates/kforge/tests/expected/genconfig/solana"),
        tmp.path(),
    );
    let d = tmp.path();
    let (code, _, err) = run(
        d,
        &[
            "validate",
            "nodeconfig",
            "--mode",
            "metal",
            "solana-cp-1.yaml",
            "solana-solana-validator.yaml",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("solana-cp-1.yaml is valid for metal mode"),
        "{err}"
    );
    // A worker that carries the OS CA key, a legacy hostname next to HostnameConfig, no install disk.
    let text = std::fs::read_to_string(d.join("solana-solana-validator.yaml")).unwrap();
    let key = std::fs::read_to_string(d.join("solana-cp-1.yaml")).unwrap();
    let ca_key = key
        .lines()
        .find(|l| l.trim_start().starts_with("key: ") && l.len() > 40)
        .unwrap()
        .trim()
        .to_string();
    let broken = text
        .replacen("    key: \"\"", &format!("    {ca_key}"), 1)
        .replace(
            "  install:\n    disk: /dev/nvme0n1\n",
            "  network:\n    hostname: validator\n  install:\n",
        );
    std::fs::write(d.join("broken.yaml"), broken).unwrap();
    let (code, _, err) = run(d, &["validate", "nodeconfig", "broken.yaml"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("machine.ca.key: a worker must not carry the OS CA key"),
        "{err}"
    );
    assert!(
        err.contains("static hostname is already set in v1alpha1 config"),
        "{err}"
    );
    assert!(err.contains("metal nodes need `install.disk`"), "{err}");
    assert!(err.contains("--> broken.yaml:"), "{err}");
    let (code, _, err) = run(
        d,
        &["validate", "nodeconfig", "--mode", "cloud", "broken.yaml"],
    );
    assert_eq!(code, 1);
    assert!(!err.contains("metal nodes need"), "{err}");
}

#[test]
fn gensecret_writes_a_private_bundle_that_loads() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, err) = run(tmp.path(), &["gensecret", "-o", "s.yaml"]);
    assert_eq!(code, 0, "{err}");
    let p = tmp.path().join("s.yaml");
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(kforge_pki::SecretsBundle::from_yaml(&std::fs::read_to_string(&p).unwrap()).is_ok());
    // stdout form
    let o = kforge(tmp.path()).arg("gensecret").output().unwrap();
    assert!(kforge_pki::SecretsBundle::from_yaml(&String::from_utf8(o.stdout).unwrap()).is_ok());
}

/// Writes a cluster dir with the solana example and a mutation applied to its talconfig.
fn broken_cluster(mutate: impl Fn(String) -> String) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples/solana"), tmp.path());
    std::fs::copy(
        repo().join("crates/kforge/tests/fixtures/talsecret.yaml"),
        tmp.path().join("talsecret.yaml"),
    )
    .unwrap();
    let f = tmp.path().join("talconfig.yaml");
    std::fs::write(&f, mutate(std::fs::read_to_string(&f).unwrap())).unwrap();
    tmp
}

fn assert_fails_with(tmp: &tempfile::TempDir, needles: &[&str]) {
    let (code, _, err) = run(tmp.path(), &["genconfig", "-c", "talconfig.yaml"]);
    assert_eq!(code, 1, "{err}");
    for n in needles {
        assert!(err.contains(n), "missing `{n}` in:\n{err}");
    }
    assert!(
        !tmp.path().join("clusterconfig").exists(),
        "nothing may be written:\n{err}"
    );
}

#[test]
fn genconfig_bad_input_exits_1_with_positions_and_writes_nothing() {
    assert_fails_with(
        &broken_cluster(|s| s.replace("clusterName: solana", "clusterName: [solana")),
        &["error: invalid YAML", "--> talconfig.yaml:"],
    );
    assert_fails_with(
        &broken_cluster(|s| s.replace("cpus: 64", "cpus: many")),
        &[
            "`nodes[3].hardware.cpus` must be a non-negative integer",
            "--> talconfig.yaml:57:13",
        ],
    );
    assert_fails_with(
        &broken_cluster(|s| s.replace("- name: solana-validator", "- name: solana-validatr")),
        &[
            "unknown profile `solana-validatr`",
            "did you mean `solana-validator`?",
        ],
    );
    assert_fails_with(
        &broken_cluster(|s| s.replace("ipAddress: 10.0.1.12", "ipAddress: 10.0.1.300")),
        &["`10.0.1.300` is not a valid IP address"],
    );
    assert_fails_with(
        &broken_cluster(|s| s.replace("- 10.244.0.0/16", "- 10.244.0.0/33")),
        &["`10.244.0.0/33` is not a CIDR", "--> talconfig.yaml:"],
    );
    assert_fails_with(
        &broken_cluster(|s| s.replace("@./patches/controlplane.yaml", "@./patches/missing.yaml")),
        &["patches/missing.yaml` does not exist"],
    );
    assert_fails_with(
        &broken_cluster(|s| {
            s.replace(
                "  patches:\n    - \"@./patches/controlplane.yaml\"",
                "  patches:\n    - |-\n      machine:\n        certSANs: not-a-list",
            )
        }),
        &["error: a patch does not apply", "--> talconfig.yaml:"],
    );
    assert_fails_with(
        &broken_cluster(|s| s.replace("memory: 512GiB", "memory: 128GiB")),
        &[
            "huge pages (97.7 GiB) + system reserved (16 GiB) + kube reserved (16 GiB) + eviction threshold (32 GiB)",
            "exceed its 128 GiB",
        ],
    );
    // A broken secrets bundle: every defect, with positions.
    let tmp = broken_cluster(|s| s);
    let bundle = std::fs::read_to_string(tmp.path().join("talsecret.yaml")).unwrap();
    let bad = bundle
        .replacen("bootstraptoken: ", "bootstraptoken: BAD", 1)
        .replacen("    os:\n", "    oss:\n", 1);
    std::fs::write(tmp.path().join("talsecret.yaml"), bad).unwrap();
    assert_fails_with(
        &tmp,
        &["invalid secrets bundle", "bootstraptoken", "--> ", "oss"],
    );
    // No bundle at all: a refusal that explains why.
    let tmp = broken_cluster(|s| s);
    std::fs::remove_file(tmp.path().join("talsecret.yaml")).unwrap();
    assert_fails_with(&tmp, &["no secrets bundle found", "hint:", "--new-secrets"]);
}

#[test]
fn an_existing_output_directory_is_untouched_on_error() {
    let tmp = broken_cluster(|s| s);
    let (code, _, err) = run(tmp.path(), &["genconfig", "-c", "talconfig.yaml"]);
    assert_eq!(code, 0, "{err}");
    let before = std::fs::read(tmp.path().join("clusterconfig/solana-cp-1.yaml")).unwrap();
    let f = tmp.path().join("talconfig.yaml");
    std::fs::write(
        &f,
        std::fs::read_to_string(&f)
            .unwrap()
            .replace("hostname: cp-1", "hostname: CP_1"),
    )
    .unwrap();
    let (code, _, _) = run(tmp.path(), &["genconfig", "-c", "talconfig.yaml"]);
    assert_eq!(code, 1);
    assert_eq!(
        std::fs::read(tmp.path().join("clusterconfig/solana-cp-1.yaml")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".kforge"))
            .count(),
        0
    );
}

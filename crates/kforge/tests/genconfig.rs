//! `kforge genconfig` end to end on the real binary: cluster directory in, config directory
//! out (compared with `tests/expected/genconfig/<example>/`; `KFORGE_BLESS=1` rewrites them),
//! every generated document checked against Talos's JSON schema for its version, output
//! deterministic, and talhelper's own example inputs producing what talhelper produces.

mod support;

use std::path::Path;

use support::*;

const EXAMPLES: &[&str] = &["solana", "infra", "local"];

/// Copies an example into a scratch directory with the fixed secrets bundle and runs genconfig.
fn generate(example: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples").join(example), tmp.path());
    std::fs::copy(
        repo().join("crates/kforge/tests/fixtures/talsecret.yaml"),
        tmp.path().join("talsecret.yaml"),
    )
    .unwrap();
    let out = kforge(tmp.path())
        .args(["genconfig", "-c", "talconfig.yaml"])
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert!(out.status.success(), "genconfig {example} failed:\n{err}");
    tmp
}

#[test]
fn examples_directory_in_directory_out() {
    for ex in EXAMPLES {
        let tmp = generate(ex);
        assert_dir_matches(
            &tmp.path().join("clusterconfig"),
            &repo()
                .join("crates/kforge/tests/expected/genconfig")
                .join(ex),
        );
    }
}

#[test]
fn output_is_deterministic_and_rerun_changes_nothing() {
    let tmp = generate("solana");
    let out = tmp.path().join("clusterconfig");
    let before: Vec<(String, Vec<u8>)> = read_all(&out);
    // Again, in place (the talosconfig certificate is kept) and in a fresh directory.
    let run = kforge(tmp.path())
        .args(["genconfig", "-c", "talconfig.yaml"])
        .output()
        .unwrap();
    assert!(run.status.success());
    assert_eq!(before, read_all(&out));
    let again = generate("solana");
    assert_eq!(before, read_all(&again.path().join("clusterconfig")));
    // Dry run on an up-to-date directory reports nothing to change and writes nothing.
    let dry = kforge(tmp.path())
        .args(["genconfig", "-c", "talconfig.yaml", "--dry-run"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&dry);
    assert!(dry.status.success(), "{stderr}");
    assert_eq!(
        stdout, "",
        "a dry run against identical files prints no diff"
    );
    assert!(stderr.contains("solana-cp-1.yaml: unchanged"), "{stderr}");
}

fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn files_and_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = generate("local");
    let dir = tmp.path().join("clusterconfig");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        assert_eq!(
            e.metadata().unwrap().permissions().mode() & 0o777,
            0o600,
            "{:?}",
            e.file_name()
        );
    }
}

/// Talos's schema for a `talosVersion`: 1.12 → v1.12.11, 1.13 → v1.13.9 (`config.schema.json`).
fn schema_for(minor: u64) -> jsonschema::Validator {
    let file = match minor {
        12 => "config.schema.v1.12.11.json",
        13 => "config.schema.json",
        _ => panic!("no schema for 1.{minor}"),
    };
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared().join("oracle/talos").join(file)).unwrap(),
    )
    .unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Every document of every file in `dir` validates (the only key removed is `persist`, which
/// the schemas omit).
fn assert_schema_valid(dir: &Path, minor: u64) {
    let validator = schema_for(minor);
    let mut checked = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, node) in kforge_yaml::parse_all(&text).unwrap().iter().enumerate() {
            let mut doc = node.to_value();
            if let Some(m) = doc.as_object_mut() {
                m.shift_remove("persist");
            }
            let errors: Vec<String> = validator
                .iter_errors(&doc)
                .map(|e| format!("{} at {}", e, e.instance_path))
                .collect();
            assert!(
                errors.is_empty(),
                "{name} document #{i} ({}) is not valid for Talos 1.{minor}:\n{}",
                doc.get("kind")
                    .and_then(|k| k.as_str())
                    .unwrap_or("v1alpha1"),
                errors.join("\n")
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn generated_documents_validate_against_talos_schemas() {
    for ex in EXAMPLES {
        let tmp = generate(ex);
        assert_schema_valid(&tmp.path().join("clusterconfig"), 12);
    }
    // The same clusters targeting Talos 1.13 (multi-doc KubeSpan/Environment contract).
    for ex in EXAMPLES {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("examples").join(ex), tmp.path());
        let cfg = tmp.path().join("talconfig.yaml");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("talosVersion: v1.12.0", "talosVersion: v1.13.9");
        std::fs::write(&cfg, text).unwrap();
        std::fs::copy(
            repo().join("crates/kforge/tests/fixtures/talsecret.yaml"),
            tmp.path().join("talsecret.yaml"),
        )
        .unwrap();
        let out = kforge(tmp.path())
            .args(["genconfig", "-c", "talconfig.yaml"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text_err(&out));
        assert_schema_valid(&tmp.path().join("clusterconfig"), 13);
    }
}

fn text_err(o: &std::process::Output) -> String {
    text(o).1
}

/// Runs genconfig on one of talhelper's example directories (copied, with the fixture
/// bundle) and returns the scratch dir.
fn talhelper_example(dir: &str, config: &str, extra: &[&str]) -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&shared().join("oracle/talhelper").join(dir), tmp.path());
    std::fs::copy(
        repo().join("crates/kforge/tests/fixtures/talsecret.yaml"),
        tmp.path().join("talsecret.yaml"),
    )
    .unwrap();
    let mut args = vec!["genconfig", "-c", config];
    args.extend_from_slice(extra);
    let out = kforge(tmp.path()).args(&args).output().unwrap();
    let err = text_err(&out);
    assert!(
        out.status.success(),
        "genconfig for talhelper {dir} failed:\n{err}"
    );
    (tmp, err)
}

fn docs(path: &Path) -> Vec<serde_json::Value> {
    kforge_yaml::parse_all(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .iter()
        .map(|n| n.to_value())
        .collect()
}

#[test]
fn talhelper_loader_testdata_matches_expected() {
    let (tmp, _) = talhelper_example(
        "02-loader-testdata",
        "talconfig.yaml",
        &["-e", "env1.yaml", "-e", "env2.yml"],
    );
    let out = tmp.path().join("clusterconfig");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".gitignore",
            "talosconfig",
            "test-cluster-hostname1.yaml",
            "test-cluster-hostname2.yaml"
        ]
    );
    let h1 = docs(&out.join("test-cluster-hostname1.yaml"));
    let h2 = docs(&out.join("test-cluster-hostname2.yaml"));
    assert_eq!(
        h1[0]["machine"]["install"]["image"],
        "factory.talos.dev/metal-installer/4a0d65c669d46663f377e7161e50cfd570c401f26fd9e7bda34a0216b6f1922b:v1.5.4"
    );
    assert_eq!(
        h2[0]["machine"]["install"]["image"],
        "factory.talos.dev/metal-installer/6905bc709e5947573a4ec2d11723b58882936d3d0e15c708f7d78f0c689684a5:v1.5.4"
    );
    // Talos 1.5: schematic kernel args also go to install.extraKernelArgs; legacy network fields.
    assert_eq!(
        h2[0]["machine"]["install"]["extraKernelArgs"],
        serde_json::json!(["net.ifnames=0"])
    );
    assert_eq!(
        h1[0]["machine"]["certSANs"],
        serde_json::json!(["example.org", "example.net", "example.com"])
    );
    assert_eq!(h1[0]["machine"]["network"]["hostname"], "hostname1");
    assert_eq!(h1[0]["machine"]["network"]["disableSearchDomain"], true);
    assert_eq!(h1[0]["machine"]["type"], "controlplane");
    assert_eq!(h2[0]["machine"]["type"], "worker");

    // Without env2.yml: an error naming the variable and its line.
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &shared().join("oracle/talhelper/02-loader-testdata"),
        tmp.path(),
    );
    let out = kforge(tmp.path())
        .args([
            "genconfig",
            "-c",
            "talconfig.yaml",
            "-e",
            "env1.yaml",
            "--new-secrets",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text_err(&out);
    assert!(
        err.contains("error: variable ${HOSTNAME2} is not set")
            && err.contains("--> talconfig.yaml:19:15"),
        "{err}"
    );
    assert!(
        !tmp.path().join("clusterconfig").exists() && !tmp.path().join("talsecret.yaml").exists()
    );
}

#[test]
fn talhelper_nodeconfig_unit_matches_expected() {
    let (tmp, err) = talhelper_example("03-nodeconfig-unit", "talconfig.cli-variant.yaml", &[]);
    assert!(err.contains("`machineDisks` is deprecated"), "{err}");
    assert!(
        err.contains("unknown key `extensions`"),
        "talhelper ignores it silently; kforge warns:\n{err}"
    );
    let out = tmp.path().join("clusterconfig");
    let n1 = docs(&out.join("test-node1.yaml"));
    let n2 = docs(&out.join("test-node2.yaml"));
    let m1 = &n1[0]["machine"];
    assert_eq!(m1["type"], "controlplane");
    assert_eq!(m1["network"]["hostname"], "node1");
    assert_eq!(m1["install"]["disk"], "/dev/sda");
    assert_eq!(m1["network"]["disableSearchDomain"], true);
    assert_eq!(
        m1["files"],
        serde_json::json!([{"content": "TS_AUTHKEY=123456", "permissions": 420, "path": "/var/etc/tailscale/auth.env", "op": "create"}])
    );
    assert_eq!(
        m1["network"]["interfaces"],
        serde_json::json!([{"interface": "eth0", "bond": {"deviceSelectors": [{"hardwareAddr": "00:50:56:*"}]}}])
    );
    assert_eq!(
        m1["kernel"]["modules"],
        serde_json::json!([{"name": "br_netfilter", "parameters": ["nf_conntrack_max=131072"]}])
    );
    assert_eq!(
        m1["install"]["image"],
        "factory.talos.dev/metal-installer/647a0a54bff662aa12051bc0312097f29d3562107d8e6a8e87ab85b643e25bc0:v1.5.4"
    );
    assert_eq!(
        m1["install"]["extraKernelArgs"],
        serde_json::json!(["hello", "hihi"])
    );
    let m2 = &n2[0]["machine"];
    let image = "factory.talos.dev/installer/e9c7ef96884d4fbc8c0a1304ccca4bb0287d766a8b4125997cb9dbe84262144e:v1.5.4";
    assert_eq!(m2["install"]["image"], image);
    assert_eq!(m2["install"]["diskSelector"]["size"], "4KB");
    assert_eq!(m2["install"]["diskSelector"]["model"], "WDC*");
    assert_eq!(
        m2["disks"][0]["device"],
        "/dev/disk/by-id/ata-CT500MX500SSD1_2149E5EC1D9D"
    );
    assert_eq!(
        m2["nodeLabels"],
        serde_json::json!({"rack": "rack1a", "zone": "us-east-1a", "isSecureBootEnabled": "false"})
    );
    assert_eq!(
        m2["nodeAnnotations"],
        serde_json::json!({"rack": "rack1a", "installerUrl": image})
    );
    assert_eq!(
        m2["network"]["nameservers"],
        serde_json::json!(["1.1.1.1", "8.8.8.8"])
    );
}

#[test]
fn talhelper_multi_ip_matches_expected() {
    let (tmp, _) = talhelper_example("04-docs-multi-ip", "talconfig.yaml", &[]);
    let out = tmp.path().join("clusterconfig");
    let tc = kforge_pki::Talosconfig::from_yaml(
        &std::fs::read_to_string(out.join("talosconfig")).unwrap(),
    )
    .unwrap();
    let ctx = &tc.contexts["my-cluster"];
    assert_eq!(
        ctx.endpoints,
        ["192.168.10.11", "192.168.10.12", "192.168.10.13"]
    );
    assert_eq!(
        ctx.nodes,
        [
            "192.168.10.11",
            "192.168.10.12",
            "192.168.10.13",
            "192.168.10.14",
            "192.168.10.15",
            "192.168.10.16"
        ]
    );
    let ctrl = docs(&out.join("my-cluster-controller.yaml"));
    // ignoreHostname on Talos 1.11 (legacy layout): no hostname set.
    assert!(
        ctrl[0]["machine"]
            .get("network")
            .is_none_or(|n| n.get("hostname").is_none())
    );
    assert_eq!(
        ctrl[0]["machine"]["install"]["image"],
        "factory.talos.dev/metal-installer/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:v1.11.5"
    );
    assert!(out.join("my-cluster-worker.yaml").exists());

    // The same on Talos 1.12: a HostnameConfig with `auto: stable`.
    let cfg = tmp.path().join("talconfig.yaml");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("v1.11.5", "v1.12.0")
            .replace("v1.34.2", "v1.35.0"),
    )
    .unwrap();
    let run = kforge(tmp.path())
        .args(["genconfig", "-c", "talconfig.yaml"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text_err(&run));
    let ctrl = docs(&out.join("my-cluster-controller.yaml"));
    assert!(ctrl.iter().any(|d| d["kind"] == "HostnameConfig"
        && d["auto"] == "stable"
        && d.get("hostname").is_none()));
}

#[test]
fn talhelper_repo_example_with_sops_matches_expected() {
    let dir = shared().join("oracle/talhelper/01-repo-example");
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&dir, tmp.path());
    std::fs::copy(
        repo().join("crates/kforge/tests/fixtures/talsecret.yaml"),
        tmp.path().join("talsecret.yaml"),
    )
    .unwrap();
    let out = kforge(tmp.path())
        .env("SOPS_AGE_KEY_FILE", tmp.path().join("key.txt"))
        .args(["genconfig", "-c", "talconfig.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text_err(&out));
    let cc = tmp.path().join("clusterconfig");
    assert_eq!(
        std::fs::read_to_string(cc.join(".gitignore")).unwrap(),
        std::fs::read_to_string(dir.join("expected-clusterconfig.gitignore"))
            .unwrap()
            .trim_end()
            .to_string()
            + "\n"
    );
    // Re-running must not duplicate .gitignore lines.
    assert!(
        kforge(tmp.path())
            .env("SOPS_AGE_KEY_FILE", tmp.path().join("key.txt"))
            .args(["genconfig", "-c", "talconfig.yaml"])
            .output()
            .unwrap()
            .status
            .success()
    );
    assert_eq!(
        std::fs::read_to_string(cc.join(".gitignore"))
            .unwrap()
            .lines()
            .count(),
        3
    );

    let tc = kforge_pki::Talosconfig::from_yaml(
        &std::fs::read_to_string(cc.join("talosconfig")).unwrap(),
    )
    .unwrap();
    assert_eq!(tc.context, "home-cluster");
    assert_eq!(tc.contexts["home-cluster"].endpoints, ["192.168.200.11"]);
    assert_eq!(
        tc.contexts["home-cluster"].nodes,
        ["192.168.200.11", "192.168.200.13"]
    );

    let m = docs(&cc.join("home-cluster-kmaster1.yaml"));
    let kinds: Vec<String> = m
        .iter()
        .map(|d| {
            format!(
                "{}:{}",
                d["kind"].as_str().unwrap_or("v1alpha1"),
                d["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "v1alpha1:",
            "ResolverConfig:",
            "HostnameConfig:",
            "NetworkDefaultActionConfig:",
            "NetworkRuleConfig:kubelet-ingress",
            "ExtensionServiceConfig:nut-client",
            "VolumeConfig:EPHEMERAL",
            "UserVolumeConfig:ceph-data",
            "UserVolumeConfig:sata",
            "LinkAliasConfig:ethSel0",
            "LinkAliasConfig:bond0-m0",
            "BondConfig:bond0",
            "LinkConfig:ethSel0",
            "WireguardConfig:wg0",
            "UserVolumeConfig:sata2",
            "UserVolumeConfig:sata3",
        ]
    );
    let image = "factory.talos.dev/metal-installer-secureboot/67a999813ff49ba00dc632aa48170dc866bda646b7ee4f944e2fb7dc50b522bd:v1.12.0";
    let mm = &m[0]["machine"];
    assert_eq!(mm["install"]["image"], image);
    assert!(mm["install"].get("extraKernelArgs").is_none());
    assert_eq!(
        m[1]["nameservers"],
        serde_json::json!([{"address": "1.1.1.1"}, {"address": "8.8.8.8"}])
    );
    assert_eq!(m[1]["searchDomains"]["disableDefault"], true);
    assert_eq!(m[2]["hostname"], "kmaster1");
    assert_eq!(m[2]["auto"], "off");
    assert_eq!(m[3]["ingress"], "block");
    let bond = &m[11];
    assert_eq!(bond["bondMode"], "802.3ad");
    assert_eq!(bond["links"], serde_json::json!(["bond0-m0"]));
    assert_eq!(
        bond["addresses"],
        serde_json::json!([{"address": "192.168.200.11/24"}])
    );
    assert_eq!(bond["mtu"], 1500);
    assert_eq!(
        bond["routes"],
        serde_json::json!([{"gateway": "192.168.200.1"}])
    );
    assert_eq!(m[12]["mtu"], 9000);
    assert_eq!(mm["env"]["GRPC_GO_LOG_SEVERITY_LEVEL"], "error");
    assert_eq!(
        mm["kubelet"]["extraArgs"]["feature-gates"],
        "GracefulNodeShutdown=true,MixedProtocolLBService=true"
    );
    // Values from the SOPS-encrypted talenv.yaml: domain and the patch-file label.
    assert_eq!(mm["nodeLabels"]["domainname"], "cluster.local");
    assert_eq!(mm["nodeLabels"]["rack"], "rack1a");
    assert_eq!(mm["nodeLabels"]["zone"], "us-east-1a");
    assert_eq!(mm["nodeLabels"]["isSecureBootEnabled"], "true");
    assert_eq!(
        mm["nodeAnnotations"],
        serde_json::json!({"rack": "rack1a", "installerUrl": image})
    );
    assert_eq!(mm["nodeTaints"]["mytaint"], "mytaints:NoSchedule");
    assert_eq!(
        mm["kernel"]["modules"],
        serde_json::json!([{"name": "br_netfilter", "parameters": ["nf_conntrack_max=131072"]}])
    );
    assert_eq!(mm["files"][0]["content"], "TS_AUTHKEY=123456\n");
    assert_eq!(mm["files"][1]["path"], "/var/etc/tailscale2/auth.env");
    assert_eq!(mm["files"][1]["content"], "TS_AUTHKEY=hehehe\n");
    assert_eq!(mm["certSANs"], serde_json::json!(["192.168.200.10"]));
    let c = &m[0]["cluster"];
    assert_eq!(c["clusterName"], "home-cluster");
    assert_eq!(c["controlPlane"]["endpoint"], "https://192.168.200.10:6443");
    assert_eq!(c["network"]["dnsDomain"], "cluster.local");
    assert_eq!(c["network"]["cni"]["name"], "custom");
    assert_eq!(c["allowSchedulingOnControlPlanes"], true);
    assert_eq!(
        c["apiServer"]["certSANs"],
        serde_json::json!(["home-cluster.local"])
    );

    let w = docs(&cc.join("home-cluster-kworker1.yaml"));
    let wm = &w[0]["machine"];
    assert_eq!(
        wm["install"]["image"],
        "factory.talos.dev/metal-installer/2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8:v1.12.0"
    );
    assert_eq!(wm["install"]["disk"], "/dev/sdb");
    assert_eq!(wm["nodeLabels"]["domainname"], "cluster.local");
    assert_eq!(
        wm["kubelet"]["extraArgs"]["feature-gates"],
        "GracefulNodeShutdown=false,MixedProtocolLBService=false"
    );
    let rule = w.iter().find(|d| d["kind"] == "NetworkRuleConfig").unwrap();
    assert_eq!(rule["name"], "apid-ingress");
    assert_eq!(
        rule["portSelector"],
        serde_json::json!({"ports": [50000], "protocol": "tcp"})
    );
    assert_eq!(
        rule["ingress"],
        serde_json::json!([{"subnet": "10.96.0.0/12"}])
    );
    // kforge moves the node patch's legacy interface into a LinkConfig document (talhelper keeps
    // the deprecated field); it must not stay in the v1alpha1 document.
    assert!(wm.get("network").is_none());
    let eth1 = w
        .iter()
        .find(|d| d["kind"] == "LinkConfig" && d["name"] == "eth1")
        .unwrap();
    assert_eq!(
        eth1["addresses"],
        serde_json::json!([{"address": "192.168.200.13/24"}])
    );
}

#[test]
fn sops_files_that_cannot_be_decrypted_are_errors_not_raw_text() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &shared().join("oracle/talhelper/01-repo-example"),
        tmp.path(),
    );
    std::fs::copy(
        repo().join("crates/kforge/tests/fixtures/talsecret.yaml"),
        tmp.path().join("talsecret.yaml"),
    )
    .unwrap();
    let out = kforge(tmp.path())
        .env("HOME", tmp.path())
        .env("XDG_CONFIG_HOME", tmp.path())
        .args(["genconfig", "-c", "talconfig.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text_err(&out);
    assert!(
        err.contains("cannot read env file talenv.yaml") || err.contains("talenv.yaml"),
        "{err}"
    );
    assert!(
        err.contains("age10k9mjx3wcfzd7dwx3uqs68v7dzlwvwpzp8jyjpysjhy9mdwzhghqy2vhvn"),
        "the error names the recipients:\n{err}"
    );
    assert!(!tmp.path().join("clusterconfig").exists());
}

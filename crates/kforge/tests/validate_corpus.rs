//! `kforge validate` on a corpus of invalid, suspicious and hostile cluster files
//! (`tests/validate_corpus/<NN-name>/`), each compared byte for byte with its expected
//! output: exit code and the full stderr (`expected.txt`), and for some cases the
//! `--format json` report (`expected-json.txt`). `KFORGE_BLESS=1` rewrites them.
//!
//! A case directory holds `talconfig.yaml` and whatever it references (`patches/`,
//! `talenv.yaml`), plus optional control files:
//! - `args`: extra command-line arguments, one per line;
//! - `env`: `KEY=value` lines set in kforge's (otherwise empty) environment;
//! - `generate`: the name of a generator that writes `talconfig.yaml` at test time, for
//!   inputs too large or too hostile to commit (a 100 MB scalar, alias bombs, …);
//! - `json`: also run with `--format json`;
//! - `must-report`: lines that must each appear in stderr, so that re-blessing a
//!   multi-problem file cannot silently lose one of its problems.
//!
//! Every run has a deadline: a hang fails the test instead of stalling it, and the output
//! may never show a panic.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// How long one `kforge validate` may take (debug build, shared CI machine). Hostile inputs
/// finish in well under a second on a release build; this only catches hangs.
const DEADLINE: Duration = Duration::from_secs(10);

fn corpus() -> PathBuf {
    repo().join("crates/kforge/tests/validate_corpus")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs kforge with a clean environment and a deadline.
fn run(dir: &Path, args: &[String], env: &[(String, String)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kforge"));
    cmd.current_dir(dir)
        .env_clear()
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start kforge");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kforge {} in {} did not finish within {DEADLINE:?}",
                args.join(" "),
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = String::from_utf8_lossy(&out.join().expect("stdout reader")).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().expect("stderr reader")).into_owned();
    let code = status.code().unwrap_or_else(|| {
        panic!(
            "kforge was killed by a signal ({status}) in {}:\n{stderr}",
            dir.display()
        )
    });
    Run {
        code,
        stdout,
        stderr,
    }
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .map(str::to_string)
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the cluster file of a generated case.
fn generate(name: &str, dir: &Path) {
    let file = dir.join("talconfig.yaml");
    const HEAD: &str = "clusterName: lab\ntalosVersion: v1.12.0\nkubernetesVersion: v1.35.0\nendpoint: https://10.0.1.10:6443\n";
    let text: Vec<u8> = match name {
        // Not UTF-8: bytes of every value, from a fixed-seed generator.
        "binary-junk" => {
            let mut x: u32 = 0x2545_f491;
            let mut bytes = b"clusterName: lab\n".to_vec();
            bytes.extend((0..4096).map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            }));
            bytes
        }
        // 100 MiB in one scalar: refused by size, never read into memory whole.
        "huge-scalar-100mb" => {
            let mut t = String::from("clusterName: ");
            t.push_str(&"a".repeat(100 << 20));
            t.push('\n');
            t.into_bytes()
        }
        // A whole cluster as one 8 MB line of JSON, with findings at its start and its end.
        "huge-line-8mb" => format!(
            "{{\"clusterName\": \"lab\", \"talosVersion\": \"v1.12.0\", \"kubernetesVersion\": \"v1.35.0\", \"endpoint\": \"https://10.0.1.11:6443\", \"description\": \"{}\", \"nodes\": [{{\"hostname\": \"cp-1\", \"ipAdress\": \"10.0.1.11\", \"controlPlane\": true, \"installDisk\": \"/dev/sda\"}}]}}\n",
            "x".repeat(8 << 20)
        )
        .into_bytes(),
        "deep-nesting" => format!(
            "{HEAD}nodes: {}{}\n",
            "[".repeat(10_000),
            "]".repeat(10_000)
        )
        .into_bytes(),
        // Few aliases, each a copy of a 1 MiB scalar.
        "alias-bomb-bytes" => {
            let mut t = format!(
                "clusterName: &name {}\nnodes:\n",
                "x".repeat(1 << 20)
            );
            for _ in 0..100 {
                t.push_str("  - hostname: *name\n");
            }
            t.into_bytes()
        }
        // 200,000 labels, the last one a duplicate: the duplicate check must stay linear.
        "wide-mapping" => {
            let mut t = format!(
                "{HEAD}nodes:\n  - hostname: cp-1\n    ipAddress: 10.0.1.11\n    controlPlane: true\n    installDisk: /dev/sda\n    nodeLabels:\n"
            );
            for i in 0..200_000 {
                t.push_str(&format!("      l{i}: v\n"));
            }
            t.push_str("      l1234: again\n");
            t.into_bytes()
        }
        "env-brace-bomb" => format!("clusterName: {}\n", "${".repeat(200_000)).into_bytes(),
        "env-nested-defaults" => format!(
            "clusterName: {}lab{}\n",
            "${NAME:-".repeat(5_000),
            "}".repeat(5_000)
        )
        .into_bytes(),
        // 20,000 unknown keys on one line.
        "many-unknown-keys" => {
            let keys: Vec<String> = (0..20_000).map(|i| format!("k{i}: 1")).collect();
            format!("{{clusterName: lab, {}}}\n", keys.join(", ")).into_bytes()
        }
        other => panic!("unknown generator `{other}`"),
    };
    std::fs::write(file, text).expect("write generated cluster file");
}

/// Compares `actual` with the expected file, or rewrites it under `KFORGE_BLESS=1`;
/// returns a description of the difference.
fn check(expected: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("KFORGE_BLESS").is_some() {
        std::fs::write(expected, actual).expect("bless");
        return None;
    }
    let want = match std::fs::read_to_string(expected) {
        Ok(w) => w,
        Err(_) => {
            return Some(format!(
                "{} is missing; run with KFORGE_BLESS=1 to create it",
                expected.display()
            ));
        }
    };
    (want != actual).then(|| {
        format!(
            "{} differs:\n{}",
            expected.display(),
            similar::TextDiff::from_lines(&want, actual)
                .unified_diff()
                .header("expected", "actual")
        )
    })
}

fn snapshot(r: &Run, with_stdout: bool) -> String {
    let mut s = format!("exit: {}\n--- stderr\n{}", r.code, r.stderr);
    if with_stdout || !r.stdout.is_empty() {
        s.push_str("--- stdout\n");
        s.push_str(&r.stdout);
    }
    s
}

#[test]
fn validate_corpus() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 60, "the corpus has {} cases", cases.len());

    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = tempfile::tempdir().expect("tempdir");
        copy_dir(case, tmp.path());
        let generated = lines_of(&case.join("generate"));
        if let Some(g) = generated.first() {
            generate(g, tmp.path());
        }
        let env: Vec<(String, String)> = lines_of(&case.join("env"))
            .iter()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let extra = lines_of(&case.join("args"));
        let mut args: Vec<String> = vec!["validate".into()];
        if !extra.iter().any(|a| a == "-c") {
            args.extend(["-c".into(), "talconfig.yaml".into()]);
        }
        args.extend(extra.iter().cloned());

        let r = run(tmp.path(), &args, &env);
        let problems = |what: &str| format!("{name}: {what}");
        if r.stderr.contains("panicked at") || r.stderr.contains("stack overflow") {
            failures.push(problems(&format!("kforge panicked:\n{}", r.stderr)));
            continue;
        }
        if !matches!(r.code, 0..=2) {
            failures.push(problems(&format!("exit code {}", r.code)));
        }
        // Hostile inputs answer with a diagnostic and exit code 1.
        if !generated.is_empty() && (r.code != 1 || !r.stderr.contains("error: ")) {
            failures.push(problems(&format!(
                "a generated hostile input must fail with a diagnostic, got exit {}:\n{}",
                r.code, r.stderr
            )));
        }
        for must in lines_of(&case.join("must-report")) {
            if !r.stderr.contains(&must) {
                failures.push(problems(&format!(
                    "stderr does not report `{must}`:\n{}",
                    r.stderr
                )));
            }
        }
        if let Some(d) = check(&case.join("expected.txt"), &snapshot(&r, false)) {
            failures.push(problems(&d));
        }

        if case.join("json").exists() {
            let mut json_args = args.clone();
            json_args.extend(["--format".into(), "json".into()]);
            let j = run(tmp.path(), &json_args, &env);
            if j.code != r.code {
                failures.push(problems(&format!(
                    "--format json exits {} but the human format {}",
                    j.code, r.code
                )));
            }
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&j.stdout) {
                failures.push(problems(&format!(
                    "--format json is not JSON ({e}):\n{}",
                    j.stdout
                )));
            }
            if let Some(d) = check(&case.join("expected-json.txt"), &snapshot(&j, true)) {
                failures.push(problems(&d));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

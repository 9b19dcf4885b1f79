//! Speed of the operations genconfig runs on every invocation (load, write, client cert)
//! and of bundle generation (dominated by the RSA-4096 service-account key).

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use kforge_pki::{
    DEFAULT_TALOS_ROLES, SecretsBundle, TALOS_CLIENT_CERT_DEFAULT_TTL, client_cert_still_valid,
    issue_talos_client_cert,
};

const FIXTURE: &str = include_str!("../tests/fixtures/talosctl-secrets.yaml");

fn bundle(c: &mut Criterion) {
    let b = SecretsBundle::from_yaml(FIXTURE).expect("fixture loads");
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    c.bench_function("from_yaml (talosctl fixture, full validation)", |bench| {
        bench.iter(|| SecretsBundle::from_yaml(black_box(FIXTURE)).expect("loads"))
    });
    c.bench_function("to_yaml", |bench| bench.iter(|| black_box(&b).to_yaml()));
    c.bench_function("issue_talos_client_cert", |bench| {
        bench.iter(|| {
            issue_talos_client_cert(
                black_box(&b),
                DEFAULT_TALOS_ROLES,
                now,
                TALOS_CLIENT_CERT_DEFAULT_TTL,
            )
            .expect("issues")
        })
    });
    let cert = issue_talos_client_cert(&b, DEFAULT_TALOS_ROLES, now, TALOS_CLIENT_CERT_DEFAULT_TTL)
        .expect("issues");
    c.bench_function("client_cert_still_valid", |bench| {
        bench.iter(|| {
            client_cert_still_valid(
                &b,
                &cert.crt_pem,
                &cert.key_pem,
                now,
                Duration::from_secs(86400),
            )
        })
    });
    let mut slow = c.benchmark_group("generate");
    slow.sample_size(10);
    slow.bench_function("SecretsBundle::generate (incl. RSA-4096)", |bench| {
        bench.iter(|| SecretsBundle::generate(now).expect("generates"))
    });
    slow.finish();
}

criterion_group!(benches, bundle);
criterion_main!(benches);

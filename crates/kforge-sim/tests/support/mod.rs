//! Shared by the simulator's tests and the `up_critical_path` bench.

use kforge_pki::SecretsBundle;

/// The fixed secrets bundle every simulated test cluster uses.
pub fn secrets() -> SecretsBundle {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/talsecret.yaml"
    ))
    .expect("fixture secrets");
    SecretsBundle::from_yaml(&text).unwrap_or_else(|e| panic!("fixture secrets: {e}"))
}

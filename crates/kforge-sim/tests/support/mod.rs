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

/// `expect` that shows the error and its causes (Display), not just a Debug dump.
pub trait OrFail<T> {
    fn or_fail(self, what: &str) -> T;
}

impl<T, E: std::error::Error> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => {
                let mut text = format!("{what}: {e}");
                let mut source = e.source();
                while let Some(cause) = source {
                    text.push_str(&format!("\nCaused by: {cause}"));
                    source = cause.source();
                }
                panic!("{text}");
            }
        }
    }
}

//! YAML parse → emit → parse: whatever kforge parses, the emitter writes as text that parses
//! back to the same value (with both indents kforge uses).

#![no_main]

use kforge_yaml::EmitOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(docs) = kforge_yaml::parse_all(text) else {
        return;
    };
    let values: Vec<serde_json::Value> = docs.iter().map(kforge_yaml::Node::to_value).collect();
    for indent in [2, 4] {
        for v in &values {
            let emitted = kforge_yaml::to_string_with(v, EmitOptions { indent });
            let back = match kforge_yaml::parse(&emitted) {
                Ok(n) => n.to_value(),
                Err(e) => panic!("emitted YAML does not parse ({e}):\n{emitted}\nfrom {v:?}"),
            };
            assert_eq!(
                &back, v,
                "round trip changed the value; emitted:\n{emitted}"
            );
        }
    }
});

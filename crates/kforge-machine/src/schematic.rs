//! Image-factory schematics and installer image references, computed offline.
//!
//! A schematic's ID is the lowercase hex SHA-256 of the schematic serialised as YAML with a
//! 4-space indent, keys in the image factory's struct order (`overlay` then
//! `customization`), empty values omitted except `customization`, which is always present
//! (so the empty schematic is `customization: {}`). This reproduces every golden ID in
//! talhelper's tests, so kforge never needs to POST to the factory.

use kforge_spec::model::Schematic;
use kforge_yaml::{EmitOptions, Mapping, Value};
use sha2::{Digest, Sha256};

/// The schematic in the image factory's canonical form.
pub fn canonical(s: &Schematic) -> Value {
    let mut root = Mapping::new();
    if let Some(o) = &s.overlay {
        let mut m = Mapping::new();
        put_str(&mut m, "image", o.image.as_deref());
        put_str(&mut m, "name", o.name.as_deref());
        if let Some(opts) = &o.options
            && !is_empty(opts)
        {
            m.insert("options".into(), opts.clone());
        }
        if !m.is_empty() {
            root.insert("overlay".into(), Value::Object(m));
        }
    }
    let mut c = Mapping::new();
    if let Some(cu) = &s.customization {
        put_list(&mut c, "extraKernelArgs", cu.extra_kernel_args.as_deref());
        let meta: Vec<Value> = cu
            .meta
            .iter()
            .flatten()
            .map(|m| {
                let mut e = Mapping::new();
                e.insert("key".into(), Value::from(m.key.unwrap_or(0)));
                e.insert(
                    "value".into(),
                    Value::from(m.value.clone().unwrap_or_default()),
                );
                Value::Object(e)
            })
            .collect();
        if !meta.is_empty() {
            c.insert("meta".into(), Value::Array(meta));
        }
        let exts = cu
            .system_extensions
            .as_ref()
            .and_then(|e| e.official_extensions.as_deref());
        if exts.is_some_and(|e| !e.is_empty()) {
            let mut se = Mapping::new();
            put_list(&mut se, "officialExtensions", exts);
            c.insert("systemExtensions".into(), Value::Object(se));
        }
        if cu
            .secureboot
            .as_ref()
            .and_then(|s| s.include_well_known_certificates)
            == Some(true)
        {
            let mut sb = Mapping::new();
            sb.insert("includeWellKnownCertificates".into(), Value::Bool(true));
            c.insert("secureboot".into(), Value::Object(sb));
        }
        put_str(&mut c, "bootloader", cu.bootloader.as_deref());
    }
    root.insert("customization".into(), Value::Object(c));
    Value::Object(root)
}

/// The schematic as the image factory serialises it.
pub fn canonical_yaml(s: &Schematic) -> String {
    kforge_yaml::to_string_with(&canonical(s), EmitOptions { indent: 4 })
}

/// The schematic ID.
pub fn id(s: &Schematic) -> String {
    hex::encode(Sha256::digest(canonical_yaml(s).as_bytes()))
}

fn put_str(m: &mut Mapping, k: &str, v: Option<&str>) {
    if let Some(v) = v.filter(|v| !v.is_empty()) {
        m.insert(k.into(), Value::from(v));
    }
}

fn put_list(m: &mut Mapping, k: &str, v: Option<&[String]>) {
    if let Some(v) = v.filter(|v| !v.is_empty()) {
        m.insert(
            k.into(),
            Value::Array(v.iter().cloned().map(Value::from).collect()),
        );
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Where installer images come from.
#[derive(Clone, Debug)]
pub struct Factory {
    pub registry_url: String,
}

impl Default for Factory {
    fn default() -> Self {
        Factory {
            registry_url: "factory.talos.dev".into(),
        }
    }
}

/// The installer image for a schematic with talhelper's default template
/// `{{.RegistryURL}}/{{.Mode}}-installer{{if .Secureboot}}-secureboot{{end}}/{{.ID}}:{{.Version}}`.
pub fn installer_url(
    factory: &Factory,
    mode: &str,
    secureboot: bool,
    id: &str,
    version: &str,
) -> String {
    format!(
        "{}/{}-installer{}/{}:{}",
        factory.registry_url,
        mode,
        if secureboot { "-secureboot" } else { "" },
        id,
        version
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kforge_spec::model::{Customization, Overlay, SystemExtensions};

    fn s(args: &[&str], exts: &[&str], overlay: Option<(&str, &str)>) -> Schematic {
        Schematic {
            overlay: overlay.map(|(name, image)| Overlay {
                image: Some(image.into()),
                name: Some(name.into()),
                options: None,
            }),
            customization: Some(Customization {
                extra_kernel_args: (!args.is_empty())
                    .then(|| args.iter().map(|a| a.to_string()).collect()),
                system_extensions: (!exts.is_empty()).then(|| SystemExtensions {
                    official_extensions: Some(exts.iter().map(|a| a.to_string()).collect()),
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn talhelper_golden_ids() {
        assert_eq!(
            id(&Schematic::default()),
            "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
        );
        assert_eq!(
            id(&s(&[], &["siderolabs/drbd", "siderolabs/zfs"], None)),
            "98442b5bb4e8d050f30978ce3e6ec22e7bf534d57cafcd51313235128057e612"
        );
        assert_eq!(
            id(&s(&["hihi", "hehe"], &[], None)),
            "ff5083b14ccb03821ea738d712ac08a82b44d2693013622059edaae286665239"
        );
        assert_eq!(
            id(&s(
                &["net.ifnames=0"],
                &["siderolabs/intel-ucode", "siderolabs/tailscale"],
                Some(("rock64", "siderolabs/sbc-rockchip"))
            )),
            "67a999813ff49ba00dc632aa48170dc866bda646b7ee4f944e2fb7dc50b522bd"
        );
        assert_eq!(
            id(&s(
                &["hello", "hihi"],
                &["siderolabs/amd-ucode", "siderolabs/nvidia-fabricmanager"],
                None
            )),
            "647a0a54bff662aa12051bc0312097f29d3562107d8e6a8e87ab85b643e25bc0"
        );
    }

    #[test]
    fn installer_urls() {
        assert_eq!(
            installer_url(&Factory::default(), "metal", true, "abc", "v1.12.0"),
            "factory.talos.dev/metal-installer-secureboot/abc:v1.12.0"
        );
    }
}

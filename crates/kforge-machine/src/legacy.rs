//! Moves legacy v1alpha1 fields into the documents that replace them, so a config never
//! carries a deprecated field beside its document (Talos rejects several such pairs, e.g.
//! "static hostname is already set in v1alpha1 config"). Legacy fields usually arrive through
//! patches written for older Talos versions; translating them keeps those patches working.
//!
//! From 1.12: `machine.network.{hostname, interfaces, nameservers, searchDomains,
//! disableSearchDomain, extraHostEntries}`, `machine.time` and `machine.features.stableHostname`.
//! From 1.13 also `machine.network.kubespan` (KubeSpanConfig) and `machine.env`
//! (EnvironmentConfig); `machine.network` then disappears entirely.

use kforge_spec::model::Device;
use kforge_yaml::{Mapping, Value};
use serde_json::json;

use crate::contract::Gates;
use crate::network;
use crate::patch::DocumentId;

fn typed(kind: &str) -> Mapping {
    let mut m = Mapping::new();
    m.insert("apiVersion".into(), Value::from("v1alpha1"));
    m.insert("kind".into(), Value::from(kind));
    m
}

/// The first document of `kind`, created at the end when missing.
fn doc_of_kind<'a>(docs: &'a mut Vec<Value>, kind: &str) -> &'a mut Mapping {
    let pos = match docs
        .iter()
        .position(|d| d.get("kind").and_then(Value::as_str) == Some(kind))
    {
        Some(p) => p,
        None => {
            docs.push(Value::Object(typed(kind)));
            docs.len() - 1
        }
    };
    docs[pos].as_object_mut().expect("documents are mappings")
}

/// Rewrites legacy fields of the v1alpha1 document into documents. Returns one note per
/// translation made, for the user.
pub fn move_to_documents(docs: &mut Vec<Value>, gates: Gates) -> Vec<String> {
    let mut notes = Vec::new();
    if !gates.multidoc_network() {
        return notes;
    }
    let Some(v1_index) = docs.iter().position(|d| DocumentId::of(d).is_v1alpha1()) else {
        return notes;
    };
    let Some(machine) = docs[v1_index]
        .get_mut("machine")
        .and_then(Value::as_object_mut)
    else {
        return notes;
    };

    let mut network = match machine.get_mut("network").and_then(Value::as_object_mut) {
        Some(n) => std::mem::take(n),
        None => Mapping::new(),
    };
    let time = machine.shift_remove("time");
    let env = if gates.kubespan_and_env_documents() {
        machine.shift_remove("env")
    } else {
        None
    };
    let stable = machine
        .get_mut("features")
        .and_then(Value::as_object_mut)
        .and_then(|f| f.shift_remove("stableHostname"));
    if stable.is_some() {
        notes.push("dropped `machine.features.stableHostname`; the HostnameConfig document decides the hostname".into());
    }

    let hostname = network.shift_remove("hostname");
    let interfaces = network.shift_remove("interfaces");
    let nameservers = network.shift_remove("nameservers");
    let searches = network.shift_remove("searchDomains");
    let disable_search = network.shift_remove("disableSearchDomain");
    let hosts = network.shift_remove("extraHostEntries");
    let kubespan = if gates.kubespan_and_env_documents() {
        network.shift_remove("kubespan")
    } else {
        None
    };

    // Whatever remains (kubespan before 1.13) stays in place.
    if let Some(machine) = docs[v1_index]
        .get_mut("machine")
        .and_then(Value::as_object_mut)
    {
        if network.is_empty() {
            machine.shift_remove("network");
        } else {
            machine.insert("network".into(), Value::Object(network));
        }
    }

    if let Some(Value::String(h)) = hostname.filter(|h| h.as_str().is_some_and(|s| !s.is_empty())) {
        let d = doc_of_kind(docs, "HostnameConfig");
        d.insert("auto".into(), Value::from("off"));
        d.insert("hostname".into(), Value::from(h.as_str()));
        notes.push(format!(
            "moved `machine.network.hostname: {h}` into the HostnameConfig document"
        ));
    }
    if nameservers.is_some() || searches.is_some() || disable_search.is_some() {
        let d = doc_of_kind(docs, "ResolverConfig");
        if let Some(Value::Array(ns)) = nameservers {
            let list: Vec<Value> = ns
                .iter()
                .filter_map(Value::as_str)
                .map(|a| json!({"address": a}))
                .collect();
            d.insert("nameservers".into(), Value::Array(list));
        }
        let sd = d.entry("searchDomains").or_insert_with(|| json!({}));
        if let (Some(Value::Array(domains)), Some(sd)) = (searches, sd.as_object_mut()) {
            sd.insert("domains".into(), Value::Array(domains));
        }
        if let (Some(Value::Bool(b)), Some(sd)) = (disable_search, sd.as_object_mut()) {
            sd.insert("disableDefault".into(), Value::Bool(b));
        }
        notes.push("moved legacy resolver settings (`machine.network.nameservers`/`searchDomains`) into the ResolverConfig document".into());
    }
    if let Some(ifs) = interfaces {
        match serde_json::from_value::<Vec<Device>>(ifs) {
            Ok(devices) => {
                let mut added = 0;
                for d in network::links(&devices) {
                    let id = DocumentId::of(&d);
                    if !docs.iter().any(|x| DocumentId::of(x) == id) {
                        docs.push(d);
                        added += 1;
                    }
                }
                notes.push(format!("translated legacy `machine.network.interfaces` into {added} network document(s)"));
            }
            Err(e) => notes.push(format!(
                "could not translate legacy `machine.network.interfaces` ({e}); it was dropped"
            )),
        }
    }
    if let Some(Value::Array(entries)) = hosts {
        for e in entries {
            let Some(ip) = e.get("ip").and_then(Value::as_str) else {
                continue;
            };
            let mut d = typed("StaticHostConfig");
            d.insert("name".into(), Value::from(ip));
            d.insert(
                "hostnames".into(),
                e.get("aliases").cloned().unwrap_or_else(|| json!([])),
            );
            docs.push(Value::Object(d));
        }
        notes.push(
            "moved `machine.network.extraHostEntries` into StaticHostConfig documents".into(),
        );
    }
    if let Some(Value::Object(t)) = time {
        let d = doc_of_kind(docs, "TimeSyncConfig");
        d.insert(
            "enabled".into(),
            Value::Bool(!t.get("disabled").and_then(Value::as_bool).unwrap_or(false)),
        );
        if let Some(bt) = t.get("bootTimeout") {
            d.insert("bootTimeout".into(), bt.clone());
        }
        if let Some(servers) = t.get("servers") {
            d.insert("ntp".into(), json!({"servers": servers}));
        }
        notes.push("moved `machine.time` into the TimeSyncConfig document".into());
    }
    if let Some(Value::Object(ks)) = kubespan {
        let d = doc_of_kind(docs, "KubeSpanConfig");
        for (k, v) in ks {
            d.insert(k, v);
        }
        notes.push("moved `machine.network.kubespan` into the KubeSpanConfig document".into());
    }
    if let Some(Value::Object(vars)) = env {
        let d = doc_of_kind(docs, "EnvironmentConfig");
        let target = d.entry("variables").or_insert_with(|| json!({}));
        if let Some(t) = target.as_object_mut() {
            for (k, v) in vars {
                t.insert(k, v);
            }
        }
        notes.push("moved `machine.env` into the EnvironmentConfig document".into());
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use kforge_spec::versions::{Version, contract_for};

    fn gates(v: &str) -> Gates {
        Gates::new(*contract_for(&Version::parse(v).unwrap()).unwrap())
    }

    #[test]
    fn hostname_and_interfaces_from_patches() {
        let mut docs = vec![
            json!({"version": "v1alpha1", "machine": {"network": {"hostname": "n1", "interfaces": [{"interface": "eth1", "addresses": ["192.168.200.13/24"], "routes": [{"network": "0.0.0.0/0", "gateway": "192.168.200.1"}]}]}, "env": {"A": "b"}}}),
            json!({"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "stable"}),
        ];
        let notes = move_to_documents(&mut docs, gates("v1.12.0"));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(docs[0]["machine"].get("network").is_none());
        assert_eq!(docs[0]["machine"]["env"]["A"], "b");
        assert_eq!(
            docs[1],
            json!({"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "off", "hostname": "n1"})
        );
        assert_eq!(docs[2]["kind"], "LinkConfig");
        assert_eq!(docs[2]["name"], "eth1");

        let mut docs = vec![
            json!({"version": "v1alpha1", "machine": {"env": {"A": "b"}, "network": {"kubespan": {"enabled": true}}}}),
        ];
        move_to_documents(&mut docs, gates("v1.13.0"));
        assert!(docs[0]["machine"].get("env").is_none());
        assert!(docs[0]["machine"].get("network").is_none());
        assert_eq!(docs[1]["kind"], "KubeSpanConfig");
        assert_eq!(
            docs[2],
            json!({"apiVersion": "v1alpha1", "kind": "EnvironmentConfig", "variables": {"A": "b"}})
        );
    }

    #[test]
    fn legacy_contracts_are_left_alone() {
        let mut docs =
            vec![json!({"version": "v1alpha1", "machine": {"network": {"hostname": "n1"}}})];
        assert!(move_to_documents(&mut docs, gates("v1.11.0")).is_empty());
        assert_eq!(docs[0]["machine"]["network"]["hostname"], "n1");
    }
}

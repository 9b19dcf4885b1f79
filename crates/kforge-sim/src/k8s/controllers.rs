//! What the simulated kube-controller-manager does, against its node's etcd:
//!
//! - node lifecycle: a node whose kubelet has not posted status for the grace period
//!   gets every condition `Unknown` ("Kubelet stopped posting node status.") and the
//!   `node.kubernetes.io/unreachable` taints; they go again once it is Ready;
//! - kubelet certificates: requests for the `kube-apiserver-client-kubelet` signer made
//!   with a bootstrap token (or by the node itself) for `system:node:<name>` are
//!   approved and signed with the Kubernetes CA; others are marked Failed.
//!
//! Every control plane runs them (no leader election); writes are compare-and-swap, so
//! concurrent passes cannot clobber each other.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use kforge_pki::SecretsBundle;
use serde_json::{Value, json};

use crate::k8s::certs;
use crate::k8s::meta::{self, ApiStatus};
use crate::k8s::registry::{self, ListOptions, Patch, Target, Writer};
use crate::k8s::resources::{self, ResourceType};
use crate::k8s::store::Store;

const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

fn writer() -> Writer<'static> {
    Writer {
        manager: "kube-controller-manager",
        user: "system:kube-controller-manager",
        groups: &[],
    }
}

fn items(list: &Value) -> Vec<Value> {
    list.get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn name_of(o: &Value) -> String {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn type_of(group: &str, plural: &str) -> Result<ResourceType, ApiStatus> {
    let version = "v1";
    resources::built_in_type(group, version, plural)
        .ok_or_else(|| ApiStatus::internal(format!("the {plural} type is missing")))
}

/// Whether a Node's `Ready` condition is `True`.
pub fn is_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// What the node lifecycle controller decides for one node.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeVerdict {
    Fine,
    /// Mark every condition Unknown (and taint).
    Unknown {
        conditions: Vec<Value>,
    },
    /// Ready again: drop the unreachable taints.
    Reachable {
        taints: Vec<Value>,
    },
}

/// Looks at one Node.
pub fn judge_node(node: &Value, grace: Duration, now: SystemTime) -> NodeVerdict {
    let conditions: Vec<Value> = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let taints: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(ready) = conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
    else {
        return NodeVerdict::Fine;
    };
    let status = ready
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let stale = ready
        .get("lastHeartbeatTime")
        .and_then(Value::as_str)
        .and_then(meta::parse_timestamp)
        .is_some_and(|t| now.duration_since(t).unwrap_or_default() > grace);
    if status != "Unknown" && stale {
        let at = meta::timestamp(now);
        let conditions = conditions
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c["status"] = json!("Unknown");
                c["reason"] = json!("NodeStatusUnknown");
                c["message"] = json!("Kubelet stopped posting node status.");
                c["lastTransitionTime"] = json!(at);
                c
            })
            .collect();
        return NodeVerdict::Unknown { conditions };
    }
    let tainted = taints
        .iter()
        .any(|t| t.get("key").and_then(Value::as_str) == Some(UNREACHABLE_TAINT));
    if status == "True" && tainted {
        let taints = taints
            .into_iter()
            .filter(|t| t.get("key").and_then(Value::as_str) != Some(UNREACHABLE_TAINT))
            .collect();
        return NodeVerdict::Reachable { taints };
    }
    NodeVerdict::Fine
}

/// One pass of the node lifecycle controller.
pub async fn node_lifecycle_pass(store: &Store, grace: Duration) -> Result<(), ApiStatus> {
    let nodes_type = type_of("", "nodes")?;
    let list = registry::list(store, &nodes_type, None, &ListOptions::default()).await?;
    let w = writer();
    for node in items(&list) {
        let name = name_of(&node);
        let target = |status| Target {
            rtype: &nodes_type,
            namespace: None,
            name: &name,
            status,
        };
        match judge_node(&node, grace, SystemTime::now()) {
            NodeVerdict::Fine => {}
            NodeVerdict::Unknown { conditions } => {
                let patch = Patch::Merge(json!({"status": {"conditions": conditions}}));
                registry::patch(store, target(true), &patch, &w).await?;
                let mut taints: Vec<Value> = node
                    .pointer("/spec/taints")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let at = meta::now();
                for effect in ["NoSchedule", "NoExecute"] {
                    let present = taints.iter().any(|t| {
                        t.get("key").and_then(Value::as_str) == Some(UNREACHABLE_TAINT)
                            && t.get("effect").and_then(Value::as_str) == Some(effect)
                    });
                    if !present {
                        let mut t = json!({"key": UNREACHABLE_TAINT, "effect": effect});
                        if effect == "NoExecute" {
                            t["timeAdded"] = json!(at);
                        }
                        taints.push(t);
                    }
                }
                let patch = Patch::Merge(json!({"spec": {"taints": taints}}));
                registry::patch(store, target(false), &patch, &w).await?;
            }
            NodeVerdict::Reachable { taints } => {
                let patch = Patch::Merge(json!({"spec": {"taints": taints}}));
                registry::patch(store, target(false), &patch, &w).await?;
            }
        }
    }
    Ok(())
}

/// Whether a CSR has a condition of `kind`.
fn has_condition(csr: &Value, kind: &str) -> bool {
    csr.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        })
}

fn condition(kind: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": kind, "status": "True", "reason": reason, "message": message,
        "lastUpdateTime": now, "lastTransitionTime": now,
    })
}

/// The status to give a pending kubelet CSR: approved and signed, or failed. None for
/// requests this controller does not handle (other signers, already decided).
pub fn decide_csr(csr: &Value, bundle: &SecretsBundle, now: SystemTime) -> Option<Value> {
    let text = |p: &str| csr.pointer(p).and_then(Value::as_str).unwrap_or_default();
    if text("/spec/signerName") != certs::KUBELET_CLIENT_SIGNER
        || csr.pointer("/status/certificate").is_some()
        || has_condition(csr, "Denied")
        || has_condition(csr, "Failed")
    {
        return None;
    }
    let at = meta::timestamp(now);
    let failed = |message: String| {
        Some(json!({"conditions": [condition("Failed", "SignerValidationFailure", &message, &at)]}))
    };
    let pem = match base64::engine::general_purpose::STANDARD
        .decode(text("/spec/request"))
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    {
        Some(p) => p,
        None => return failed("spec.request is not base64 PEM".into()),
    };
    let node = match certs::kubelet_request_node(&pem) {
        Ok(n) => n,
        Err(e) => return failed(e),
    };
    let groups: Vec<&str> = csr
        .pointer("/spec/groups")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let requester_ok = groups.contains(&"system:bootstrappers")
        || text("/spec/username") == format!("system:node:{node}");
    if !requester_ok {
        // Not auto-approved: left pending for an administrator, as Kubernetes does.
        return None;
    }
    match certs::sign_kubelet_request(bundle, &pem, now) {
        Ok(crt) => Some(json!({
            "conditions": [condition(
                "Approved",
                "AutoApproved",
                "Auto approving kubelet client certificate after SubjectAccessReview.",
                &at,
            )],
            "certificate": base64::engine::general_purpose::STANDARD.encode(crt.as_bytes()),
        })),
        Err(e) => failed(e),
    }
}

/// One pass of the CSR approver and signer.
pub async fn csr_pass(store: &Store, bundle: &SecretsBundle) -> Result<(), ApiStatus> {
    let csr_type = type_of("certificates.k8s.io", "certificatesigningrequests")?;
    let list = registry::list(store, &csr_type, None, &ListOptions::default()).await?;
    let w = writer();
    for csr in items(&list) {
        let Some(status) = decide_csr(&csr, bundle, SystemTime::now()) else {
            continue;
        };
        let name = name_of(&csr);
        let target = Target {
            rtype: &csr_type,
            namespace: None,
            name: &name,
            status: true,
        };
        registry::patch(store, target, &Patch::Merge(json!({"status": status})), &w).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_nodes_become_unknown_and_recover() {
        let now = SystemTime::now();
        let at = |ago: u64| meta::timestamp(now - Duration::from_secs(ago));
        let node = |status: &str, ago: u64, taints: Value| {
            json!({"metadata": {"name": "w"}, "spec": {"taints": taints},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": at(ago)},
                {"type": "Ready", "status": status, "lastHeartbeatTime": at(ago)}
            ]}})
        };
        let grace = Duration::from_secs(5);
        assert_eq!(
            judge_node(&node("True", 1, json!([])), grace, now),
            NodeVerdict::Fine
        );
        match judge_node(&node("True", 30, json!([])), grace, now) {
            NodeVerdict::Unknown { conditions } => {
                assert!(conditions.iter().all(|c| c["status"] == "Unknown"));
                assert_eq!(
                    conditions[1]["message"],
                    "Kubelet stopped posting node status."
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            judge_node(&node("Unknown", 30, json!([])), grace, now),
            NodeVerdict::Fine
        );
        let tainted = json!([{"key": UNREACHABLE_TAINT, "effect": "NoSchedule"}, {"key": "x", "effect": "NoSchedule"}]);
        assert_eq!(
            judge_node(&node("True", 1, tainted), grace, now),
            NodeVerdict::Reachable {
                taints: vec![json!({"key": "x", "effect": "NoSchedule"})]
            }
        );
    }

    #[test]
    fn kubelet_requests_are_approved_and_signed() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/talsecret.yaml"
        ))
        .unwrap();
        let bundle = SecretsBundle::from_yaml(&text).unwrap_or_else(|_| panic!("bundle"));
        let (csr_pem, _) = certs::kubelet_csr("w-1").unwrap();
        let csr = |groups: Value, user: &str| {
            json!({"spec": {
                "request": base64::engine::general_purpose::STANDARD.encode(csr_pem.as_bytes()),
                "signerName": certs::KUBELET_CLIENT_SIGNER,
                "groups": groups, "username": user,
            }})
        };
        let status = decide_csr(
            &csr(json!(["system:bootstrappers"]), "system:bootstrap:abc"),
            &bundle,
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(status["conditions"][0]["type"], "Approved");
        assert!(
            status["certificate"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        );
        // Someone else asking for w-1's certificate is left pending.
        assert!(
            decide_csr(
                &csr(json!(["system:authenticated"]), "mallory"),
                &bundle,
                SystemTime::now()
            )
            .is_none()
        );
        let mut done = csr(json!(["system:bootstrappers"]), "x");
        done["status"] = json!({"certificate": "abc"});
        assert!(decide_csr(&done, &bundle, SystemTime::now()).is_none());
    }
}

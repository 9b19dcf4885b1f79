//! Kubernetes objects in the real etcd: JSON values under `/registry/…` keys, written with
//! transactions on the key's revision (create only when absent, update only when
//! unchanged), read with `metadata.resourceVersion` = the key's `mod_revision`, listed
//! at one revision (with `limit`/`continue`), and watched through etcd's watch.

use std::time::Duration;

use serde_json::Value;

use crate::SimError;
use crate::etcd::{Compare, EtcdClient, EtcdWatch, KeyValue, RequestOp, TxnRequest, prefix_end};
use crate::proto::etcdserverpb as pb;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the object already exists")]
    AlreadyExists,
    #[error("the object has been modified")]
    Conflict,
    #[error("the object does not exist")]
    NotFound,
    #[error("the stored value of `{key}` is not a JSON object")]
    Corrupt { key: String },
    #[error(transparent)]
    Etcd(#[from] SimError),
}

/// One stored object.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// With `metadata.resourceVersion` set.
    pub object: Value,
    pub mod_revision: i64,
}

/// A page of a list.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub items: Vec<Stored>,
    /// The revision the list was read at.
    pub revision: i64,
    /// The key to continue after, when more items remain.
    pub continue_after: Option<String>,
    pub remaining: i64,
}

/// The object store of one API server: its node's etcd.
#[derive(Clone)]
pub struct Store {
    etcd: EtcdClient,
}

/// Sets `metadata.resourceVersion`.
pub fn with_resource_version(mut object: Value, revision: i64) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    object
}

/// The value as stored: without `metadata.resourceVersion` (the key's revision is).
fn encode(object: &Value) -> Vec<u8> {
    let mut o = object.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&o).unwrap_or_default()
}

/// Decodes a stored key-value.
pub fn decode(kv: &KeyValue) -> Result<Stored, StoreError> {
    let object: Value = serde_json::from_slice(&kv.value)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| StoreError::Corrupt {
            key: String::from_utf8_lossy(&kv.key).into_owned(),
        })?;
    Ok(Stored {
        object: with_resource_version(object, kv.mod_revision),
        mod_revision: kv.mod_revision,
    })
}

fn compare_mod(key: &str, revision: i64) -> Compare {
    Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Mod as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(pb::compare::TargetUnion::ModRevision(revision)),
        range_end: Vec::new(),
    }
}

fn put_op(key: &str, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            lease: 0,
            prev_kv: false,
        })),
    }
}

impl Store {
    pub fn new(etcd: EtcdClient) -> Self {
        Store { etcd }
    }

    /// The same store with another per-call deadline.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Store {
            etcd: self.etcd.clone().with_timeout(timeout),
        }
    }

    pub fn etcd(&self) -> &EtcdClient {
        &self.etcd
    }

    pub async fn get(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        let resp = self.etcd.range(key.as_bytes(), &[], 0, 0).await?;
        resp.kvs.first().map(decode).transpose()
    }

    /// Objects under `prefix` (after `start_after`, at `revision` if not 0), at most
    /// `limit` (0 = all).
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        revision: i64,
        limit: i64,
    ) -> Result<Page, StoreError> {
        let start = match start_after {
            // The smallest key after `k`.
            Some(k) => {
                let mut s = k.as_bytes().to_vec();
                s.push(0);
                s
            }
            None => prefix.as_bytes().to_vec(),
        };
        let end = prefix_end(prefix.as_bytes());
        let resp = self.etcd.range(&start, &end, revision, limit).await?;
        let revision = resp.header.as_ref().map(|h| h.revision).unwrap_or(revision);
        let items = resp.kvs.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        let continue_after = if resp.more {
            resp.kvs
                .last()
                .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        } else {
            None
        };
        let remaining = (resp.count - items.len() as i64).max(0);
        Ok(Page {
            items,
            revision,
            continue_after,
            remaining,
        })
    }

    /// Creates `key` unless it exists.
    pub async fn create(&self, key: &str, object: &Value) -> Result<Stored, StoreError> {
        let txn = TxnRequest {
            compare: vec![Compare {
                result: pb::compare::CompareResult::Equal as i32,
                target: pb::compare::CompareTarget::Create as i32,
                key: key.as_bytes().to_vec(),
                target_union: Some(pb::compare::TargetUnion::CreateRevision(0)),
                range_end: Vec::new(),
            }],
            success: vec![put_op(key, encode(object))],
            failure: Vec::new(),
        };
        let resp = self.etcd.txn(txn).await?;
        if !resp.succeeded {
            return Err(StoreError::AlreadyExists);
        }
        let revision = resp.header.map(|h| h.revision).unwrap_or(0);
        Ok(Stored {
            object: with_resource_version(object.clone(), revision),
            mod_revision: revision,
        })
    }

    /// Replaces `key` if it is still at `expected` (its mod revision).
    pub async fn update(
        &self,
        key: &str,
        object: &Value,
        expected: i64,
    ) -> Result<Stored, StoreError> {
        let txn = TxnRequest {
            compare: vec![compare_mod(key, expected)],
            success: vec![put_op(key, encode(object))],
            failure: vec![RequestOp {
                request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                    key: key.as_bytes().to_vec(),
                    count_only: true,
                    ..Default::default()
                })),
            }],
        };
        let resp = self.etcd.txn(txn).await?;
        if !resp.succeeded {
            return Err(if failure_count(&resp) == 0 {
                StoreError::NotFound
            } else {
                StoreError::Conflict
            });
        }
        let revision = resp.header.map(|h| h.revision).unwrap_or(0);
        Ok(Stored {
            object: with_resource_version(object.clone(), revision),
            mod_revision: revision,
        })
    }

    /// Deletes `key` if it is still at `expected`; returns the revision of the deletion.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<i64, StoreError> {
        let txn = TxnRequest {
            compare: vec![compare_mod(key, expected)],
            success: vec![RequestOp {
                request: Some(pb::request_op::Request::RequestDeleteRange(
                    pb::DeleteRangeRequest {
                        key: key.as_bytes().to_vec(),
                        range_end: Vec::new(),
                        prev_kv: false,
                    },
                )),
            }],
            failure: vec![RequestOp {
                request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                    key: key.as_bytes().to_vec(),
                    count_only: true,
                    ..Default::default()
                })),
            }],
        };
        let resp = self.etcd.txn(txn).await?;
        if !resp.succeeded {
            return Err(if failure_count(&resp) == 0 {
                StoreError::NotFound
            } else {
                StoreError::Conflict
            });
        }
        Ok(resp.header.map(|h| h.revision).unwrap_or(0))
    }

    /// Watches every key under `prefix` from `start_revision` (0 = from now).
    pub async fn watch(&self, prefix: &str, start_revision: i64) -> Result<EtcdWatch, StoreError> {
        Ok(self
            .etcd
            .watch(
                prefix.as_bytes(),
                &prefix_end(prefix.as_bytes()),
                start_revision,
            )
            .await?)
    }
}

/// The count of the failure branch's range (0: the key does not exist).
fn failure_count(resp: &pb::TxnResponse) -> i64 {
    resp.responses
        .first()
        .and_then(|r| match &r.response {
            Some(pb::response_op::Response::ResponseRange(range)) => Some(range.count),
            _ => None,
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resource_version_is_not_stored() {
        let o = json!({"metadata": {"name": "x", "resourceVersion": "5"}, "data": {}});
        let bytes = encode(&o);
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(back["metadata"].get("resourceVersion").is_none());
        let kv = KeyValue {
            key: b"/registry/core/configmaps/default/x".to_vec(),
            value: bytes,
            mod_revision: 9,
            ..Default::default()
        };
        assert_eq!(
            decode(&kv).unwrap().object["metadata"]["resourceVersion"],
            "9"
        );
        let bad = KeyValue {
            value: b"[1]".to_vec(),
            ..Default::default()
        };
        assert!(matches!(decode(&bad), Err(StoreError::Corrupt { .. })));
    }
}

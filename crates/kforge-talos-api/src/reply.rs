//! Per-node results. apid answers a fan-out call with one message per node and reports a
//! node's failure inside that message (`metadata.error`, `metadata.status`) rather than as
//! a gRPC error, so every message is checked and turned into a [`NodeReply`].

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::proto::common::Metadata;

/// The outcome for one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeReply<T> {
    /// The node as apid names it (`metadata.hostname`: the address the client targeted in
    /// fan-out mode), else the single targeted node, else the endpoint host.
    pub node: String,
    pub result: Result<T, NodeError>,
}

impl<T> NodeReply<T> {
    pub fn ok(node: impl Into<String>, value: T) -> Self {
        NodeReply {
            node: node.into(),
            result: Ok(value),
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> NodeReply<U> {
        NodeReply {
            node: self.node,
            result: self.result.map(f),
        }
    }
}

/// A node-level failure reported by apid (or the gRPC status of a single-node call).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NodeError {
    /// From `metadata.status.code` when apid filled it.
    pub code: Option<tonic::Code>,
    pub message: String,
}

impl Serialize for NodeError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("code", &self.code.map(code_name))?;
        map.serialize_entry("message", &self.message)?;
        map.end()
    }
}

/// JSON shape: `{"node": …, "reply": …}` or `{"node": …, "error": {"code", "message"}}`.
impl<T: Serialize> Serialize for NodeReply<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("node", &self.node)?;
        match &self.result {
            Ok(v) => map.serialize_entry("reply", v)?,
            Err(e) => map.serialize_entry("error", e)?,
        }
        map.end()
    }
}

/// gRPC code names as grpc-go prints them (`FailedPrecondition`, …).
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

pub(crate) fn code_label(code: &tonic::Code) -> &'static str {
    code_name(*code)
}

/// The node-level error carried by `metadata`, if any.
pub(crate) fn metadata_error(metadata: Option<&Metadata>) -> Option<NodeError> {
    let md = metadata?;
    let status = md.status.as_ref().filter(|s| s.code != 0);
    if md.error.is_empty() && status.is_none() {
        return None;
    }
    let message = if !md.error.is_empty() {
        md.error.clone()
    } else {
        status.map(|s| s.message.clone()).unwrap_or_default()
    };
    Some(NodeError {
        code: status.map(|s| tonic::Code::from_i32(s.code)),
        message,
    })
}

/// Names nodes in replies: `metadata.hostname` when set, else `fallback`.
pub(crate) fn node_name(metadata: Option<&Metadata>, fallback: &str) -> String {
    match metadata {
        Some(md) if !md.hostname.is_empty() => md.hostname.clone(),
        _ => fallback.to_string(),
    }
}

/// Per-node replies from the messages of a unary response.
pub(crate) fn collect<M, T>(
    messages: Vec<M>,
    fallback_node: &str,
    metadata: impl Fn(&M) -> Option<&Metadata>,
    convert: impl Fn(M) -> T,
) -> Vec<NodeReply<T>> {
    messages
        .into_iter()
        .map(|m| {
            let md = metadata(&m);
            let node = node_name(md, fallback_node);
            match metadata_error(md) {
                Some(err) => NodeReply {
                    node,
                    result: Err(err),
                },
                None => NodeReply::ok(node, convert(m)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::google::rpc::Status;

    fn md(hostname: &str, error: &str, code: i32) -> Metadata {
        Metadata {
            hostname: hostname.into(),
            error: error.into(),
            status: (code != 0).then(|| Status {
                code,
                message: format!("status: {error}"),
                details: vec![],
            }),
        }
    }

    #[test]
    fn each_message_error_becomes_a_node_error() {
        let msgs = vec![
            md("10.0.0.1", "", 0),
            md("10.0.0.2", "etcd is not running", 9),
            md("", "", 0),
        ];
        let replies = collect(msgs, "fallback", |m| Some(m), |m| m.hostname);
        assert_eq!(replies.len(), 3);
        assert_eq!(
            replies[0],
            NodeReply::ok("10.0.0.1", "10.0.0.1".to_string())
        );
        assert_eq!(replies[1].node, "10.0.0.2");
        let err = replies[1].result.as_ref().unwrap_err();
        assert_eq!(err.code, Some(tonic::Code::FailedPrecondition));
        assert_eq!(err.message, "etcd is not running");
        assert_eq!(replies[2].node, "fallback");
    }

    #[test]
    fn status_without_error_text_still_fails() {
        let e = metadata_error(Some(&Metadata {
            hostname: String::new(),
            error: String::new(),
            status: Some(Status {
                code: 14,
                message: "unavailable".into(),
                details: vec![],
            }),
        }))
        .unwrap();
        assert_eq!(e.code, Some(tonic::Code::Unavailable));
        assert_eq!(e.message, "unavailable");
        assert!(metadata_error(None).is_none());
    }

    #[test]
    fn json_shape() {
        let ok = NodeReply::ok("a", 1);
        let err: NodeReply<i32> = NodeReply {
            node: "b".into(),
            result: Err(NodeError {
                code: Some(tonic::Code::AlreadyExists),
                message: "x".into(),
            }),
        };
        assert_eq!(
            serde_json::to_string(&[ok, err]).unwrap(),
            r#"[{"node":"a","reply":1},{"node":"b","error":{"code":"AlreadyExists","message":"x"}}]"#
        );
    }
}

//! The control plane's shared VIP (`Layer2VIPConfig`), held by one control-plane node at
//! a time as Talos does it: the node campaigns through its own etcd member — a lease of
//! `ttl` and the key `/kforge-sim/vip/<vip>` created in a transaction only if it does not
//! exist — and keeps the lease alive. It stops serving the VIP as soon as it cannot renew
//! (its etcd is stopped, frozen, or has lost quorum): at the latest when the lease it
//! last renewed would expire, which is never after etcd expires it, so another node can
//! only take over once the previous holder has let go.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::etcd::{Compare, EtcdClient, RequestOp, TxnRequest};
use crate::proto::etcdserverpb as pb;

/// Let go this much before the lease would expire (clock granularity, scheduling).
const SAFETY_MARGIN: Duration = Duration::from_millis(500);
/// etcd's smallest lease with the election timing the simulator runs etcd with.
pub const MIN_TTL: Duration = Duration::from_secs(2);

/// The key a VIP's holder writes.
pub fn election_key(vip: IpAddr) -> String {
    format!("/kforge-sim/vip/{vip}")
}

/// What the campaign needs from its node.
pub trait VipHost: Send + Sync + 'static {
    /// A client of the node's own etcd member, while it runs.
    fn local_etcd(&self) -> Option<EtcdClient>;
    /// Starts or stops serving the VIP.
    fn set_holding(&self, holding: bool, reason: &str);
    /// Whether the boot the campaign belongs to is still current.
    fn alive(&self) -> bool;
}

struct Campaign {
    host: Arc<dyn VipHost>,
    key: String,
    holder: String,
    ttl_seconds: i64,
    period: Duration,
    lease: Option<i64>,
    /// Until when the VIP may be served (set while holding).
    until: Option<Instant>,
}

impl Campaign {
    fn release(&mut self, reason: &str) {
        if self.until.take().is_some() {
            self.host.set_holding(false, reason);
        }
    }

    fn holding(&self) -> bool {
        self.until.is_some()
    }

    /// Renews or obtains the lease; returns its TTL when it is alive.
    async fn renew(&mut self, client: &EtcdClient) -> Option<i64> {
        if let Some(id) = self.lease {
            match client.lease_keep_alive(id).await {
                Ok(ttl) if ttl > 0 => return Some(ttl),
                Ok(_) => {
                    self.lease = None;
                    self.release("the VIP lease expired");
                }
                Err(_) => return None,
            }
        }
        match client.lease_grant(self.ttl_seconds).await {
            Ok((id, ttl)) => {
                self.lease = Some(id);
                Some(ttl)
            }
            Err(_) => None,
        }
    }

    /// Creates the key if nobody holds it; whether this node holds it now.
    async fn acquire(&mut self, client: &EtcdClient, lease: i64) -> Option<bool> {
        let key = self.key.as_bytes().to_vec();
        let txn = TxnRequest {
            compare: vec![Compare {
                result: pb::compare::CompareResult::Equal as i32,
                target: pb::compare::CompareTarget::Create as i32,
                key: key.clone(),
                target_union: Some(pb::compare::TargetUnion::CreateRevision(0)),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: key.clone(),
                    value: self.holder.as_bytes().to_vec(),
                    lease,
                    prev_kv: false,
                })),
            }],
            failure: vec![RequestOp {
                request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                    key,
                    ..Default::default()
                })),
            }],
        };
        let resp = client.txn(txn).await.ok()?;
        if resp.succeeded {
            return Some(true);
        }
        // Held already: by this node's current lease (a previous round), or by another.
        let current = resp.responses.first().and_then(|r| match &r.response {
            Some(pb::response_op::Response::ResponseRange(range)) => range.kvs.first().cloned(),
            _ => None,
        });
        Some(current.is_some_and(|kv| kv.lease == lease && kv.value == self.holder.as_bytes()))
    }

    /// Whether the key still names this node with its lease.
    async fn still_mine(&self, client: &EtcdClient, lease: i64) -> Option<bool> {
        let resp = client.range(self.key.as_bytes(), &[], 0, 0).await.ok()?;
        Some(
            resp.kvs
                .first()
                .is_some_and(|kv| kv.lease == lease && kv.value == self.holder.as_bytes()),
        )
    }

    async fn round(&mut self) {
        let Some(client) = self.host.local_etcd() else {
            self.lease = None;
            self.release("etcd is not running on this node");
            return;
        };
        let client = client.with_timeout(self.period.max(Duration::from_millis(300)));
        let sent = Instant::now();
        let Some(ttl) = self.renew(&client).await else {
            return;
        };
        let Some(lease) = self.lease else {
            return;
        };
        let valid_until =
            sent + Duration::from_secs(ttl.max(0) as u64).saturating_sub(SAFETY_MARGIN);
        if self.holding() {
            match self.still_mine(&client, lease).await {
                Some(true) => self.until = Some(valid_until),
                Some(false) => self.release("another node holds the VIP"),
                None => {}
            }
        } else if self.acquire(&client, lease).await == Some(true) {
            self.until = Some(valid_until);
            self.host.set_holding(true, "elected through etcd");
        }
    }
}

/// Campaigns for `vip` as `holder` until the host's boot ends.
pub async fn run(host: Arc<dyn VipHost>, vip: IpAddr, holder: String, ttl: Duration) {
    let ttl = ttl.max(MIN_TTL);
    let mut c = Campaign {
        host,
        key: election_key(vip),
        holder,
        ttl_seconds: ttl.as_secs_f64().ceil() as i64,
        period: ttl / 3,
        lease: None,
        until: None,
    };
    loop {
        if !c.host.alive() {
            return;
        }
        let next = Instant::now() + c.period;
        let until = c.until;
        let expired = tokio::select! {
            () = c.round() => false,
            // A round that hangs (a frozen etcd) must not keep the VIP past its lease.
            () = sleep_until_opt(until) => true,
        };
        if expired {
            c.release("the VIP lease could not be renewed in time");
        }
        if let Some(until) = c.until
            && Instant::now() >= until
        {
            c.release("the VIP lease could not be renewed in time");
        }
        let wake = match c.until {
            Some(until) => next.min(until),
            None => next,
        };
        tokio::time::sleep_until(wake).await;
    }
}

async fn sleep_until_opt(until: Option<Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            election_key("127.0.9.10".parse().unwrap()),
            "/kforge-sim/vip/127.0.9.10"
        );
    }
}

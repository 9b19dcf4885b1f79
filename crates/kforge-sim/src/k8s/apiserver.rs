//! The simulated kube-apiserver's HTTP side: authentication (client certificates from
//! the Kubernetes CA; the bootstrap token as a bearer token), authorization (a small,
//! fixed version of RBAC and the Node authorizer), the non-resource endpoints
//! (`/version`, `/healthz`, `/livez`, `/readyz`), discovery, and the REST paths of every
//! resource, handed to [`crate::k8s::registry`]. Watches stream JSON lines over chunked
//! HTTP/1.1 as Kubernetes sends them; `Accept: …;as=Table` gets a `meta.k8s.io/v1` Table.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use kforge_secret::SecretString;
use kforge_talos_api::server_tls::TlsPeer;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::k8s::certs;
use crate::k8s::meta::{self, ApiStatus, FieldSelector, LabelSelector};
use crate::k8s::registry::{self, ListOptions, Patch, Target, WatchOptions, Writer};
use crate::k8s::resources::{self, ResourceType};
use crate::k8s::store::Store;
use crate::node::Logger;
use crate::transport::{HttpBody, HttpHandler};

/// Requests larger than this are refused (the API server's default limit).
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Deadline of the etcd check behind `/readyz`.
const ETCD_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// A watch without `timeoutSeconds` ends after this long.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// What an API server is told.
#[derive(Clone)]
pub struct ApiServerConfig {
    /// `host:port` clients reach this server at (discovery's `serverAddressByClientCIDRs`).
    pub advertise: String,
    /// `v1.35.0`.
    pub kubernetes_version: String,
    /// `<id>.<secret>`: accepted as a bearer token (`system:bootstrap:<id>`).
    pub bootstrap_token: Option<SecretString>,
}

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }

    /// `w-1` for `system:node:w-1` in `system:nodes`.
    fn node_name(&self) -> Option<&str> {
        if self.in_group("system:nodes") {
            self.name.strip_prefix("system:node:")
        } else {
            None
        }
    }
}

struct ApiState {
    config: ApiServerConfig,
    store: Store,
    log: Logger,
    started: SystemTime,
}

/// One API server (shared by its listeners on the node address and the VIP).
#[derive(Clone)]
pub struct ApiServer {
    state: Arc<ApiState>,
}

/// The result of the health checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub checks: Vec<(&'static str, Result<(), String>)>,
}

impl Readiness {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|(_, r)| r.is_ok())
    }

    /// Why it is not ready (the failing checks with their reasons).
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The `[+]ping ok` listing.
    fn render(&self, what: &str) -> String {
        let mut out = String::new();
        for (name, r) in &self.checks {
            match r {
                Ok(()) => out.push_str(&format!("[+]{name} ok\n")),
                Err(_) => out.push_str(&format!("[-]{name} failed: reason withheld\n")),
            }
        }
        out.push_str(&format!(
            "{what} check {}\n",
            if self.ok() { "passed" } else { "failed" }
        ));
        out
    }
}

fn full(bytes: impl Into<Bytes>) -> HttpBody {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

fn response(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response<HttpBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache, private"),
    );
    r
}

fn json_response(code: u16, value: &Value) -> Response<HttpBody> {
    response(
        code,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

fn status_response(s: &ApiStatus) -> Response<HttpBody> {
    json_response(s.code, &s.to_json())
}

fn not_found_path() -> ApiStatus {
    ApiStatus::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
    .with_details(json!({}))
}

/// Percent-decoding (`+` is a space in query strings).
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_params(uri: &http::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// A request for a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ResourcePath {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    Version,
    Health(&'static str),
    ApiVersions,
    GroupList,
    Group(String),
    ResourceList(String, String),
    Resource(ResourcePath),
    Unknown,
}

fn route(path: &str) -> Route {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let resource = |group: &str, version: &str, rest: &[&str]| -> Route {
        let owned = |x: &&str| x.to_string();
        let (namespace, rest) = match rest {
            ["namespaces", ns, r, more @ ..] if !(more.is_empty() && *r == "status") => {
                (Some(ns.to_string()), [&[*r][..], more].concat())
            }
            other => (None, other.to_vec()),
        };
        match rest.as_slice() {
            [plural] | [plural, _] | [plural, _, _] => Route::Resource(ResourcePath {
                group: group.into(),
                version: version.into(),
                namespace,
                plural: plural.to_string(),
                name: rest.get(1).map(owned),
                subresource: rest.get(2).map(owned),
            }),
            _ => Route::Unknown,
        }
    };
    match s.as_slice() {
        ["version"] => Route::Version,
        ["healthz"] => Route::Health("healthz"),
        ["livez"] => Route::Health("livez"),
        ["readyz"] => Route::Health("readyz"),
        ["api"] => Route::ApiVersions,
        ["api", v] => Route::ResourceList(String::new(), v.to_string()),
        ["api", v, rest @ ..] => resource("", v, rest),
        ["apis"] => Route::GroupList,
        ["apis", g] => Route::Group(g.to_string()),
        ["apis", g, v] => Route::ResourceList(g.to_string(), v.to_string()),
        ["apis", g, v, rest @ ..] => resource(g, v, rest),
        _ => Route::Unknown,
    }
}

/// The verb of a request, as RBAC names it.
fn verb(method: &Method, path: &ResourcePath, watching: bool) -> &'static str {
    match (method.as_str(), path.name.is_some()) {
        ("GET", _) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// A fixed authorization policy: `system:masters` may do anything; nodes read everything
/// and write their own Node, its Lease, Events and certificate requests; bootstrap
/// tokens may only request certificates; any authenticated user may read discovery.
fn authorize(user: &User, verb: &str, path: &ResourcePath) -> Result<(), ApiStatus> {
    if user.in_group("system:masters") {
        return Ok(());
    }
    let csr = path.group == "certificates.k8s.io" && path.plural == "certificatesigningrequests";
    let allowed = if let Some(node) = user.node_name() {
        let own = path.name.as_deref() == Some(node);
        matches!(verb, "get" | "list" | "watch")
            || (path.group.is_empty()
                && path.plural == "nodes"
                && (own || (verb == "create" && path.name.is_none())))
            || (path.group == "coordination.k8s.io"
                && path.plural == "leases"
                && path.namespace.as_deref() == Some("kube-node-lease")
                && (own || verb == "create"))
            || (path.group.is_empty() && path.plural == "events")
            || (csr && verb == "create")
    } else if user.in_group("system:bootstrappers") {
        csr && matches!(verb, "create" | "get" | "list" | "watch")
    } else {
        false
    };
    if allowed {
        return Ok(());
    }
    let resource = match &path.subresource {
        Some(s) => format!("{}/{s}", path.plural),
        None => path.plural.clone(),
    };
    let subject = match &path.name {
        Some(n) => format!("{} \"{n}\"", path.plural),
        None => path.plural.clone(),
    };
    let scope = match &path.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".into(),
    };
    Err(ApiStatus::new(
        403,
        "Forbidden",
        format!(
            "{subject} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
            user.name, path.group
        ),
    )
    .with_details(json!({"name": path.name.clone().unwrap_or_default(), "group": path.group, "kind": path.plural})))
}

/// Human age as kubectl shows it (`45s`, `3m12s`, `5h`, `2d3h`).
fn age(since: &str, now: SystemTime) -> String {
    let Some(t) = meta::parse_timestamp(since) else {
        return "<unknown>".into();
    };
    let s = now.duration_since(t).unwrap_or_default().as_secs();
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 && !s.is_multiple_of(60) => format!("{m}m{}s", s % 60),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 && !m.is_multiple_of(60) => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if h < 192 && !h.is_multiple_of(24) => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

fn node_status_column(node: &Value) -> String {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .and_then(|c| c.get("status").and_then(Value::as_str));
    let mut s = match ready {
        Some("True") => "Ready".to_string(),
        Some("False") => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if node
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        s.push_str(",SchedulingDisabled");
    }
    s
}

fn node_roles(node: &Value) -> String {
    let roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .collect()
        })
        .unwrap_or_default();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

/// A `meta.k8s.io/v1` Table of `items`.
fn table(
    rtype: &ResourceType,
    items: &[Value],
    resource_version: Option<&Value>,
    include: &str,
) -> Value {
    let now = SystemTime::now();
    let col = |name: &str, format: &str, description: &str| json!({"name": name, "type": "string", "format": format, "description": description, "priority": 0});
    let is_node = rtype.group.is_empty() && rtype.plural == "nodes";
    let columns = if is_node {
        vec![
            col("Name", "name", "Name must be unique within a namespace."),
            col("Status", "", "The status of the node"),
            col("Roles", "", "The roles of the node"),
            col(
                "Age",
                "",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
            col("Version", "", "Kubelet Version reported by the node."),
        ]
    } else {
        vec![
            col("Name", "name", "Name must be unique within a namespace."),
            col(
                "Age",
                "",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
        ]
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let name = o.pointer("/metadata/name").cloned().unwrap_or(json!(""));
            let created = o
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let cells = if is_node {
                json!([
                    name,
                    node_status_column(o),
                    node_roles(o),
                    age(created, now),
                    o.pointer("/status/nodeInfo/kubeletVersion")
                        .cloned()
                        .unwrap_or(json!("")),
                ])
            } else {
                json!([name, age(created, now)])
            };
            let object = match include {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
                }),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = rv.clone();
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

impl ApiServer {
    pub fn new(config: ApiServerConfig, store: Store, log: Logger) -> Self {
        ApiServer {
            state: Arc::new(ApiState {
                config,
                store,
                log,
                started: SystemTime::now(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// The checks behind `/readyz` and `/healthz`: etcd must answer a linearizable read
    /// (which needs quorum).
    pub async fn readiness(&self) -> Readiness {
        let etcd = self
            .state
            .store
            .with_timeout(ETCD_CHECK_TIMEOUT)
            .etcd()
            .get(b"health")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        Readiness {
            checks: vec![
                ("ping", Ok(())),
                ("log", Ok(())),
                ("etcd", etcd.clone()),
                ("etcd-readiness", etcd),
                ("informer-sync", Ok(())),
                (
                    "poststarthook/start-apiserver-admission-initializer",
                    Ok(()),
                ),
                ("poststarthook/bootstrap-controller", Ok(())),
                ("shutdown", Ok(())),
            ],
        }
    }

    /// The HTTP handler for a [`crate::transport::Listener`].
    pub fn handler(&self) -> HttpHandler {
        let server = self.clone();
        Arc::new(move |peer, req| {
            let server = server.clone();
            Box::pin(async move { server.handle(peer, req).await })
        })
    }

    fn authenticate(
        &self,
        peer: &TlsPeer,
        req: &Request<Incoming>,
    ) -> Result<Option<User>, ApiStatus> {
        if let Some(auth) = req.headers().get(http::header::AUTHORIZATION) {
            let token = auth
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(ApiStatus::unauthorized)?;
            let expected = self
                .state
                .config
                .bootstrap_token
                .as_ref()
                .ok_or_else(ApiStatus::unauthorized)?;
            if !bool::from(token.as_bytes().ct_eq(expected.expose().as_bytes())) {
                return Err(ApiStatus::unauthorized());
            }
            let id = token.split('.').next().unwrap_or_default();
            return Ok(Some(User {
                name: format!("system:bootstrap:{id}"),
                groups: vec!["system:bootstrappers".into(), "system:authenticated".into()],
            }));
        }
        let Some(cert) = peer.client_certificates.first() else {
            return Ok(None);
        };
        let (name, mut groups) =
            certs::certificate_subject(cert).ok_or_else(ApiStatus::unauthorized)?;
        groups.push("system:authenticated".into());
        Ok(Some(User { name, groups }))
    }

    async fn handle(&self, peer: TlsPeer, req: Request<Incoming>) -> Response<HttpBody> {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let resp = match self.dispatch(&peer, req).await {
            Ok(r) => r,
            Err(s) => status_response(&s),
        };
        if resp.status().is_server_error() {
            (self.state.log)(&format!(
                "kube-apiserver: {method} {path} → {} in {:?}",
                resp.status().as_u16(),
                started.elapsed()
            ));
        }
        resp
    }

    async fn dispatch(
        &self,
        peer: &TlsPeer,
        req: Request<Incoming>,
    ) -> Result<Response<HttpBody>, ApiStatus> {
        let user = self.authenticate(peer, &req)?;
        let route = route(req.uri().path());
        let query = query_params(req.uri());
        match route {
            Route::Version => Ok(json_response(200, &self.version())),
            Route::Health(what) => {
                let r = self.readiness().await;
                let verbose = query.contains_key("verbose");
                let (code, body) = match (r.ok(), verbose) {
                    (true, false) => (200, "ok".to_string()),
                    (true, true) => (200, r.render(what)),
                    (false, _) => (500, r.render(what)),
                };
                let mut resp = response(code, "text/plain; charset=utf-8", body);
                resp.headers_mut().insert(
                    "x-content-type-options",
                    http::HeaderValue::from_static("nosniff"),
                );
                Ok(resp)
            }
            _ if user.is_none() => Err(ApiStatus::unauthorized()),
            Route::ApiVersions => Ok(json_response(
                200,
                &resources::api_versions(&self.state.config.advertise),
            )),
            Route::GroupList => Ok(json_response(
                200,
                &resources::api_group_list(&self.types().await?),
            )),
            Route::Group(g) => resources::api_group_doc(&self.types().await?, &g)
                .map(|d| json_response(200, &d))
                .ok_or_else(not_found_path),
            Route::ResourceList(g, v) => resources::api_resource_list(&self.types().await?, &g, &v)
                .map(|d| json_response(200, &d))
                .ok_or_else(not_found_path),
            Route::Resource(path) => {
                let user = user.ok_or_else(ApiStatus::unauthorized)?;
                self.resource(req, &user, &path, &query).await
            }
            Route::Unknown => Err(not_found_path()),
        }
    }

    fn version(&self) -> Value {
        let v = &self.state.config.kubernetes_version;
        let mut parts = v.trim_start_matches('v').split('.');
        let major = parts.next().unwrap_or("1");
        let minor = parts.next().unwrap_or("0");
        json!({
            "major": major,
            "minor": minor,
            "emulationMajor": major,
            "emulationMinor": minor,
            "gitVersion": v,
            "gitCommit": "kforge-sim",
            "gitTreeState": "clean",
            "buildDate": meta::timestamp(self.state.started),
            "goVersion": "go1.25.5",
            "compiler": "gc",
            "platform": format!("linux/{}", std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")),
        })
    }

    /// The built-in types plus those of the stored CustomResourceDefinitions.
    async fn types(&self) -> Result<Vec<ResourceType>, ApiStatus> {
        let mut types = resources::built_in();
        let crd = resources::crd_type();
        let page = self
            .state
            .store
            .list(&crd.storage_prefix(), None, 0, 0)
            .await
            .map_err(registry::storage_error)?;
        for s in page.items {
            types.extend(resources::types_of_crd(&s.object));
        }
        Ok(types)
    }

    async fn resolve(&self, path: &ResourcePath) -> Result<ResourceType, ApiStatus> {
        if let Some(t) = resources::built_in_type(&path.group, &path.version, &path.plural) {
            return Ok(t);
        }
        if path.group.is_empty() {
            return Err(not_found_path());
        }
        self.types()
            .await?
            .into_iter()
            .find(|t| t.group == path.group && t.version == path.version && t.plural == path.plural)
            .ok_or_else(not_found_path)
    }

    async fn resource(
        &self,
        req: Request<Incoming>,
        user: &User,
        path: &ResourcePath,
        query: &BTreeMap<String, String>,
    ) -> Result<Response<HttpBody>, ApiStatus> {
        let watching = matches!(query.get("watch").map(String::as_str), Some("1" | "true"));
        let verb = verb(req.method(), path, watching);
        authorize(user, verb, path)?;
        let rtype = self.resolve(path).await?;
        if path.namespace.is_some() && !rtype.namespaced {
            return Err(not_found_path());
        }
        let status = match path.subresource.as_deref() {
            None => false,
            Some("status") if rtype.status_subresource => true,
            Some(_) => return Err(not_found_path()),
        };
        if rtype.namespaced && path.name.is_some() && path.namespace.is_none() {
            return Err(not_found_path());
        }
        let store = &self.state.store;
        let manager = query
            .get("fieldManager")
            .cloned()
            .unwrap_or_else(|| default_manager(&req));
        let writer = Writer {
            manager: &manager,
            user: &user.name,
            groups: &user.groups,
        };
        let accept = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let as_table = accept
            .split(',')
            .next()
            .is_some_and(|a| a.contains("as=Table"));
        let include = query
            .get("includeObject")
            .cloned()
            .unwrap_or_else(|| "Metadata".into());
        let name = path.name.as_deref();
        let namespace = path.namespace.as_deref();
        let target = |name| Target {
            rtype: &rtype,
            namespace,
            name,
            status,
        };
        match (req.method().clone(), name) {
            (Method::GET, None) if watching => {
                let options = WatchOptions {
                    list: list_options(query)?,
                    resource_version: query.get("resourceVersion").and_then(|v| v.parse().ok()),
                    timeout: query
                        .get("timeoutSeconds")
                        .and_then(|v| v.parse().ok())
                        .map(Duration::from_secs)
                        .unwrap_or(DEFAULT_WATCH_TIMEOUT),
                };
                let events = registry::watch(store, &rtype, namespace, options).await?;
                Ok(watch_response(events))
            }
            (Method::GET, None) => {
                let list = registry::list(store, &rtype, namespace, &list_options(query)?).await?;
                if as_table {
                    let items = list
                        .get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    return Ok(json_response(
                        200,
                        &table(
                            &rtype,
                            &items,
                            list.pointer("/metadata/resourceVersion"),
                            &include,
                        ),
                    ));
                }
                Ok(json_response(200, &list))
            }
            (Method::GET, Some(n)) => {
                let o = registry::get(store, target(n)).await?;
                if as_table {
                    let rv = o.pointer("/metadata/resourceVersion").cloned();
                    return Ok(json_response(
                        200,
                        &table(&rtype, &[o], rv.as_ref(), &include),
                    ));
                }
                Ok(json_response(200, &o))
            }
            (Method::POST, None) => {
                let body = read_object(req).await?;
                let o = registry::create(store, &rtype, namespace, body, &writer).await?;
                Ok(json_response(201, &o))
            }
            (Method::PUT, Some(n)) => {
                let body = read_object(req).await?;
                let o = registry::update(store, target(n), body, &writer).await?;
                Ok(json_response(200, &o))
            }
            (Method::PATCH, Some(n)) => {
                let content_type = req
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                let force = matches!(query.get("force").map(String::as_str), Some("true" | "1"));
                let bytes = read_body(req).await?;
                let patch = parse_patch(
                    &content_type,
                    &bytes,
                    query.contains_key("fieldManager"),
                    force,
                )?;
                let o = registry::patch(store, target(n), &patch, &writer).await?;
                Ok(json_response(200, &o))
            }
            (Method::DELETE, Some(n)) => {
                let o = registry::delete(store, target(n)).await?;
                Ok(json_response(200, &o))
            }
            (m, _) => Err(ApiStatus::new(
                405,
                "MethodNotAllowed",
                format!("the server does not allow this method on the requested resource ({m})"),
            )),
        }
    }
}

/// The field manager of a write without `fieldManager`: the user agent's program name
/// (`kubectl`, `kforge`), as Kubernetes does.
fn default_manager(req: &Request<Incoming>) -> String {
    req.headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn list_options(query: &BTreeMap<String, String>) -> Result<ListOptions, ApiStatus> {
    Ok(ListOptions {
        label_selector: match query.get("labelSelector") {
            Some(s) => LabelSelector::parse(s).map_err(ApiStatus::bad_request)?,
            None => LabelSelector::default(),
        },
        field_selector: match query.get("fieldSelector") {
            Some(s) => FieldSelector::parse(s).map_err(ApiStatus::bad_request)?,
            None => FieldSelector::default(),
        },
        limit: query.get("limit").and_then(|v| v.parse().ok()).unwrap_or(0),
        continue_token: query.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

async fn read_body(req: Request<Incoming>) -> Result<Vec<u8>, ApiStatus> {
    Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .map_err(|e| {
            ApiStatus::new(
                413,
                "RequestEntityTooLarge",
                format!("the request body cannot be read: {e}"),
            )
        })
}

/// A JSON (or YAML) object body.
fn parse_object(bytes: &[u8]) -> Result<Value, ApiStatus> {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return Ok(v);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiStatus::bad_request("the request body is not UTF-8"))?;
    kforge_yaml::parse(text).map(|n| n.to_value()).map_err(|e| {
        ApiStatus::bad_request(format!("the request body is neither JSON nor YAML: {e}"))
    })
}

async fn read_object(req: Request<Incoming>) -> Result<Value, ApiStatus> {
    let bytes = read_body(req).await?;
    parse_object(&bytes)
}

fn parse_patch(
    content_type: &str,
    bytes: &[u8],
    has_manager: bool,
    force: bool,
) -> Result<Patch, ApiStatus> {
    match content_type {
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
            if !has_manager {
                return Err(ApiStatus::bad_request(
                    "PATCH request must have a fieldManager query parameter for apply requests",
                ));
            }
            let config = parse_object(bytes)?;
            if !config.is_object() {
                return Err(ApiStatus::bad_request(
                    "the applied configuration is not an object",
                ));
            }
            Ok(Patch::Apply { config, force })
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            Ok(Patch::Merge(parse_object(bytes)?))
        }
        "application/json-patch+json" => serde_json::from_slice(bytes)
            .map(Patch::Json)
            .map_err(|e| ApiStatus::bad_request(format!("the JSON patch does not parse: {e}"))),
        other => Err(ApiStatus::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got `{other}`)"
            ),
        )),
    }
}

/// A streamed watch: one JSON event per line.
fn watch_response(mut events: tokio::sync::mpsc::Receiver<Value>) -> Response<HttpBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            let mut line = serde_json::to_vec(&e).unwrap_or_default();
            line.push(b'\n');
            if tx.send(Ok(Frame::data(Bytes::from(line)))).await.is_err() {
                return;
            }
        }
    });
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed();
    let mut r = Response::new(body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(
        group: &str,
        ns: Option<&str>,
        plural: &str,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Route {
        Route::Resource(ResourcePath {
            group: group.into(),
            version: "v1".into(),
            namespace: ns.map(str::to_string),
            plural: plural.into(),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    }

    #[test]
    fn routes() {
        assert_eq!(route("/version"), Route::Version);
        assert_eq!(route("/readyz"), Route::Health("readyz"));
        assert_eq!(route("/api"), Route::ApiVersions);
        assert_eq!(
            route("/api/v1"),
            Route::ResourceList("".into(), "v1".into())
        );
        assert_eq!(route("/apis"), Route::GroupList);
        assert_eq!(route("/apis/apps"), Route::Group("apps".into()));
        assert_eq!(route("/api/v1/nodes"), rp("", None, "nodes", None, None));
        assert_eq!(
            route("/api/v1/nodes/w-1/status"),
            rp("", None, "nodes", Some("w-1"), Some("status"))
        );
        assert_eq!(
            route("/api/v1/namespaces"),
            rp("", None, "namespaces", None, None)
        );
        assert_eq!(
            route("/api/v1/namespaces/default"),
            rp("", None, "namespaces", Some("default"), None)
        );
        assert_eq!(
            route("/api/v1/namespaces/default/status"),
            rp("", None, "namespaces", Some("default"), Some("status"))
        );
        assert_eq!(
            route("/api/v1/namespaces/default/configmaps/x"),
            rp("", Some("default"), "configmaps", Some("x"), None)
        );
        assert_eq!(
            route("/api/v1/namespaces/kube-system/pods"),
            rp("", Some("kube-system"), "pods", None, None)
        );
        assert_eq!(
            route("/apis/scheduling.k8s.io/v1/priorityclasses/solana-critical"),
            rp(
                "scheduling.k8s.io",
                None,
                "priorityclasses",
                Some("solana-critical"),
                None
            )
        );
        assert_eq!(route("/apis/x/v1/a/b/c/d"), Route::Unknown);
        assert_eq!(route("/metrics"), Route::Unknown);
    }

    #[test]
    fn queries_decode() {
        let uri: http::Uri = "/api/v1/namespaces/kube-system/pods?labelSelector=tier%3Dcontrol-plane%2Ck8s-app+in+%28a%29&watch=1"
            .parse()
            .unwrap();
        let q = query_params(&uri);
        assert_eq!(q["labelSelector"], "tier=control-plane,k8s-app in (a)");
        assert_eq!(q["watch"], "1");
        assert_eq!(percent_decode("100%", false), "100%");
    }

    #[test]
    fn authorization_policy() {
        let admin = User {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
        };
        let node = User {
            name: "system:node:w-1".into(),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
        };
        let boot = User {
            name: "system:bootstrap:abc".into(),
            groups: vec!["system:bootstrappers".into()],
        };
        let path = |group: &str, plural: &str, name: Option<&str>| ResourcePath {
            group: group.into(),
            version: "v1".into(),
            namespace: None,
            plural: plural.into(),
            name: name.map(str::to_string),
            subresource: None,
        };
        assert!(authorize(&admin, "delete", &path("", "nodes", Some("x"))).is_ok());
        assert!(authorize(&node, "patch", &path("", "nodes", Some("w-1"))).is_ok());
        assert!(authorize(&node, "list", &path("", "secrets", None)).is_ok());
        let e = authorize(&node, "patch", &path("", "nodes", Some("w-2"))).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "nodes \"w-2\" is forbidden: User \"system:node:w-1\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope"
        );
        assert!(
            authorize(
                &boot,
                "create",
                &path("certificates.k8s.io", "certificatesigningrequests", None)
            )
            .is_ok()
        );
        assert!(authorize(&boot, "list", &path("", "nodes", None)).is_err());
        let nobody = User {
            name: "x".into(),
            groups: vec!["system:authenticated".into()],
        };
        assert!(authorize(&nobody, "get", &path("", "nodes", Some("a"))).is_err());
    }

    #[test]
    fn ages_and_tables() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |s: u64| meta::timestamp(now - Duration::from_secs(s));
        assert_eq!(age(&at(45), now), "45s");
        assert_eq!(age(&at(192), now), "3m12s");
        assert_eq!(age(&at(3600 * 5), now), "5h");
        assert_eq!(age(&at(86400 * 2 + 3600 * 3), now), "2d3h");
        let node_type = resources::built_in_type("", "v1", "nodes").unwrap();
        let node = json!({"metadata": {"name": "cp-1", "creationTimestamp": meta::now(),
            "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.35.0"}}});
        let t = table(&node_type, &[node], None, "Metadata");
        assert_eq!(t["rows"][0]["cells"][1], "Ready");
        assert_eq!(t["rows"][0]["cells"][2], "control-plane");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn readiness_rendering() {
        let r = Readiness {
            checks: vec![("ping", Ok(())), ("etcd", Err("down".into()))],
        };
        assert!(!r.ok());
        assert_eq!(
            r.render("readyz"),
            "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n"
        );
        assert_eq!(r.failures(), "etcd: down");
    }
}

//! [`HttpKubeApi`]: [`KubeApi`] over HTTPS with the kubeconfig's client certificate (or
//! bearer token), on hyper's HTTP/1.1 client and rustls (ring), which the workspace
//! already uses for gRPC.
//!
//! Why not `kube`/`k8s-openapi`: the engine needs six calls (`/readyz`, list nodes,
//! server-side apply of arbitrary objects, get, list, discovery). kube 5 + k8s-openapi
//! would add about 40 crates the workspace does not otherwise build (k8s-openapi alone is
//! one of the slowest crates to compile in the ecosystem; jsonpath-rust, pest,
//! serde-saphyr, jiff, tower-http, hyper-rustls, rustls-platform-verifier, …), and its
//! config loader reads the environment and home directory on its own. This client is
//! ~400 lines on crates already in the tree, takes the kubeconfig as a value, and keeps
//! the client key in a [`kforge_secret::Secret`].
//!
//! One connection per request (the engine polls every few seconds; no pooling needed);
//! every request has a deadline; bodies are capped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use kforge_secret::SecretString;
use kforge_yaml::Value;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    ServerName,
};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;

use crate::api::{KubeApi, KubeConnector, KubeError, KubeErrorKind, KubeNode, Readyz};

/// Options of the client.
#[derive(Clone, Debug)]
pub struct HttpKubeOptions {
    /// Use this `https://host:port` instead of the kubeconfig's server (simulators, port
    /// forwards). Certificates are still verified against the kubeconfig's CA.
    pub server_override: Option<String>,
    /// Deadline of one request (connect, TLS, response).
    pub request_timeout: Duration,
    /// Largest response body accepted.
    pub max_body_bytes: usize,
}

impl Default for HttpKubeOptions {
    fn default() -> Self {
        HttpKubeOptions {
            server_override: None,
            request_timeout: Duration::from_secs(20),
            max_body_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Where the API server is.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Server {
    host: String,
    port: u16,
}

impl Server {
    fn parse(url: &str) -> Result<Self, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("server URL `{url}` is invalid: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("server URL `{url}` is not https"));
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("server URL `{url}` has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Server {
            host,
            port: uri.port_u16().unwrap_or(443),
        })
    }

    fn url(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }

    fn authority(&self) -> String {
        self.url().trim_start_matches("https://").to_string()
    }
}

enum Auth {
    ClientCertificate,
    Bearer(SecretString),
}

/// A resource as discovery lists it.
#[derive(Clone, Debug)]
struct Resource {
    plural: String,
    namespaced: bool,
}

/// The real [`KubeApi`].
pub struct HttpKubeApi {
    server: Server,
    tls: Arc<ClientConfig>,
    auth: Auth,
    options: HttpKubeOptions,
    /// apiVersion → kind → resource.
    discovery: Mutex<HashMap<String, HashMap<String, Resource>>>,
}

fn kc_error(message: impl Into<String>) -> KubeError {
    KubeError::new("load kubeconfig", "-", KubeErrorKind::Kubeconfig, message)
}

fn decode_data(field: &str, value: Option<&Value>) -> Result<Option<Vec<u8>>, KubeError> {
    match value.and_then(Value::as_str) {
        None => Ok(None),
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map(Some)
            .map_err(|_| kc_error(format!("`{field}` is not base64"))),
    }
}

fn certificates(what: &str, pem_text: &[u8]) -> Result<Vec<CertificateDer<'static>>, KubeError> {
    let blocks =
        pem::parse_many(pem_text).map_err(|e| kc_error(format!("{what} is not PEM: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect();
    if certs.is_empty() {
        return Err(kc_error(format!("{what} holds no CERTIFICATE block")));
    }
    Ok(certs)
}

fn private_key(pem_text: &[u8]) -> Result<PrivateKeyDer<'static>, KubeError> {
    // Error texts never include key material.
    let blocks = pem::parse_many(pem_text).map_err(|_| kc_error("`client-key-data` is not PEM"))?;
    for b in blocks {
        let key = match b.tag() {
            "PRIVATE KEY" | "ED25519 PRIVATE KEY" => {
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(b.into_contents()))
            }
            "EC PRIVATE KEY" => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(b.into_contents())),
            "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(b.into_contents())),
            _ => continue,
        };
        return Ok(key);
    }
    Err(kc_error(
        "`client-key-data` holds no private key (PRIVATE KEY, EC PRIVATE KEY, RSA PRIVATE KEY)",
    ))
}

impl HttpKubeApi {
    /// From a kubeconfig's current context.
    pub fn from_kubeconfig(
        kubeconfig: &SecretString,
        options: HttpKubeOptions,
    ) -> Result<Self, KubeError> {
        let standalone = crate::kubeconfig::extract(kubeconfig, None)
            .map_err(|e| kc_error(crate::api::error_chain(&e)))?;
        let doc = kforge_yaml::parse(standalone.expose())
            .map_err(|e| kc_error(e.to_string()))?
            .to_value();
        let cluster = doc
            .pointer("/clusters/0/cluster")
            .cloned()
            .unwrap_or_default();
        let user = doc.pointer("/users/0/user").cloned().unwrap_or_default();
        let url = match &options.server_override {
            Some(s) => s.clone(),
            None => cluster
                .get("server")
                .and_then(Value::as_str)
                .ok_or_else(|| kc_error("the cluster has no `server`"))?
                .to_string(),
        };
        let server = Server::parse(&url).map_err(kc_error)?;

        let ca = decode_data(
            "certificate-authority-data",
            cluster.get("certificate-authority-data"),
        )?
        .ok_or_else(|| {
            kc_error(
                "the cluster has no `certificate-authority-data` (kforge verifies the API \
                 server against the cluster CA only)",
            )
        })?;
        let mut roots = RootCertStore::empty();
        for c in certificates("`certificate-authority-data`", &ca)? {
            roots
                .add(c)
                .map_err(|e| kc_error(format!("`certificate-authority-data`: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| kc_error(format!("TLS setup: {e}")))?
            .with_root_certificates(roots);

        let crt = decode_data(
            "client-certificate-data",
            user.get("client-certificate-data"),
        )?;
        let key = decode_data("client-key-data", user.get("client-key-data"))?
            .map(kforge_secret::SecretBytes::new);
        let token = user
            .get("token")
            .and_then(Value::as_str)
            .map(|t| SecretString::from(t.to_string()));
        let (mut tls, auth) = match (crt, key, token) {
            (Some(crt), Some(key), _) => {
                let chain = certificates("`client-certificate-data`", &crt)?;
                let key = private_key(key.expose())?;
                let tls = builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| kc_error(format!("client certificate and key: {e}")))?;
                (tls, Auth::ClientCertificate)
            }
            (_, _, Some(token)) => (builder.with_no_client_auth(), Auth::Bearer(token)),
            _ => {
                return Err(kc_error(
                    "the user has neither a client certificate and key nor a token",
                ));
            }
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(HttpKubeApi {
            server,
            tls: Arc::new(tls),
            auth,
            options,
            discovery: Mutex::new(HashMap::new()),
        })
    }

    /// The API server URL requests go to.
    pub fn server_url(&self) -> String {
        self.server.url()
    }

    async fn request(
        &self,
        server: &Server,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
        operation: &str,
    ) -> Result<(StatusCode, Bytes), KubeError> {
        let err = |kind, message: String| KubeError::new(operation, server.url(), kind, message);
        let work = async {
            let tcp = TcpStream::connect((server.host.as_str(), server.port))
                .await
                .map_err(|e| err(KubeErrorKind::Unreachable, String::new()).with_source(e))?;
            tcp.set_nodelay(true).ok();
            let name = ServerName::try_from(server.host.clone())
                .map_err(|e| err(KubeErrorKind::Kubeconfig, format!("server name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| err(transport_kind(&e), String::new()).with_source(e))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| err(transport_kind(&e), String::new()).with_source(e))?;
            // Drives the connection; ends when the request is done and `sender` is dropped.
            // Its error is kept: when the server rejects the client certificate (TLS 1.3
            // reports that after the handshake), the request only fails with "canceled",
            // and the connection's error carries the alert.
            let (conn_error_tx, conn_error) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    let _ = conn_error_tx.send(e);
                }
            });
            let mut builder = http::Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, server.authority())
                .header(http::header::ACCEPT, "application/json")
                .header(http::header::USER_AGENT, "kforge");
            if let Auth::Bearer(token) = &self.auth {
                builder = builder.header(
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", token.expose()),
                );
            }
            let payload = match body {
                Some((content_type, bytes)) => {
                    builder = builder.header(http::header::CONTENT_TYPE, content_type);
                    Bytes::from(bytes)
                }
                None => Bytes::new(),
            };
            let request = builder
                .body(Full::new(payload))
                .map_err(|e| err(KubeErrorKind::Other, e.to_string()))?;
            let response = match sender.send_request(request).await {
                Ok(r) => r,
                Err(e) => {
                    let cause =
                        match tokio::time::timeout(Duration::from_millis(500), conn_error).await {
                            Ok(Ok(conn_e)) => conn_e,
                            _ => e,
                        };
                    return Err(err(transport_kind(&cause), String::new()).with_source(cause));
                }
            };
            let status = response.status();
            let body = Limited::new(response.into_body(), self.options.max_body_bytes)
                .collect()
                .await
                .map_err(|e| err(KubeErrorKind::Other, format!("reading the response: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        match tokio::time::timeout(self.options.request_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(err(
                KubeErrorKind::Timeout,
                format!(
                    "no answer within {}",
                    crate::wait::human(self.options.request_timeout)
                ),
            )),
        }
    }

    /// A JSON request whose non-2xx answers become errors (with the Status message).
    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
        operation: &str,
    ) -> Result<Option<Value>, KubeError> {
        let (status, bytes) = self
            .request(&self.server, method, path, body, operation)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(status_error(operation, &self.server.url(), status, &bytes));
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            KubeError::new(
                operation,
                self.server.url(),
                KubeErrorKind::Other,
                format!("the answer is not JSON: {e}"),
            )
        })
    }

    async fn readyz_at(&self, server: &Server) -> Result<Readyz, KubeError> {
        let (status, body) = self
            .request(server, Method::GET, "/readyz", None, "GET /readyz")
            .await?;
        let detail = String::from_utf8_lossy(&body).trim().to_string();
        match status {
            s if s.is_success() => Ok(Readyz { ok: true, detail }),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(status_error("GET /readyz", &server.url(), status, &body))
            }
            _ => Ok(Readyz {
                ok: false,
                detail: truncate(&detail, 400),
            }),
        }
    }

    /// The resource of `kind` in `api_version`, through discovery (cached).
    async fn resource(&self, api_version: &str, kind: &str) -> Result<Resource, KubeError> {
        if let Some(r) = self
            .discovery
            .lock()
            .ok()
            .and_then(|d| d.get(api_version).and_then(|k| k.get(kind)).cloned())
        {
            return Ok(r);
        }
        let path = group_version_path(api_version);
        let operation = format!("discovery {api_version}");
        let list = self
            .json(Method::GET, &path, None, &operation)
            .await?
            .ok_or_else(|| {
                KubeError::new(
                    &operation,
                    self.server.url(),
                    KubeErrorKind::UnknownKind,
                    format!("the API server does not serve {api_version}"),
                )
            })?;
        let mut kinds = HashMap::new();
        for r in list
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
            let k = r.get("kind").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() || name.contains('/') {
                continue; // subresources
            }
            kinds.insert(
                k.to_string(),
                Resource {
                    plural: name.to_string(),
                    namespaced: r
                        .get("namespaced")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                },
            );
        }
        let found = kinds.get(kind).cloned();
        if let Ok(mut d) = self.discovery.lock() {
            d.insert(api_version.to_string(), kinds);
        }
        found.ok_or_else(|| {
            KubeError::new(
                &operation,
                self.server.url(),
                KubeErrorKind::UnknownKind,
                format!("{api_version} has no kind {kind}"),
            )
        })
    }

    fn collection_path(&self, api_version: &str, r: &Resource, namespace: Option<&str>) -> String {
        let mut path = group_version_path(api_version);
        if r.namespaced
            && let Some(ns) = namespace
        {
            path.push_str("/namespaces/");
            path.push_str(&encode(ns));
        }
        path.push('/');
        path.push_str(&encode(&r.plural));
        path
    }
}

/// What a transport failure means: the server rejected the client certificate (TLS 1.3
/// reports that as an alert on the first read), kforge rejected the server's certificate,
/// or the connection failed.
fn transport_kind(e: &(dyn std::error::Error + 'static)) -> KubeErrorKind {
    let text = crate::api::error_chain(e);
    if [
        "UnknownCA",
        "BadCertificate",
        "CertificateRequired",
        "AccessDenied",
        "CertificateUnknown",
        "DecryptError",
    ]
    .iter()
    .any(|a| text.contains(a))
    {
        KubeErrorKind::Unauthorized
    } else if text.contains("invalid peer certificate") || text.contains("HandshakeFailure") {
        KubeErrorKind::Tls
    } else {
        KubeErrorKind::Unreachable
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// `/api/v1` or `/apis/<group>/<version>`.
fn group_version_path(api_version: &str) -> String {
    if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    }
}

/// Percent-encodes a path segment or query value (unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn status_error(operation: &str, server: &str, status: StatusCode, body: &[u8]) -> KubeError {
    let kind = match status.as_u16() {
        401 => KubeErrorKind::Unauthorized,
        403 => KubeErrorKind::Forbidden,
        404 => KubeErrorKind::NotFound,
        409 => KubeErrorKind::Conflict,
        400 | 415 | 422 => KubeErrorKind::Invalid,
        429 | 500..=599 => KubeErrorKind::Server,
        _ => KubeErrorKind::Other,
    };
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| truncate(String::from_utf8_lossy(body).trim(), 400));
    let mut e = KubeError::new(operation, server, kind, message);
    e.status = Some(status.as_u16());
    e
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

#[async_trait]
impl KubeApi for HttpKubeApi {
    async fn readyz(&self) -> Result<Readyz, KubeError> {
        self.readyz_at(&self.server).await
    }

    async fn readyz_via(&self, address: &str) -> Result<Readyz, KubeError> {
        let server = Server {
            host: address.to_string(),
            port: self.server.port,
        };
        self.readyz_at(&server).await
    }

    async fn nodes(&self) -> Result<Vec<KubeNode>, KubeError> {
        let items = self.list("v1", "Node", None, None).await?;
        Ok(items.iter().map(KubeNode::from_object).collect())
    }

    async fn server_side_apply(
        &self,
        object: &Value,
        field_manager: &str,
    ) -> Result<Value, KubeError> {
        let api_version = text(object, "/apiVersion").unwrap_or_default();
        let kind = text(object, "/kind").unwrap_or_default();
        let name = text(object, "/metadata/name").unwrap_or_default();
        let operation = format!("server-side apply {kind}/{name}");
        if api_version.is_empty() || kind.is_empty() || name.is_empty() {
            return Err(KubeError::new(
                operation,
                self.server.url(),
                KubeErrorKind::Invalid,
                "the object needs apiVersion, kind and metadata.name",
            ));
        }
        let r = self.resource(api_version, kind).await?;
        let namespace = text(object, "/metadata/namespace").unwrap_or("default");
        let path = format!(
            "{}/{}?fieldManager={}&force=true",
            self.collection_path(api_version, &r, Some(namespace)),
            encode(name),
            encode(field_manager)
        );
        let body = serde_json::to_vec(object).unwrap_or_default();
        self.json(
            Method::PATCH,
            &path,
            Some(("application/apply-patch+yaml", body)),
            &operation,
        )
        .await?
        .ok_or_else(|| {
            KubeError::new(
                &operation,
                self.server.url(),
                KubeErrorKind::NotFound,
                "the API server answered 404 (namespace missing?)",
            )
        })
    }

    async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, KubeError> {
        let r = self.resource(api_version, kind).await?;
        let path = format!(
            "{}/{}",
            self.collection_path(api_version, &r, namespace.or(Some("default"))),
            encode(name)
        );
        self.json(Method::GET, &path, None, &format!("get {kind}/{name}"))
            .await
    }

    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<Value>, KubeError> {
        let r = self.resource(api_version, kind).await?;
        let mut path = self.collection_path(api_version, &r, namespace);
        if let Some(sel) = label_selector {
            path.push_str("?labelSelector=");
            path.push_str(&encode(sel));
        }
        let operation = format!("list {kind}");
        let list = self.json(Method::GET, &path, None, &operation).await?;
        Ok(list
            .and_then(|l| l.get("items").and_then(Value::as_array).cloned())
            .unwrap_or_default())
    }
}

/// Makes [`HttpKubeApi`]s.
#[derive(Clone, Debug, Default)]
pub struct HttpKubeConnector {
    pub options: HttpKubeOptions,
}

impl KubeConnector for HttpKubeConnector {
    fn connect(&self, kubeconfig: &SecretString) -> Result<Arc<dyn KubeApi>, KubeError> {
        Ok(Arc::new(HttpKubeApi::from_kubeconfig(
            kubeconfig,
            self.options.clone(),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            Server::parse("https://10.0.1.10:6443").unwrap(),
            Server {
                host: "10.0.1.10".into(),
                port: 6443
            }
        );
        let v6 = Server::parse("https://[fd00::1]:6443").unwrap();
        assert_eq!(v6.host, "fd00::1");
        assert_eq!(v6.url(), "https://[fd00::1]:6443");
        assert_eq!(Server::parse("https://api.example").unwrap().port, 443);
        assert!(Server::parse("http://10.0.0.1:6443").is_err());
    }

    #[test]
    fn paths_and_encoding() {
        assert_eq!(group_version_path("v1"), "/api/v1");
        assert_eq!(
            group_version_path("scheduling.k8s.io/v1"),
            "/apis/scheduling.k8s.io/v1"
        );
        assert_eq!(
            encode("tier=control-plane,k8s-app in (a)"),
            "tier%3Dcontrol-plane%2Ck8s-app%20in%20%28a%29"
        );
    }

    #[test]
    fn status_errors_carry_the_api_message() {
        let e = status_error(
            "server-side apply X/y",
            "https://h:6443",
            StatusCode::UNPROCESSABLE_ENTITY,
            br#"{"kind":"Status","message":"PriorityClass.scheduling.k8s.io \"x\" is invalid"}"#,
        );
        assert_eq!(e.kind, KubeErrorKind::Invalid);
        assert_eq!(
            e.to_string(),
            "server-side apply X/y via https://h:6443: the object is invalid (HTTP 422): \
             PriorityClass.scheduling.k8s.io \"x\" is invalid"
        );
    }
}

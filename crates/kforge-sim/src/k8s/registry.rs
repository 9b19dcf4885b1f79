//! What the API server does with objects, independent of HTTP: get, list (selectors,
//! `limit`/`continue`), watch, create, update (optimistic concurrency on
//! `resourceVersion`), patch (server-side apply, JSON merge patch, JSON patch), delete —
//! with the Kubernetes behaviours clients rely on: `uid`/`creationTimestamp`/`generation`,
//! `managedFields`, the status subresource, namespaces that must exist, and errors as
//! Kubernetes words them.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::k8s::apply::{self, ApplyRequest, Scope};
use crate::k8s::meta::{self, ApiStatus, FieldSelector, LabelSelector};
use crate::k8s::resources::{self, ResourceType};
use crate::k8s::store::{self, Store, StoreError, Stored};
use crate::proto::etcdserverpb::event::EventType;

/// Namespaces every cluster has.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-node-lease", "kube-public", "kube-system"];

/// How many times a patch is retried when the object changes underneath it.
const PATCH_ATTEMPTS: usize = 5;

/// Who is writing.
#[derive(Clone, Debug)]
pub struct Writer<'a> {
    /// The field manager (`fieldManager`, or derived from the user agent).
    pub manager: &'a str,
    /// The authenticated user name and groups (recorded on CSRs).
    pub user: &'a str,
    pub groups: &'a [String],
}

/// The object a request addresses.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub rtype: &'a ResourceType,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    /// `status` for the status subresource.
    pub status: bool,
}

impl Target<'_> {
    fn key(&self) -> String {
        self.rtype.storage_key(self.namespace, self.name)
    }

    fn scope(&self) -> Scope {
        if self.status {
            Scope::Status
        } else {
            Scope::Object {
                status_separate: self.rtype.status_subresource,
            }
        }
    }

    fn not_found(&self) -> ApiStatus {
        ApiStatus::not_found(&self.rtype.qualified_plural(), self.name)
    }

    fn conflict(&self) -> ApiStatus {
        ApiStatus::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                self.rtype.qualified_plural(),
                self.name
            ),
        )
        .with_details(details(self.rtype, self.name))
    }
}

fn details(rtype: &ResourceType, name: &str) -> Value {
    json!({"name": name, "group": rtype.group, "kind": rtype.plural})
}

/// A storage failure as the API server reports it.
pub fn storage_error(e: StoreError) -> ApiStatus {
    match e {
        StoreError::Etcd(crate::SimError::Etcd {
            code: tonic::Code::DeadlineExceeded,
            message,
            ..
        }) => ApiStatus::new(
            504,
            "Timeout",
            format!("context deadline exceeded: {message}"),
        ),
        StoreError::Etcd(e) => ApiStatus::storage_unavailable(e.to_string()),
        other => ApiStatus::internal(other.to_string()),
    }
}

/// Sets `apiVersion` and `kind` to those of the type.
fn typed(mut object: Value, rtype: &ResourceType) -> Value {
    if let Some(o) = object.as_object_mut() {
        o.insert("apiVersion".into(), json!(rtype.api_version()));
        o.insert("kind".into(), json!(rtype.kind));
    }
    object
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

pub async fn get(store: &Store, target: Target<'_>) -> Result<Value, ApiStatus> {
    match store.get(&target.key()).await.map_err(storage_error)? {
        Some(s) => Ok(typed(s.object, target.rtype)),
        None => Err(target.not_found()),
    }
}

/// List options from the query string.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    pub limit: i64,
    pub continue_token: Option<String>,
}

fn selected(options: &ListOptions, object: &Value) -> bool {
    options
        .label_selector
        .matches(object.pointer("/metadata/labels"))
        && options.field_selector.matches(object)
}

fn collection_prefix(rtype: &ResourceType, namespace: Option<&str>) -> String {
    match (rtype.namespaced, namespace) {
        (true, Some(ns)) => format!("{}{ns}/", rtype.storage_prefix()),
        _ => rtype.storage_prefix(),
    }
}

fn encode_continue(revision: i64, after: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"v": "meta.k8s.io/v1", "rv": revision, "start": after}).to_string())
}

fn decode_continue(token: &str) -> Option<(i64, String)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    Some((
        v.get("rv")?.as_i64()?,
        v.get("start")?.as_str()?.to_string(),
    ))
}

/// A `<Kind>List`.
pub async fn list(
    store: &Store,
    rtype: &ResourceType,
    namespace: Option<&str>,
    options: &ListOptions,
) -> Result<Value, ApiStatus> {
    let prefix = collection_prefix(rtype, namespace);
    let (revision, after) = match &options.continue_token {
        Some(t) => {
            let (rv, start) = decode_continue(t).ok_or_else(|| {
                ApiStatus::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
            })?;
            if !start.starts_with(&prefix) {
                return Err(ApiStatus::bad_request(
                    "continue key is not valid: the key is not in this collection",
                ));
            }
            (rv, Some(start))
        }
        None => (0, None),
    };
    // Selectors filter after reading, so a page is only cut when nothing is filtered.
    let filtering = options.label_selector != LabelSelector::default()
        || options.field_selector != FieldSelector::default();
    let limit = if filtering { 0 } else { options.limit.max(0) };
    let page = store
        .list(&prefix, after.as_deref(), revision, limit)
        .await
        .map_err(storage_error)?;
    let items: Vec<Value> = page
        .items
        .into_iter()
        .map(|s| typed(s.object, rtype))
        .filter(|o| selected(options, o))
        .collect();
    let mut metadata = Map::new();
    metadata.insert("resourceVersion".into(), json!(page.revision.to_string()));
    if let Some(after) = &page.continue_after {
        metadata.insert(
            "continue".into(),
            json!(encode_continue(page.revision, after)),
        );
        metadata.insert("remainingItemCount".into(), json!(page.remaining));
    }
    Ok(json!({
        "kind": format!("{}List", rtype.kind),
        "apiVersion": rtype.api_version(),
        "metadata": Value::Object(metadata),
        "items": items,
    }))
}

/// Checks that the namespace of a namespaced write exists.
async fn require_namespace(store: &Store, target: &Target<'_>) -> Result<(), ApiStatus> {
    let Some(ns) = target.namespace.filter(|_| target.rtype.namespaced) else {
        return Ok(());
    };
    let ns_type = resources::built_in_type("", "v1", "namespaces")
        .ok_or_else(|| ApiStatus::internal("the namespaces type is missing"))?;
    match store
        .get(&ns_type.storage_key(None, ns))
        .await
        .map_err(storage_error)?
    {
        Some(_) => Ok(()),
        None => Err(ApiStatus::not_found("namespaces", ns)),
    }
}

/// Checks `apiVersion`, `kind`, name and namespace of a request body against the target.
fn check_identity(body: &Value, target: &Target<'_>) -> Result<(), ApiStatus> {
    if !body.is_object() {
        return Err(ApiStatus::bad_request("the request body is not an object"));
    }
    let rtype = target.rtype;
    if let Some(v) = text(body, "/apiVersion")
        && v != rtype.api_version()
    {
        return Err(ApiStatus::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({})",
            rtype.api_version()
        )));
    }
    if let Some(k) = text(body, "/kind")
        && k != rtype.kind
    {
        return Err(ApiStatus::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            rtype.kind
        )));
    }
    match text(body, "/metadata/name") {
        Some(n) if n != target.name => {
            return Err(ApiStatus::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                target.name
            )));
        }
        _ => {}
    }
    if rtype.namespaced
        && let (Some(ns), Some(want)) = (text(body, "/metadata/namespace"), target.namespace)
        && ns != want
    {
        return Err(ApiStatus::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if !meta::is_dns_subdomain(target.name) {
        return Err(ApiStatus::new(
            422,
            "Invalid",
            format!(
                "{} \"{}\" is invalid: metadata.name: Invalid value: \"{}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                rtype.kind, target.name, target.name
            ),
        ));
    }
    Ok(())
}

/// The metadata the server owns, for a new object.
fn initialise(object: &mut Value, target: &Target<'_>, writer: &Writer<'_>) {
    let rtype = target.rtype;
    let spec_present = object.get("spec").is_some();
    if let Some(o) = object.as_object_mut() {
        o.insert("apiVersion".into(), json!(rtype.api_version()));
        o.insert("kind".into(), json!(rtype.kind));
        let meta = o
            .entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(m) = meta {
            m.insert("name".into(), json!(target.name));
            if rtype.namespaced {
                if let Some(ns) = target.namespace {
                    m.insert("namespace".into(), json!(ns));
                }
            } else {
                m.remove("namespace");
            }
            m.insert("uid".into(), json!(meta::random_uuid()));
            m.insert("creationTimestamp".into(), json!(meta::now()));
            m.remove("resourceVersion");
            if spec_present {
                m.insert("generation".into(), json!(1));
            }
        }
    }
    // Type-specific defaults the real API server (or its admission) applies.
    match (rtype.group.as_str(), rtype.plural.as_str()) {
        ("", "namespaces") => {
            apply::set_path(
                object,
                &["spec".into(), "finalizers".into()],
                json!(["kubernetes"]),
            );
            apply::set_path(object, &["status".into(), "phase".into()], json!("Active"));
            apply::set_path(
                object,
                &[
                    "metadata".into(),
                    "labels".into(),
                    "kubernetes.io/metadata.name".into(),
                ],
                json!(target.name),
            );
        }
        ("certificates.k8s.io", "certificatesigningrequests") => {
            apply::set_path(
                object,
                &["spec".into(), "username".into()],
                json!(writer.user),
            );
            apply::set_path(
                object,
                &["spec".into(), "groups".into()],
                json!(writer.groups),
            );
        }
        _ => {}
    }
}

/// Keeps what a write may not change: identity metadata always; `.status` on the main
/// resource of a type with a status subresource; everything but `.status` on the status
/// subresource. Bumps `generation` when the spec changed.
fn carry_over(old: &Value, new: &mut Value, target: &Target<'_>) {
    if target.status {
        let status = new.get("status").cloned();
        let mut merged = old.clone();
        match status {
            Some(s) => apply::set_path(&mut merged, &["status".into()], s),
            None => apply::remove_path(&mut merged, &["status".into()]),
        }
        if let Some(mf) = new.pointer("/metadata/managedFields").cloned() {
            apply::set_path(
                &mut merged,
                &["metadata".into(), "managedFields".into()],
                mf,
            );
        }
        *new = merged;
        return;
    }
    if target.rtype.status_subresource {
        match old.get("status") {
            Some(s) => apply::set_path(new, &["status".into()], s.clone()),
            None => apply::remove_path(new, &["status".into()]),
        }
    }
    for field in ["uid", "creationTimestamp", "namespace", "name"] {
        let path = ["metadata".to_string(), field.to_string()];
        match apply::get_path(old, &path) {
            Some(v) => apply::set_path(new, &path, v.clone()),
            None => apply::remove_path(new, &path),
        }
    }
    let generation = old.pointer("/metadata/generation").and_then(Value::as_i64);
    let spec_changed = old.get("spec") != new.get("spec");
    match generation {
        Some(g) if spec_changed => {
            apply::set_path(new, &["metadata".into(), "generation".into()], json!(g + 1))
        }
        Some(g) => apply::set_path(new, &["metadata".into(), "generation".into()], json!(g)),
        None if new.get("spec").is_some() => {
            apply::set_path(new, &["metadata".into(), "generation".into()], json!(1))
        }
        None => {}
    }
    if let Some(o) = new.as_object_mut() {
        o.insert("apiVersion".into(), json!(target.rtype.api_version()));
        o.insert("kind".into(), json!(target.rtype.kind));
    }
}

/// POST to a collection; the name comes from the body (`metadata.name` or
/// `generateName`).
pub async fn create(
    store: &Store,
    rtype: &ResourceType,
    namespace: Option<&str>,
    mut body: Value,
    writer: &Writer<'_>,
) -> Result<Value, ApiStatus> {
    let name = match (
        text(&body, "/metadata/name"),
        text(&body, "/metadata/generateName"),
    ) {
        (Some(n), _) if !n.is_empty() => n.to_string(),
        (_, Some(g)) if !g.is_empty() => format!("{g}{}", meta::random_suffix(5)),
        _ => {
            return Err(ApiStatus::new(
                422,
                "Invalid",
                format!(
                    "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                    rtype.kind
                ),
            ));
        }
    };
    let target = Target {
        rtype,
        namespace,
        name: &name,
        status: false,
    };
    check_identity(&body, &target)?;
    require_namespace(store, &target).await?;
    initialise(&mut body, &target, writer);
    apply::record_update(
        None,
        &mut body,
        writer.manager,
        &rtype.api_version(),
        &meta::now(),
        Scope::Object {
            status_separate: false,
        },
    );
    match store.create(&target.key(), &body).await {
        Ok(s) => Ok(s.object),
        Err(StoreError::AlreadyExists) => Err(ApiStatus::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rtype.qualified_plural()),
        )
        .with_details(details(rtype, &name))),
        Err(e) => Err(storage_error(e)),
    }
}

/// PUT: replaces the object; a `metadata.resourceVersion` in the body must be current.
pub async fn update(
    store: &Store,
    target: Target<'_>,
    mut body: Value,
    writer: &Writer<'_>,
) -> Result<Value, ApiStatus> {
    check_identity(&body, &target)?;
    let current = store
        .get(&target.key())
        .await
        .map_err(storage_error)?
        .ok_or_else(|| target.not_found())?;
    if let Some(rv) = text(&body, "/metadata/resourceVersion")
        && rv != current.mod_revision.to_string()
    {
        return Err(target.conflict());
    }
    carry_over(&current.object, &mut body, &target);
    apply::record_update(
        Some(&current.object),
        &mut body,
        writer.manager,
        &target.rtype.api_version(),
        &meta::now(),
        target.scope(),
    );
    write_back(store, &target, &body, &current).await
}

async fn write_back(
    store: &Store,
    target: &Target<'_>,
    object: &Value,
    current: &Stored,
) -> Result<Value, ApiStatus> {
    if object_unchanged(&current.object, object) {
        // Kubernetes does not write (or bump the resourceVersion) for a no-op.
        return Ok(typed(current.object.clone(), target.rtype));
    }
    match store
        .update(&target.key(), object, current.mod_revision)
        .await
    {
        Ok(s) => Ok(s.object),
        Err(StoreError::Conflict) => Err(target.conflict()),
        Err(StoreError::NotFound) => Err(target.not_found()),
        Err(e) => Err(storage_error(e)),
    }
}

/// Equal apart from `resourceVersion` and the times in `managedFields`.
fn object_unchanged(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        apply::remove_path(&mut v, &["metadata".into(), "resourceVersion".into()]);
        if let Some(mf) = v
            .pointer_mut("/metadata/managedFields")
            .and_then(Value::as_array_mut)
        {
            for e in mf {
                if let Some(o) = e.as_object_mut() {
                    o.remove("time");
                }
            }
        }
        v
    };
    strip(old) == strip(new)
}

/// How a PATCH body is to be read.
#[derive(Clone, Debug)]
pub enum Patch {
    /// `application/apply-patch+yaml`.
    Apply { config: Value, force: bool },
    /// `application/merge-patch+json` (and, with lists replaced, strategic merge patch).
    Merge(Value),
    /// `application/json-patch+json`.
    Json(json_patch::Patch),
}

/// PATCH (server-side apply creates the object when it does not exist).
pub async fn patch(
    store: &Store,
    target: Target<'_>,
    patch: &Patch,
    writer: &Writer<'_>,
) -> Result<Value, ApiStatus> {
    if let Patch::Apply { config, .. } = patch {
        check_identity(config, &target)?;
    }
    let now = meta::now();
    let api_version = target.rtype.api_version();
    for _ in 0..PATCH_ATTEMPTS {
        let current = store.get(&target.key()).await.map_err(storage_error)?;
        let Some(current) = current else {
            let Patch::Apply { config, force } = patch else {
                return Err(target.not_found());
            };
            if target.status {
                return Err(target.not_found());
            }
            require_namespace(store, &target).await?;
            let req = ApplyRequest {
                manager: writer.manager,
                force: *force,
                api_version: &api_version,
                now: &now,
                scope: target.scope(),
            };
            let mut object =
                apply::apply(None, config, &req).map_err(|c| apply_conflicts(&c, &api_version))?;
            initialise(&mut object, &target, writer);
            match store.create(&target.key(), &object).await {
                Ok(s) => return Ok(s.object),
                Err(StoreError::AlreadyExists) => continue,
                Err(e) => return Err(storage_error(e)),
            }
        };
        let mut object = match patch {
            Patch::Apply { config, force } => {
                let req = ApplyRequest {
                    manager: writer.manager,
                    force: *force,
                    api_version: &api_version,
                    now: &now,
                    scope: target.scope(),
                };
                apply::apply(Some(&current.object), config, &req)
                    .map_err(|c| apply_conflicts(&c, &api_version))?
            }
            Patch::Merge(p) => {
                let mut o = current.object.clone();
                json_patch::merge(&mut o, p);
                o
            }
            Patch::Json(p) => {
                let mut o = current.object.clone();
                json_patch::patch(&mut o, &p.0).map_err(|e| {
                    ApiStatus::new(
                        422,
                        "Invalid",
                        format!("the JSON patch cannot be applied: {e}"),
                    )
                })?;
                o
            }
        };
        if !matches!(patch, Patch::Apply { .. }) {
            check_identity(&object, &target)?;
        }
        carry_over(&current.object, &mut object, &target);
        if !matches!(patch, Patch::Apply { .. }) {
            apply::record_update(
                Some(&current.object),
                &mut object,
                writer.manager,
                &api_version,
                &now,
                target.scope(),
            );
        }
        match write_back(store, &target, &object, &current).await {
            Err(s) if s.code == 409 => continue,
            other => return other,
        }
    }
    Err(target.conflict())
}

fn apply_conflicts(conflicts: &[apply::Conflict], api_version: &str) -> ApiStatus {
    let lines: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "conflict with \"{}\" using {api_version}: {}",
                c.manager, c.field
            )
        })
        .collect();
    let message = if lines.len() == 1 {
        format!("Apply failed with 1 conflict: {}", lines[0])
    } else {
        format!(
            "Apply failed with {} conflicts: {}",
            lines.len(),
            lines.join("\n")
        )
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{}\" using {api_version}", c.manager),
                "field": c.field,
            })
        })
        .collect();
    ApiStatus::new(409, "Conflict", message).with_details(json!({"causes": causes}))
}

/// DELETE: returns the object as it was.
pub async fn delete(store: &Store, target: Target<'_>) -> Result<Value, ApiStatus> {
    for _ in 0..PATCH_ATTEMPTS {
        let current = store
            .get(&target.key())
            .await
            .map_err(storage_error)?
            .ok_or_else(|| target.not_found())?;
        match store.delete(&target.key(), current.mod_revision).await {
            Ok(_) => return Ok(typed(current.object, target.rtype)),
            Err(StoreError::Conflict) => continue,
            Err(StoreError::NotFound) => return Err(target.not_found()),
            Err(e) => return Err(storage_error(e)),
        }
    }
    Err(target.conflict())
}

/// Watch options.
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    pub list: ListOptions,
    /// Events after this revision; None or 0: the current objects first (as ADDED).
    pub resource_version: Option<i64>,
    pub timeout: Duration,
}

fn event(kind: &str, object: Value) -> Value {
    json!({"type": kind, "object": object})
}

/// Starts a watch: WATCH events (`{"type": "ADDED", "object": …}`) arrive on the
/// receiver until the timeout, the receiver is dropped, or etcd ends the watch.
pub async fn watch(
    store: &Store,
    rtype: &ResourceType,
    namespace: Option<&str>,
    options: WatchOptions,
) -> Result<mpsc::Receiver<Value>, ApiStatus> {
    let prefix = collection_prefix(rtype, namespace);
    let (tx, rx) = mpsc::channel::<Value>(256);
    let mut initial = Vec::new();
    let start = match options.resource_version.filter(|rv| *rv > 0) {
        Some(rv) => rv + 1,
        None => {
            let page = store
                .list(&prefix, None, 0, 0)
                .await
                .map_err(storage_error)?;
            for s in page.items {
                let o = typed(s.object, rtype);
                if selected(&options.list, &o) {
                    initial.push(event("ADDED", o));
                }
            }
            page.revision + 1
        }
    };
    let mut etcd_watch = match store.watch(&prefix, start).await {
        Ok(w) => w,
        Err(StoreError::Etcd(crate::SimError::Etcd {
            code: tonic::Code::FailedPrecondition,
            ..
        })) => {
            let gone = ApiStatus::new(
                410,
                "Expired",
                format!("too old resource version: {}", start - 1),
            );
            let _ = tx.try_send(event("ERROR", gone.to_json()));
            return Ok(rx);
        }
        Err(e) => return Err(storage_error(e)),
    };
    let rtype = rtype.clone();
    tokio::spawn(async move {
        for e in initial {
            if tx.send(e).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + options.timeout;
        loop {
            let batch = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
                b = etcd_watch.next() => b,
            };
            let Ok(Some(batch)) = batch else {
                return;
            };
            for ev in batch.events {
                let Some(out) = translate(&ev, &rtype, &options.list) else {
                    continue;
                };
                if tx.send(out).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// An etcd event as a WATCH event (None when the selectors filter it out).
fn translate(
    ev: &crate::proto::etcdserverpb::Event,
    rtype: &ResourceType,
    options: &ListOptions,
) -> Option<Value> {
    let decoded = |kv: &Option<crate::proto::etcdserverpb::KeyValue>| {
        kv.as_ref()
            .and_then(|kv| store::decode(kv).ok())
            .map(|s| typed(s.object, rtype))
    };
    let prev = decoded(&ev.prev_kv).filter(|o| selected(options, o));
    if ev.r#type == EventType::Delete as i32 {
        let revision = ev.kv.as_ref().map(|kv| kv.mod_revision).unwrap_or(0);
        return prev.map(|o| event("DELETED", store::with_resource_version(o, revision)));
    }
    let new = decoded(&ev.kv)?;
    if selected(options, &new) {
        let created = ev.kv.as_ref().is_some_and(|kv| kv.version == 1) || prev.is_none();
        Some(event(if created { "ADDED" } else { "MODIFIED" }, new))
    } else {
        // It no longer matches: for this watcher it is gone.
        prev.map(|_| event("DELETED", new))
    }
}

/// Creates the namespaces every cluster has (idempotent).
pub async fn ensure_system_namespaces(store: &Store) -> Result<(), ApiStatus> {
    let ns_type = resources::built_in_type("", "v1", "namespaces")
        .ok_or_else(|| ApiStatus::internal("the namespaces type is missing"))?;
    let writer = Writer {
        manager: "kube-apiserver",
        user: "system:apiserver",
        groups: &[],
    };
    for ns in SYSTEM_NAMESPACES {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match create(store, &ns_type, None, body, &writer).await {
            Ok(_) => {}
            Err(s) if s.reason == "AlreadyExists" => {}
            Err(s) => return Err(s),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_type() -> ResourceType {
        resources::built_in_type("", "v1", "nodes").unwrap()
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "/registry/core/nodes/a");
        assert_eq!(
            decode_continue(&t),
            Some((42, "/registry/core/nodes/a".to_string()))
        );
        assert_eq!(decode_continue("!!"), None);
    }

    #[test]
    fn identity_checks() {
        let rtype = node_type();
        let target = Target {
            rtype: &rtype,
            namespace: None,
            name: "w-1",
            status: false,
        };
        assert!(
            check_identity(
                &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w-1"}}),
                &target
            )
            .is_ok()
        );
        let e = check_identity(&json!({"apiVersion": "v2", "kind": "Node"}), &target).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message
                .contains("does not match the expected API version (v1)")
        );
        let e = check_identity(&json!({"metadata": {"name": "other"}}), &target).unwrap_err();
        assert!(e.message.contains("does not match the name on the URL"));
        let bad = Target {
            name: "Bad_Name",
            ..target
        };
        assert_eq!(check_identity(&json!({}), &bad).unwrap_err().code, 422);
    }

    #[test]
    fn status_subresource_and_generation() {
        let rtype = node_type();
        let target = Target {
            rtype: &rtype,
            namespace: None,
            name: "n",
            status: false,
        };
        let old = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n", "uid": "u", "creationTimestamp": "t", "generation": 1},
            "spec": {"a": 1}, "status": {"phase": "x"}});
        let mut new = json!({"metadata": {"name": "n", "uid": "forged"}, "spec": {"a": 2}, "status": {"phase": "y"}});
        carry_over(&old, &mut new, &target);
        assert_eq!(
            new["status"]["phase"], "x",
            "status is kept on the main resource"
        );
        assert_eq!(new["metadata"]["uid"], "u");
        assert_eq!(new["metadata"]["generation"], 2);
        let status_target = Target {
            status: true,
            ..target
        };
        let mut new = json!({"spec": {"a": 9}, "status": {"phase": "y"}});
        carry_over(&old, &mut new, &status_target);
        assert_eq!(new["status"]["phase"], "y");
        assert_eq!(
            new["spec"]["a"], 1,
            "the status subresource changes only status"
        );
    }

    #[test]
    fn watch_events_follow_selectors() {
        use crate::proto::etcdserverpb::{Event, KeyValue};
        let rtype = node_type();
        let kv = |labels: Value, version: i64| KeyValue {
            key: b"/registry/core/nodes/n".to_vec(),
            value: serde_json::to_vec(&json!({"metadata": {"name": "n", "labels": labels}}))
                .unwrap(),
            mod_revision: 7,
            version,
            ..Default::default()
        };
        let opts = ListOptions {
            label_selector: LabelSelector::parse("role=w").unwrap(),
            ..Default::default()
        };
        let put = |new, prev| Event {
            r#type: EventType::Put as i32,
            kv: Some(new),
            prev_kv: prev,
        };
        let e = translate(&put(kv(json!({"role": "w"}), 1), None), &rtype, &opts).unwrap();
        assert_eq!(e["type"], "ADDED");
        assert_eq!(e["object"]["metadata"]["resourceVersion"], "7");
        assert_eq!(e["object"]["kind"], "Node");
        let e = translate(
            &put(
                kv(json!({"role": "w"}), 2),
                Some(kv(json!({"role": "w"}), 1)),
            ),
            &rtype,
            &opts,
        )
        .unwrap();
        assert_eq!(e["type"], "MODIFIED");
        let e = translate(
            &put(
                kv(json!({"role": "cp"}), 3),
                Some(kv(json!({"role": "w"}), 2)),
            ),
            &rtype,
            &opts,
        )
        .unwrap();
        assert_eq!(e["type"], "DELETED");
        assert!(translate(&put(kv(json!({"role": "cp"}), 1), None), &rtype, &opts).is_none());
        let del = Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                mod_revision: 9,
                ..Default::default()
            }),
            prev_kv: Some(kv(json!({"role": "w"}), 3)),
        };
        let e = translate(&del, &rtype, &opts).unwrap();
        assert_eq!(e["type"], "DELETED");
        assert_eq!(e["object"]["metadata"]["resourceVersion"], "9");
    }
}

//! Progress events: what the executor, the health checks and the drill report while they
//! run. They are typed values handed to an [`EventSink`]; rendering (terminal progress,
//! plain lines, JSON lines) is the caller's business. This module provides the JSON
//! serialization ([`Event::to_json_line`]) and a plain-line formatter ([`Event::plain_line`]).

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// The step of the deployment (or check) an event belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Looking at the nodes before planning.
    Observe,
    /// Sending machine configs.
    Apply,
    /// Waiting for the Talos API (apid) to answer over mutual TLS.
    Apid,
    /// Bootstrapping etcd on one control-plane node.
    Bootstrap,
    /// Waiting for every control-plane node to be a healthy etcd member.
    Etcd,
    /// Fetching and writing the kubeconfig.
    Kubeconfig,
    /// Waiting for the Kubernetes API and for every node to be Ready.
    Kubernetes,
    /// Server-side apply of the profiles' manifests.
    Manifests,
    /// Verifying tuning on the live nodes.
    Tuning,
    /// A health check.
    Health,
    /// The failover drill.
    Drill,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Observe => "observe",
            Phase::Apply => "apply",
            Phase::Apid => "apid",
            Phase::Bootstrap => "bootstrap",
            Phase::Etcd => "etcd",
            Phase::Kubeconfig => "kubeconfig",
            Phase::Kubernetes => "kubernetes",
            Phase::Manifests => "manifests",
            Phase::Tuning => "tuning",
            Phase::Health => "health",
            Phase::Drill => "drill",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Started,
    /// Still waiting; the message says for what and what was seen last.
    Waiting,
    Done,
    /// Nothing to do (already done, or not needed).
    Skipped,
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Started => "started",
            Status::Waiting => "waiting",
            Status::Done => "done",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One progress event. `elapsed` is the time since the run started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The node's hostname, for per-node steps.
    pub node: Option<String>,
    pub phase: Phase,
    pub status: Status,
    pub message: String,
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Event {
    /// One JSON object, no trailing newline:
    /// `{"node":"cp-1","phase":"apply","status":"done","message":"…","elapsed_ms":1234}`.
    pub fn to_json_line(&self) -> String {
        // Serializing plain strings, enums and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A fixed-layout line for logs and non-terminal output:
    /// `[   12.3s] apply      cp-1             done     applied config (insecure, maintenance mode)`.
    pub fn plain_line(&self) -> String {
        format!(
            "[{:>7.1}s] {:<10} {:<16} {:<8} {}",
            self.elapsed.as_secs_f64(),
            self.phase.name(),
            self.node.as_deref().unwrap_or("-"),
            self.status.name(),
            self.message
        )
    }
}

/// Receives progress events. Called synchronously from the running step, so it must be
/// quick (buffer or print, nothing slow).
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);
}

/// Drops every event.
pub struct DiscardEvents;

impl EventSink for DiscardEvents {
    fn emit(&self, _event: Event) {}
}

/// Keeps every event (tests, and callers that render at the end).
#[derive(Default)]
pub struct CollectEvents {
    events: Mutex<Vec<Event>>,
}

impl CollectEvents {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl EventSink for CollectEvents {
    fn emit(&self, event: Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}

/// How [`LineSink`] writes events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// One JSON object per line ([`Event::to_json_line`]); for `--output json`.
    Json,
    /// [`Event::plain_line`]; for logs and non-terminal output.
    Plain,
}

/// Writes each event as one line to a writer (stderr, a log file). Write errors are
/// ignored: progress output must never stop a deployment.
pub struct LineSink<W: std::io::Write + Send> {
    writer: Mutex<W>,
    format: LineFormat,
}

impl<W: std::io::Write + Send> LineSink<W> {
    pub fn new(writer: W, format: LineFormat) -> Self {
        LineSink {
            writer: Mutex::new(writer),
            format,
        }
    }

    pub fn into_inner(self) -> W {
        match self.writer.into_inner() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        }
    }
}

impl<W: std::io::Write + Send> EventSink for LineSink<W> {
    fn emit(&self, event: Event) {
        let line = match self.format {
            LineFormat::Json => event.to_json_line(),
            LineFormat::Plain => event.plain_line(),
        };
        if let Ok(mut w) = self.writer.lock() {
            let _ = writeln!(w, "{line}");
            let _ = w.flush();
        }
    }
}

/// Emits events with the elapsed time measured from when it was created (tokio's clock,
/// so tests on a paused clock get virtual times).
pub(crate) struct Emitter<'a> {
    sink: &'a dyn EventSink,
    start: tokio::time::Instant,
}

impl<'a> Emitter<'a> {
    pub fn new(sink: &'a dyn EventSink) -> Self {
        Emitter {
            sink,
            start: tokio::time::Instant::now(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn emit(
        &self,
        phase: Phase,
        node: Option<&str>,
        status: Status,
        message: impl Into<String>,
    ) {
        self.sink.emit(Event {
            node: node.map(str::to_string),
            phase,
            status,
            message: message.into(),
            elapsed: self.start.elapsed(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            node: Some("cp-1".into()),
            phase: Phase::Apply,
            status: Status::Done,
            message: "applied config (insecure, maintenance mode)".into(),
            elapsed: Duration::from_millis(12_345),
        }
    }

    #[test]
    fn json_line_shape() {
        assert_eq!(
            event().to_json_line(),
            r#"{"node":"cp-1","phase":"apply","status":"done","message":"applied config (insecure, maintenance mode)","elapsed_ms":12345}"#
        );
        let mut e = event();
        e.node = None;
        e.phase = Phase::Kubeconfig;
        assert!(
            e.to_json_line()
                .starts_with(r#"{"node":null,"phase":"kubeconfig""#)
        );
    }

    #[test]
    fn line_sink_writes_one_line_per_event() {
        let sink = LineSink::new(Vec::new(), LineFormat::Json);
        sink.emit(event());
        sink.emit(event());
        let text = String::from_utf8(sink.into_inner()).unwrap();
        assert_eq!(text.lines().count(), 2);
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["phase"], "apply");
        }
    }

    #[test]
    fn plain_line_layout() {
        assert_eq!(
            event().plain_line(),
            "[   12.3s] apply      cp-1             done     applied config (insecure, maintenance mode)"
        );
        let mut e = event();
        e.node = None;
        assert!(e.plain_line().contains(" -                "));
    }
}

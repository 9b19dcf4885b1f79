//! The control socket: a Unix socket (default `<state-dir>/run/control.sock`) through
//! which a test or an operator makes a running node misbehave. One command per line, one
//! answer line per command (`ok` or `ok <json>`, or `error: <reason>`):
//!
//! | command | effect |
//! |---|---|
//! | `status` | `ok {"phase":…,"faults":…,…}` |
//! | `refuse on` / `refuse off` | stop / resume listening (connections refused) |
//! | `pause on` / `pause off` | hang: accept TCP but never answer, freeze etcd / resume |
//! | `crash` | exit at once with status 137, etcd killed, nothing cleaned up |
//! | `power-cycle` | reboot without any graceful step (etcd killed) |
//! | `power-on` | boot a node halted by a reset without reboot |
//! | `boot-delay <duration>` / `ready-delay <duration>` | change the delays of later boots |
//! | `exit` | graceful shutdown, as SIGTERM |
//!
//! Try it by hand with `socat - UNIX-CONNECT:<state-dir>/run/control.sock`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::SimError;
use crate::node::Node;
use crate::settings::parse_duration;

/// Starts serving the control socket at `path` (a stale socket file is replaced).
pub fn serve(node: Node, path: &Path) -> Result<JoinHandle<()>, SimError> {
    if let Some(dir) = path.parent() {
        crate::layout::create_private_dir(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|source| SimError::Listen {
        what: "the control socket",
        address: path.display().to_string(),
        source,
    })?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let node = node.clone();
            tokio::spawn(async move {
                let _ = handle(node, stream).await;
            });
        }
    }))
}

async fn handle(node: Node, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "crash" {
            write.write_all(b"ok\n").await?;
            write.flush().await?;
            node.crash();
        }
        let answer = match execute(&node, line).await {
            Ok(None) => "ok\n".to_string(),
            Ok(Some(json)) => format!("ok {json}\n"),
            Err(e) => format!("error: {e}\n"),
        };
        write.write_all(answer.as_bytes()).await?;
    }
    Ok(())
}

fn on_off(arg: Option<&str>, command: &str) -> Result<bool, String> {
    match arg {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        _ => Err(format!("usage: {command} on|off")),
    }
}

async fn execute(node: &Node, line: &str) -> Result<Option<String>, String> {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or_default();
    let arg = words.next();
    match command {
        "status" => serde_json::to_string(&node.status())
            .map(Some)
            .map_err(|e| e.to_string()),
        "refuse" => {
            node.set_refuse(on_off(arg, "refuse")?).await;
            Ok(None)
        }
        "pause" => {
            node.set_pause(on_off(arg, "pause")?);
            Ok(None)
        }
        "power-cycle" => {
            let node = node.clone();
            tokio::spawn(async move { node.power_cycle().await });
            Ok(None)
        }
        "power-on" => node.power_on().await.map(|()| None),
        "boot-delay" | "ready-delay" => {
            let d = parse_duration(arg.ok_or_else(|| format!("usage: {command} <duration>"))?)?;
            if command == "boot-delay" {
                node.set_boot_delay(d);
            } else {
                node.set_ready_delay(d);
            }
            Ok(None)
        }
        "exit" => {
            node.request_exit(0);
            Ok(None)
        }
        other => Err(format!(
            "unknown command `{other}` (status, refuse, pause, crash, power-cycle, power-on, boot-delay, ready-delay, exit)"
        )),
    }
}

/// A client of a node's control socket.
#[derive(Clone, Debug)]
pub struct ControlClient {
    path: PathBuf,
}

impl ControlClient {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ControlClient { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one command; returns the text after `ok` (empty for a bare `ok`).
    pub async fn send(&self, command: &str) -> Result<String, SimError> {
        let fail = |reason: String| SimError::Control {
            path: self.path.clone(),
            reason,
        };
        let stream = UnixStream::connect(&self.path)
            .await
            .map_err(|e| fail(format!("cannot connect: {e}")))?;
        let (read, mut write) = stream.into_split();
        write
            .write_all(format!("{}\n", command.trim()).as_bytes())
            .await
            .map_err(|e| fail(format!("cannot send `{command}`: {e}")))?;
        let mut lines = BufReader::new(read).lines();
        let answer = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| fail(format!("no answer to `{command}` within 30s")))?
            .map_err(|e| fail(format!("reading the answer to `{command}`: {e}")))?
            .ok_or_else(|| fail(format!("the node closed the socket on `{command}`")))?;
        if let Some(rest) = answer.strip_prefix("ok") {
            Ok(rest.trim().to_string())
        } else {
            Err(fail(format!(
                "`{command}` failed: {}",
                answer.strip_prefix("error: ").unwrap_or(&answer)
            )))
        }
    }
}

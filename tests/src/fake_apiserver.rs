//! A Kubernetes API server for one ConfigMap, in the test process, speaking the real list/watch
//! wire protocol over HTTP/1.1: `resourceVersion`s, `fieldSelector`, chunked watch streams of
//! ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events, 410 Gone for expired resource versions, and the
//! faults a real one has (errors, hangs, dropped connections). Tests drive it and count requests.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// The fake API server. Dropping it stops accepting connections.
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

struct Shared {
    namespace: String,
    name: String,
    state: Mutex<State>,
    /// Bumped on every change of `state`, to wake open watches.
    changes: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    resource_version: u64,
    object: Option<Value>,
    /// Every event since the start, for watches from an older resourceVersion.
    history: Vec<(u64, Value)>,
    /// Watches from a resourceVersion below this get 410 Gone (etcd compaction).
    oldest_watchable: u64,
    /// Answer every request with this HTTP status, while set.
    failure: Option<u16>,
    /// Accept requests but never answer them, while set.
    hang: bool,
    /// Bumped to cut every open watch connection without a proper end.
    cut_generation: u64,
    /// Every request, as "LIST" or "WATCH" with its query.
    requests: Vec<Request>,
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `list` or `watch`.
    pub verb: &'static str,
    /// The query parameters.
    pub query: BTreeMap<String, String>,
}

impl FakeApiServer {
    /// Starts on an ephemeral loopback port, serving `namespace/name` (absent at first).
    pub async fn start(namespace: &str, name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            state: Mutex::new(State {
                resource_version: 100,
                ..State::default()
            }),
            changes: watch::channel(0).0,
        });
        let accept = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve_connection(stream, shared.clone()));
                }
            }
        });
        Self {
            addr,
            shared,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig file's content pointing at this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    \
             namespace: {}\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: \
             fake-token\n",
            self.url(),
            self.shared.namespace
        )
    }

    /// Creates or updates the ConfigMap with `data`; returns its new resourceVersion.
    pub fn apply(&self, data: &[(&str, &str)]) -> u64 {
        let data: BTreeMap<&str, &str> = data.iter().copied().collect();
        self.change(|state, rv, shared| {
            let kind = if state.object.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            };
            let object = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": shared.name,
                    "namespace": shared.namespace,
                    "resourceVersion": rv.to_string(),
                    "uid": "7f6c1f0e-0000-4000-8000-000000000001",
                },
                "data": data,
            });
            state.object = Some(object.clone());
            Some(json!({ "type": kind, "object": object }))
        })
    }

    /// Deletes the ConfigMap; returns the resourceVersion of the deletion.
    pub fn delete(&self) -> u64 {
        self.change(|state, rv, _| {
            let mut object = state.object.take()?;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            Some(json!({ "type": "DELETED", "object": object }))
        })
    }

    /// Sends a BOOKMARK at the current resourceVersion to open watches.
    pub fn bookmark(&self) {
        self.change(|_, rv, _| {
            Some(json!({
                "type": "BOOKMARK",
                "object": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": { "resourceVersion": rv.to_string() },
                },
            }))
        });
    }

    /// Sends an ERROR event with a 410 Gone status on open watches, as the API server does when a
    /// watch falls too far behind; the watcher must list again.
    pub fn expire_open_watches(&self) {
        self.change(|state, rv, _| {
            state.oldest_watchable = rv + 1;
            Some(gone_event())
        });
    }

    /// Compacts history: a watch from any resourceVersion seen so far gets 410 Gone.
    pub fn compact(&self) {
        let mut state = self.shared.state.lock().unwrap();
        state.oldest_watchable = state.resource_version + 1;
    }

    /// Cuts every open watch connection mid-stream (no terminating chunk).
    pub fn cut_connections(&self) {
        let mut state = self.shared.state.lock().unwrap();
        state.cut_generation += 1;
        drop(state);
        self.shared.changes.send_modify(|v| *v += 1);
    }

    /// Answers every request with HTTP `status` (e.g. 403, 500) until [`Self::recover`]; cuts
    /// open watches.
    pub fn fail_with(&self, status: u16) {
        self.shared.state.lock().unwrap().failure = Some(status);
        self.cut_connections();
    }

    /// Accepts requests but never answers, until [`Self::recover`]; cuts open watches.
    pub fn hang(&self) {
        self.shared.state.lock().unwrap().hang = true;
        self.cut_connections();
    }

    /// Answers normally again.
    pub fn recover(&self) {
        let mut state = self.shared.state.lock().unwrap();
        state.failure = None;
        state.hang = false;
        drop(state);
        self.shared.changes.send_modify(|v| *v += 1);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    /// The number of requests with `verb` (`list` or `watch`) so far.
    pub fn count(&self, verb: &str) -> usize {
        self.requests().iter().filter(|r| r.verb == verb).count()
    }

    fn change(&self, f: impl FnOnce(&mut State, u64, &Shared) -> Option<Value>) -> u64 {
        let mut state = self.shared.state.lock().unwrap();
        let rv = state.resource_version + 1;
        if let Some(event) = f(&mut state, rv, &self.shared) {
            state.resource_version = rv;
            state.history.push((rv, event));
        }
        let current = state.resource_version;
        drop(state);
        self.shared.changes.send_modify(|v| *v += 1);
        current
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_connections();
    }
}

fn gone_event() -> Value {
    json!({
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "too old resource version",
            "reason": "Expired",
            "code": 410,
        },
    })
}

fn status_body(code: u16) -> Value {
    let (reason, message) = match code {
        403 => (
            "Forbidden",
            "configmaps is forbidden: User \"system:serviceaccount:konflux-info:proxyconf\" \
             cannot list resource \"configmaps\" in API group \"\" in the namespace \
             \"konflux-info\"",
        ),
        404 => (
            "NotFound",
            "the server could not find the requested resource",
        ),
        410 => ("Expired", "too old resource version"),
        _ => ("InternalError", "etcdserver: request timed out"),
    };
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let Some(target) = read_request_target(&mut stream).await else {
        return;
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), parse_query(q)),
        None => (target.clone(), BTreeMap::new()),
    };
    let watching = query.get("watch").is_some_and(|v| v == "true" || v == "1");
    let (failure, hang, generation) = {
        let mut state = shared.state.lock().unwrap();
        state.requests.push(Request {
            verb: if watching { "watch" } else { "list" },
            query: query.clone(),
        });
        (state.failure, state.hang, state.cut_generation)
    };
    if hang {
        // Hold the connection open and silent until recovered or the test ends.
        let mut changes = shared.changes.subscribe();
        while is_hanging(&shared) {
            if changes.changed().await.is_err() {
                return;
            }
        }
        return; // Recovered: drop this request's connection; the client retries.
    }
    if let Some(code) = failure {
        return respond_json(&mut stream, code, &status_body(code)).await;
    }
    let expected = format!("/api/v1/namespaces/{}/configmaps", shared.namespace);
    let selector = format!("metadata.name={}", shared.name);
    if path != expected || query.get("fieldSelector") != Some(&selector) {
        return respond_json(&mut stream, 404, &status_body(404)).await;
    }
    if watching {
        watch(stream, shared, &query, generation).await;
    } else {
        let body = {
            let state = shared.state.lock().unwrap();
            json!({
                "kind": "ConfigMapList",
                "apiVersion": "v1",
                "metadata": { "resourceVersion": state.resource_version.to_string() },
                "items": state.object.iter().collect::<Vec<_>>(),
            })
        };
        respond_json(&mut stream, 200, &body).await;
    }
}

async fn watch(
    mut stream: TcpStream,
    shared: Arc<Shared>,
    query: &BTreeMap<String, String>,
    generation: u64,
) {
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(300), Duration::from_secs);
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut changes = shared.changes.subscribe();
    let mut sent_up_to = from;
    let expired = from < shared.state.lock().unwrap().oldest_watchable;
    if expired {
        let _ = write_chunk(&mut stream, &gone_event()).await;
        let _ = stream.write_all(b"0\r\n\r\n").await;
        return;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (events, cut) = {
            let state = shared.state.lock().unwrap();
            let events: Vec<(u64, Value)> = state
                .history
                .iter()
                .filter(|(rv, _)| *rv > sent_up_to)
                .cloned()
                .collect();
            (
                events,
                state.cut_generation != generation || state.failure.is_some(),
            )
        };
        if cut {
            return; // Dropped without the terminating chunk: the client sees a broken stream.
        }
        for (rv, event) in events {
            sent_up_to = rv;
            if write_chunk(&mut stream, &event).await.is_err() {
                return;
            }
            if event["type"] == "ERROR" {
                let _ = stream.write_all(b"0\r\n\r\n").await;
                return;
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep_until(deadline) => {
                let _ = stream.write_all(b"0\r\n\r\n").await;
                return;
            }
        }
    }
}

fn is_hanging(shared: &Shared) -> bool {
    shared.state.lock().unwrap().hang
}

async fn write_chunk(stream: &mut TcpStream, event: &Value) -> std::io::Result<()> {
    let mut line = event.to_string();
    line.push('\n');
    let chunk = format!("{:x}\r\n{line}\r\n", line.len());
    stream.write_all(chunk.as_bytes()).await?;
    stream.flush().await
}

async fn respond_json(stream: &mut TcpStream, code: u16, body: &Value) {
    let body = body.to_string();
    let reason = match code {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        _ => "Internal Server Error",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads the request head and returns its target (`/path?query`).
async fn read_request_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next()?;
    let mut parts = line.split_whitespace();
    (parts.next()? == "GET").then_some(())?;
    parts.next().map(str::to_owned)
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

//! A Kubernetes API server for one ConfigMap, in the test process, speaking the real list/watch
//! wire protocol over HTTP/1.1: `resourceVersion`s, `fieldSelector`, chunked watch streams of
//! ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events, 410 Gone for expired resource versions, and the
//! faults a real one has (errors, hangs, dropped connections). Tests drive it and count requests.
//!
//! HTTP is hyper's server, so the real kube client meets a real HTTP/1.1 implementation; this
//! module only decides what to answer. Every answer closes its connection (`Connection: close`),
//! a watch sends one JSON event per chunk, and the faults are the connection ending without an
//! answer (a hang that is over, a method other than GET) or a watch body ending without its last
//! chunk (a cut).

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::stream;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::{
    Method, Response, StatusCode,
    body::{Bytes, Frame, Incoming},
    header::{self, HeaderName, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
    time::Instant,
};

/// The fake API server. Dropping it stops accepting and ends every open connection.
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop, which owns the connections' tasks: dropping the set aborts it, and with
    /// it every connection.
    _accept: JoinSet<()>,
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
    failure: Option<StatusCode>,
    /// Accept requests but never answer them, while set.
    hang: bool,
    /// Bumped to cut every open watch connection without a proper end.
    cut_generation: u64,
    /// Every request, as `list` or `watch` with its query.
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

/// Why the fake ends a connection without a proper answer; hyper then closes it as it is.
#[derive(Debug, thiserror::Error)]
enum Dropped {
    #[error("{0} is not served, only GET")]
    NotGet(Method),
    #[error("the hang is over: the held request is dropped unanswered, the client retries")]
    HangOver,
    #[error("the watch was cut mid-stream, without its last chunk")]
    Cut,
}

/// A response body: a JSON document, or a watch's stream of events.
type Body = UnsyncBoxBody<Bytes, Dropped>;

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
        let mut tasks = JoinSet::new();
        tasks.spawn(accept(listener, shared.clone()));
        Self {
            addr,
            shared,
            _accept: tasks,
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
        self.shared.state.lock().unwrap().cut_generation += 1;
        self.shared.changes.send_modify(|v| *v += 1);
    }

    /// Answers every request with HTTP `status` (e.g. 403, 500) until [`Self::recover`]; cuts
    /// open watches.
    ///
    /// # Panics
    ///
    /// If `status` is not an HTTP status code (100 to 999).
    pub fn fail_with(&self, status: u16) {
        let status = StatusCode::from_u16(status).expect("an HTTP status code");
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

fn status_body(code: StatusCode) -> Value {
    let (reason, message) = match code {
        StatusCode::FORBIDDEN => (
            "Forbidden",
            "configmaps is forbidden: User \"system:serviceaccount:konflux-info:proxyconf\" \
             cannot list resource \"configmaps\" in API group \"\" in the namespace \
             \"konflux-info\"",
        ),
        StatusCode::NOT_FOUND => (
            "NotFound",
            "the server could not find the requested resource",
        ),
        StatusCode::GONE => ("Expired", "too old resource version"),
        _ => ("InternalError", "etcdserver: request timed out"),
    };
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    })
}

/// Serves every connection until the listener fails; then lets the open ones finish.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(stream, shared.clone()));
    }
    connections.join_all().await;
}

/// One request on `stream`, then the connection closes (no keep-alive).
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let service = service_fn(move |request| respond(request, shared.clone()));
    // An error is the connection's end: the client went away, or the fake dropped it on purpose.
    let _ = http1::Builder::new()
        .keep_alive(false)
        .title_case_headers(true)
        .auto_date_header(false)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn respond(
    request: hyper::Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Dropped> {
    if request.method() != Method::GET {
        return Err(Dropped::NotGet(request.method().clone()));
    }
    let query = request.uri().query().map(parse_query).unwrap_or_default();
    let watching = query.get("watch").is_some_and(|v| v == "true" || v == "1");
    let (failure, hang, generation) = record(&shared, watching, &query);
    if hang {
        return Err(hold_until_recovered(&shared).await);
    }
    if let Some(code) = failure {
        return Ok(json_response(code, &status_body(code)));
    }
    if !is_the_configmap(&shared, request.uri().path(), &query) {
        let code = StatusCode::NOT_FOUND;
        return Ok(json_response(code, &status_body(code)));
    }
    if watching {
        Ok(watch_response(OpenWatch::new(shared, &query, generation)))
    } else {
        Ok(json_response(StatusCode::OK, &list_body(&shared)))
    }
}

/// Counts the request; returns the failure, hang and cut generation it is served under.
fn record(
    shared: &Shared,
    watching: bool,
    query: &BTreeMap<String, String>,
) -> (Option<StatusCode>, bool, u64) {
    let mut state = shared.state.lock().unwrap();
    state.requests.push(Request {
        verb: if watching { "watch" } else { "list" },
        query: query.clone(),
    });
    (state.failure, state.hang, state.cut_generation)
}

/// Holds a request open and silent until recovered (or the test ends).
async fn hold_until_recovered(shared: &Shared) -> Dropped {
    let mut changes = shared.changes.subscribe();
    while is_hanging(shared) && changes.changed().await.is_ok() {}
    Dropped::HangOver
}

fn is_hanging(shared: &Shared) -> bool {
    shared.state.lock().unwrap().hang
}

/// Whether `path` and `query` ask for the served ConfigMap, the way the kube client does.
fn is_the_configmap(shared: &Shared, path: &str, query: &BTreeMap<String, String>) -> bool {
    let expected = format!("/api/v1/namespaces/{}/configmaps", shared.namespace);
    let selector = format!("metadata.name={}", shared.name);
    path == expected && query.get("fieldSelector") == Some(&selector)
}

fn list_body(shared: &Shared) -> Value {
    let state = shared.state.lock().unwrap();
    json!({
        "kind": "ConfigMapList",
        "apiVersion": "v1",
        "metadata": { "resourceVersion": state.resource_version.to_string() },
        "items": state.object.iter().collect::<Vec<_>>(),
    })
}

/// A complete JSON answer.
fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let body = body.to_string();
    let length = (header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let body = Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync();
    response(status, length, body)
}

/// A watch's answer: 200 and a chunked body, one event per chunk, as long as the watch lasts.
fn watch_response(watch: OpenWatch) -> Response<Body> {
    let frames = stream::unfold(Some(watch), |watch| async move {
        let mut watch = watch?;
        match watch.next().await {
            Step::Send(event) => Some((Ok(Frame::data(event_line(&event))), Some(watch))),
            Step::End => None,
            Step::Cut => Some((Err(Dropped::Cut), None)),
        }
    });
    let chunked = (
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    response(
        StatusCode::OK,
        chunked,
        StreamBody::new(frames).boxed_unsync(),
    )
}

/// The response with the API server's headers; `framing` is its length or chunked encoding, set
/// here rather than left to hyper so that the headers come in the order they always had.
fn response(status: StatusCode, framing: (HeaderName, HeaderValue), body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(framing.0, framing.1);
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// An event as the API server streams it: one JSON document and a newline.
fn event_line(event: &Value) -> Bytes {
    let mut line = event.to_string();
    line.push('\n');
    Bytes::from(line)
}

/// One open watch: what it has sent, and when it ends.
struct OpenWatch {
    shared: Arc<Shared>,
    changes: watch::Receiver<u64>,
    /// The cut generation when the watch started; another one cuts it.
    generation: u64,
    sent_up_to: u64,
    deadline: Instant,
    /// Events taken from the history and not yet sent.
    queue: VecDeque<Value>,
    /// The history has been looked at once; from then on, only after a change.
    started: bool,
    /// The queue ends with the last event (an ERROR): the stream ends after it.
    ending: bool,
}

/// What a watch does next.
enum Step {
    /// Sends this event.
    Send(Value),
    /// Ends the stream properly (the terminating chunk).
    End,
    /// Drops the connection mid-stream.
    Cut,
}

impl OpenWatch {
    /// A watch from the `resourceVersion` in `query`, for its `timeoutSeconds` (300 s if unset);
    /// one from an expired version only sends 410 Gone.
    fn new(shared: Arc<Shared>, query: &BTreeMap<String, String>, generation: u64) -> Self {
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let timeout = query
            .get("timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(300), Duration::from_secs);
        let expired = from < shared.state.lock().unwrap().oldest_watchable;
        Self {
            changes: shared.changes.subscribe(),
            shared,
            generation,
            sent_up_to: from,
            deadline: Instant::now() + timeout,
            queue: if expired {
                VecDeque::from([gone_event()])
            } else {
                VecDeque::new()
            },
            started: false,
            ending: expired,
        }
    }

    async fn next(&mut self) -> Step {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Step::Send(event);
            }
            if self.ending {
                return Step::End;
            }
            if self.started {
                match self.wait().await {
                    Wake::Change => {}
                    Wake::Deadline => return Step::End,
                    Wake::Closed => return cut().await,
                }
            }
            self.started = true;
            if self.cut_or_queue() {
                return cut().await;
            }
        }
    }

    async fn wait(&mut self) -> Wake {
        tokio::select! {
            changed = self.changes.changed() => match changed {
                Ok(()) => Wake::Change,
                Err(_) => Wake::Closed,
            },
            () = tokio::time::sleep_until(self.deadline) => Wake::Deadline,
        }
    }

    /// Whether the watch is cut; if not, queues the events after the last one sent, up to the
    /// first ERROR.
    fn cut_or_queue(&mut self) -> bool {
        let state = self.shared.state.lock().unwrap();
        if state.cut_generation != self.generation || state.failure.is_some() {
            return true;
        }
        let from = self.sent_up_to;
        for (rv, event) in state.history.iter().filter(|(rv, _)| *rv > from) {
            self.sent_up_to = *rv;
            self.ending = event["type"] == "ERROR";
            self.queue.push_back(event.clone());
            if self.ending {
                break;
            }
        }
        false
    }
}

/// What ends a watch's wait.
enum Wake {
    Change,
    Deadline,
    /// The change channel closed, which cannot happen while the watch holds `shared`; a cut.
    Closed,
}

/// A cut, after yielding once so that hyper writes out the events already sent: the client sees
/// every event sent before the cut, then a broken stream.
async fn cut() -> Step {
    tokio::task::yield_now().await;
    Step::Cut
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

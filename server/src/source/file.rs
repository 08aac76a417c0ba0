//! The ConfigMap file and directory sources: read a manifest, env file or INI file — or a
//! directory as kubelet projects a mounted ConfigMap (one file per key behind `..data`) — and
//! follow its changes.
//!
//! The kernel tells of changes (inotify through the `notify` crate) on the **directory**, so that
//! an atomic rename over the file and kubelet's swap of the `..data` symlink are both seen, which
//! a watch on the file itself misses; the file's metadata is also polled, slowly, as a fallback
//! for filesystems without notifications. A change is read only once it has held still for a
//! short settle time, so a half-written file is not mistaken for a finished one.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::warn;

use super::{
    BoxError, ConfigMapState, Source, SourceDescription, SourceEvent, file_format::FormatError,
};

/// How the file is followed.
#[derive(Debug, Clone)]
pub struct FileSourceOptions {
    /// How often the metadata is checked when no notification comes (the fallback).
    pub poll_interval: Duration,
    /// How long the metadata must stay the same before a changed file is read.
    pub settle: Duration,
}

impl Default for FileSourceOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            settle: Duration::from_millis(20),
        }
    }
}

/// Why the file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("cannot read ConfigMap file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse ConfigMap file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    #[error("cannot read ConfigMap directory {path}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ConfigMap directory {path}: the value of {key} is not UTF-8")]
    NotUtf8 { path: PathBuf, key: String },
}

/// Reads `path` once and parses it.
pub async fn read(path: &Path) -> Result<ConfigMapState, FileSourceError> {
    let content =
        tokio::fs::read_to_string(path)
            .await
            .map_err(|source| FileSourceError::Read {
                path: path.to_owned(),
                source,
            })?;
    super::file_format::parse(path, &content).map_err(|source| FileSourceError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Reads a directory as kubelet projects a ConfigMap: each visible entry is a key, its content
/// the value, exactly (kubelet writes the bytes as they are). Entries starting with `.` are
/// kubelet's (`..data`, the timestamped directories). A directory without keys is a missing
/// ConfigMap (an `optional: true` volume of a ConfigMap that does not exist).
pub async fn read_dir(path: &Path) -> Result<ConfigMapState, FileSourceError> {
    let dir_error = |source| FileSourceError::ReadDir {
        path: path.to_owned(),
        source,
    };
    let mut entries = tokio::fs::read_dir(path).await.map_err(dir_error)?;
    let mut data = BTreeMap::new();
    while let Some(entry) = entries.next_entry().await.map_err(dir_error)? {
        let key = entry.file_name().to_string_lossy().into_owned();
        if key.starts_with('.')
            || !tokio::fs::metadata(entry.path())
                .await
                .is_ok_and(|m| m.is_file())
        {
            continue;
        }
        let bytes = tokio::fs::read(entry.path()).await.map_err(dir_error)?;
        let value = String::from_utf8(bytes).map_err(|_| FileSourceError::NotUtf8 {
            path: path.to_owned(),
            key: key.clone(),
        })?;
        data.insert(key, value);
    }
    if data.is_empty() {
        return Ok(ConfigMapState::Missing);
    }
    Ok(ConfigMapState::Present {
        data,
        resource_version: None,
    })
}

/// What is followed: one file, or a directory of keys.
#[derive(Debug, Clone)]
enum Target {
    File(PathBuf),
    Dir(PathBuf),
}

impl Target {
    /// The directory whose notifications tell of changes.
    fn watched_dir(&self) -> PathBuf {
        match self {
            Self::File(path) => match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
                _ => PathBuf::from("."),
            },
            Self::Dir(path) => path.clone(),
        }
    }

    async fn read(&self) -> Result<ConfigMapState, FileSourceError> {
        match self {
            Self::File(path) => read(path).await,
            Self::Dir(path) => read_dir(path).await,
        }
    }

    async fn fingerprint(&self) -> Option<Fingerprint> {
        match self {
            Self::File(path) => fingerprint(path).await,
            Self::Dir(path) => dir_fingerprint(path).await,
        }
    }
}

/// A source that yields the file's state now, and again each time it changes. Unchanged content
/// (a touch, a rewrite with the same bytes) yields nothing; a failure is yielded once until it
/// changes or the file recovers. It ends when the receiver is dropped.
pub fn follow(path: PathBuf, options: FileSourceOptions) -> Source {
    let location = path.display().to_string();
    spawn_follower(Target::File(path), "file", location, options)
}

/// Like [`follow`], for a directory as kubelet projects a mounted ConfigMap: a replica in the
/// ConfigMap's own namespace needs no access to the Kubernetes API at all.
pub fn follow_dir(path: PathBuf, options: FileSourceOptions) -> Source {
    let location = path.display().to_string();
    spawn_follower(Target::Dir(path), "directory", location, options)
}

fn spawn_follower(
    target: Target,
    kind: &'static str,
    location: String,
    options: FileSourceOptions,
) -> Source {
    let (tx, rx) = mpsc::channel(1);
    // The task ends when the receiver is dropped (see `changes`); nothing else holds it.
    tokio::spawn(poll(target, options, tx));
    Source {
        description: SourceDescription { kind, location },
        events: ReceiverStream::new(rx).boxed(),
    }
}

/// Kernel notifications for `dir`, as wake-ups on a channel; `None` (with a warning) when the
/// filesystem offers none, and polling alone follows the file. The watcher stops when dropped.
fn notifications(dir: &Path) -> Option<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    use notify::Watcher;
    let (wake, woken) = mpsc::channel(1);
    let handler = move |_event: notify::Result<notify::Event>| {
        // Full means a wake-up is already pending: one look covers both.
        let _ = wake.try_send(());
    };
    let result = notify::recommended_watcher(handler).and_then(|mut watcher| {
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    match result {
        Ok(watcher) => Some((watcher, woken)),
        Err(error) => {
            warn!(dir = %dir.display(), %error, "no change notifications; polling only");
            None
        }
    }
}

/// What identifies a version of the file (or of each entry of the directory) without reading
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<(String, Option<SystemTime>, u64, u64)>);

async fn entry_print(path: &Path) -> Option<(Option<SystemTime>, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some((meta.modified().ok(), meta.len(), meta.ino()))
}

async fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let (modified, len, inode) = entry_print(path).await?;
    Some(Fingerprint(vec![(String::new(), modified, len, inode)]))
}

/// The directory's entries (symlinks followed: kubelet's keys point through `..data`), and where
/// `..data` points.
async fn dir_fingerprint(path: &Path) -> Option<Fingerprint> {
    let mut entries = tokio::fs::read_dir(path).await.ok()?;
    let mut prints = Vec::new();
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((modified, len, inode)) = entry_print(&entry.path()).await {
            prints.push((name, modified, len, inode));
        }
    }
    if let Ok(target) = tokio::fs::read_link(path.join("..data")).await {
        prints.push((format!("..data -> {}", target.display()), None, 0, 0));
    }
    prints.sort();
    Some(Fingerprint(prints))
}

/// The last thing told to the server, to tell only changes.
#[derive(PartialEq)]
enum Told {
    Nothing,
    State(ConfigMapState),
    Failure(String),
}

/// Follows `target`: a look at each notification and each poll tick, a read when the
/// fingerprint changed and held still. Ends when the receiver is dropped.
async fn poll(target: Target, options: FileSourceOptions, tx: mpsc::Sender<SourceEvent>) {
    let mut told = Told::Nothing;
    let mut seen: Option<Option<Fingerprint>> = None;
    let mut ticker = tokio::time::interval(options.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Held for as long as the loop runs: dropping the watcher stops its thread.
    let (_watcher, mut woken) = match notifications(&target.watched_dir()) {
        Some((watcher, woken)) => (Some(watcher), Some(woken)),
        None => (None, None),
    };
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            Some(()) = recv_or_never(woken.as_mut()) => {}
            () = tx.closed() => return,
        }
        let now = target.fingerprint().await;
        if seen.as_ref() == Some(&now) && !matches!(told, Told::Nothing) {
            continue;
        }
        if seen.is_some() {
            // Changed since the last look: wait until it holds still.
            tokio::time::sleep(options.settle).await;
            if target.fingerprint().await != now {
                continue;
            }
        }
        seen = Some(now);
        let Some(event) = next_event(&target, &mut told).await else {
            continue;
        };
        if tx.send(event).await.is_err() {
            return; // The server is gone.
        }
    }
}

/// The next notification, or never when there are none.
async fn recv_or_never(woken: Option<&mut mpsc::Receiver<()>>) -> Option<()> {
    match woken {
        Some(woken) => woken.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads `target`; the event to send when the outcome differs from what was `told`.
async fn next_event(target: &Target, told: &mut Told) -> Option<SourceEvent> {
    let (event, next) = match target.read().await {
        Ok(state) => (SourceEvent::Observed(state.clone()), Told::State(state)),
        Err(error) => {
            let text = super::error_chain(&error);
            (
                SourceEvent::Failed(Box::new(error) as BoxError),
                Told::Failure(text),
            )
        }
    };
    if next == *told {
        return None;
    }
    *told = next;
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> FileSourceOptions {
        FileSourceOptions {
            poll_interval: Duration::from_millis(20),
            settle: Duration::from_millis(5),
        }
    }

    async fn next(source: &mut Source) -> SourceEvent {
        tokio::time::timeout(Duration::from_secs(5), source.events.next())
            .await
            .expect("an event within 5s")
            .expect("the source does not end")
    }

    fn data_of(event: SourceEvent) -> std::collections::BTreeMap<String, String> {
        match event {
            SourceEvent::Observed(ConfigMapState::Present { data, .. }) => data,
            other => panic!("expected a present state, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn yields_initial_state_then_changes_then_failures_then_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster-config.env");
        std::fs::write(&path, "allow-package-registry-proxy=true\n").unwrap();
        let mut source = follow(path.clone(), fast());
        assert_eq!(source.description.kind, "file");

        let first = data_of(next(&mut source).await);
        assert_eq!(first["allow-package-registry-proxy"], "true");

        std::fs::write(&path, "allow-package-registry-proxy=false\n").unwrap();
        let second = data_of(next(&mut source).await);
        assert_eq!(second["allow-package-registry-proxy"], "false");

        std::fs::write(&path, "this is not key value\n").unwrap();
        match next(&mut source).await {
            SourceEvent::Failed(e) => {
                let text = crate::source::error_chain(e.as_ref());
                assert!(text.contains("cannot parse ConfigMap file"), "{text}");
                assert!(text.contains("line 1"), "{text}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }

        std::fs::remove_file(&path).unwrap();
        match next(&mut source).await {
            SourceEvent::Failed(e) => assert!(e.to_string().contains("cannot read"), "{e}"),
            other => panic!("expected a failure, got {other:?}"),
        }

        std::fs::write(&path, "allow-package-registry-proxy=1\n").unwrap();
        let back = data_of(next(&mut source).await);
        assert_eq!(back["allow-package-registry-proxy"], "1");
    }

    #[tokio::test]
    async fn same_content_rewritten_yields_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cm.env");
        std::fs::write(&path, "a=1\n").unwrap();
        let mut source = follow(path.clone(), fast());
        data_of(next(&mut source).await);
        std::fs::write(&path, "a=1\n").unwrap();
        std::fs::write(&path, "a=2\n").unwrap();
        assert_eq!(data_of(next(&mut source).await)["a"], "2");
    }

    /// Polling so slow that only a notification can explain a quick event.
    fn notified_only() -> FileSourceOptions {
        FileSourceOptions {
            poll_interval: Duration::from_secs(3600),
            settle: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn an_atomic_rename_is_noticed_without_polling() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster-config.env");
        std::fs::write(&path, "a=1\n").unwrap();
        let mut source = follow(path.clone(), notified_only());
        assert_eq!(data_of(next(&mut source).await)["a"], "1");
        let tmp = dir.path().join(".cluster-config.env.tmp");
        std::fs::write(&tmp, "a=2\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(data_of(next(&mut source).await)["a"], "2");
    }

    #[tokio::test]
    async fn a_projected_configmap_directory_and_its_data_swap() {
        let dir = tempfile::tempdir().unwrap();
        proxyconf_e2e::fixtures::project_configmap(
            dir.path(),
            "2026_12_02_01",
            &[
                ("allow-package-registry-proxy", "true"),
                ("package-registry-proxy-npm-url", "https://n/npm/"),
            ],
        );
        let mut source = follow_dir(dir.path().to_owned(), notified_only());
        assert_eq!(source.description.kind, "directory");
        let first = data_of(next(&mut source).await);
        assert_eq!(first["package-registry-proxy-npm-url"], "https://n/npm/");
        assert_eq!(
            first.len(),
            2,
            "kubelet's own entries are not keys: {first:?}"
        );

        proxyconf_e2e::fixtures::project_configmap(
            dir.path(),
            "2026_12_02_02",
            &[
                ("allow-package-registry-proxy", "true"),
                ("package-registry-proxy-npm-url", "https://n/npm-group/"),
            ],
        );
        let started = std::time::Instant::now();
        let second = data_of(next(&mut source).await);
        assert_eq!(
            second["package-registry-proxy-npm-url"],
            "https://n/npm-group/"
        );
        // Timing is the bench's job; this only shows that no poll was needed.
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[tokio::test]
    async fn an_empty_directory_is_a_missing_configmap() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = follow_dir(dir.path().to_owned(), notified_only());
        assert!(matches!(
            next(&mut source).await,
            SourceEvent::Observed(ConfigMapState::Missing)
        ));
    }
}

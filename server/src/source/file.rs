//! The ConfigMap file source: reads a manifest or env file and follows its changes.
//!
//! The file is polled (its metadata, cheaply) rather than watched with inotify: a ConfigMap mounted
//! into a pod is updated by swapping a symlink, which inotify watches on the file miss, and polling
//! behaves the same on every filesystem. A change is read only once the file has stopped changing
//! for a short settle time, so a half-written file is not mistaken for a finished one.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{
    BoxError, ConfigMapState, Source, SourceDescription, SourceEvent, file_format::FormatError,
};

/// How the file is followed.
#[derive(Debug, Clone)]
pub struct FileSourceOptions {
    /// How often the file's metadata is checked.
    pub poll_interval: Duration,
    /// How long the metadata must stay the same before a changed file is read.
    pub settle: Duration,
}

impl Default for FileSourceOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            settle: Duration::from_millis(100),
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

/// A source that yields the file's state now, and again each time it changes. Unchanged content
/// (a touch, a rewrite with the same bytes) yields nothing; a failure is yielded once until it
/// changes or the file recovers.
pub fn follow(path: PathBuf, options: FileSourceOptions) -> Source {
    let description = SourceDescription {
        kind: "file",
        location: path.display().to_string(),
    };
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(poll(path, options, tx));
    Source {
        description,
        events: ReceiverStream::new(rx).boxed(),
    }
}

/// What identifies a version of the file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

async fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some(Fingerprint {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// The last thing told to the server, to tell only changes.
#[derive(PartialEq)]
enum Told {
    Nothing,
    State(ConfigMapState),
    Failure(String),
}

async fn poll(path: PathBuf, options: FileSourceOptions, tx: mpsc::Sender<SourceEvent>) {
    let mut told = Told::Nothing;
    let mut seen: Option<Option<Fingerprint>> = None;
    let mut ticker = tokio::time::interval(options.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = fingerprint(&path).await;
        if seen.as_ref() == Some(&now) && !matches!(told, Told::Nothing) {
            continue;
        }
        if seen.is_some() {
            // Changed since the last look: wait until it holds still.
            tokio::time::sleep(options.settle).await;
            if fingerprint(&path).await != now {
                continue;
            }
        }
        seen = Some(now);
        let (event, next) = match read(&path).await {
            Ok(state) => (None, Told::State(state)),
            Err(error) => {
                let text = super::error_chain(&error);
                (Some(Box::new(error) as BoxError), Told::Failure(text))
            }
        };
        if next == told {
            continue;
        }
        let event = match (event, &next) {
            (Some(error), _) => SourceEvent::Failed(error),
            (None, Told::State(state)) => SourceEvent::Observed(state.clone()),
            (None, _) => unreachable!("a read without an error yields a state"),
        };
        told = next;
        if tx.send(event).await.is_err() {
            return; // The server is gone.
        }
    }
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
}

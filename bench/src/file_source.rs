//! The file and directory sources end to end: how soon a change on disk reaches Watch
//! subscribers, now that the kernel tells the server (inotify) instead of a 500 ms poll.

use std::{future::Future, path::Path, time::Duration};

use proxyconf_e2e::fixtures::{NEXUS, project_configmap};

use crate::{percentiles, processes::ServerProcess, report::Table, subscribers::Subscribers};

fn env_file(npm_path: &str) -> String {
    format!(
        "allow-package-registry-proxy=true\npackage-registry-proxy-npm-url={NEXUS}/{npm_path}/\n"
    )
}

/// Replaces `path` as an editor or a GitOps agent does: a new file renamed over the old one.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, content)
        .and_then(|()| std::fs::rename(&tmp, path))
        .is_err()
    {
        eprintln!("cannot replace {}", path.display());
    }
}

/// Delays from `change` to each of `subscribers` Watch subscribers of the server at `address`.
async fn delays(
    address: &str,
    subscribers: usize,
    change: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<Vec<Duration>> {
    let connections = subscribers.div_ceil(100).max(1);
    let streams = Subscribers::open(address, connections, subscribers).await?;
    // Let the server settle after the burst of stream setups.
    tokio::time::sleep(Duration::from_millis(200)).await;
    streams.delays_after(change).await
}

/// A rename over the ConfigMap file → every subscriber.
pub async fn file_change(table: &mut Table, subscribers: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cluster-config.env");
    std::fs::write(&path, env_file("npm"))?;
    let server = ServerProcess::proxyconf_local("--configmap-file", &path)?;
    let mut delays = delays(&server.address, subscribers, async {
        replace(&path, &env_file("npm-group"));
        Ok(())
    })
    .await?;
    add_row(
        table,
        &format!("a ConfigMap file renamed over → {subscribers} subscribers"),
        &mut delays,
        Duration::from_millis(150),
    );
    Ok(())
}

/// kubelet's `..data` swap in a projected ConfigMap directory → every subscriber.
pub async fn directory_swap(table: &mut Table, subscribers: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (npm, group) = (format!("{NEXUS}/npm/"), format!("{NEXUS}/npm-group/"));
    let data = |url| {
        [
            ("allow-package-registry-proxy", "true"),
            ("package-registry-proxy-npm-url", url),
        ]
    };
    project_configmap(dir.path(), "1", &data(&npm));
    let server = ServerProcess::proxyconf_local("--configmap-dir", dir.path())?;
    let mut delays = delays(&server.address, subscribers, async {
        project_configmap(dir.path(), "2", &data(&group));
        Ok(())
    })
    .await?;
    add_row(
        table,
        &format!("kubelet's ..data swap (--configmap-dir) → {subscribers} subscribers"),
        &mut delays,
        Duration::from_millis(100),
    );
    Ok(())
}

/// A row of delays against `target` for their p99.
fn add_row(table: &mut Table, what: &str, delays: &mut [Duration], target: Duration) {
    let (p50, p99) = percentiles(delays);
    table.add(
        what,
        format!("p50 {}, p99 {}", ms(p50), ms(p99)),
        &format!("p99 ≤ {} ms", target.as_millis()),
        Some(p99 <= target),
    );
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

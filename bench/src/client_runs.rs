//! `proxyconf env` as a build step runs it: a whole process, start to exit, against a local server.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};

/// Runs `proxyconf env` `runs` times against `address`; returns the wall times and the peak RSS
/// of the largest run in KiB (from `getrusage(RUSAGE_CHILDREN)`, so call this before reaping any
/// other child).
pub fn env_runs(address: &str, runs: usize) -> anyhow::Result<(Vec<Duration>, u64)> {
    let client = crate::processes::sibling("proxyconf")?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let status = Command::new(&client)
            .args(["env", "--quiet", "--server", address])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot run proxyconf")?;
        times.push(start.elapsed());
        ensure!(status.success(), "proxyconf env failed: {status}");
    }
    Ok((times, children_max_rss_kib()))
}

fn children_max_rss_kib() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_CHILDREN is a valid selector.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    u64::try_from(usage.ru_maxrss).unwrap_or(0)
}

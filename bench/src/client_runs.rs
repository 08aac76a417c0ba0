//! `proxyconf env` as a build step runs it: a whole process, start to exit, against a local server.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};

/// Runs `proxyconf env` `runs` times against `address`; returns the wall times (spawn to exit)
/// and the peak RSS of each run in KiB.
///
/// Each run is started by a fresh, small helper process (this binary's `measure`): Linux charges
/// a child spawned with `vfork` (as `posix_spawn` does) with its parent's peak memory, so a
/// client started directly by this large, busy process would be reported with this process's
/// size.
pub fn env_runs(address: &str, runs: usize) -> anyhow::Result<(Vec<Duration>, Vec<u64>)> {
    let client = crate::processes::sibling("proxyconf")?;
    let helper = crate::processes::sibling("proxyconf-bench")?;
    let mut times = Vec::with_capacity(runs);
    let mut peaks = Vec::with_capacity(runs);
    for _ in 0..runs {
        let out = Command::new(&helper)
            .arg("measure")
            .arg("--")
            .arg(&client)
            .args(["env", "--quiet", "--server", address])
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run proxyconf-bench measure")?;
        ensure!(out.status.success(), "proxyconf env failed: {}", out.status);
        let text = String::from_utf8(out.stdout)?;
        let mut fields = text.split_whitespace();
        let nanos: u64 = fields.next().context("no time")?.parse()?;
        let kib: u64 = fields.next().context("no peak RSS")?.parse()?;
        times.push(Duration::from_nanos(nanos));
        peaks.push(kib);
    }
    Ok((times, peaks))
}

/// The `measure` helper: runs `command` with its output discarded and prints
/// `<wall nanoseconds> <peak RSS KiB>`; fails when the command fails.
pub fn measure(command: &[std::ffi::OsString]) -> anyhow::Result<()> {
    let (program, args) = command.split_first().context("measure needs a command")?;
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
    let (status, peak_kib) = wait_with_peak_rss(child.id())?;
    let elapsed = start.elapsed();
    ensure!(
        status == 0,
        "{} failed: wait status {status}",
        program.to_string_lossy()
    );
    println!("{} {peak_kib}", elapsed.as_nanos());
    Ok(())
}

/// Reaps `pid` with `wait4`, which reports that one process's resource use: its exit status and
/// its peak resident memory in KiB.
fn wait_with_peak_rss(pid: u32) -> anyhow::Result<(i32, u64)> {
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    let pid = libc::pid_t::try_from(pid)?;
    // SAFETY: wait4 writes an int and a rusage into the valid, writable places it is given; the
    // child is ours and not waited for elsewhere.
    let (reaped, usage) = unsafe {
        let reaped = libc::wait4(pid, &mut status, 0, usage.as_mut_ptr());
        (reaped, usage.assume_init())
    };
    ensure!(
        reaped == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    Ok((status, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}

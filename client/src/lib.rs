//! proxyconf: the thin client a build step calls to get its package registry proxy settings from
//! proxyconf-server, failing closed.
//!
//! # Layout
//!
//! - [`cli`]: flags and their validation.
//! - [`remote`]: connecting and calling within a deadline, with retries.
//! - [`exports`]: the server's answer → the variables a build may get.
//! - [`render`]: shell / dotenv / JSON output, atomic files.
//! - [`record`]: the outcome record of `--record`.
//! - [`status`]: `proxyconf status` for a person.
//! - [`exit`]: failures and their exit codes.
#![forbid(unsafe_code)]

pub mod cli;
pub mod exit;
pub mod exports;
pub mod record;
pub mod remote;
pub mod render;
pub mod status;

use std::{
    ffi::OsString,
    io::{self, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, SystemTime},
};

use proxyconf_proto::v1::{
    CacheProxy, CacheProxyDecision, Decision, GetStatusRequest, Resolution, ResolveRequest,
    WatchRequest,
};
use tokio::time::Instant;

use crate::{
    cli::{Cli, Command, Request, RequestArgs, Selection},
    exit::Failure,
    exports::Variables,
    record::{Outcome, Record},
    remote::{CallError, Servers},
    render::Format,
};

/// Where and how long to ask.
struct Target {
    servers: Servers,
    /// `--server` as given, for messages and the record.
    address: String,
    timeout: Duration,
    deadline: Instant,
}

impl Target {
    /// The servers of `--server` with their TLS settings; the deadline starts now.
    fn new(cli: &Cli) -> Result<Self, Failure> {
        let tls = remote::TlsFiles {
            ca_cert: cli.ca_cert.clone(),
            client_cert: cli.client_cert.clone(),
            client_key: cli.client_key.clone(),
        };
        Ok(Self {
            servers: Servers::parse(&cli.server, &tls)?,
            address: cli.server.clone(),
            timeout: cli.deadline(),
            deadline: Instant::now() + cli.deadline(),
        })
    }
}

/// Where `env` writes.
struct EnvOutput {
    format: Format,
    output: Option<PathBuf>,
    tekton_results: Option<PathBuf>,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let target = Target::new(&cli);
    match cli.command {
        Command::Env {
            selection,
            format,
            output,
            tekton_results,
        } => {
            let out = EnvOutput {
                format,
                output,
                tekton_results,
            };
            let result = match &target {
                Ok(target) => env(target, &selection, &out).await,
                Err(failure) => Err(failure.clone()),
            };
            if let Err(failure) = &result {
                fail_closed_output(&out, failure.code());
            }
            finish(selection.record.as_deref(), &cli.server, result)
        }
        Command::Exec { selection, command } => {
            let record = selection.record.as_deref();
            let fetched = match &target {
                Ok(target) => fetch_variables(target, &selection).await,
                Err(failure) => Err(failure.clone()),
            };
            let (variables, applied) = match fetched {
                Ok(fetched) => fetched,
                Err(failure) => return finish(record, &cli.server, Err(failure)),
            };
            finish(record, &cli.server, Ok(applied))?;
            finish(record, &cli.server, Err(exec(&command, &variables)))
        }
        Command::CacheProxy {
            enable,
            http_proxy_result_path,
            no_proxy_result_path,
            allow_direct_on_unavailable,
            record,
        } => {
            let results = [
                (http_proxy_result_path, "HTTP_PROXY"),
                (no_proxy_result_path, "NO_PROXY"),
            ];
            let failing = Failing {
                allow_direct_on_unavailable,
                quiet: false,
            };
            let result = match &target {
                Ok(target) => cache_proxy(target, &enable, &results, failing).await,
                Err(failure) => Err(failure.clone()),
            };
            finish(record.as_deref(), &cli.server, result)
        }
        Command::Install { dir } => install(&dir),
        Command::Watch { request } => {
            let target = target?;
            watch(&target.servers, target.timeout, &request).await
        }
        Command::Status { json, history } => {
            let target = target?;
            let server = &target.servers;
            let status = remote::call_with_retries(server, target.deadline, |mut c| async move {
                c.get_status(GetStatusRequest {})
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await
            .map_err(|e| e.into_status_failure(server, target.timeout))?;
            let text = if json {
                format!("{}\n", to_json(&status)?)
            } else {
                let shown = if history {
                    usize::MAX
                } else {
                    status::RECENT_HISTORY
                };
                status::render(&status, SystemTime::now(), shown)
            };
            write_stdout(text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn resolve_request(request: &Request) -> ResolveRequest {
    ResolveRequest {
        enable_package_registry_proxy: Some(request.package_registry_proxy),
        package_managers: request.scope.iter().flatten().cloned().collect(),
        enable_cache_proxy: Some(request.cache_proxy),
    }
}

/// `proxyconf env`: gets the variables and writes them where asked.
async fn env(target: &Target, selection: &Selection, out: &EnvOutput) -> Result<Record, Failure> {
    let (variables, record) = fetch_variables(target, selection).await?;
    if let Some(dir) = &out.tekton_results {
        write_tekton_results(dir, &variables)?;
    }
    let text = render::render(&variables, out.format);
    match &out.output {
        Some(path) => write_file(path, &text)?,
        None => write_stdout(text.as_bytes())?,
    }
    Ok(record)
}

/// After a failure of `env`, leaves nothing that a script could use as if it had succeeded: shell
/// output becomes the failure guard (so that `eval "$(proxyconf env)"` and `. FILE` fail too), and
/// an `--output` file of another format is removed.
fn fail_closed_output(out: &EnvOutput, code: u8) {
    let result = match (&out.output, out.format) {
        (Some(path), Format::Shell) => write_file(path, &render::shell_failure_guard(code)),
        (None, Format::Shell) => write_stdout(render::shell_failure_guard(code).as_bytes()),
        (Some(path), _) => match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Failure::Other(format!(
                "cannot remove the stale {}: {e}",
                path.display()
            ))),
            _ => Ok(()),
        },
        (None, _) => Ok(()),
    };
    if let Err(e) = result {
        eprintln!("proxyconf: error: {e}");
    }
}

/// Writes the `--record` of `result`, if asked, and passes `result` on as the exit code.
fn finish(
    path: Option<&Path>,
    address: &str,
    result: Result<Record, Failure>,
) -> Result<ExitCode, Failure> {
    let Some(path) = path else {
        return result.map(|_| ExitCode::SUCCESS);
    };
    match result {
        Ok(record) => record.write(path).map(|()| ExitCode::SUCCESS),
        Err(failure) => {
            if let Err(e) = Record::failed(address, &failure).write(path) {
                eprintln!("proxyconf: error: {e}");
            }
            Err(failure)
        }
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), Failure> {
    render::write_atomically(path, text)
        .map_err(|e| Failure::Other(format!("cannot write {}: {e}", path.display())))
}

/// `proxyconf cache-proxy`: the init task's two result files, as konflux-build-cli writes them.
async fn cache_proxy(
    target: &Target,
    enable: &str,
    results: &[(PathBuf, &str)],
    failing: Failing,
) -> Result<Record, Failure> {
    let request = Request::cache_proxy_only(enable);
    if !request.cache_proxy {
        eprintln!(
            "proxyconf: OCI cache proxy not used: enable-cache-proxy is {enable:?}, not \"true\""
        );
    }
    let (variables, record) = fetch(target, &request, failing).await?;
    for (path, variable) in results {
        write_file(path, variables.get(*variable).map_or("", String::as_str))?;
    }
    Ok(record)
}

/// `proxyconf install DIR`: copies this executable to `DIR/proxyconf`, atomically, mode 0755.
fn install(dir: &Path) -> Result<ExitCode, Failure> {
    let cannot =
        |e: io::Error| Failure::Other(format!("cannot install into {}: {e}", dir.display()));
    let exe = std::env::current_exe().map_err(cannot)?;
    let mut source = std::fs::File::open(&exe).map_err(cannot)?;
    let path = dir.join("proxyconf");
    render::replace_file(&path, 0o755, |file| io::copy(&mut source, file).map(drop))
        .map_err(cannot)?;
    eprintln!("proxyconf: installed {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// The init task's results, as it emits them today: the cache proxy's `http-proxy` and
/// `no-proxy`, each an exact value without a newline, empty when the cache proxy is not active.
fn write_tekton_results(dir: &Path, variables: &Variables) -> Result<(), Failure> {
    for (file, variable) in [("http-proxy", "HTTP_PROXY"), ("no-proxy", "NO_PROXY")] {
        let value = variables.get(variable).map_or("", String::as_str);
        write_file(&dir.join(file), value)?;
    }
    Ok(())
}

/// Asks the server and checks its answer; applies `--allow-direct-on-unavailable`. A build that
/// asked for nothing (both proxies off) does not ask at all, as the incumbent did not read the
/// ConfigMap then: an unreachable server cannot stop a build that opted out.
async fn fetch_variables(
    target: &Target,
    selection: &Selection,
) -> Result<(Variables, Record), Failure> {
    let request = selection.request.request()?;
    for note in &request.notes {
        eprintln!("proxyconf: note: {note}");
    }
    let failing = Failing {
        allow_direct_on_unavailable: selection.allow_direct_on_unavailable,
        quiet: selection.quiet,
    };
    fetch(target, &request, failing).await
}

/// How a call for variables fails and reports.
#[derive(Debug, Clone, Copy)]
struct Failing {
    allow_direct_on_unavailable: bool,
    quiet: bool,
}

/// Gets the variables of `request` (see [`fetch_variables`]).
async fn fetch(
    target: &Target,
    request: &Request,
    failing: Failing,
) -> Result<(Variables, Record), Failure> {
    if request.wants_nothing() {
        if !failing.quiet {
            eprintln!(
                "proxyconf: package registry proxy not used: this pipeline set \
                 enable-package-registry-proxy to false (the server was not asked)"
            );
        }
        return Ok((
            Variables::new(),
            Record::empty(Outcome::OptedOut, &target.address),
        ));
    }
    let resolve = resolve_request(request);
    let answer = remote::call_with_retries(&target.servers, target.deadline, |mut c| {
        let resolve = resolve.clone();
        async move { c.resolve(resolve).await.map(tonic::Response::into_inner) }
    })
    .await;
    let resolution = match answer {
        Ok(resolution) => resolution,
        Err(error) => {
            let failure = error.into_failure(&target.servers, target.timeout);
            if matches!(failure, Failure::Unavailable(_)) && failing.allow_direct_on_unavailable {
                eprintln!(
                    "proxyconf: warning: {failure}; going on WITHOUT the package registry proxy \
                     because --allow-direct-on-unavailable is set"
                );
                return Ok((
                    Variables::new(),
                    Record::empty(Outcome::Direct, &target.address),
                ));
            }
            return Err(failure);
        }
    };
    let wanted = exports::Wanted {
        package_registry_proxy: request.package_registry_proxy,
        scope: request.scope.as_ref(),
        cache_proxy: request.cache_proxy,
    };
    let variables = exports::variables(&resolution, &wanted)?;
    if !failing.quiet {
        eprintln!("proxyconf: {}", summary(&resolution, &variables));
        if let Some(section) = resolution
            .cache_proxy
            .as_ref()
            .filter(|_| request.cache_proxy)
        {
            eprintln!("proxyconf: {}", cache_summary(section));
        }
    }
    let record = Record::applied(&target.address, &resolution, &variables);
    Ok((variables, record))
}

/// One line for the build log saying what was decided.
fn summary(resolution: &Resolution, variables: &Variables) -> String {
    let version = format!("(version {})", resolution.version);
    match resolution.decision() {
        Decision::Active if !variables.keys().any(|k| k.starts_with("HERMETO_")) => format!(
            "package registry proxy active, but no package manager in scope has a proxy URL; \
             Hermeto fetches from upstream {version}"
        ),
        Decision::Active => format!(
            "package registry proxy active: {} {version}",
            variables
                .keys()
                .filter(|k| k.starts_with("HERMETO_"))
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Decision::UserOptedOut => format!(
            "package registry proxy not used: this pipeline set enable-package-registry-proxy \
             to false {version}"
        ),
        Decision::AdministratorOff | Decision::Unspecified => format!(
            "package registry proxy not used: the cluster administrator has not allowed it \
             {version}"
        ),
    }
}

/// One line for the build log about the cache proxy.
fn cache_summary(section: &CacheProxy) -> String {
    match section.decision() {
        CacheProxyDecision::Active => format!(
            "OCI cache proxy active: HTTP_PROXY={} NO_PROXY={}",
            section.http_proxy, section.no_proxy
        ),
        CacheProxyDecision::AdministratorOff => {
            "OCI cache proxy not used: the cluster administrator does not allow it".to_owned()
        }
        _ => "OCI cache proxy not used".to_owned(),
    }
}

/// Replaces this process with `command`, the variables added to its environment. Returns only on
/// failure.
fn exec(command: &[OsString], variables: &Variables) -> Failure {
    use std::os::unix::process::CommandExt;
    let (program, args) = command
        .split_first()
        .expect("clap requires at least one word of command");
    let error = std::process::Command::new(program)
        .args(args)
        .envs(variables)
        .exec();
    let code = if error.kind() == io::ErrorKind::NotFound {
        exit::COMMAND_NOT_FOUND
    } else {
        exit::CANNOT_EXECUTE
    };
    Failure::Exec(
        format!("cannot run {}: {error}", program.to_string_lossy()),
        code,
    )
}

/// The pause before reconnecting a Watch that ended without an error.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Follows the answer, printing each new version once as a JSON line. Reconnects when the stream
/// breaks, resuming from the last printed version; gives up when the server stays unreachable for
/// the whole `timeout`.
async fn watch(
    server: &Servers,
    timeout: Duration,
    args: &RequestArgs,
) -> Result<ExitCode, Failure> {
    let request = args.request()?;
    for note in &request.notes {
        eprintln!("proxyconf: note: {note}");
    }
    let request = resolve_request(&request);
    let mut last_version = String::new();
    let mut last_stale = false;
    loop {
        let deadline = Instant::now() + timeout;
        let watch_request = WatchRequest {
            request: Some(request.clone()),
            resume_from_version: last_version.clone(),
        };
        let stream = remote::call_with_retries(server, deadline, |mut c| {
            let watch_request = watch_request.clone();
            async move {
                c.watch(watch_request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        })
        .await;
        let mut stream = stream.map_err(|e| e.into_failure(server, timeout))?;
        loop {
            match stream.message().await {
                Ok(Some(resolution)) => {
                    let stale = resolution.source.as_ref().is_some_and(|s| s.stale);
                    if resolution.version == last_version && stale == last_stale {
                        continue;
                    }
                    write_stdout(format!("{}\n", to_json(&resolution)?).as_bytes())?;
                    last_version = resolution.version;
                    last_stale = stale;
                }
                Ok(None) => {
                    // A server ends streams with a status; a plain end is a proxy in between or
                    // a bug. Pause before reconnecting, so that it cannot become a busy loop.
                    eprintln!("proxyconf: watch ended by the server; reconnecting");
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    break;
                }
                Err(status) => {
                    let error = CallError::Status(status);
                    if !error.is_retryable() {
                        return Err(error.into_failure(server, timeout));
                    }
                    eprintln!(
                        "proxyconf: watch interrupted ({}); reconnecting",
                        error.describe()
                    );
                    break;
                }
            }
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure::Other(format!("cannot print JSON: {e}")))
}

/// Writes to standard output; a closed pipe (`| head`) ends quietly.
fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Failure::BrokenPipe),
        Err(e) => Err(Failure::Other(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

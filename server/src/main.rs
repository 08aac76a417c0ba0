//! The `proxyconf-server` binary: parses flags, sets up logging, and runs the library's server.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use proxyconf_server::{
    ServerOptions,
    check::{self, OutputFormat, output},
    resolve::{
        Policy,
        cache_proxy::{self, CacheProxyDefaults},
        host_allowlist::HostAllowlist,
    },
    source::{
        file::{self, FileSourceOptions},
        kubernetes::{self, KubernetesSourceOptions},
    },
    telemetry::{self, LogFormat},
    tls::TlsFiles,
};
use tracing::error;

/// Serves Konflux package registry proxy settings (ADR 0064) over gRPC.
///
/// Resolves the ConfigMap `konflux-info/cluster-config` into per-package-manager Hermeto settings
/// and serves them on `proxyconf.v1.ProxyConfig` (Resolve, Watch, GetStatus), with
/// `grpc.health.v1.Health` and server reflection (v1 and v1alpha) for grpcurl.
#[derive(Debug, Parser)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  \
    # In a cluster: watch konflux-info/cluster-config with the pod's service account\n  \
    proxyconf-server\n\n  \
    # Serve the example ConfigMap manifest, following its changes\n  \
    proxyconf-server --configmap-file deploy/examples/cluster-config.yaml\n\n  \
    # Serve an env file (the cluster-config.env the ConfigMap is generated from) on another port\n  \
    proxyconf-server --configmap-file cluster-config.env --listen 127.0.0.1:50052\n\n  \
    # Serve the INI file konflux-build-cli reads from PLATFORM_CONFIG_FILE\n  \
    proxyconf-server --configmap-file /etc/konflux-config.ini\n\n  \
    # A ConfigMap volume mounted at /etc/cluster-config (no Kubernetes API access needed)\n  \
    proxyconf-server --configmap-dir /etc/cluster-config\n\n  \
    # Check a cluster-config before it is applied (see proxyconf-server check --help)\n  \
    proxyconf-server check cluster-config.env\n\n  \
    # TLS with client certificates (mutual TLS), rotated in place by cert-manager\n  \
    proxyconf-server --tls-cert /tls/tls.crt --tls-key /tls/tls.key --tls-client-ca /tls/ca.crt\n\n  \
    # Metrics for Prometheus, a longer shutdown grace period\n  \
    proxyconf-server --metrics-listen 0.0.0.0:9090 --shutdown-grace 30s\n\n  \
    # JSON logs with debug output from the server only\n  \
    RUST_LOG=proxyconf_server=debug proxyconf-server --configmap-file cm.yaml --log-format json"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check cluster-config files before they are applied, with exactly the server's rules.
    ///
    /// Each FILE is read as --configmap-file reads it: a ConfigMap manifest (YAML or JSON; in a
    /// stream of several documents, such as kustomize output, the ConfigMap cluster-config), a
    /// key=value env file, or the INI file of konflux-build-cli. Every problem the server would
    /// report is printed with the file, the line, the key, the value (credentials redacted), the
    /// reason and what to do; a valid file gets a one-line summary. Pass the server's own
    /// --allowed-proxy-hosts, --default-http-proxy and --default-no-proxy to check against its
    /// policy.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
}

const CHECK_EXAMPLES: &str = "Examples:\n  \
    # Check the ConfigMap manifest before applying it\n  \
    proxyconf-server check deploy/examples/cluster-config.yaml\n\n  \
    # The env file the ConfigMap is generated from, and the INI file of konflux-build-cli\n  \
    proxyconf-server check cluster-config.env /etc/konflux-config.ini\n\n  \
    # The kustomize output that carries the ConfigMap\n  \
    kubectl kustomize overlays/production > /tmp/manifests.yaml\n  \
    proxyconf-server check /tmp/manifests.yaml\n\n  \
    # In CI, against the server's policy: one JSON document, exit 78 on any problem\n  \
    proxyconf-server check --format json --allowed-proxy-hosts '*.svc.cluster.local' cm.yaml\n\n\
Exit codes:\n  \
    0   every file is valid (warnings are printed, but do not fail)\n  \
    78  a file has a problem (unparsable, or a value the server would reject)\n  \
    2   usage: a file cannot be read, or a wrong flag";

/// The flags of the server proper.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to serve gRPC on.
    #[arg(long, default_value = "0.0.0.0:50051", value_name = "ADDR")]
    listen: SocketAddr,

    /// Read the ConfigMap from this file instead of watching it through the Kubernetes API
    /// (in-cluster credentials, or KUBECONFIG / ~/.kube/config outside a cluster): a manifest (YAML or JSON,
    /// as `kubectl get configmap -o yaml` prints it, or kustomize output holding the ConfigMap
    /// cluster-config), a `key=value` env file, or the INI file of konflux-build-cli
    /// ([cache-proxy] and [artifact-registry] sections). Changes to the file are picked up within
    /// a second (the kernel tells of them; the file is also polled every 2 s); a file that
    /// becomes unreadable or invalid keeps the last good state.
    #[arg(long, value_name = "PATH", conflicts_with = "configmap_dir")]
    configmap_file: Option<PathBuf>,

    /// Read the ConfigMap from a directory as kubelet projects a mounted ConfigMap volume: one
    /// file per key (behind `..data`, swapped atomically on a change, seen within milliseconds).
    /// A replica in the ConfigMap's own namespace then needs no Kubernetes API access at all. An
    /// empty directory (an optional volume of a missing ConfigMap) means a missing ConfigMap.
    #[arg(long, value_name = "DIR")]
    configmap_dir: Option<PathBuf>,

    /// Namespace of the ConfigMap (Kubernetes source).
    #[arg(long, default_value = "konflux-info", value_name = "NAMESPACE")]
    namespace: String,

    /// Name of the ConfigMap (Kubernetes source).
    #[arg(long, default_value = "cluster-config", value_name = "NAME")]
    configmap: String,

    #[command(flatten)]
    policy: PolicyArgs,

    /// Serve gRPC over TLS with this certificate chain (PEM); reloaded when the file changes.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Require client certificates signed by these CAs (PEM): mutual TLS.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics (off when not given).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,

    /// On SIGTERM/SIGINT: how long calls in flight may take before the server exits anyway.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    shutdown_grace: Duration,

    /// Close connections and Watch streams after about this long (spread ±10 %) so that
    /// long-lived subscribers rebalance over replicas; 0 keeps them forever.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    max_connection_age: Duration,

    /// Serve at most this many connections at once; one more is accepted and closed at once
    /// (counted in proxyconf_connections_refused_total). Each holds up to 32 KiB once HTTP/2 is
    /// up: keep this times 32 KiB, plus --max-watch-streams times 4 KiB, plus 64 MiB, within the
    /// memory the server may use (deploy/base sets 4000 and 10000 for 256 MiB).
    #[arg(long, default_value = "20000", value_name = "N", value_parser = at_least_one())]
    max_connections: usize,

    /// A new connection must complete its TLS handshake, send the HTTP/2 preface and open its
    /// first stream within this, or it is closed (at most 20s).
    #[arg(long, default_value = "10s", value_parser = proxyconf_server::incoming::parse_handshake_timeout, value_name = "DURATION")]
    handshake_timeout: Duration,

    /// Serve at most this many Watch streams at once (up to 4 KiB each); one more is refused with
    /// RESOURCE_EXHAUSTED, to be retried with backoff or on another replica.
    #[arg(long, default_value = "20000", value_name = "N", value_parser = at_least_one())]
    max_watch_streams: usize,

    /// Log line format (filter with RUST_LOG, e.g. RUST_LOG=debug).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// A count of at least 1.
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// What the operator decides for every ConfigMap: shared by the server and `check`.
#[derive(Debug, clap::Args)]
struct PolicyArgs {
    /// The OCI cache proxy that pipelines enabling it get when both `http-proxy` and `no-proxy`
    /// are empty in the ConfigMap (as konflux-build-cli's DEFAULT_HTTP_PROXY): host:port or an
    /// http(s) URL; empty for none.
    #[arg(
        long,
        default_value = "squid.caching.svc.cluster.local:3128",
        value_name = "PROXY",
        value_parser = cache_proxy::parse_default_http_proxy
    )]
    default_http_proxy: String,

    /// The no-proxy list used when both `http-proxy` and `no-proxy` are empty in the ConfigMap (as
    /// konflux-build-cli's DEFAULT_NO_PROXY): hosts, .domains, CIDRs, comma-separated.
    #[arg(
        long,
        default_value = "",
        value_name = "LIST",
        value_parser = cache_proxy::parse_default_no_proxy
    )]
    default_no_proxy: String,

    /// Only accept package registry proxy URLs whose host matches one of these patterns
    /// (comma-separated; kubelet matchImages-style globs, '*' matching one DNS label, optional
    /// :port), e.g. '*.svc.cluster.local,nexus.example.org:8443'. Without it every valid host is
    /// accepted.
    #[arg(long, value_name = "PATTERNS", value_parser = HostAllowlist::parse)]
    allowed_proxy_hosts: Option<HostAllowlist>,
}

impl PolicyArgs {
    fn into_policy(self) -> Policy {
        Policy {
            cache_proxy: CacheProxyDefaults {
                http_proxy: self.default_http_proxy,
                no_proxy: self.default_no_proxy,
            },
            allowed_proxy_hosts: self.allowed_proxy_hosts,
        }
    }
}

/// The flags of `check`.
#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// How to print the result: text for people, json (one document on standard output) for CI.
    #[arg(long, value_enum, default_value = "text")]
    format: OutputFormat,

    #[command(flatten)]
    policy: PolicyArgs,

    /// The files to check.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check(args)) => run_check(args),
        None => run_server(cli.serve),
    }
}

/// `check`: the reports on standard output, unreadable files on standard error.
fn run_check(args: CheckArgs) -> ExitCode {
    // The defaults were validated as clap parsed them (a usage error, exit 2).
    let policy = args.policy.into_policy();
    let results: Vec<_> = args
        .files
        .iter()
        .map(|path| check::check_file(path, &policy))
        .collect();
    for result in &results {
        match (result, args.format) {
            (Ok(report), OutputFormat::Text) => print!("{}", output::text(report)),
            (Ok(_), OutputFormat::Json) => {}
            (Err(error), _) => eprint!("{}", output::unreadable_text(error)),
        }
    }
    if args.format == OutputFormat::Json {
        print!("{}", output::json(&results));
    }
    ExitCode::from(check::exit_code(&results))
}

fn run_server(args: ServeArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "proxyconf-server failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let policy = args.policy.into_policy();
    let source = match (args.configmap_file, args.configmap_dir) {
        (Some(path), _) => {
            // Fail fast on a wrong path or a broken file at start; later failures keep the last
            // good state.
            file::read(&path).await?;
            file::follow(path, FileSourceOptions::default())
        }
        (None, Some(dir)) => {
            file::read_dir(&dir).await?;
            file::follow_dir(dir, FileSourceOptions::default())
        }
        (None, None) => {
            let client = kube::Client::try_default().await.context(
                "cannot configure the Kubernetes client (no in-cluster service account and no \
                 usable KUBECONFIG or ~/.kube/config); pass --configmap-file to serve a file",
            )?;
            kubernetes::follow(
                client,
                KubernetesSourceOptions {
                    namespace: args.namespace,
                    name: args.configmap,
                    ..KubernetesSourceOptions::default()
                },
            )
        }
    };
    let listener = bind(args.listen).await?;
    let metrics_listener = match args.metrics_listen {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let options = ServerOptions {
        shutdown_grace: args.shutdown_grace,
        max_connection_age: (!args.max_connection_age.is_zero()).then_some(args.max_connection_age),
        max_connections: args.max_connections,
        handshake_timeout: args.handshake_timeout,
        max_watch_streams: args.max_watch_streams,
        metrics_listener,
        policy,
        tls: args.tls_cert.zip(args.tls_key).map(|(cert, key)| TlsFiles {
            cert,
            key,
            client_ca: args.tls_client_ca,
        }),
        ..ServerOptions::default()
    };
    proxyconf_server::run(
        listener,
        source,
        options,
        proxyconf_server::signal::shutdown(),
    )
    .await?;
    Ok(())
}

async fn bind(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
}

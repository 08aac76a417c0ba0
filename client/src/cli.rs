//! The command line: flags as clap parses them, and their validation into settings.

use std::{collections::BTreeSet, ffi::OsString, path::PathBuf, time::Duration};

use clap::{ArgAction, Args, Parser, Subcommand};
use proxyconf_proto::contract::{is_valid_package_manager_name, parse_go_bool};

use crate::{exit::Failure, render::Format};

const EXAMPLES: &str = "\
Examples (each stops a script run with `set -e` when proxyconf fails):
  # In a prefetch step: run Hermeto with the variables set, only for the package managers
  # this build uses, and record what was applied
  proxyconf exec --enable-package-registry-proxy=\"$ENABLE_PACKAGE_REGISTRY_PROXY\" \\
    --package-managers npm,gomod --record /tmp/proxy-outcome.json -- hermeto fetch-deps ...

  # Export the variables into this shell; on failure the output is `(exit CODE)`,
  # which stops a `set -e` script (and only sets $? in an interactive shell)
  eval \"$(proxyconf env --enable-package-registry-proxy=\"$ENABLE_PACKAGE_REGISTRY_PROXY\")\"

  # Write a file to source in a later step (atomically; a failure leaves a file that fails too)
  proxyconf env --output /tmp/hermeto.env
  . /tmp/hermeto.env

  # The init task: OCI cache proxy settings as Tekton results
  proxyconf env --enable-cache-proxy=\"$ENABLE_CACHE_PROXY\" \\
    --enable-package-registry-proxy=false --tekton-results /tekton/results --output /dev/null

  # Follow changes, one JSON line per new answer; inspect the server
  proxyconf watch
  proxyconf status

Exit codes: 0 success, 1 other failure, 2 usage, 69 server unavailable,
78 configuration invalid for this build, 126/127 exec cannot run the command.";

/// Thin client for proxyconf-server: gets the package registry proxy settings for a build and
/// exports them as Hermeto variables, or runs a command with them.
///
/// Fails closed: when the server cannot be reached within --timeout, or the proxy applies to this
/// build and one of its settings is invalid, it exits non-zero instead of letting the build fetch
/// from upstream.
#[derive(Debug, Parser)]
#[command(name = "proxyconf", version, after_help = EXAMPLES)]
pub struct Cli {
    /// The server's address, http://HOST:PORT, https://HOST:PORT (with --ca-cert) or HOST:PORT;
    /// several, comma-separated, are used in turn (retries and Watch reconnects go to the next).
    #[arg(
        long,
        env = "PROXYCONF_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true,
        value_name = "URL"
    )]
    pub server: String,

    /// For https:// servers: the CA certificate (PEM) that signed the server's certificate.
    #[arg(long, global = true, value_name = "PATH", env = "PROXYCONF_CA_CERT")]
    pub ca_cert: Option<PathBuf>,

    /// For servers that require client certificates (mutual TLS): this client's certificate (PEM).
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "PROXYCONF_CLIENT_CERT"
    )]
    pub client_cert: Option<PathBuf>,

    /// The private key (PEM) of --client-cert.
    #[arg(long, global = true, value_name = "PATH", env = "PROXYCONF_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,

    /// Overall deadline, retries included (e.g. 500ms, 3s, 1m) [default: 10s; 3s for status].
    #[arg(
        long,
        env = "PROXYCONF_TIMEOUT",
        value_parser = humantime::parse_duration,
        global = true,
        value_name = "DURATION"
    )]
    pub timeout: Option<Duration>,

    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the variables to export (sorted by name), or write them to a file.
    Env {
        #[command(flatten)]
        selection: Selection,
        /// Output format.
        #[arg(long, value_enum, default_value = "shell")]
        format: Format,
        /// Write to this file (atomically) instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Also write the init task's Tekton results DIR/http-proxy and DIR/no-proxy: the cache
        /// proxy's values, empty when it is not active (see --enable-cache-proxy).
        #[arg(long, value_name = "DIR")]
        tekton_results: Option<PathBuf>,
    },
    /// Run a command with the variables added to its environment; exits with its exit code.
    Exec {
        #[command(flatten)]
        selection: Selection,
        /// The command and its arguments, after `--`.
        #[arg(required = true, last = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Print the answer as a JSON line now and each time it changes; reconnects when the server
    /// goes away.
    Watch {
        #[command(flatten)]
        request: RequestArgs,
    },
    /// Show the server's status: its source, state, problems and package managers.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Show the whole history the server keeps (its last 32 changes), not only the last 3.
        #[arg(long)]
        history: bool,
    },
    /// The init task's step: a drop-in for `konflux-build-cli config cache-proxy`. Writes the
    /// OCI cache proxy's `http-proxy` and `no-proxy` result files (exact values, empty when not
    /// used); the proxy is used when --enable is exactly "true" and the administrator allows it.
    CacheProxy {
        /// The pipeline parameter enable-cache-proxy, compared literally with "true" as
        /// konflux-build-cli does.
        #[arg(long, short = 'e', value_name = "VALUE")]
        enable: String,
        /// Where to write the http-proxy result.
        #[arg(
            long,
            env = "HTTP_PROXY_RESULTS_PATH",
            default_value = "http-proxy",
            value_name = "FILE"
        )]
        http_proxy_result_path: PathBuf,
        /// Where to write the no-proxy result.
        #[arg(
            long,
            env = "NO_PROXY_RESULTS_PATH",
            default_value = "no-proxy",
            value_name = "FILE"
        )]
        no_proxy_result_path: PathBuf,
        /// When the server cannot be reached, write empty results (no cache proxy) instead of
        /// failing.
        #[arg(long)]
        allow_direct_on_unavailable: bool,
        /// Record the outcome in FILE (see `env --record`).
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
    },
    /// Copy this binary to DIR/proxyconf, for a later step in another image: a Tekton step in
    /// the proxyconf image (which has no shell) runs `proxyconf install /var/proxyconf`.
    Install {
        /// The directory, typically an emptyDir volume shared with the later steps.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

impl Cli {
    /// The overall deadline: `--timeout`, or the command's default (a person waiting for
    /// `status` wants a quick answer; a build step rides out a rolling restart).
    pub fn deadline(&self) -> Duration {
        self.timeout.unwrap_or(match self.command {
            Command::Status { .. } => Duration::from_secs(3),
            _ => Duration::from_secs(10),
        })
    }
}

/// What to ask the server for.
#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    /// The pipeline parameter enable-package-registry-proxy (true/false, 1/0, t/f). Empty, as a
    /// Tekton parameter set to "" gives, means the default: true.
    #[arg(
        long,
        value_name = "BOOL",
        default_value = "true",
        value_parser = parse_pipeline_bool,
        action = ArgAction::Set
    )]
    pub enable_package_registry_proxy: PipelineBool,

    /// Only these package managers (comma-separated, e.g. npm,gomod); empty means all. Only
    /// their variables are exported and only their problems fail the call.
    #[arg(long, value_name = "LIST", default_value = "")]
    pub package_managers: String,

    /// The pipeline parameter enable-cache-proxy: also get the OCI cache proxy settings
    /// (HTTP_PROXY, HTTPS_PROXY, NO_PROXY) for the image build. Empty means the default: false.
    #[arg(
        long,
        value_name = "BOOL",
        default_value = "false",
        value_parser = parse_pipeline_bool,
        action = ArgAction::Set
    )]
    pub enable_cache_proxy: PipelineBool,
}

/// A boolean pipeline parameter as given: a value, or empty (a Tekton parameter set to `""`),
/// which stands for the parameter's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineBool {
    /// An explicit true or false.
    Set(bool),
    /// Empty: the default applies.
    Empty,
}

impl PipelineBool {
    /// The value, `default` when empty.
    pub fn or(self, default: bool) -> bool {
        match self {
            Self::Set(value) => value,
            Self::Empty => default,
        }
    }
}

/// What a build asked for, validated once from the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `enable-package-registry-proxy`, the default applied.
    pub package_registry_proxy: bool,
    /// Only these package managers; `None` for all.
    pub scope: Option<BTreeSet<String>>,
    /// `enable-cache-proxy`, the default applied.
    pub cache_proxy: bool,
    /// One line per flag given empty, saying which default applied (printed on stderr).
    pub notes: Vec<String>,
}

impl Request {
    /// The init task's request: only the cache proxy, enabled when `enable` is exactly `true`.
    pub fn cache_proxy_only(enable: &str) -> Self {
        Self {
            package_registry_proxy: false,
            scope: None,
            cache_proxy: enable == "true",
            notes: Vec::new(),
        }
    }

    /// Whether the build asked for nothing at all: then the server need not be asked.
    pub fn wants_nothing(&self) -> bool {
        !self.package_registry_proxy && !self.cache_proxy
    }
}

impl RequestArgs {
    /// The validated request: scope checked, empty parameters replaced by their defaults.
    pub fn request(&self) -> Result<Request, Failure> {
        let mut notes = Vec::new();
        let mut resolve = |flag: &str, value: PipelineBool, default: bool, meaning: &str| {
            if value == PipelineBool::Empty {
                notes.push(format!(
                    "--{flag} is empty (a pipeline parameter set to \"\"): using its default, \
                     {default}: {meaning}"
                ));
            }
            value.or(default)
        };
        let package_registry_proxy = resolve(
            "enable-package-registry-proxy",
            self.enable_package_registry_proxy,
            true,
            "the package registry proxy applies when the administrator allows it",
        );
        let cache_proxy = resolve(
            "enable-cache-proxy",
            self.enable_cache_proxy,
            false,
            "the OCI cache proxy is not used",
        );
        Ok(Request {
            package_registry_proxy,
            scope: self.scope()?,
            cache_proxy,
            notes,
        })
    }

    /// The validated scope; `None` for all package managers.
    fn scope(&self) -> Result<Option<BTreeSet<String>>, Failure> {
        let mut names = BTreeSet::new();
        for name in self.package_managers.split(',').map(str::trim) {
            if name.is_empty() {
                continue;
            }
            if !is_valid_package_manager_name(name) {
                return Err(Failure::Usage(format!(
                    "--package-managers: {name:?} is not a package manager name (lowercase \
                     letters, digits and '-', e.g. npm,gomod,pip)"
                )));
            }
            names.insert(name.to_owned());
        }
        Ok((!names.is_empty()).then_some(names))
    }
}

/// What to ask for and how to fail, for the commands that export variables.
#[derive(Debug, Clone, Args)]
pub struct Selection {
    #[command(flatten)]
    pub request: RequestArgs,

    /// When the server cannot be reached, go on without the proxy (export nothing) instead of
    /// failing. Invalid configuration still fails.
    #[arg(long)]
    pub allow_direct_on_unavailable: bool,

    /// Record what was applied in FILE as one line of compact JSON of at most 512 bytes (a
    /// Tekton result): the outcome, the decision, the answer's version, the package managers
    /// exported. Written on failure too, so that it is never stale.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Do not print the one-line summary on standard error.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A pipeline boolean: Go's `strconv.ParseBool` spellings, or empty for the default.
fn parse_pipeline_bool(value: &str) -> Result<PipelineBool, NotABool> {
    if value.trim().is_empty() {
        return Ok(PipelineBool::Empty);
    }
    parse_go_bool(value)
        .map(PipelineBool::Set)
        .ok_or_else(|| NotABool(value.to_owned()))
}

/// A flag value that is not one of Go's `strconv.ParseBool` spellings.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a boolean (use true or false)")]
pub struct NotABool(String);

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("proxyconf").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn enable_flag_spellings() {
        for (arg, want) in [
            ("--enable-package-registry-proxy=false", false),
            ("--enable-package-registry-proxy=0", false),
            ("--enable-package-registry-proxy=True", true),
        ] {
            let Command::Env { selection, .. } = parse(&["env", arg]).unwrap().command else {
                panic!("env")
            };
            assert_eq!(
                selection.request.enable_package_registry_proxy,
                PipelineBool::Set(want),
                "{arg}"
            );
        }
        let Command::Env { selection, .. } = parse(&["env"]).unwrap().command else {
            panic!("env")
        };
        assert_eq!(
            selection.request.enable_package_registry_proxy,
            PipelineBool::Set(true),
            "default true"
        );
        assert!(parse(&["env", "--enable-package-registry-proxy=yes"]).is_err());
        let separate = parse(&["env", "--enable-package-registry-proxy", "false"]).unwrap();
        let Command::Env { selection, .. } = separate.command else {
            panic!("env")
        };
        assert_eq!(
            selection.request.enable_package_registry_proxy,
            PipelineBool::Set(false)
        );
    }

    #[test]
    fn an_empty_parameter_means_its_default_and_says_so() {
        let Command::Env { selection, .. } = parse(&[
            "env",
            "--enable-package-registry-proxy=",
            "--enable-cache-proxy",
            "",
        ])
        .unwrap()
        .command
        else {
            panic!("env")
        };
        let request = selection.request.request().unwrap();
        assert!(request.package_registry_proxy, "empty means true");
        assert!(!request.cache_proxy, "empty means false");
        assert_eq!(request.notes.len(), 2, "{:?}", request.notes);
        assert!(request.notes[0].contains("using its default, true"));
        let Command::Env { selection, .. } = parse(&["env"]).unwrap().command else {
            panic!("env")
        };
        assert!(selection.request.request().unwrap().notes.is_empty());
    }

    #[test]
    fn scope_parsing() {
        let args = |list: &str| RequestArgs {
            enable_package_registry_proxy: PipelineBool::Set(true),
            package_managers: list.to_owned(),
            enable_cache_proxy: PipelineBool::Set(false),
        };
        assert_eq!(args("").scope().unwrap(), None);
        assert_eq!(
            args("npm, gomod,npm,").scope().unwrap(),
            Some(["gomod".to_owned(), "npm".to_owned()].into())
        );
        assert!(matches!(args("npm,PIP").scope(), Err(Failure::Usage(_))));
    }

    #[test]
    fn exec_takes_the_command_after_dashes() {
        let cli = parse(&["exec", "--quiet", "--", "hermeto", "--flag", "x"]).unwrap();
        let Command::Exec { command, selection } = cli.command else {
            panic!("exec")
        };
        assert!(selection.quiet);
        assert_eq!(command, ["hermeto", "--flag", "x"]);
        assert!(parse(&["exec"]).is_err(), "a command is required");
    }

    #[test]
    fn timeout_and_server() {
        let cli = parse(&["--timeout", "1500ms", "status", "--server", "h:1"]).unwrap();
        assert_eq!(cli.deadline(), Duration::from_millis(1500));
        assert_eq!(
            parse(&["status"]).unwrap().deadline(),
            Duration::from_secs(3)
        );
        assert_eq!(parse(&["env"]).unwrap().deadline(), Duration::from_secs(10));
        assert_eq!(cli.server, "h:1");
        assert!(parse(&["--timeout", "soon", "status"]).is_err());
    }
}

//! `proxyconf-server check`: validates cluster-config files before they are applied, with
//! exactly the server's rules (docs/configuration.md §9).
//!
//! A file is read as the server's `--configmap-file` reads it ([`file_format::parse_located`]:
//! a manifest, a stream of manifests, an env file or `konflux-build-cli`'s INI) and its data
//! resolved with [`resolve::resolve`] under the operator's [`Policy`]; every problem the server
//! would report becomes a [`Finding`] with the key's line where the format has one. The INI notes
//! of the parser (keys that are not read, values ini.v1 reads differently) become warnings.
//! Rendering is in [`output`].

pub mod output;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use crate::{
    resolve::{
        self, Policy, Problem, ProblemCode, Resolved,
        proxy_url::{self, UrlRejection},
    },
    source::{
        ConfigMapState,
        file_format::{
            self, FileFormat, FormatError, FormatNote, NoteKind, ParsedFile,
            ini::CACHE_PROXY_SECTION,
        },
    },
};

/// The data of a ConfigMap.
type Data = BTreeMap<String, String>;

/// The exit code when every file is valid (warnings allowed).
pub const EXIT_VALID: u8 = 0;
/// The exit code when a file has a problem (EX_CONFIG), as the client's for invalid settings.
pub const EXIT_PROBLEMS: u8 = 78;
/// The exit code when a file cannot be read (or a flag is wrong): a usage error.
pub const EXIT_USAGE: u8 = 2;

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Lines for people: each finding, then one line per file.
    Text,
    /// One JSON document for CI: an array with one object per file.
    Json,
}

/// A file that could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The server would report it: the file is invalid.
    Problem,
    /// The file is valid, but probably not what its author meant.
    Warning,
}

/// The classes of finding, named in `--format json` as the API names its problem codes (without
/// the `PROBLEM_CODE_` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Resolve(ProblemCode),
    /// The file cannot be parsed.
    Unparsable,
    /// See [`NoteKind::Misplaced`].
    IniMisplacedKey,
    /// See [`NoteKind::UnknownKey`].
    IniUnknownKey,
    /// See [`NoteKind::InlineComment`].
    IniInlineComment,
    /// See [`NoteKind::Interpolation`].
    IniInterpolation,
}

impl Code {
    /// The name of the code, e.g. `INVALID_URL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resolve(code) => match code {
                ProblemCode::InvalidBoolean => "INVALID_BOOLEAN",
                ProblemCode::InvalidUrl => "INVALID_URL",
                ProblemCode::InvalidPackageManager => "INVALID_PACKAGE_MANAGER",
                ProblemCode::InvalidProxy => "INVALID_PROXY",
                ProblemCode::InvalidNoProxy => "INVALID_NO_PROXY",
                ProblemCode::HostNotAllowed => "HOST_NOT_ALLOWED",
            },
            Self::Unparsable => "UNPARSABLE",
            Self::IniMisplacedKey => "INI_MISPLACED_KEY",
            Self::IniUnknownKey => "INI_UNKNOWN_KEY",
            Self::IniInlineComment => "INI_INLINE_COMMENT",
            Self::IniInterpolation => "INI_INTERPOLATION",
        }
    }
}

/// One thing wrong, or suspicious, in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Problem or warning.
    pub severity: Severity,
    /// Its class.
    pub code: Code,
    /// The key concerned; `None` for the file as a whole.
    pub key: Option<String>,
    /// The line (1-based), where the format has one and it was found.
    pub line: Option<usize>,
    /// The value, with credentials redacted.
    pub value: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// What to do about it.
    pub action: String,
}

/// The verdict on one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The file as named on the command line.
    pub file: String,
    /// Its form, once detected.
    pub format: Option<FileFormat>,
    /// Its findings, by line.
    pub findings: Vec<Finding>,
    /// What a valid file sets up, in one line; `None` when the file has problems.
    pub summary: Option<String>,
}

impl FileReport {
    /// Whether the server would serve the file without a problem.
    pub fn is_valid(&self) -> bool {
        self.count(Severity::Problem) == 0
    }

    /// The number of findings of `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }
}

/// Reads and checks the file at `path`. Only a file that cannot be read at all is an error; one
/// that is not UTF-8 text is a problem of the file.
pub fn check_file(path: &Path, policy: &Policy) -> Result<FileReport, CheckError> {
    let bytes = std::fs::read(path).map_err(|source| CheckError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(match String::from_utf8(bytes) {
        Ok(content) => check_content(path, &content, policy),
        Err(e) => FileReport {
            file: path.display().to_string(),
            format: None,
            findings: vec![Finding {
                severity: Severity::Problem,
                code: Code::Unparsable,
                key: None,
                line: None,
                value: None,
                reason: format!("not UTF-8 text ({})", e.utf8_error()),
                action: "save the file as UTF-8 text".into(),
            }],
            summary: None,
        },
    })
}

/// Checks `content`, read from `path` (whose name may decide its form).
pub fn check_content(path: &Path, content: &str, policy: &Policy) -> FileReport {
    let file = path.display().to_string();
    let format = FileFormat::detect(path, content);
    let parsed = match file_format::parse_located(path, content) {
        Ok(parsed) => parsed,
        Err(error) => {
            return FileReport {
                file,
                format: Some(format),
                findings: vec![unparsable(&error, format)],
                summary: None,
            };
        }
    };
    let data = match &parsed.state {
        ConfigMapState::Present { data, .. } => data.clone(),
        ConfigMapState::Missing => Data::new(),
    };
    let resolved = resolve::resolve(&data, policy);
    let mut findings: Vec<Finding> = resolved
        .problems
        .iter()
        .chain(&resolved.cache_proxy.problems)
        .map(|p| problem(p, &parsed, &data, policy))
        .chain(parsed.notes.iter().map(warning))
        .collect();
    findings.sort_by(|a, b| {
        (a.line.unwrap_or(usize::MAX), &a.key).cmp(&(b.line.unwrap_or(usize::MAX), &b.key))
    });
    let valid = findings.iter().all(|f| f.severity == Severity::Warning);
    FileReport {
        file,
        format: Some(parsed.format),
        findings,
        summary: valid.then(|| summary(&data, &resolved)),
    }
}

/// The exit code for the files checked: usage if one could not be read, otherwise problems if
/// one has any.
pub fn exit_code(results: &[Result<FileReport, CheckError>]) -> u8 {
    if results.iter().any(Result::is_err) {
        EXIT_USAGE
    } else if results.iter().flatten().all(FileReport::is_valid) {
        EXIT_VALID
    } else {
        EXIT_PROBLEMS
    }
}

/// A parse error, on one line: the first line of each message of the chain (the YAML parser
/// adds a drawing of the place on the next lines).
fn unparsable(error: &FormatError, format: FileFormat) -> Finding {
    let mut reason = String::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if !reason.is_empty() {
            reason.push_str(": ");
        }
        reason.push_str(e.to_string().lines().next().unwrap_or_default());
        cause = e.source();
    }
    // The place is shown before the reason already.
    if let Some(line) = error.line()
        && let Some(rest) = reason.strip_prefix(&format!("line {line}: "))
    {
        reason = rest.to_owned();
    }
    let action = match (error, format) {
        (FormatError::Empty, _) => {
            "write the ConfigMap's keys (an empty file is what a truncated write leaves)"
        }
        (FormatError::NoClusterConfig { .. } | FormatError::SeveralClusterConfigs { .. }, _) => {
            "keep exactly one ConfigMap named cluster-config in the stream"
        }
        (_, FileFormat::Manifest) => {
            "make it a ConfigMap manifest as `kubectl get configmap -o yaml` prints it (string \
             values under data:)"
        }
        (_, FileFormat::EnvFile) => "write one key=value per line; comments start with #",
        (_, FileFormat::Ini) => {
            "write [cache-proxy] and [artifact-registry] sections of key = value lines; comments \
             start with ; or #"
        }
    };
    Finding {
        severity: Severity::Problem,
        code: Code::Unparsable,
        key: None,
        line: error.line(),
        value: None,
        reason,
        action: action.into(),
    }
}

/// A problem the server reports, with its line.
fn problem(problem: &Problem, parsed: &ParsedFile, data: &Data, policy: &Policy) -> Finding {
    let action = match problem.code {
        ProblemCode::InvalidBoolean => {
            "write true or false (Go's strconv.ParseBool spellings: 1 t T TRUE true True, 0 f F \
             FALSE false False)"
                .to_owned()
        }
        ProblemCode::InvalidUrl => url_action(problem, data),
        ProblemCode::InvalidPackageManager => {
            "name the key package-registry-proxy-<pm>-url with <pm> in lowercase letters, digits \
             and single '-', e.g. package-registry-proxy-npm-url"
                .to_owned()
        }
        ProblemCode::InvalidProxy => {
            "write host:port (e.g. squid.caching.svc.cluster.local:3128) or an http(s):// URL, \
             without credentials"
                .to_owned()
        }
        ProblemCode::InvalidNoProxy => {
            "list hosts, .domains, IP addresses or CIDRs separated by commas (e.g. \
             localhost,.svc,10.0.0.0/8)"
                .to_owned()
        }
        ProblemCode::HostNotAllowed => format!(
            "point the URL at a host that --allowed-proxy-hosts ({}) matches, or have the operator \
             allow this one",
            policy
                .allowed_proxy_hosts
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        ),
    };
    Finding {
        severity: Severity::Problem,
        code: Code::Resolve(problem.code),
        key: Some(problem.key.clone()),
        line: parsed.lines.get(&problem.key).copied(),
        value: Some(problem.value.clone()),
        reason: problem.reason.clone(),
        action,
    }
}

/// What to do about a rejected URL: asked of the same validation, on the value as configured.
fn url_action(problem: &Problem, data: &Data) -> String {
    let pm = problem.package_manager.as_deref().unwrap_or_default();
    let value = data
        .get(&problem.key)
        .map(String::as_str)
        .unwrap_or_default();
    let action = match proxy_url::validate(pm, value) {
        Err(UrlRejection::UserInfo) => {
            "remove the credentials from the URL: the reverse proxy in front of the registry adds \
             them"
        }
        Err(UrlRejection::GoproxyList) => "keep one URL, without ',direct' or '|' alternatives",
        Err(UrlRejection::Fragment) => "remove the #… part",
        Err(UrlRejection::WhitespaceOrControl) => {
            "remove the blanks and control characters (a trailing space, a Windows line end?)"
        }
        Err(UrlRejection::NotHttp) => "write an absolute URL starting with https:// or http://",
        Err(UrlRejection::NoHost) => "write the proxy's host after https://",
        Err(UrlRejection::Backslash) => "write '/' (or %5C for a backslash in the path)",
        Err(UrlRejection::TooLong { .. }) => "shorten the URL",
        Err(UrlRejection::Malformed(_) | UrlRejection::HostNotAllowed(_)) | Ok(_) => {
            "write one absolute http:// or https:// URL with a valid host and port"
        }
    };
    action.to_owned()
}

/// A note of the INI parser, as a warning.
fn warning(note: &FormatNote) -> Finding {
    let key = &note.key;
    let (code, reason, action) = match &note.kind {
        NoteKind::Misplaced { section, expected } => {
            let here = match section {
                Some(section) => format!("in section [{section}]"),
                None => "before the first section header".to_owned(),
            };
            let hint = match section {
                Some(s) if s != expected && s.trim().eq_ignore_ascii_case(expected) => {
                    " (section names are case-sensitive and keep their spaces)"
                }
                _ => "",
            };
            (
                Code::IniMisplacedKey,
                format!(
                    "{key} is read only under [{expected}]; {here} neither proxyconf nor \
                     konflux-build-cli reads it, so it is ignored"
                ),
                format!("move it under [{expected}]{hint}"),
            )
        }
        NoteKind::UnknownKey { section } => (
            Code::IniUnknownKey,
            format!("[{section}] has no key {key}; it is ignored"),
            match *section {
                CACHE_PROXY_SECTION => {
                    "check the spelling: [cache-proxy] takes allow-cache-proxy, http-proxy and \
                     no-proxy"
                }
                _ => {
                    "check the spelling: [artifact-registry] takes allow-package-registry-proxy \
                     and package-registry-proxy-<pm>-url"
                }
            }
            .to_owned(),
        ),
        NoteKind::InlineComment { incumbent } => (
            Code::IniInlineComment,
            format!(
                "konflux-build-cli (gopkg.in/ini.v1) ends this value at its '#' or ';' and reads \
                 {incumbent:?}; proxyconf reads the whole value"
            ),
            "remove the '#' or ';' (in a URL write %23 or %3B), or put a blank before it if it \
             starts a comment"
                .to_owned(),
        ),
        NoteKind::Interpolation => (
            Code::IniInterpolation,
            "gopkg.in/ini.v1 replaces %(name)s with the value of key name; proxyconf takes the \
             value literally"
                .to_owned(),
            "write the value out in full".to_owned(),
        ),
    };
    Finding {
        severity: Severity::Warning,
        code,
        key: Some(key.clone()),
        line: Some(note.line),
        value: Some(note.value.clone()),
        reason,
        action,
    }
}

/// The most package managers named in a summary.
const MAX_NAMED: usize = 12;

/// What a valid file sets up: the package registry proxy switch, the package managers, the
/// cache proxy.
fn summary(data: &Data, resolved: &Resolved) -> String {
    let registry = match data.get(resolve::ALLOW_KEY).filter(|v| !v.is_empty()) {
        _ if resolved.allowed => "package registry proxy allowed".to_owned(),
        Some(value) => format!(
            "package registry proxy not allowed ({}: {value})",
            resolve::ALLOW_KEY
        ),
        None => format!(
            "package registry proxy not allowed ({} is not set)",
            resolve::ALLOW_KEY
        ),
    };
    let names: Vec<&str> = resolved
        .package_managers
        .keys()
        .map(String::as_str)
        .collect();
    let managers = match names.len() {
        0 => "no package managers".to_owned(),
        1 => format!("1 package manager ({})", names[0]),
        n if n <= MAX_NAMED => format!("{n} package managers ({})", names.join(", ")),
        n => format!(
            "{n} package managers ({}, … and {} more)",
            names[..MAX_NAMED].join(", "),
            n - MAX_NAMED
        ),
    };
    let cache = &resolved.cache_proxy;
    let cache = match cache.http_proxy.as_deref() {
        _ if !cache.allowed => "cache proxy not allowed".to_owned(),
        None | Some("") => "cache proxy allowed, but none is set".to_owned(),
        Some(proxy) => format!("cache proxy allowed ({proxy})"),
    };
    format!("{registry}, {managers}, {cache}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, content: &str) -> FileReport {
        check_content(Path::new(name), content, &Policy::default())
    }

    #[test]
    fn a_valid_file_is_summed_up() {
        let report = check(
            "cluster-config.env",
            "allow-package-registry-proxy=true\npackage-registry-proxy-npm-url=https://n/npm/\n",
        );
        assert!(report.is_valid());
        assert_eq!(
            report.summary.as_deref(),
            Some(
                "package registry proxy allowed, 1 package manager (npm), cache proxy allowed \
                 (squid.caching.svc.cluster.local:3128)"
            )
        );
        let off = check(
            "c.env",
            "allow-package-registry-proxy=false\nallow-cache-proxy=0\n",
        );
        assert_eq!(
            off.summary.as_deref(),
            Some(
                "package registry proxy not allowed (allow-package-registry-proxy: false), no \
                 package managers, cache proxy not allowed"
            )
        );
        let unset = check("c.env", "http-proxy=\nno-proxy=.svc\n");
        assert_eq!(
            unset.summary.as_deref(),
            Some(
                "package registry proxy not allowed (allow-package-registry-proxy is not set), no \
                 package managers, cache proxy allowed, but none is set"
            )
        );
    }

    #[test]
    fn problems_carry_their_line_and_a_redacted_value() {
        let report = check(
            "c.env",
            "# c\nallow-package-registry-proxy=yes\n\npackage-registry-proxy-npm-url=https://u:pw@n/\n",
        );
        assert!(!report.is_valid());
        assert_eq!(report.summary, None);
        let found: Vec<_> = report
            .findings
            .iter()
            .map(|f| (f.line, f.code.as_str(), f.value.as_deref()))
            .collect();
        assert_eq!(
            found,
            [
                (Some(2), "INVALID_BOOLEAN", Some("yes")),
                (Some(4), "INVALID_URL", Some("https://***@n/")),
            ]
        );
    }

    #[test]
    fn a_parse_error_is_one_problem_on_one_line() {
        let report = check("c.yaml", "apiVersion: v1\nkind: ConfigMap\ndata: [\n");
        let [finding] = &report.findings[..] else {
            panic!("{:?}", report.findings)
        };
        assert_eq!(finding.code, Code::Unparsable);
        assert!(!finding.reason.contains('\n'), "{}", finding.reason);
        assert!(
            finding
                .reason
                .starts_with("not a valid ConfigMap manifest: "),
            "{}",
            finding.reason
        );
        assert!(finding.line.is_some());
    }

    #[test]
    fn ini_notes_are_warnings() {
        let report = check(
            "platform.ini",
            "[artifact-registry]\nhttp-proxy = squid:3128\nallow-package-registry-proxy = true\n",
        );
        assert!(report.is_valid());
        assert_eq!(report.count(Severity::Warning), 1);
        assert_eq!(report.findings[0].code, Code::IniMisplacedKey);
        assert!(report.summary.is_some());
    }

    #[test]
    fn exit_codes() {
        let valid = check("a.env", "a=b\n");
        let invalid = check("b.env", "allow-cache-proxy=maybe\n");
        let unreadable = check_file(Path::new("/nonexistent/cm.yaml"), &Policy::default());
        assert_eq!(exit_code(&[Ok(valid.clone())]), EXIT_VALID);
        assert_eq!(exit_code(&[Ok(valid), Ok(invalid.clone())]), EXIT_PROBLEMS);
        assert_eq!(exit_code(&[Ok(invalid), unreadable]), EXIT_USAGE);
    }
}

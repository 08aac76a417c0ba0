//! Parsers for the file forms of the ConfigMap: a Kubernetes manifest (YAML or JSON, as
//! `kubectl get configmap -o yaml` prints it, or a stream of several documents such as
//! `kubectl kustomize` prints), a `key=value` env file (the `cluster-config.env` that clusters
//! generate the ConfigMap from with `kubectl create configmap --from-env-file`), and the INI file
//! of `konflux-build-cli` ([`ini`]).
//!
//! [`parse`] is what the server reads; [`parse_located`] reads the same and also says on which
//! line each key is and what the file says that the data does not show, for
//! `proxyconf-server check`.

pub mod ini;

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use k8s_openapi::api::core::v1::ConfigMap;
use serde::de::IgnoredAny;

use super::ConfigMapState;

/// The line (1-based) of each key.
pub type Lines = BTreeMap<String, usize>;

/// The ConfigMap read from a stream of several documents: the one with this name...
pub const CLUSTER_CONFIG_NAME: &str = "cluster-config";
/// ...and, when the document names one, this namespace.
pub const CLUSTER_CONFIG_NAMESPACE: &str = "konflux-info";

/// Why a ConfigMap file could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a valid ConfigMap manifest")]
    Manifest(#[source] serde_saphyr::Error),
    #[error("line {line}: expected key=value, found {found:?}")]
    EnvLine { line: usize, found: String },
    #[error("line {line}: {key:?} is not a valid ConfigMap key (letters, digits, '-', '_', '.')")]
    EnvKey { line: usize, key: String },
    #[error("line {line}: {syntax}")]
    Ini { line: usize, syntax: ini::IniSyntax },
    #[error(
        "the file is empty (a truncated write?); an empty ConfigMap must still say so with \
         apiVersion, kind and metadata"
    )]
    Empty,
    #[error("not a ConfigMap manifest: apiVersion: v1 and kind: ConfigMap are required")]
    MissingTypeMeta,
    #[error(
        "none of the {documents} documents is the ConfigMap {CLUSTER_CONFIG_NAME} (in namespace \
         {CLUSTER_CONFIG_NAMESPACE} or without one); ConfigMaps found: {}",
        if found.is_empty() { "none".to_owned() } else { found.join(", ") }
    )]
    NoClusterConfig {
        documents: usize,
        found: Vec<String>,
    },
    #[error(
        "{count} documents are the ConfigMap {CLUSTER_CONFIG_NAME}; keep one (which one is \
         applied last is not for proxyconf to guess)"
    )]
    SeveralClusterConfigs { count: usize },
}

impl FormatError {
    /// The line (1-based) the error is on, when it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::EnvLine { line, .. } | Self::EnvKey { line, .. } | Self::Ini { line, .. } => {
                Some(*line)
            }
            Self::Manifest(error) => error
                .location()
                .and_then(|l| usize::try_from(l.line()).ok())
                .filter(|&l| l > 0),
            Self::Empty
            | Self::MissingTypeMeta
            | Self::NoClusterConfig { .. }
            | Self::SeveralClusterConfigs { .. } => None,
        }
    }
}

/// The form of a ConfigMap file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Manifest,
    EnvFile,
    Ini,
}

impl FileFormat {
    /// The form a file has: by its extension (`.yaml`, `.yml`, `.json`, `.env` or `.ini`),
    /// otherwise by its first meaningful line (a `[section]` header means INI, `key=value` an
    /// env file).
    pub fn detect(path: &Path, content: &str) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml" | "json") => return Self::Manifest,
            Some("env") => return Self::EnvFile,
            Some("ini") => return Self::Ini,
            _ => {}
        }
        if first_line(content, &['#', ';']).is_some_and(is_section_header) {
            return Self::Ini;
        }
        match first_line(content, &['#']) {
            Some(line) if line.split_once('=').is_some_and(|(k, _)| is_key(k.trim())) => {
                Self::EnvFile
            }
            _ => Self::Manifest,
        }
    }

    /// How the format is named in messages and `check --format json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::EnvFile => "env",
            Self::Ini => "ini",
        }
    }
}

/// The first line, trimmed, that is neither blank nor a comment starting with one of `comment`.
fn first_line<'a>(content: &'a str, comment: &[char]) -> Option<&'a str> {
    first_meaningful(content.lines(), comment)
}

/// [`first_line`] with YAML's line breaks (LF, CRLF and a lone CR).
fn first_yaml_line<'a>(content: &'a str, comment: &[char]) -> Option<&'a str> {
    first_meaningful(content.split(['\n', '\r']), comment)
}

fn first_meaningful<'a>(lines: impl Iterator<Item = &'a str>, comment: &[char]) -> Option<&'a str> {
    lines
        .map(|l| l.trim_start_matches('\u{feff}').trim())
        .find(|l| !l.is_empty() && !l.starts_with(comment))
}

/// `[name]`, optionally followed by a comment: an INI section header, and nothing that a YAML or
/// JSON document could start with (`[{"a": 1}]`, `[a, b]`).
fn is_section_header(line: &str) -> bool {
    let Some((name, rest)) = line.strip_prefix('[').and_then(|rest| rest.split_once(']')) else {
        return false;
    };
    let rest = rest.trim_start();
    !name.trim().is_empty()
        && !name.contains(['[', '{', '"', '\'', ','])
        && (rest.is_empty() || rest.starts_with(['#', ';']))
}

/// A file as [`parse_located`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFile {
    /// Its form.
    pub format: FileFormat,
    /// The ConfigMap it holds: exactly what [`parse`] returns.
    pub state: ConfigMapState,
    /// The line (1-based) of each key, where it could be found.
    pub lines: Lines,
    /// What the file says that the ConfigMap data does not show (INI keys that are not read, or
    /// read differently by `konflux-build-cli`).
    pub notes: Vec<FormatNote>,
}

/// Something in a file that its data does not show, for `proxyconf-server check` to warn about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatNote {
    /// Its line (1-based).
    pub line: usize,
    /// The key concerned.
    pub key: String,
    /// The value as proxyconf reads it, redacted.
    pub value: String,
    /// What is noted.
    pub kind: NoteKind,
}

/// The kinds of [`FormatNote`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteKind {
    /// An INI key proxyconf reads, in a section where neither proxyconf nor `konflux-build-cli`
    /// reads it (`None`: before the first section header). It is ignored.
    Misplaced {
        section: Option<String>,
        expected: &'static str,
    },
    /// A key of an INI section proxyconf reads that is none of that section's keys (a typo?). It
    /// is ignored.
    UnknownKey { section: &'static str },
    /// An INI value with a `#` or `;` inside a word, where ini.v1 (and so `konflux-build-cli`)
    /// would end it: what ini.v1 reads instead, redacted. proxyconf keeps the whole value.
    InlineComment { incumbent: String },
    /// An INI value with `%(name)s`, which ini.v1 would replace by another key's value; proxyconf
    /// takes it literally.
    Interpolation,
}

/// Parses `content` in the form of `path`. A file with nothing but blanks and comments is an
/// error, not an empty ConfigMap: that is what a truncated write leaves, and reading it as "no
/// keys" would switch the proxy off for every build.
pub fn parse(path: &Path, content: &str) -> Result<ConfigMapState, FormatError> {
    read(path, content, false).map(|parsed| parsed.state)
}

/// [`parse`], with the line of each key and the notes on the file. (The server does not need
/// the lines of a manifest, which take a second pass to find.)
pub fn parse_located(path: &Path, content: &str) -> Result<ParsedFile, FormatError> {
    read(path, content, true)
}

fn read(path: &Path, content: &str, locate: bool) -> Result<ParsedFile, FormatError> {
    let format = FileFormat::detect(path, content);
    let comments: &[char] = match format {
        FileFormat::Ini => &['#', ';'],
        FileFormat::Manifest | FileFormat::EnvFile => &['#'],
    };
    let blank = match format {
        // YAML also breaks lines at a lone CR: `# comment\r{"apiVersion": …}` holds a document.
        FileFormat::Manifest => first_yaml_line(content, comments).is_none(),
        FileFormat::Ini | FileFormat::EnvFile => first_line(content, comments).is_none(),
    };
    if blank {
        return Err(FormatError::Empty);
    }
    let present = |data| ConfigMapState::Present {
        data,
        resource_version: None,
    };
    let (state, lines, notes) = match format {
        FileFormat::Manifest => {
            let (state, lines) = read_manifest(content, locate)?;
            (state, lines, Vec::new())
        }
        FileFormat::EnvFile => {
            let (data, lines) = read_env_file(content)?;
            (present(data), lines, Vec::new())
        }
        FileFormat::Ini => {
            let file =
                ini::parse(content).map_err(|(line, syntax)| FormatError::Ini { line, syntax })?;
            (present(file.data), file.lines, file.notes)
        }
    };
    Ok(ParsedFile {
        format,
        state,
        lines,
        notes,
    })
}

/// Parses a ConfigMap manifest. An unquoted scalar such as `true` is read as its text (kubectl
/// would insist on quotes); a nested mapping or list as a value is an error. A stream of several
/// documents (kustomize output) is read for its ConfigMap `cluster-config`
/// ([`CLUSTER_CONFIG_NAME`]), in namespace `konflux-info` when the document names one; the other
/// documents are skipped, and there must be exactly one such ConfigMap.
pub fn parse_manifest(content: &str) -> Result<ConfigMapState, FormatError> {
    read_manifest(content, false).map(|(state, _)| state)
}

/// What identifies a document of a stream.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<Metadata>,
}

#[derive(serde::Deserialize)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
}

/// The keys of `data` with their positions.
#[derive(serde::Deserialize)]
struct KeyLines {
    data: Option<HashMap<serde_saphyr::Spanned<String>, IgnoredAny>>,
}

impl KeyLines {
    fn into_lines(self) -> Lines {
        self.data
            .into_iter()
            .flatten()
            .filter_map(|(key, _)| Some((key.value, usize::try_from(key.referenced.line()).ok()?)))
            .filter(|&(_, line)| line > 0)
            .collect()
    }
}

fn read_manifest(content: &str, locate: bool) -> Result<(ConfigMapState, Lines), FormatError> {
    // k8s-openapi checks `apiVersion` and `kind` when present, like the API server; they must be
    // present too, so that a file cut short near its start is not read as a ConfigMap.
    let meta: TypeMeta = match serde_saphyr::from_str(content) {
        Ok(meta) => meta,
        Err(e)
            if matches!(
                e.without_snippet(),
                serde_saphyr::Error::MultipleDocuments { .. }
            ) =>
        {
            return read_stream(content, locate);
        }
        Err(e) => return Err(FormatError::Manifest(e)),
    };
    if meta.api_version.is_none() || meta.kind.is_none() {
        return Err(FormatError::MissingTypeMeta);
    }
    let configmap: ConfigMap = serde_saphyr::from_str(content).map_err(FormatError::Manifest)?;
    let lines = if locate {
        serde_saphyr::from_str::<KeyLines>(content)
            .map_or_else(|_| BTreeMap::new(), KeyLines::into_lines)
    } else {
        BTreeMap::new()
    };
    Ok((state_of(configmap), lines))
}

/// A stream of several documents: its ConfigMap `cluster-config`.
fn read_stream(content: &str, locate: bool) -> Result<(ConfigMapState, Lines), FormatError> {
    let documents: Vec<TypeMeta> = serde_saphyr::read(&mut content.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(FormatError::Manifest)?;
    let index = cluster_config_index(&documents)?;
    if documents[index].api_version.is_none() {
        return Err(FormatError::MissingTypeMeta);
    }
    // The document is read again as the type wanted. The stream reader yields one item per
    // document, skipping the same empty ones each time, and an error for a document that is not
    // of the type before it goes on with the next: the index found above is the same document.
    let configmap: ConfigMap = nth_document(content, index)?;
    let lines = if locate {
        nth_document::<KeyLines>(content, index)
            .map_or_else(|_| BTreeMap::new(), KeyLines::into_lines)
    } else {
        BTreeMap::new()
    };
    Ok((state_of(configmap), lines))
}

/// The index of the one ConfigMap `cluster-config` of the stream.
fn cluster_config_index(documents: &[TypeMeta]) -> Result<usize, FormatError> {
    let ours: Vec<usize> = documents
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_configmap() && d.name() == Some(CLUSTER_CONFIG_NAME))
        .filter(|(_, d)| {
            d.namespace()
                .is_none_or(|ns| ns == CLUSTER_CONFIG_NAMESPACE)
        })
        .map(|(index, _)| index)
        .collect();
    match ours[..] {
        [index] => Ok(index),
        [] => Err(FormatError::NoClusterConfig {
            documents: documents.len(),
            found: documents
                .iter()
                .filter(|d| d.is_configmap())
                .map(TypeMeta::describe)
                .collect(),
        }),
        _ => Err(FormatError::SeveralClusterConfigs { count: ours.len() }),
    }
}

impl TypeMeta {
    fn is_configmap(&self) -> bool {
        self.kind.as_deref() == Some("ConfigMap")
    }

    fn name(&self) -> Option<&str> {
        self.metadata.as_ref()?.name.as_deref()
    }

    fn namespace(&self) -> Option<&str> {
        self.metadata.as_ref()?.namespace.as_deref()
    }

    /// `namespace/name`, or `name`.
    fn describe(&self) -> String {
        let name = self.name().unwrap_or("(no name)");
        match self.namespace() {
            Some(namespace) => format!("{namespace}/{name}"),
            None => name.to_owned(),
        }
    }
}

/// Document `index` of the stream, read as a `T`.
fn nth_document<T: serde::de::DeserializeOwned>(
    content: &str,
    index: usize,
) -> Result<T, FormatError> {
    serde_saphyr::read(&mut content.as_bytes())
        .nth(index)
        .unwrap_or_else(|| {
            // The same reader counted it a moment ago.
            Err(serde::de::Error::custom(format!(
                "document {} is gone",
                index + 1
            )))
        })
        .map_err(FormatError::Manifest)
}

fn state_of(configmap: ConfigMap) -> ConfigMapState {
    ConfigMapState::Present {
        data: configmap.data.unwrap_or_default(),
        resource_version: configmap.metadata.resource_version,
    }
}

/// Parses an env file with the rules of `kubectl create configmap --from-env-file`: leading
/// whitespace is dropped, blank lines and `#` comments are skipped, the value is everything after
/// the first `=` taken literally (no quotes, no escapes), and a later key replaces an earlier one.
pub fn parse_env_file(content: &str) -> Result<BTreeMap<String, String>, FormatError> {
    read_env_file(content).map(|(data, _)| data)
}

/// [`parse_env_file`], with the line (1-based) of each key.
fn read_env_file(content: &str) -> Result<(BTreeMap<String, String>, Lines), FormatError> {
    let mut data = BTreeMap::new();
    let mut lines = BTreeMap::new();
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    for (index, raw) in content.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(FormatError::EnvLine {
                line: index + 1,
                found: line.chars().take(80).collect(),
            });
        };
        if !is_key(key) {
            return Err(FormatError::EnvKey {
                line: index + 1,
                key: key.chars().take(80).collect(),
            });
        }
        data.insert(key.to_owned(), value.to_owned());
        lines.insert(key.to_owned(), index + 1);
    }
    Ok((data, lines))
}

/// A valid ConfigMap key: non-empty, at most 253 bytes of letters, digits, `-`, `_` and `.`.
fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const MANIFEST: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: cluster-config
  namespace: konflux-info
  resourceVersion: "48213"
  labels:
    app.kubernetes.io/part-of: konflux
data:
  allow-package-registry-proxy: "true"
  package-registry-proxy-npm-url: https://nexus.caching.svc.cluster.local/repository/npm/
  enable-keyless-signing: "false"
"#;

    #[test]
    fn manifest_as_kubectl_prints_it() {
        let state = parse(Path::new("cluster-config.yaml"), MANIFEST).unwrap();
        assert_eq!(
            state,
            ConfigMapState::Present {
                data: data(&[
                    ("allow-package-registry-proxy", "true"),
                    (
                        "package-registry-proxy-npm-url",
                        "https://nexus.caching.svc.cluster.local/repository/npm/"
                    ),
                    ("enable-keyless-signing", "false"),
                ]),
                resource_version: Some("48213".into()),
            }
        );
    }

    #[test]
    fn manifest_in_json_and_without_data() {
        let json =
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"b"}}"#;
        assert_eq!(
            parse(Path::new("cm.json"), json).unwrap(),
            ConfigMapState::Present {
                data: data(&[("a", "b")]),
                resource_version: None
            }
        );
        let empty = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n";
        assert_eq!(
            parse(Path::new("cm"), empty).unwrap(),
            ConfigMapState::Present {
                data: BTreeMap::new(),
                resource_version: None
            }
        );
    }

    #[test]
    fn unquoted_scalars_are_read_as_their_text() {
        // kubectl would insist on quotes; reading the text is what the author meant.
        let unquoted = "apiVersion: v1\nkind: ConfigMap\ndata:\n  allow-package-registry-proxy: true\n  n: 8080\n";
        let ConfigMapState::Present { data, .. } = parse_manifest(unquoted).unwrap() else {
            panic!("present")
        };
        assert_eq!(data["allow-package-registry-proxy"], "true");
        assert_eq!(data["n"], "8080");
    }

    #[test]
    fn manifest_errors() {
        let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: c\ndata:\n  a: b\n";
        let err = crate::source::error_chain(&parse_manifest(secret).unwrap_err());
        assert!(err.contains("expected ConfigMap"), "{err}");
        for broken in [
            "kind: ConfigMap\ndata: [",
            "- a\n- b\n",
            "data:\n  a:\n    b: c\n",
        ] {
            assert!(parse_manifest(broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn env_file_like_kubectl() {
        let content = "\u{feff}# cluster-config.env\n\n  allow-package-registry-proxy=true\n\
                       package-registry-proxy-npm-url=https://n/npm/?a=b\n\
                       package-registry-proxy-pip-url=\n\
                       quoted='kept as is'\n\
                       allow-package-registry-proxy=false\n";
        assert_eq!(
            parse_env_file(content).unwrap(),
            data(&[
                ("allow-package-registry-proxy", "false"),
                ("package-registry-proxy-npm-url", "https://n/npm/?a=b"),
                ("package-registry-proxy-pip-url", ""),
                ("quoted", "'kept as is'"),
            ])
        );
    }

    #[test]
    fn env_file_errors_name_the_line() {
        let err = parse_env_file("a=b\njust-a-key\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: expected key=value, found \"just-a-key\""
        );
        let err = parse_env_file("a b=c\n").unwrap_err();
        assert!(matches!(err, FormatError::EnvKey { line: 1, .. }), "{err}");
        assert!(matches!(
            parse_env_file("=x\n"),
            Err(FormatError::EnvKey { .. })
        ));
    }

    #[test]
    fn empty_and_untyped_files_are_errors_not_empty_configmaps() {
        for empty in ["", "\n\n", "# only a comment\n", "\u{feff}  \n"] {
            for name in ["cm.yaml", "cm.env", "cm"] {
                assert!(
                    matches!(parse(Path::new(name), empty), Err(FormatError::Empty)),
                    "{name} {empty:?}"
                );
            }
        }
        let untyped = "data:\n  allow-package-registry-proxy: \"true\"\n";
        assert!(matches!(
            parse_manifest(untyped),
            Err(FormatError::MissingTypeMeta)
        ));
        let cut = "apiVersion: v1\n";
        assert!(matches!(
            parse_manifest(cut),
            Err(FormatError::MissingTypeMeta)
        ));
    }

    const STREAM: &str = "---\n\
apiVersion: v1\n\
kind: Namespace\n\
metadata:\n  name: konflux-info\n\
---\n\
apiVersion: apps/v1\n\
kind: Deployment\n\
metadata:\n  name: proxyconf\n  namespace: konflux-info\n\
data:\n  nested:\n    not: strings\n\
---\n\
---\n\
apiVersion: v1\n\
kind: ConfigMap\n\
metadata:\n  name: other\n  namespace: konflux-info\n\
data:\n  allow-package-registry-proxy: \"false\"\n\
---\n\
apiVersion: v1\n\
kind: ConfigMap\n\
metadata:\n  name: cluster-config\n  namespace: konflux-info\n  resourceVersion: \"7\"\n\
data:\n  allow-package-registry-proxy: true\n  package-registry-proxy-npm-url: https://n/npm/\n\
---\n\
apiVersion: v1\n\
kind: Secret\n\
metadata:\n  name: s\n\
data:\n  - a list\n";

    #[test]
    fn a_stream_is_read_for_its_cluster_config() {
        let parsed = parse_located(Path::new("kustomized.yaml"), STREAM).unwrap();
        assert_eq!(
            parsed.state,
            ConfigMapState::Present {
                data: data(&[
                    ("allow-package-registry-proxy", "true"),
                    ("package-registry-proxy-npm-url", "https://n/npm/"),
                ]),
                resource_version: Some("7".into()),
            }
        );
        assert_eq!(parsed.lines["allow-package-registry-proxy"], 32);
        assert_eq!(parsed.lines["package-registry-proxy-npm-url"], 33);
        assert_eq!(parse_manifest(STREAM).unwrap(), parsed.state);
    }

    #[test]
    fn a_stream_without_exactly_one_cluster_config_is_an_error() {
        let none = STREAM.replace("name: cluster-config", "name: renamed");
        let err = parse_manifest(&none).unwrap_err();
        assert_eq!(
            err.to_string(),
            "none of the 5 documents is the ConfigMap cluster-config (in namespace konflux-info \
             or without one); ConfigMaps found: konflux-info/other, konflux-info/renamed"
        );
        let elsewhere = STREAM.replace(
            "name: cluster-config\n  namespace: konflux-info",
            "name: cluster-config\n  namespace: default",
        );
        assert!(matches!(
            parse_manifest(&elsewhere),
            Err(FormatError::NoClusterConfig { .. })
        ));
        let twice = STREAM.replace("name: other", "name: cluster-config");
        assert!(matches!(
            parse_manifest(&twice),
            Err(FormatError::SeveralClusterConfigs { count: 2 })
        ));
        let nested = STREAM.replace(
            "package-registry-proxy-npm-url: https://n/npm/",
            "x:\n    y: z",
        );
        let err = parse_manifest(&nested).unwrap_err();
        assert!(matches!(err, FormatError::Manifest(_)), "{err}");
        assert!(err.line().is_some(), "{err}");
        let broken = format!("{STREAM}---\nkind: [\n");
        assert!(matches!(
            parse_manifest(&broken),
            Err(FormatError::Manifest(_))
        ));
    }

    #[test]
    fn lines_of_every_form() {
        let yaml = parse_located(Path::new("cm.yaml"), MANIFEST).unwrap();
        assert_eq!(yaml.format, FileFormat::Manifest);
        assert_eq!(yaml.lines["allow-package-registry-proxy"], 10);
        assert_eq!(yaml.lines["enable-keyless-signing"], 12);
        assert_eq!(yaml.state, parse(Path::new("cm.yaml"), MANIFEST).unwrap());
        let json = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\n \"data\": {\n  \"a\": \"b\",\n  \"c\": \"d\"}}";
        let json = parse_located(Path::new("cm.json"), json).unwrap();
        assert_eq!(
            json.lines,
            [("a".to_owned(), 3), ("c".to_owned(), 4)].into()
        );
        let env = parse_located(Path::new("cm"), "# c\n\na=1\nb=2\na=3\n").unwrap();
        assert_eq!(env.format, FileFormat::EnvFile);
        assert_eq!(env.lines, [("a".to_owned(), 5), ("b".to_owned(), 4)].into());
        let ini = parse_located(Path::new("cm"), "; c\n[cache-proxy]\nhttp-proxy = p:1\n").unwrap();
        assert_eq!(ini.format, FileFormat::Ini);
        assert_eq!(ini.lines, [("http-proxy".to_owned(), 3)].into());
    }

    #[test]
    fn ini_files() {
        let content = "[artifact-registry]\nallow-package-registry-proxy = true\n";
        for name in ["platform-config.ini", "konflux-config", "x.conf"] {
            assert_eq!(
                parse(Path::new(name), content).unwrap(),
                ConfigMapState::Present {
                    data: data(&[("allow-package-registry-proxy", "true")]),
                    resource_version: None
                },
                "{name}"
            );
        }
        let err = parse(Path::new("x.ini"), "[cache-proxy]\nhttp-proxy\n").unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert_eq!(
            crate::source::error_chain(&err),
            "line 2: expected key = value, key: value or [section], found \"http-proxy\""
        );
        for empty in ["; only comments\n# and more\n", "\n"] {
            assert!(matches!(
                parse(Path::new("x.ini"), empty),
                Err(FormatError::Empty)
            ));
        }
        // Sections but no keys: an INI that says nothing is set, unlike a truncated file.
        assert_eq!(
            parse(Path::new("x.ini"), "[cache-proxy]\n").unwrap(),
            ConfigMapState::Present {
                data: BTreeMap::new(),
                resource_version: None
            }
        );
    }

    #[test]
    fn detection() {
        let env = "# comment\nallow-package-registry-proxy=true\n";
        assert_eq!(
            FileFormat::detect(Path::new("cluster-config"), env),
            FileFormat::EnvFile
        );
        assert_eq!(
            FileFormat::detect(Path::new("x.env"), "kind: ConfigMap"),
            FileFormat::EnvFile
        );
        assert_eq!(
            FileFormat::detect(Path::new("x"), MANIFEST),
            FileFormat::Manifest
        );
        assert_eq!(
            FileFormat::detect(Path::new("x.yml"), env),
            FileFormat::Manifest
        );
        for ini in [
            "[cache-proxy]\n",
            "\u{feff}; comment\n# comment\n\n  [artifact-registry] ; comment\nk=v\n",
        ] {
            assert_eq!(
                FileFormat::detect(Path::new("x"), ini),
                FileFormat::Ini,
                "{ini:?}"
            );
        }
        assert_eq!(
            FileFormat::detect(Path::new("x.ini"), MANIFEST),
            FileFormat::Ini
        );
        for not_ini in ["[{\"kind\": \"ConfigMap\"}]", "[a, b]\n", "[a] b\n", "[]\n"] {
            assert_eq!(
                FileFormat::detect(Path::new("x"), not_ini),
                FileFormat::Manifest,
                "{not_ini:?}"
            );
        }
        assert_eq!(
            FileFormat::detect(Path::new("x.yaml"), "[cache-proxy]\n"),
            FileFormat::Manifest
        );
    }
}

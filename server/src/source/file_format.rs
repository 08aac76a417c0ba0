//! Parsers for the two file forms of the ConfigMap: a Kubernetes manifest (YAML or JSON, as
//! `kubectl get configmap -o yaml` prints it) and a `key=value` env file (the `cluster-config.env`
//! that clusters generate the ConfigMap from with `kubectl create configmap --from-env-file`).

use std::{collections::BTreeMap, path::Path};

use k8s_openapi::api::core::v1::ConfigMap;

use super::ConfigMapState;

/// Why a ConfigMap file could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a valid ConfigMap manifest")]
    Manifest(#[source] serde_saphyr::Error),
    #[error("line {line}: expected key=value, found {found:?}")]
    EnvLine { line: usize, found: String },
    #[error("line {line}: {key:?} is not a valid ConfigMap key (letters, digits, '-', '_', '.')")]
    EnvKey { line: usize, key: String },
    #[error(
        "the file is empty (a truncated write?); an empty ConfigMap must still say so with \
         apiVersion, kind and metadata"
    )]
    Empty,
    #[error("not a ConfigMap manifest: apiVersion: v1 and kind: ConfigMap are required")]
    MissingTypeMeta,
}

/// The form of a ConfigMap file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Manifest,
    EnvFile,
}

impl FileFormat {
    /// The form a file has: by its extension (`.yaml`, `.yml`, `.json` or `.env`), otherwise by
    /// its first meaningful line (`key=value` means an env file).
    pub fn detect(path: &Path, content: &str) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml" | "json") => return Self::Manifest,
            Some("env") => return Self::EnvFile,
            _ => {}
        }
        let first = content
            .lines()
            .map(|l| l.trim_start_matches('\u{feff}').trim())
            .find(|l| !l.is_empty() && !l.starts_with('#'));
        match first {
            Some(line) if line.split_once('=').is_some_and(|(k, _)| is_key(k.trim())) => {
                Self::EnvFile
            }
            _ => Self::Manifest,
        }
    }
}

/// Parses `content` in the form of `path`. A file with nothing but blanks and comments is an
/// error, not an empty ConfigMap: that is what a truncated write leaves, and reading it as "no
/// keys" would switch the proxy off for every build.
pub fn parse(path: &Path, content: &str) -> Result<ConfigMapState, FormatError> {
    let meaningful = content
        .lines()
        .map(|l| l.trim_start_matches('\u{feff}').trim())
        .any(|l| !l.is_empty() && !l.starts_with('#'));
    if !meaningful {
        return Err(FormatError::Empty);
    }
    match FileFormat::detect(path, content) {
        FileFormat::Manifest => parse_manifest(content),
        FileFormat::EnvFile => parse_env_file(content).map(|data| ConfigMapState::Present {
            data,
            resource_version: None,
        }),
    }
}

/// Parses a ConfigMap manifest. An unquoted scalar such as `true` is read as its text (kubectl
/// would insist on quotes); a nested mapping or list as a value is an error.
pub fn parse_manifest(content: &str) -> Result<ConfigMapState, FormatError> {
    // k8s-openapi checks `apiVersion` and `kind` when present, like the API server; they must be
    // present too, so that a file cut short near its start is not read as a ConfigMap.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct TypeMeta {
        api_version: Option<String>,
        kind: Option<String>,
    }
    let meta: TypeMeta = serde_saphyr::from_str(content).map_err(FormatError::Manifest)?;
    if meta.api_version.is_none() || meta.kind.is_none() {
        return Err(FormatError::MissingTypeMeta);
    }
    let configmap: ConfigMap = serde_saphyr::from_str(content).map_err(FormatError::Manifest)?;
    Ok(ConfigMapState::Present {
        data: configmap.data.unwrap_or_default(),
        resource_version: configmap.metadata.resource_version,
    })
}

/// Parses an env file with the rules of `kubectl create configmap --from-env-file`: leading
/// whitespace is dropped, blank lines and `#` comments are skipped, the value is everything after
/// the first `=` taken literally (no quotes, no escapes), and a later key replaces an earlier one.
pub fn parse_env_file(content: &str) -> Result<BTreeMap<String, String>, FormatError> {
    let mut data = BTreeMap::new();
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
    }
    Ok(data)
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
    }
}

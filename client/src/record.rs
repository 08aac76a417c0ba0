//! The outcome record of `--record FILE`: what a build step applied, as one line of compact JSON
//! small enough for a Tekton result, so that an attestation or a policy can check that the
//! package registry proxy was really used (the pipeline parameter alone does not say).
//!
//! ```json
//! {"outcome":"applied","exit_code":0,"active":true,"decision":"active","version":"08821e50ef78344b",
//!  "resource_version":"4711","server":"http://proxyconf.proxyconf.svc:50051","package_managers":["gomod","npm"]}
//! ```

use std::path::Path;

use proxyconf_proto::v1::{Decision, Resolution};
use serde::Serialize;

use crate::{exit::Failure, exports::Variables, render};

/// Tekton's limit for one result is 4 KiB in all; a record stays far below it.
pub const MAX_RECORD_BYTES: usize = 512;

/// What happened, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The server answered and its answer was applied (which may be "nothing": see `decision`).
    Applied,
    /// The build opted out of everything; the server was not asked.
    OptedOut,
    /// The server was unreachable and `--allow-direct-on-unavailable` let the build go on
    /// without the proxy.
    Direct,
    /// proxyconf failed closed: nothing was applied, the step stops (see `exit_code`, `error`).
    Failed,
}

/// One record, as written.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub outcome: Outcome,
    pub exit_code: u8,
    /// Whether package registry proxy variables were applied.
    pub active: bool,
    /// The server's decision: `active`, `administrator-off`, `user-opted-out`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The ConfigMap's resourceVersion the answer was resolved from.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    pub server: String,
    /// The package managers whose variables were exported (names, never URLs).
    pub package_managers: Vec<String>,
    /// Set when the list did not fit: how many package managers were exported in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_managers_total: Option<usize>,
    /// Whether the OCI cache proxy variables were applied.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cache_proxy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Record {
    /// The record of a step that got `variables` from `resolution`.
    pub fn applied(server: &str, resolution: &Resolution, variables: &Variables) -> Self {
        let package_managers = resolution
            .package_managers
            .iter()
            .filter(|pm| pm.env.iter().any(|v| variables.contains_key(&v.name)))
            .map(|pm| pm.name.clone())
            .collect::<Vec<_>>();
        Self {
            active: !package_managers.is_empty(),
            decision: Some(decision_name(resolution.decision())),
            version: resolution.version.clone(),
            resource_version: resolution
                .source
                .as_ref()
                .map(|s| s.resource_version.clone())
                .unwrap_or_default(),
            package_managers,
            cache_proxy: variables.contains_key("HTTP_PROXY"),
            ..Self::empty(Outcome::Applied, server)
        }
    }

    /// A step that applied nothing, for `outcome`.
    pub fn empty(outcome: Outcome, server: &str) -> Self {
        Self {
            outcome,
            exit_code: 0,
            active: false,
            decision: (outcome == Outcome::OptedOut).then_some("user-opted-out"),
            version: String::new(),
            resource_version: String::new(),
            server: server.to_owned(),
            package_managers: Vec::new(),
            package_managers_total: None,
            cache_proxy: false,
            error: None,
        }
    }

    /// A step that failed closed with `failure`.
    pub fn failed(server: &str, failure: &Failure) -> Self {
        Self {
            exit_code: failure.code(),
            error: Some(failure.to_string()),
            ..Self::empty(Outcome::Failed, server)
        }
    }

    /// The compact JSON line, at most [`MAX_RECORD_BYTES`]: a long error is cut first, then the
    /// package manager list gives way to its count, then the server address is cut.
    pub fn to_json(&self) -> String {
        let mut record = self.clone();
        let mut line = record.encode();
        if line.len() > MAX_RECORD_BYTES
            && let Some(error) = &mut record.error
        {
            let excess = line.len() - MAX_RECORD_BYTES;
            truncate_with_ellipsis(error, error.len().saturating_sub(excess + 8));
            line = record.encode();
        }
        if line.len() > MAX_RECORD_BYTES && !record.package_managers.is_empty() {
            record.package_managers_total = Some(record.package_managers.len());
            record.package_managers.clear();
            line = record.encode();
        }
        if line.len() > MAX_RECORD_BYTES {
            let excess = line.len() - MAX_RECORD_BYTES;
            let server = &mut record.server;
            truncate_with_ellipsis(server, server.len().saturating_sub(excess + 8));
            line = record.encode();
        }
        line
    }

    fn encode(&self) -> String {
        // A struct of strings, numbers and booleans always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Writes the record to `path` atomically, without a trailing newline (a Tekton result is the
    /// file's exact content).
    pub fn write(&self, path: &Path) -> Result<(), Failure> {
        render::write_atomically(path, &self.to_json())
            .map_err(|e| Failure::Other(format!("cannot write the record {}: {e}", path.display())))
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut with `…`.
fn truncate_with_ellipsis(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Active => "active",
        Decision::AdministratorOff => "administrator-off",
        Decision::UserOptedOut => "user-opted-out",
        Decision::Unspecified => "unspecified",
    }
}

#[cfg(test)]
mod tests {
    use proxyconf_proto::v1::{EnvVar, PackageManager, SourceRef};

    use super::*;

    fn resolution(names: &[&str]) -> (Resolution, Variables) {
        let mut variables = Variables::new();
        let package_managers = names
            .iter()
            .map(|name| {
                let var = format!(
                    "HERMETO_{}__PROXY_URL",
                    name.to_uppercase().replace('-', "_")
                );
                variables.insert(var.clone(), format!("https://nexus/{name}/"));
                PackageManager {
                    name: (*name).to_owned(),
                    url: format!("https://nexus/{name}/"),
                    env: vec![EnvVar {
                        name: var,
                        value: format!("https://nexus/{name}/"),
                    }],
                }
            })
            .collect();
        let resolution = Resolution {
            version: "08821e50ef78344b".into(),
            active: true,
            decision: Decision::Active.into(),
            package_managers,
            source: Some(SourceRef {
                resource_version: "4711".into(),
                ..SourceRef::default()
            }),
            ..Resolution::default()
        };
        (resolution, variables)
    }

    #[test]
    fn applied_names_package_managers_not_urls() {
        let (r, vars) = resolution(&["npm", "gomod"]);
        let line = Record::applied("http://s:1", &r, &vars).to_json();
        assert_eq!(
            line,
            r#"{"outcome":"applied","exit_code":0,"active":true,"decision":"active","version":"08821e50ef78344b","resource_version":"4711","server":"http://s:1","package_managers":["npm","gomod"]}"#
        );
        assert!(!line.contains("nexus"), "no URL in the record");
    }

    #[test]
    fn a_package_manager_outside_the_exported_variables_is_not_claimed() {
        let (r, mut vars) = resolution(&["npm", "gomod"]);
        vars.remove("HERMETO_GOMOD__PROXY_URL");
        let record = Record::applied("s", &r, &vars);
        assert_eq!(record.package_managers, ["npm"]);
        vars.clear();
        assert!(!Record::applied("s", &r, &vars).active);
    }

    #[test]
    fn failure_carries_its_exit_code_and_message() {
        let failure = Failure::Unavailable("no answer from s within 10s".into());
        let line = Record::failed("s", &failure).to_json();
        assert_eq!(
            line,
            r#"{"outcome":"failed","exit_code":69,"active":false,"server":"s","package_managers":[],"error":"no answer from s within 10s"}"#
        );
    }

    #[test]
    fn never_longer_than_the_bound() {
        let names: Vec<String> = (0..200).map(|i| format!("pm-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (r, vars) = resolution(&refs);
        let line = Record::applied(&"s".repeat(2000), &r, &vars).to_json();
        assert!(line.len() <= MAX_RECORD_BYTES, "{}", line.len());
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["package_managers_total"], 200);

        let failure = Failure::Misconfigured("é".repeat(1000));
        let line = Record::failed("s", &failure).to_json();
        assert!(line.len() <= MAX_RECORD_BYTES, "{}", line.len());
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(json["error"].as_str().unwrap().ends_with('…'));
    }
}

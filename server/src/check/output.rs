//! What `proxyconf-server check` prints: lines for people ([`text`]) or one JSON document for CI
//! ([`json`]).

// serde_json as k8s-openapi re-exports it: the crate the server already builds, no new dependency.
use k8s_openapi::serde_json;
use serde::Serialize;

use super::{CheckError, FileReport, Finding, Severity};
use crate::source::error_chain;

/// The report on one file: each finding (where, the key and its redacted value, the reason, what
/// to do), then one line with the verdict and, for a valid file, what it sets up.
pub fn text(report: &FileReport) -> String {
    let mut out = String::new();
    for finding in &report.findings {
        out.push_str(&finding_text(&report.file, finding));
    }
    let problems = report.count(Severity::Problem);
    let warnings = report.count(Severity::Warning);
    let verdict = match (problems, warnings, &report.summary) {
        (0, 0, Some(summary)) => format!("valid: {summary}"),
        (0, w, Some(summary)) => format!("valid, {}: {summary}", plural(w, "warning")),
        (p, 0, _) => format!("invalid: {}", plural(p, "problem")),
        (p, w, _) => format!(
            "invalid: {}, {}",
            plural(p, "problem"),
            plural(w, "warning")
        ),
    };
    out.push_str(&format!("{}: {verdict}\n", report.file));
    out
}

/// The message for a file that could not be read.
pub fn unreadable_text(error: &CheckError) -> String {
    format!("proxyconf-server check: {}\n", error_chain(error))
}

fn finding_text(file: &str, finding: &Finding) -> String {
    let place = match finding.line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_owned(),
    };
    let severity = match finding.severity {
        Severity::Problem => "problem",
        Severity::Warning => "warning",
    };
    match (&finding.key, &finding.value) {
        (Some(key), Some(value)) => format!(
            "{place}: {severity}: {key} = {value}\n  {}\n  to fix: {}\n",
            finding.reason, finding.action
        ),
        (Some(key), None) => format!(
            "{place}: {severity}: {key}: {}\n  to fix: {}\n",
            finding.reason, finding.action
        ),
        (None, _) => format!(
            "{place}: {severity}: {}\n  to fix: {}\n",
            finding.reason, finding.action
        ),
    }
}

fn plural(n: usize, word: &str) -> String {
    match n {
        1 => format!("1 {word}"),
        n => format!("{n} {word}s"),
    }
}

/// One file in the JSON document.
#[derive(Serialize)]
struct JsonFile<'a> {
    file: String,
    /// `manifest`, `env` or `ini`; null when the file could not be read.
    format: Option<&'static str>,
    valid: bool,
    /// Why the file could not be read (exit 2); null otherwise.
    error: Option<String>,
    /// What a valid file sets up; null otherwise.
    summary: Option<&'a str>,
    problems: Vec<JsonFinding<'a>>,
    warnings: Vec<JsonFinding<'a>>,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    key: Option<&'a str>,
    line: Option<usize>,
    value: Option<&'a str>,
    reason: &'a str,
    action: &'a str,
    code: &'static str,
}

/// The JSON document: an array with one object per file, in the order given.
pub fn json(results: &[Result<FileReport, CheckError>]) -> String {
    let files: Vec<JsonFile> = results.iter().map(json_file).collect();
    let mut text = serde_json::to_string_pretty(&files)
        .unwrap_or_else(|e| unreachable!("strings and numbers always serialize: {e}"));
    text.push('\n');
    text
}

fn json_file(result: &Result<FileReport, CheckError>) -> JsonFile<'_> {
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            let CheckError::Read { path, .. } = error;
            return JsonFile {
                file: path.display().to_string(),
                format: None,
                valid: false,
                error: Some(error_chain(error)),
                summary: None,
                problems: Vec::new(),
                warnings: Vec::new(),
            };
        }
    };
    let of = |severity| {
        report
            .findings
            .iter()
            .filter(|f| f.severity == severity)
            .map(|f| JsonFinding {
                key: f.key.as_deref(),
                line: f.line,
                value: f.value.as_deref(),
                reason: &f.reason,
                action: &f.action,
                code: f.code.as_str(),
            })
            .collect()
    };
    JsonFile {
        file: report.file.clone(),
        format: report.format.map(|f| f.name()),
        valid: report.is_valid(),
        error: None,
        summary: report.summary.as_deref(),
        problems: of(Severity::Problem),
        warnings: of(Severity::Warning),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{check::check_content, resolve::Policy};

    #[test]
    fn text_of_a_valid_and_a_broken_file() {
        let policy = Policy::default();
        let good = check_content(Path::new("good.env"), "allow-cache-proxy=false\n", &policy);
        assert_eq!(
            text(&good),
            "good.env: valid: package registry proxy not allowed (allow-package-registry-proxy is \
             not set), no package managers, cache proxy not allowed\n"
        );
        let broken = check_content(
            Path::new("broken.env"),
            "allow-cache-proxy=maybe\nbroken\n",
            &policy,
        );
        assert_eq!(
            text(&broken),
            "broken.env:2: problem: expected key=value, found \"broken\"\n  to fix: write \
             one key=value per line; comments start with #\nbroken.env: invalid: 1 problem\n"
        );
    }

    #[test]
    fn json_has_one_object_per_file() {
        let policy = Policy::default();
        let broken = check_content(Path::new("b.env"), "allow-cache-proxy=maybe\n", &policy);
        let missing = Err(CheckError::Read {
            path: "gone.yaml".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        let doc: serde_json::Value = serde_json::from_str(&json(&[Ok(broken), missing])).unwrap();
        assert_eq!(doc[0]["file"], "b.env");
        assert_eq!(doc[0]["format"], "env");
        assert_eq!(doc[0]["valid"], false);
        assert_eq!(doc[0]["problems"][0]["code"], "INVALID_BOOLEAN");
        assert_eq!(doc[0]["problems"][0]["line"], 1);
        assert_eq!(doc[0]["problems"][0]["value"], "maybe");
        assert_eq!(doc[1]["file"], "gone.yaml");
        assert!(
            doc[1]["error"]
                .as_str()
                .unwrap()
                .starts_with("cannot read gone.yaml")
        );
    }
}

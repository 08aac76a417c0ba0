//! `deploy/monitoring`: the alerts are valid and pass their unit tests (`promtool`), every alert
//! has a test firing and one not firing and a runbook section, the component renders onto the base
//! with a PrometheusRule that is the rule file exactly and a Service and ServiceMonitor that reach
//! the metrics port, and a live server's `/metrics` passes `promtool check metrics` and exports
//! every metric the alerts use.
//!
//! promtool must be installed (Debian's `prometheus` package; `.ci/run` installs it): without it
//! these tests fail, they never skip.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::e2e::util::{ServerProcess, repo_root, run, stderr, stdout};

/// The Service the ServiceMonitor scrapes through: Prometheus names the job after it.
const METRICS_SERVICE: &str = "proxyconf-metrics";

/// What Prometheus sends by default when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn monitoring_dir() -> PathBuf {
    repo_root().join("deploy/monitoring")
}

fn yaml_file(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{} parses: {e}", path.display()))
}

/// The rules of `alerts.rules.yaml`, every group's.
fn alerts() -> Vec<Value> {
    let rules = yaml_file(&monitoring_dir().join("alerts.rules.yaml"));
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().expect("rules").clone())
        .collect()
}

/// `promtool`, which must be on PATH.
fn promtool() -> Command {
    let installed = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !installed {
        let ci = if std::env::var_os("CI").is_some() {
            " CI is set: .ci/run should have installed it."
        } else {
            ""
        };
        panic!(
            "promtool is not installed: install Debian's `prometheus` package \
             (apt-get install --no-install-recommends prometheus), which provides it, \
             to test deploy/monitoring.{ci}"
        );
    }
    let mut command = Command::new("promtool");
    command.current_dir(monitoring_dir());
    command
}

fn assert_succeeded(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

#[test]
fn rules_are_valid_and_pass_their_unit_tests() {
    let check = run(promtool().args(["check", "rules", "alerts.rules.yaml"]));
    assert_succeeded("promtool check rules", &check);
    let test = run(promtool().args(["test", "rules", "alerts.test.yaml"]));
    assert_succeeded("promtool test rules", &test);
}

#[test]
fn every_alert_is_tested_firing_and_not_firing_and_has_a_runbook_section() {
    let tests = yaml_file(&monitoring_dir().join("alerts.test.yaml"));
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for case in tests["tests"].as_array().expect("tests") {
        for check in case["alert_rule_test"].as_array().into_iter().flatten() {
            let name = check["alertname"].as_str().expect("alertname").to_owned();
            let fires = check["exp_alerts"]
                .as_array()
                .is_some_and(|alerts| !alerts.is_empty());
            if fires { &mut firing } else { &mut quiet }.insert(name);
        }
    }
    let runbook = std::fs::read_to_string(repo_root().join("docs/runbook.md")).unwrap();
    let sections: BTreeSet<String> = runbook
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(str::to_lowercase)
        .collect();
    let alerts = alerts();
    assert_eq!(alerts.len(), 6, "{alerts:?}");
    for alert in alerts {
        let name = alert["alert"].as_str().expect("every rule is an alert");
        assert!(firing.contains(name), "{name} is never tested firing");
        assert!(quiet.contains(name), "{name} is never tested not firing");
        let severity = alert["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("critical" | "warning")),
            "{name}: severity {severity:?}"
        );
        let annotations = &alert["annotations"];
        for key in ["summary", "description"] {
            assert!(
                annotations[key].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: no {key}"
            );
        }
        let url = annotations["runbook_url"].as_str().expect("runbook_url");
        let anchor = url
            .strip_prefix("https://github.com/konflux-ci/proxyconf/blob/main/docs/runbook.md#")
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not docs/runbook.md"));
        assert_eq!(anchor, name.to_lowercase(), "{name}: anchor");
        assert!(
            sections.contains(anchor),
            "docs/runbook.md has no ## {name}"
        );
        let expr = alert["expr"].as_str().expect("expr");
        assert!(
            expr.contains(&format!("job=\"{METRICS_SERVICE}\"")),
            "{name} must select the scraped job: {expr}"
        );
    }
}

/// `to` relative to the directory `from` (kustomize refuses absolute paths).
fn relative(from: &Path, to: &Path) -> String {
    let from = from.canonicalize().unwrap();
    let to = to.canonicalize().unwrap();
    // Up to the root, then down: `..` at the root stays there.
    let up = "../".repeat(from.components().count() - 1);
    format!("{up}{}", to.strip_prefix("/").unwrap().display())
}

/// The base with the component, rendered by `kubectl kustomize` the way an overlay uses it.
fn render_with_component() -> Vec<Value> {
    let overlay = tempfile::tempdir().unwrap();
    let deploy = relative(overlay.path(), &repo_root().join("deploy"));
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources:\n  - {deploy}/base\ncomponents:\n  - {deploy}/monitoring\n"
        ),
    )
    .unwrap();
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(overlay.path())
        .output()
        .expect("kubectl must be installed to test deploy/ (see .ci/run)");
    assert_succeeded("kubectl kustomize", &output);
    serde_saphyr::from_multiple(&stdout(&output)).expect("rendered YAML parses")
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Whether every label of `selector` is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("a label map");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn component_scrapes_the_metrics_port_and_its_rule_is_the_rule_file() {
    let objects = render_with_component();

    let rule = object(&objects, "PrometheusRule", "proxyconf-server");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        rule["spec"],
        yaml_file(&monitoring_dir().join("alerts.rules.yaml")),
        "prometheusrule.yaml's spec differs from alerts.rules.yaml: make them the same"
    );

    let deployment = object(&objects, "Deployment", "proxyconf-server");
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("the container's metrics port");
    assert_eq!(port["containerPort"], 9090);
    assert!(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--metrics-listen=0.0.0.0:9090"),
        "{container}"
    );

    let service = object(&objects, "Service", METRICS_SERVICE);
    assert_eq!(service["metadata"]["namespace"], "proxyconf");
    assert!(
        selects(&service["spec"]["selector"], &pod["metadata"]["labels"]),
        "{service}"
    );
    assert_eq!(
        service["spec"]["publishNotReadyAddresses"], true,
        "replicas that are not ready must be scraped too"
    );
    let ports = service["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "{service}");
    assert_eq!(ports[0]["name"], "metrics");
    assert_eq!(ports[0]["port"], 9090);
    assert_eq!(ports[0]["targetPort"], "metrics");

    let monitor = object(&objects, "ServiceMonitor", "proxyconf-server");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["namespace"], "proxyconf");
    assert!(
        selects(
            &monitor["spec"]["selector"]["matchLabels"],
            &service["metadata"]["labels"]
        ),
        "{monitor}"
    );
    // The selector must pick only the metrics Service, not the gRPC ones.
    for other in objects
        .iter()
        .filter(|o| o["kind"] == "Service" && o["metadata"]["name"] != METRICS_SERVICE)
    {
        assert!(
            !selects(
                &monitor["spec"]["selector"]["matchLabels"],
                &other["metadata"]["labels"]
            ),
            "{other}"
        );
    }
    let endpoints = monitor["spec"]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], "metrics");
    assert_eq!(endpoints[0]["path"], "/metrics");
}

/// `GET /metrics` with `accept`: the Content-Type and the body.
fn scrape(address: &str, accept: Option<&str>) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{accept}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .expect("a Content-Type");
    (content_type, body.to_owned())
}

/// The metric names the alerts' expressions use.
fn metrics_alerted_on() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for alert in alerts() {
        let expr = alert["expr"].as_str().unwrap();
        for (start, _) in expr.match_indices("proxyconf_") {
            let name: String = expr[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

#[test]
fn a_live_servers_metrics_pass_promtool_and_hold_what_the_alerts_use() {
    let example = repo_root().join("deploy/examples/cluster-config.yaml");
    let server = ServerProcess::start_with_args(&example, &["--metrics-listen", "127.0.0.1:0"]);
    let address = server
        .logs()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["message"] == "serving metrics at /metrics")
        .and_then(|event| event["address"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no metrics address in {:?}", server.logs()));

    // What curl and promtool read: the Prometheus text format.
    let (content_type, text) = scrape(&address, None);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let mut check = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = check.wait_with_output().unwrap();
    assert_succeeded(&format!("promtool check metrics on\n{text}\n"), &output);

    for name in metrics_alerted_on() {
        assert!(
            text.lines().any(|line| line
                .strip_prefix(name.as_str())
                .is_some_and(|rest| rest.starts_with([' ', '{']))),
            "an alert uses {name}, which the server does not export:\n{text}"
        );
    }
    assert!(text.contains("proxyconf_source_synced 1"), "{text}");

    // What Prometheus asks for: OpenMetrics, with the same samples.
    let (content_type, openmetrics) = scrape(&address, Some(PROMETHEUS_ACCEPT));
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    let samples = |body: &str| -> BTreeSet<String> {
        body.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split(' ').next().map(str::to_owned))
            .collect()
    };
    assert_eq!(samples(&openmetrics), samples(&text));
}

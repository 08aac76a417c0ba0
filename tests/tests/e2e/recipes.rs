//! Every recipe the project documents for a build step, taken from the documents themselves (the
//! shell blocks of README.md and docs/*.md, the examples of `proxyconf --help`), run as written
//! in bash under `set -euo pipefail` and in `sh -e`, followed by a `hermeto` stand-in: against a
//! server whose settings are invalid for every package manager and against no server, the script
//! stops with the documented exit code before Hermeto runs. Recipes that opt out on purpose are
//! checked for doing exactly that. (The steps of deploy/tekton are run by `tekton.rs`.)
//!
//! The recipes run as written but for their paths: `/tmp/` and `/tekton/results` are a scratch
//! directory's. `$ENABLE_PACKAGE_REGISTRY_PROXY` is `true` and `$ENABLE_CACHE_PROXY` is `true`.

use std::collections::BTreeMap;

use super::{
    standins::{Servers, Shell, Workspace, example_variables},
    util::{binary, repo_root, run, stdout},
};

/// A recipe and where it was found.
#[derive(Debug, Clone)]
struct Recipe {
    origin: String,
    text: String,
}

/// What a recipe promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Promise {
    /// Stops on an unreachable server (69) and on invalid settings (78).
    FailsClosed,
    /// `--enable-package-registry-proxy=false`: no variables, no server needed.
    OptsOut,
    /// `--allow-direct-on-unavailable`: no variables when the server is unreachable; invalid
    /// settings still stop it.
    DirectOnUnavailable,
    /// The cache proxy for the init task: stops like [`Self::FailsClosed`], and writes the
    /// results when it can.
    CacheProxy,
}

impl Recipe {
    fn promise(&self) -> Promise {
        let t = &self.text;
        if t.contains("--enable-cache-proxy") || t.contains("proxyconf cache-proxy") {
            Promise::CacheProxy
        } else if t.contains("--enable-package-registry-proxy=false") {
            Promise::OptsOut
        } else if t.contains("--allow-direct-on-unavailable") {
            Promise::DirectOnUnavailable
        } else {
            Promise::FailsClosed
        }
    }

    /// The variables the recipe exports from the example ConfigMap (its `--package-managers`).
    fn expected_variables(&self) -> BTreeMap<String, String> {
        let all = example_variables();
        let Some(rest) = self.text.split("--package-managers ").nth(1) else {
            return all;
        };
        let list = rest.split_whitespace().next().unwrap_or_default();
        let wanted: Vec<String> = list
            .split(',')
            .map(|pm| format!("HERMETO_{}__PROXY_URL", pm.to_uppercase().replace('-', "_")))
            .collect();
        all.into_iter()
            .filter(|(k, _)| wanted.contains(k))
            .collect()
    }

    /// The script a build runs: the recipe, then Hermeto (the build's next line).
    fn script(&self, ws: &Workspace) -> String {
        let text = self
            .text
            .replace("/tmp/", &format!("{}/", ws.tmp().display()))
            .replace("/tekton/results", &ws.results().display().to_string());
        format!("{text}\nhermeto fetch-deps after-the-recipe\n")
    }
}

fn is_recipe(text: &str) -> bool {
    ["proxyconf env", "proxyconf exec", "proxyconf cache-proxy"]
        .iter()
        .any(|c| text.contains(c))
}

/// The fenced `sh`/`bash`/`shell` blocks of a Markdown file that run proxyconf for a build.
fn markdown_recipes(path: &str) -> Vec<Recipe> {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    let mut recipes = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (number, line) in text.lines().enumerate() {
        match &mut block {
            None => {
                let info = line.trim_start().strip_prefix("```").map(str::trim);
                if let Some(lang) = info.and_then(|i| i.split_whitespace().next())
                    && ["sh", "bash", "shell"].contains(&lang)
                {
                    block = Some((number + 1, String::new()));
                }
            }
            Some((start, body)) => {
                if line.trim_start().starts_with("```") {
                    if is_recipe(body) {
                        recipes.push(Recipe {
                            origin: format!("{path}:{start}"),
                            text: body.clone(),
                        });
                    }
                    block = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    recipes
}

/// The examples of `proxyconf --help`: groups of lines between blank lines, comments dropped.
fn help_recipes() -> Vec<Recipe> {
    let out = run(std::process::Command::new(binary("proxyconf")).arg("--help"));
    let help = stdout(&out);
    let examples = help
        .split_once("Examples")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .map(|(_, rest)| rest.split("Exit codes").next().unwrap_or(rest))
        .expect("--help has Examples");
    examples
        .split("\n\n")
        .map(|group| {
            group
                .lines()
                .map(str::trim)
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|text| is_recipe(text))
        .enumerate()
        .map(|(i, text)| Recipe {
            origin: format!("proxyconf --help, example {}", i + 1),
            text: format!("{text}\n"),
        })
        .collect()
}

fn all_recipes() -> Vec<Recipe> {
    let mut recipes = markdown_recipes("README.md");
    let mut docs: Vec<_> = std::fs::read_dir(repo_root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .collect();
    docs.sort();
    for doc in docs {
        recipes.extend(markdown_recipes(&format!("docs/{doc}")));
    }
    recipes.extend(markdown_recipes("deploy/tekton/README.md"));
    recipes.extend(help_recipes());
    recipes
}

/// Runs `recipe` in `shell` against `server`; returns the exit code and the workspace.
fn try_recipe(recipe: &Recipe, shell: Shell, server: &str) -> (Option<i32>, Workspace, String) {
    let ws = Workspace::new();
    let out = ws.run(
        shell,
        &recipe.script(&ws),
        &[
            ("PROXYCONF_SERVER", server),
            ("PROXYCONF_TIMEOUT", "2s"),
            ("ENABLE_PACKAGE_REGISTRY_PROXY", "true"),
            ("ENABLE_CACHE_PROXY", "true"),
        ],
    );
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), ws, log)
}

#[test]
fn the_recipes_are_found() {
    let recipes = all_recipes();
    let origins: Vec<&str> = recipes.iter().map(|r| r.origin.as_str()).collect();
    for source in ["README.md", "docs/configuration.md", "proxyconf --help"] {
        assert!(
            origins.iter().any(|o| o.starts_with(source)),
            "no recipe found in {source}: {origins:?}"
        );
    }
    for promise in [
        Promise::FailsClosed,
        Promise::OptsOut,
        Promise::DirectOnUnavailable,
        Promise::CacheProxy,
    ] {
        assert!(
            recipes.iter().any(|r| r.promise() == promise),
            "no {promise:?} recipe: {origins:?}"
        );
    }
}

#[test]
fn every_documented_recipe_keeps_its_promise() {
    let servers = Servers::start();
    let mut tried = Vec::new();
    for recipe in all_recipes() {
        for shell in Shell::ALL {
            check_invalid(&recipe, shell, &servers.invalid.url);
            check_unreachable(&recipe, shell, &servers.unreachable);
            check_valid(&recipe, shell, &servers.valid.url);
            tried.push(format!(
                "{} ({shell:?}): {:?}",
                recipe.origin,
                recipe.promise()
            ));
        }
    }
    // The list of what was tried, for the test log.
    println!("{}", tried.join("\n"));
}

/// The script went on (exit 0) and Hermeto ran, without any proxy variable.
fn assert_went_on_without_the_proxy(code: Option<i32>, ws: &Workspace, case: &str) {
    assert_eq!(code, Some(0), "{case}");
    let runs = ws.runs_of("hermeto");
    assert!(!runs.is_empty(), "{case}");
    assert!(
        runs.iter().all(|r| r.hermeto_vars().is_empty()),
        "{case}: {runs:?}"
    );
}

/// The script stopped with `expected` before Hermeto ran.
fn assert_stopped(code: Option<i32>, expected: i32, ws: &Workspace, case: &str) {
    assert_eq!(code, Some(expected), "{case}");
    assert!(ws.runs_of("hermeto").is_empty(), "Hermeto ran: {case}");
}

fn check_invalid(recipe: &Recipe, shell: Shell, server: &str) {
    let (code, ws, log) = try_recipe(recipe, shell, server);
    let case = format!(
        "{} in {shell:?}, invalid settings:\n{}\n{log}",
        recipe.origin, recipe.text
    );
    if recipe.promise() == Promise::OptsOut {
        assert_went_on_without_the_proxy(code, &ws, &case);
    } else {
        assert_stopped(code, 78, &ws, &case);
    }
}

fn check_unreachable(recipe: &Recipe, shell: Shell, server: &str) {
    let (code, ws, log) = try_recipe(recipe, shell, server);
    let case = format!(
        "{} in {shell:?}, no server:\n{}\n{log}",
        recipe.origin, recipe.text
    );
    match recipe.promise() {
        Promise::OptsOut | Promise::DirectOnUnavailable => {
            assert_went_on_without_the_proxy(code, &ws, &case);
        }
        Promise::FailsClosed | Promise::CacheProxy => assert_stopped(code, 69, &ws, &case),
    }
}

fn check_valid(recipe: &Recipe, shell: Shell, server: &str) {
    let (code, ws, log) = try_recipe(recipe, shell, server);
    let case = format!(
        "{} in {shell:?}, valid settings:\n{}\n{log}",
        recipe.origin, recipe.text
    );
    assert_eq!(code, Some(0), "{case}");
    let runs = ws.runs_of("hermeto");
    let first = runs
        .first()
        .unwrap_or_else(|| panic!("Hermeto did not run: {case}"));
    match recipe.promise() {
        Promise::OptsOut => assert!(first.hermeto_vars().is_empty(), "{case}"),
        Promise::CacheProxy => {
            if recipe.text.contains("/tekton/results") {
                let http = std::fs::read_to_string(ws.results().join("http-proxy")).unwrap();
                assert_eq!(http, "squid.caching.svc.cluster.local:3128", "{case}");
            }
        }
        Promise::FailsClosed | Promise::DirectOnUnavailable => {
            assert_eq!(first.hermeto_vars(), recipe.expected_variables(), "{case}");
        }
    }
}

/// The trap the documents warn about is real: `&&` hides a failure from `set -e`.
#[test]
fn the_warned_about_forms_do_go_on() {
    let servers = Servers::start();
    for text in [
        "vars=$(proxyconf env) && eval \"$vars\"\n",
        "proxyconf env --output /tmp/hermeto.env && . /tmp/hermeto.env\n",
    ] {
        let recipe = Recipe {
            origin: "a warning in docs/configuration.md".into(),
            text: text.into(),
        };
        let doc = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
        assert!(
            doc.contains(text.trim().split(" && ").next().unwrap()),
            "{text}"
        );
        let (code, ws, _) = try_recipe(&recipe, Shell::BashStrict, &servers.unreachable);
        assert_eq!(code, Some(0), "{text}");
        assert_eq!(
            ws.runs_of("hermeto").len(),
            1,
            "Hermeto ran without the proxy: {text}"
        );
    }
}

/// The `console` block of the README's walkthrough: each `$ ` command and the output shown under
/// it.
fn walkthrough() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("## Walkthrough")
        .nth(1)
        .expect("a Walkthrough section");
    let block = section
        .split("```console\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a console block in the walkthrough");
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    for line in block.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push((command.to_owned(), Vec::new()));
        } else if let Some((_, output)) = steps.last_mut() {
            output.push(line.to_owned());
        }
    }
    steps
}

/// Whether `actual` matches the sample line `shown`, where `…` stands for any text.
fn line_matches(shown: &str, actual: &str) -> bool {
    let parts: Vec<&str> = shown.split('…').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return shown == actual;
    }
    if !actual.starts_with(first) || !actual[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether the lines `actual` match the sample `shown`, where a line `…` stands for any lines.
fn output_matches(shown: &[String], actual: &[&str]) -> bool {
    match shown.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "…" => {
            (0..=actual.len()).any(|skip| output_matches(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(a, more)| line_matches(first, a) && output_matches(rest, more)),
    }
}

#[test]
fn the_walkthrough_prints_what_the_readme_shows() {
    let servers = Servers::start();
    let ws = Workspace::new();
    let steps = walkthrough();
    assert!(steps.len() >= 6, "{steps:?}");
    for (command, shown) in steps {
        // `watch` runs until stopped: its first lines are compared.
        let (script, prefix_only) = if command.starts_with("proxyconf watch") {
            (format!("timeout 3 {command} 2>&1 || true"), true)
        } else {
            (format!("{command} 2>&1 || true"), false)
        };
        let script = script.replace("/tmp/", &format!("{}/", ws.tmp().display()));
        let out = ws.run(
            Shell::BashStrict,
            &script,
            &[("PROXYCONF_SERVER", servers.valid.url.as_str())],
        );
        let text = stdout(&out);
        let mut actual: Vec<&str> = text.lines().collect();
        if prefix_only {
            actual.truncate(shown.len());
        }
        assert!(
            output_matches(&shown, &actual),
            "README walkthrough: `{command}` shows\n{}\nbut prints\n{text}",
            shown.join("\n")
        );
    }
}

#[test]
fn the_sample_matcher_is_strict() {
    let shown = |lines: &[&str]| lines.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>();
    assert!(line_matches("a … c", "a b c"));
    assert!(!line_matches("a … c", "a b d"));
    assert!(!line_matches("abc", "abcd"));
    assert!(output_matches(&shown(&["x", "…"]), &["x", "y", "z"]));
    assert!(!output_matches(&shown(&["x", "y"]), &["x"]));
    assert!(!output_matches(&shown(&["x"]), &["x", "y"]));
}

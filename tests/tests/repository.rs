//! The repository stands alone: no document, comment or message points at material outside it
//! (the specification it was built from lives in `docs/configuration.md`).

use std::process::Command;

#[test]
fn nothing_points_outside_the_repository() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(&root)
        .output()
        .expect("git ls-files");
    assert!(out.status.success(), "git ls-files failed");
    let files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(files.len() > 50, "{} files", files.len());
    // Spelled in two halves so that this file does not match itself.
    let forbidden = [
        concat!("../", "shared"),
        concat!("SPEC ", "§"),
        concat!("SPEC", ".md"),
    ];
    let mut found = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            if forbidden.iter().any(|f| line.contains(f)) {
                found.push(format!("{file}:{}: {line}", number + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "references to outside the repository:\n{}",
        found.join("\n")
    );
}

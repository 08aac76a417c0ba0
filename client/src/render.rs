//! Writes the variables as shell `export` lines, a dotenv file or JSON, to stdout or atomically to
//! a file. Quoting is safe for any value: nothing in a value can run in the reader's shell.

use std::{
    io::{self, Write},
    os::unix::fs::PermissionsExt,
    path::Path,
};

use crate::exports::Variables;

/// How the variables are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `export NAME='value'` lines, for `eval "$(proxyconf env)"` or `source`.
    Shell,
    /// `NAME=value` lines, double-quoted with escapes where needed (python-dotenv, docker compose).
    Dotenv,
    /// One JSON object mapping names to values.
    Json,
}

/// The variables in `format`.
pub fn render(variables: &Variables, format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Shell => {
            for (name, value) in variables {
                out.push_str("export ");
                out.push_str(name);
                out.push('=');
                out.push_str(&shell_quote(value));
                out.push('\n');
            }
        }
        Format::Dotenv => {
            for (name, value) in variables {
                out.push_str(name);
                out.push('=');
                out.push_str(&dotenv_quote(value));
                out.push('\n');
            }
        }
        Format::Json => {
            // A map of strings always serialises.
            out = serde_json::to_string(variables).unwrap_or_default();
            out.push('\n');
        }
    }
    out
}

/// Single-quotes `value` for POSIX shells: inside `'…'` nothing is special, and a `'` is written
/// as `'\''` (close, escaped quote, reopen).
pub fn shell_quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

/// A dotenv value: bare when it is plainly safe, else double-quoted with `\\ \" \$ \` \n` escaped.
fn dotenv_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@%+,=?&~".contains(&b));
    if plain {
        return value.to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '$' => quoted.push_str("\\$"),
            '`' => quoted.push_str("\\`"),
            '\n' => quoted.push_str("\\n"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// What `eval "$(proxyconf env)"` or `. FILE` runs when proxyconf failed: a comment and
/// `(exit CODE)`. A script under `set -e` stops there with proxyconf's exit code; an interactive
/// shell only gets `$?` set (an `exit` would close the terminal).
pub fn shell_failure_guard(code: u8) -> String {
    format!(
        "# proxyconf failed (exit {code}): see its message on standard error. Nothing was \
         exported.\n(exit {code})\n"
    )
}

/// Writes `content` to `path` atomically: to a temporary file with an unpredictable name beside
/// it (created exclusively, so a planted symlink is never followed), flushed to disk, then
/// renamed over `path`. A reader sees the old file or the new one, never half of one. A path that
/// exists but is not a regular file (`/dev/null`, `/dev/stdout`, a pipe) is written in place:
/// renaming over it would replace the device.
pub fn write_atomically(path: &Path, content: &str) -> io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .write_all(content.as_bytes());
    }
    // Readable by the later steps of a task, which may run as another user.
    replace_file(path, 0o644, |file| file.write_all(content.as_bytes()))
}

/// Replaces `path` with a file of `mode` that `fill` writes, atomically and durably: through a
/// temporary file beside it (exclusive, unpredictable name), synced, renamed over `path`, and the
/// directory synced so that the rename survives a crash.
pub fn replace_file(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut std::fs::File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.file_name().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file path",
        ));
    }
    let mut file = tempfile::Builder::new()
        .prefix(".proxyconf-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    fill(file.as_file_mut())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, symlink};

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Variables {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn shell_lines_sorted_and_quoted() {
        let v = vars(&[
            ("HERMETO_PIP__PROXY_URL", "https://n/pip/simple/"),
            ("HERMETO_NPM__PROXY_URL", "it's $(rm -rf /) `x`"),
        ]);
        assert_eq!(
            render(&v, Format::Shell),
            "export HERMETO_NPM__PROXY_URL='it'\\''s $(rm -rf /) `x`'\n\
             export HERMETO_PIP__PROXY_URL='https://n/pip/simple/'\n"
        );
        assert_eq!(render(&Variables::new(), Format::Shell), "");
    }

    #[test]
    fn dotenv_and_json() {
        let v = vars(&[("A", "https://n/x/?a=b"), ("B", "say \"$HOME\"\n")]);
        assert_eq!(
            render(&v, Format::Dotenv),
            "A=https://n/x/?a=b\nB=\"say \\\"\\$HOME\\\"\\n\"\n"
        );
        assert_eq!(
            render(&v, Format::Json),
            "{\"A\":\"https://n/x/?a=b\",\"B\":\"say \\\"$HOME\\\"\\n\"}\n"
        );
        assert_eq!(render(&Variables::new(), Format::Json), "{}\n");
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hermeto.env");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        assert!(write_atomically(&dir.path().join("missing/x"), "a").is_err());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "later steps, as another user, can read it");
        write_atomically(Path::new("/dev/null"), "discarded").unwrap();
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device(),
            "/dev/null is still a device"
        );
    }

    #[test]
    fn a_symlink_at_the_old_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hermeto.env");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        // Earlier versions wrote through `.NAME.PID.tmp` with File::create, which follows it.
        let old_name = dir
            .path()
            .join(format!(".hermeto.env.{}.tmp", std::process::id()));
        symlink(&victim, &old_name).unwrap();
        write_atomically(&path, "export A='b'\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "export A='b'\n");
        assert!(
            std::fs::symlink_metadata(&old_name)
                .unwrap()
                .file_type()
                .is_symlink(),
            "the planted link is left alone"
        );
    }

    #[test]
    fn the_failure_guard_stops_set_e_shells_with_the_code() {
        for shell in ["bash", "sh"] {
            let guard = shell_failure_guard(78);
            let out = std::process::Command::new(shell)
                .args(["-ec", "eval \"$1\"; echo went on", "sh", &guard])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(78), "{shell}");
            assert!(out.stdout.is_empty(), "{shell}");
        }
        // Without `set -e` (an interactive shell), it only sets $?.
        let out = std::process::Command::new("bash")
            .args([
                "-c",
                "eval \"$1\"; echo \"still here $?\"",
                "sh",
                &shell_failure_guard(69),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "still here 69\n");
    }
}

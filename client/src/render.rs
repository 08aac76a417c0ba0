//! Writes the variables as shell `export` lines, a dotenv file or JSON, to stdout or atomically to
//! a file. Quoting is safe for any value: nothing in a value can run in the reader's shell.

use std::{
    io::{self, Write},
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

/// Writes `content` to `path` atomically: to a temporary file beside it, flushed to disk, then
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
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(content.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt;

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
        write_atomically(Path::new("/dev/null"), "discarded").unwrap();
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device(),
            "/dev/null is still a device"
        );
    }
}

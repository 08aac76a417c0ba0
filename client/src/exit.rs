//! The client's failures and their exit codes, which a build step can tell apart.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | any other failure (cannot write the output file, an answer that breaks the contract) |
//! | 2 | usage: a wrong flag or value |
//! | 69 | unavailable: the server could not be reached or had no configuration within the deadline |
//! | 78 | misconfigured: the proxy applies to this build but a setting in scope is invalid |
//! | 126, 127 | `exec`: the command cannot be run, or was not found |

use std::process::ExitCode;

/// Exit code: a wrong flag or value (as clap uses).
pub const USAGE: u8 = 2;
/// Exit code: the server could not be reached within the deadline (sysexits `EX_UNAVAILABLE`).
pub const UNAVAILABLE: u8 = 69;
/// Exit code: the configuration in scope is invalid (sysexits `EX_CONFIG`).
pub const MISCONFIGURED: u8 = 78;
/// Exit code: `exec`'s command exists but cannot be run (as shells use).
pub const CANNOT_EXECUTE: u8 = 126;
/// Exit code: `exec`'s command was not found (as shells use).
pub const COMMAND_NOT_FOUND: u8 = 127;

/// Why the client stops. Each message is one line saying what failed and what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Misconfigured(String),
    #[error("{0}")]
    Exec(String, u8),
    #[error("{0}")]
    Other(String),
    /// Standard output was closed by its reader (`proxyconf watch | head -1`): not a failure,
    /// the process ends quietly with 0.
    #[error("standard output closed")]
    BrokenPipe,
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    /// The exit code as a number.
    pub fn code(&self) -> u8 {
        match self {
            Self::Usage(_) => USAGE,
            Self::Unavailable(_) => UNAVAILABLE,
            Self::Misconfigured(_) => MISCONFIGURED,
            Self::Exec(_, code) => *code,
            Self::Other(_) => 1,
            Self::BrokenPipe => 0,
        }
    }
}

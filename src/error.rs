//! One error type for the whole binary. (Usage errors, exit 2, are clap's.)
//!
//! The caller that branches is `main`, and it branches on the exit code, so
//! every error carries the [`Kind`] that decides it. The message is complete
//! (what happened, what was expected, what to do) and printed once, by `main`.

use std::fmt;

/// What went wrong, as far as the exit code is concerned (see the README's
/// exit-code table, which mirrors `../shared/DESIGN.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A managed operation failed: the unit did not start, stop or install
    /// (1, as systemctl).
    Failed,
    /// The server did not become ready in time (69, EX_UNAVAILABLE).
    Unavailable,
    /// The server stopped before it was ever ready, yet exited 0: it failed
    /// to start, whatever its code says (70, EX_SOFTWARE), so that restart
    /// policies count it as a failure.
    Software,
    /// Something the OS refused that the user cannot fix by changing input
    /// (71, EX_OSERR).
    Os,
    /// The instance is already running: lock held, unit active, port taken
    /// (75, EX_TEMPFAIL).
    Busy,
    /// Configuration error: config file, instance id, URL, paths (78, EX_CONFIG).
    Config,
    /// Too little free space on the instance's filesystem to start safely
    /// (73, EX_CANTCREAT).
    NoSpace,
    /// The server command exists but cannot be executed (126).
    NotExecutable,
    /// The server command was not found (127).
    NotFound,
    /// The instance does not run, so there is nothing to act on (3, as
    /// `status` says "stopped").
    NotRunning,
    /// The server exited before it became ready; carries the exit code that
    /// `run` passes on (its own code, or 128+signal).
    ServerExited(u8),
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Failed => 1,
            Kind::Unavailable => 69,
            Kind::Software => 70,
            Kind::Os => 71,
            Kind::Busy => 75,
            Kind::Config => 78,
            Kind::NoSpace => 73,
            Kind::NotExecutable => 126,
            Kind::NotFound => 127,
            Kind::NotRunning => 3,
            Kind::ServerExited(code) => code,
        }
    }
}

#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(Kind::Config, message)
    }
    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(Kind::Busy, message)
    }
    pub fn os(message: impl Into<String>) -> Self {
        Self::new(Kind::Os, message)
    }
    pub fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

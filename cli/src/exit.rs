//! Exit codes: each says which case happened, so scripts can act on them.

use std::fmt;

/// How a command ended. The numbers are part of the interface (see `inventory --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Everything was done.
    Done = 0,
    /// Bad arguments or configuration (an unreadable file, no stream name, ...). Nothing was sent.
    Usage = 1,
    /// Strict mode found invalid lines. Nothing was sent.
    InvalidLines = 2,
    /// Some records could not be sent: refused, or still failing after every retry
    /// (`redrive-failed`: some executions could not be redriven or started); they are listed,
    /// the rest were done.
    NotSent = 3,
    /// AWS or the database refused or failed in a way retrying does not fix; the command stopped.
    ServiceFailed = 4,
    /// `--skip-invalid`: every valid line was sent, the invalid ones (listed) were not.
    SkippedInvalid = 5,
    /// `status`: some parts could not be read; they are shown as unavailable with the reason,
    /// the rest was printed.
    PartlyRead = 6,
}

impl Outcome {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The exit codes as `--help` shows them.
pub const EXIT_CODES_HELP: &str = "Exit codes:
  0  done: every record was sent (or, with --dry-run, every line is valid)
  1  usage or configuration error (bad option, unreadable file, no stream name); nothing sent
  2  invalid lines in strict mode (the default); they are listed and nothing was sent
  3  some records could not be sent: refused, or still failing after every retry
     (redrive-failed: some executions could not be redriven or started); they are listed,
     the rest were done
  4  AWS or the database failed in a way retrying does not fix; the command stopped
  5  --skip-invalid: every valid line was sent; the invalid ones are listed and were not
  6  status: some parts could not be read; they show UNAVAILABLE and why, the rest printed";

/// An error that carries the exit code it means.
#[derive(Debug)]
pub struct CodedError {
    pub outcome: Outcome,
    pub error: anyhow::Error,
}

impl fmt::Display for CodedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for CodedError {}

/// Tags an error with an exit code.
pub trait WithOutcome<T> {
    fn or_exit(self, outcome: Outcome) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> WithOutcome<T> for Result<T, E> {
    fn or_exit(self, outcome: Outcome) -> anyhow::Result<T> {
        self.map_err(|e| {
            anyhow::Error::new(CodedError {
                outcome,
                error: e.into(),
            })
        })
    }
}

/// A usage error with a message.
pub fn usage(message: impl fmt::Display) -> anyhow::Error {
    anyhow::Error::new(CodedError {
        outcome: Outcome::Usage,
        error: anyhow::anyhow!("{message}"),
    })
}

/// The exit code an error means; errors nobody tagged are service failures.
pub fn outcome_of(error: &anyhow::Error) -> Outcome {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<CodedError>())
        .map_or(Outcome::ServiceFailed, |c| c.outcome)
}

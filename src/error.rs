//! The one error type. Every variant says what failed and where; `hint()` says what to do next,
//! and `exit_code()` maps it onto the command-line contract (0 ok, 1 failed, 2 bad input).

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input file (natsup.yaml, a CA to import) is invalid. `path` is the field path inside it.
    #[error("{}: {}{message}", file.display(), field_prefix(path))]
    Config {
        file: PathBuf,
        path: String,
        message: String,
    },

    /// The command line asks for something that cannot be done as asked.
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },

    /// A command needs local state (CA, passwords) that has not been created yet.
    #[error("no {what} for deployment `{name}` in {}", dir.display())]
    MissingState {
        name: String,
        what: String,
        dir: PathBuf,
    },

    /// The state directory of the config's `name` belongs to another deployment (another
    /// `id`, or other servers), as its record says.
    #[error("{message}")]
    OtherDeployment { message: String, hint: String },

    /// A state file exists but cannot be used.
    #[error("{}: {message}", path.display())]
    CorruptState { path: PathBuf, message: String },

    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    /// The SSH connection itself failed (host key, authentication, unreachable).
    #[error("ssh to {destination} failed: {message}")]
    Ssh {
        destination: String,
        message: String,
        hint: Option<String>,
    },

    /// A step on the target (remote or local Docker) failed.
    #[error("{step} failed on {target}: {message}")]
    Remote {
        target: String,
        step: String,
        message: String,
        hint: Option<String>,
    },

    /// Anything else that failed while doing the work.
    #[error("{message}")]
    Failed {
        message: String,
        hint: Option<String>,
    },
}

fn field_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

impl Error {
    pub fn io(action: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn usage(message: impl Into<String>, hint: impl Into<Option<String>>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn failed(message: impl Into<String>, hint: impl Into<Option<String>>) -> Self {
        Error::Failed {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn corrupt(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::CorruptState {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// The same error, saying which node of a cluster it came from. Its kind, and so its
    /// exit code, stays: a bad input on one node is still a bad input.
    pub fn on_node(self, node: &str) -> Error {
        match self {
            Error::Usage { message, hint } => Error::Usage {
                message: format!("node {node}: {message}"),
                hint,
            },
            Error::Failed { message, hint } => Error::Failed {
                message: format!("node {node}: {message}"),
                hint,
            },
            Error::Ssh {
                destination,
                message,
                hint,
            } => Error::Ssh {
                destination: format!("{destination} (node {node})"),
                message,
                hint,
            },
            Error::Remote {
                target,
                step,
                message,
                hint,
            } => Error::Remote {
                target: format!("{target} (node {node})"),
                step,
                message,
                hint,
            },
            // These name their file, which names the deployment.
            other => other,
        }
    }

    /// The same error with one more line of advice after its own.
    pub fn with_hint_line(self, line: &str) -> Error {
        let hint = Some(match self.hint() {
            Some(h) => format!("{h}\n{line}"),
            None => line.to_string(),
        });
        match self {
            Error::Usage { message, .. } => Error::Usage { message, hint },
            Error::Ssh {
                destination,
                message,
                ..
            } => Error::Ssh {
                destination,
                message,
                hint,
            },
            Error::Remote {
                target,
                step,
                message,
                ..
            } => Error::Remote {
                target,
                step,
                message,
                hint,
            },
            Error::Failed { message, .. } => Error::Failed { message, hint },
            // Their advice is fixed by their kind, and so is their exit code.
            other => other,
        }
    }

    /// 2 for anything the user can fix in their input, 1 for an operation that failed.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. }
            | Error::Usage { .. }
            | Error::MissingState { .. }
            | Error::OtherDeployment { .. } => 2,
            _ => 1,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Config { file, .. } => Some(format!(
                "fix {} (see the configuration reference in natsup's README)",
                file.display()
            )),
            Error::MissingState { .. } => {
                Some("run `natsup render` (or `natsup up`) to create it".into())
            }
            Error::CorruptState { .. } => Some(
                "restore the file from a backup, or move it away to have natsup create a new one"
                    .into(),
            ),
            Error::OtherDeployment { hint, .. } => Some(hint.clone()),
            Error::Usage { hint, .. }
            | Error::Ssh { hint, .. }
            | Error::Remote { hint, .. }
            | Error::Failed { hint, .. } => hint.clone(),
            Error::Io { .. } => None,
        }
    }
}

/// An error and each of its causes, joined with ": ". async-nats and openssh nest the useful
/// part (the server's `-ERR`, ssh's own stderr) inside the outer error.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

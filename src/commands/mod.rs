//! One file per subcommand. Each takes parsed arguments and the shared [`Context`], does its
//! work through the session, the pure modules and the executor, and returns the process exit
//! code. Command files are leaves: none imports another; what two commands share lives in a
//! module of its own ([`crate::session`], [`crate::operation`], [`crate::client_env`],
//! [`crate::verify_output`]).

pub mod bundle;
pub mod ca;
pub mod context;
pub mod env;
pub mod init;
pub mod render;
pub mod renew;
pub mod rotate;
pub mod rotate_ca;
pub mod status;
pub mod up;
pub mod verify;

// Every command takes the global options; they live with the session, which commands share.
pub use crate::session::Context;

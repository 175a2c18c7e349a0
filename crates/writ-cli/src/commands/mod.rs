//! One module per command group: each parses its arguments (clap) and
//! calls the library crates; what they print goes through
//! [`crate::output`].

pub mod authorize;
pub mod demo;
pub mod execution;
pub mod init;
pub mod issuer;
pub mod key;
pub mod log;
pub mod pins;
pub mod policy;
pub mod principal;
pub mod revoke;
pub mod verify;
pub mod witness;

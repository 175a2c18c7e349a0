//! writ's end-to-end tests, one test binary: each module is one area, run
//! against the real `writ` binary (`env!("CARGO_BIN_EXE_writ")`), mostly
//! through a `writ serve` child on a fresh data dir (`common`).
//!
//! `cargo test -p writ --test e2e` runs them all; `cargo test -p writ --test
//! e2e exec::` runs one module. Programs the tests run (Python and
//! TypeScript clients, helper servers, a C program) are files under
//! `fixtures/`.
//!
//! The tests of one binary share one process and run on parallel threads:
//! a test must not change what the process holds for all of them (its
//! environment variables, current directory, umask, signal dispositions).
//! It hands a child what the child needs instead (`Command::env`,
//! `Command::current_dir`), as `common::run_writ` does.

mod common;
#[path = "../../../writ-store/tests/support/pg.rs"]
mod pg;

mod adversarial;
mod api_security;
mod bad_input;
mod bench_authorize;
mod cli;
mod console;
mod crash;
mod exec;
mod exec_boundary;
mod house;
mod identity;
mod lease;
mod log;
mod log_interop;
mod log_privacy;
mod mcp;
mod mcp_boundary;
mod mcp_http;
mod mcp_http_shutdown;
mod mcp_oauth;
mod mcp_pins;
mod mesh;
mod net_limits;
mod pyjwt_interop;
mod reason_codes;
mod schemathesis;
mod soak;
mod tls;
mod trust_boundary;

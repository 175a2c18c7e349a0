//! MCP governance for `writ mcp-proxy`: every `tools/call` an agent sends is
//! authorized by the writ authority before it reaches the tool server.
//!
//! - [`framing`]: the MCP stdio transport (newline-delimited JSON-RPC
//!   messages), bounded by [`framing::MESSAGE_BYTES_MAX`].
//! - [`message`]: classification (request, notification, response) and the
//!   answers the proxy makes itself (JSON-RPC errors, tool error results).
//! - [`keys`]: refusal of messages whose keys another JSON parser reads
//!   differently (duplicates, keys equal under case folding).
//! - [`methods`]: which requests are decided, and the Cedar request each
//!   becomes.
//! - [`govern`]: the decisions, as functions over the [`govern::Authority`]
//!   trait: the authorize request of a call, offline verification into a
//!   [`govern::Permit`] (the writ's `Grant`, without which nothing is
//!   forwarded), the finish record, `tools/list` filtering.
//! - [`proxy`]: the message router between a client and a server over any
//!   byte streams (the CLI hands it stdio and a child process's pipes).
//! - [`schema`]: a Cedar schema fragment from a server's tool list.
//! - [`sse`] and [`streamable`]: the Streamable HTTP transport's event
//!   streams, and what of it needs no socket (messages as lines, a
//!   session's numbered streams for resumption).
//!
//! This crate opens no file, socket or process: streams and the authority
//! come in from the caller.
#![forbid(unsafe_code)]

pub mod framing;
pub mod govern;
pub mod keys;
pub mod message;
pub mod methods;
pub mod proxy;
pub mod schema;
pub mod screen;
pub mod sse;
pub mod streamable;

//! Values to and from PostgreSQL: typed parameters, row getters, and the
//! error mapping every part of the shared store uses.

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row};

use crate::nodes::node_of_key;
use crate::types::StoreError;
use writ_log::Hash;

pub(super) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub(super) fn pg_unavailable(e: tokio_postgres::Error) -> StoreError {
    // The server's own message says more than the client's summary; a
    // connection's error names its cause (refused, a name that does not
    // resolve, TLS) only in its source chain.
    match e.as_db_error() {
        Some(db) => StoreError::Unavailable(format!("postgres: {}", db.message())),
        None => {
            let mut msg = format!("postgres: {e}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                let text = c.to_string();
                if !msg.contains(&text) {
                    msg.push_str(": ");
                    msg.push_str(&text);
                }
                cause = c.source();
            }
            StoreError::Unavailable(msg)
        }
    }
}

pub(super) fn i64_of(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Integrity(format!("{v} does not fit a BIGINT")))
}

pub(super) fn u64_of(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Integrity(format!("stored value {v} is negative")))
}

pub(super) fn hash_of(v: Vec<u8>) -> Result<Hash, StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Integrity("a stored hash is not 32 bytes".into()))
}

/// `(level, index)` of a stored `tree_nodes.key`.
pub(super) fn stored_node(key: i64) -> Result<(u8, u64), StoreError> {
    u64_of(key)?;
    Ok(node_of_key(key))
}

/// Owned query parameters with their PostgreSQL types.
#[derive(Debug, Clone)]
pub(super) enum Param {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
    Bytes(Vec<u8>),
    OptBytes(Option<Vec<u8>>),
    Bool(bool),
    OptBool(Option<bool>),
    Ints(Vec<i64>),
    Bytess(Vec<Vec<u8>>),
}

impl Param {
    pub(super) fn typed(&self) -> (&(dyn ToSql + Sync), Type) {
        match self {
            Param::Int(v) => (v, Type::INT8),
            Param::OptInt(v) => (v, Type::INT8),
            Param::Text(v) => (v, Type::TEXT),
            Param::OptText(v) => (v, Type::TEXT),
            Param::Bytes(v) => (v, Type::BYTEA),
            Param::OptBytes(v) => (v, Type::BYTEA),
            Param::Bool(v) => (v, Type::BOOL),
            Param::OptBool(v) => (v, Type::BOOL),
            Param::Ints(v) => (v, Type::INT8_ARRAY),
            Param::Bytess(v) => (v, Type::BYTEA_ARRAY),
        }
    }
}

/// One statement in one round trip (no separate prepare).
pub(super) async fn query(
    c: &Client,
    sql: &str,
    params: &[Param],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let typed: Vec<(&(dyn ToSql + Sync), Type)> = params.iter().map(Param::typed).collect();
    c.query_typed(sql, &typed).await
}

pub(super) fn get<T>(r: &Row, i: usize) -> Result<T, StoreError>
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    r.try_get(i).map_err(pg_unavailable)
}

pub(super) fn get_u64(r: &Row, i: usize) -> Result<u64, StoreError> {
    u64_of(get(r, i)?)
}

//! The checks a request passes before anything is decided or logged.

use super::*;

pub(super) fn cedar_uid_check(s: &str) -> Result<(), String> {
    if s.len() > NAME_BYTES_MAX {
        return Err(format!(
            "an entity UID is at most {NAME_BYTES_MAX} bytes, not {}",
            s.len()
        ));
    }
    // The parser decisions use: what passes here can be decided for.
    writ_policy::check_entity_uid(s).map_err(|e| e.0)
}

/// The checks [`Authority::authorize`] makes before it decides anything:
/// field sizes, reserved context names, scope paths, what the writ would
/// carry, lifetime, parent jti. `Err` is answered 400 and nothing is logged.
pub fn validate_authorize_request(req: &AuthorizeRequest) -> Result<(), BadRequest> {
    for (name, v) in [
        ("action", &req.action),
        ("resource", &req.resource),
        ("audience", &req.audience),
    ] {
        if v.is_empty() || v.len() > NAME_BYTES_MAX {
            return Err(BadRequest(format!(
                "field `{name}` must be 1 to {NAME_BYTES_MAX} bytes"
            )));
        }
    }
    for key in RESERVED_CONTEXT {
        if req.context.contains_key(key) {
            return Err(BadRequest(format!(
                "field `context.{key}` is reserved; writ fills it from the request"
            )));
        }
    }
    req.scope
        .validate()
        .map_err(|e| BadRequest(format!("field `scope`: {e}")))?;
    // What the writ will carry must fit in a verifiable writ.
    let carried = serde_json::to_vec(&req.environment).map_or(usize::MAX, |v| v.len())
        + serde_json::to_vec(&req.scope).map_or(usize::MAX, |v| v.len())
        + req.action.len()
        + req.resource.len()
        + req.audience.len();
    if carried > WRIT_CARRIED_BYTES_MAX {
        return Err(BadRequest(format!(
            "fields `environment`, `scope`, `action`, `resource` and `audience` take {carried} bytes; \
             a writ carries at most {WRIT_CARRIED_BYTES_MAX}"
        )));
    }
    match req.lifetime_secs {
        Some(0) => {
            return Err(BadRequest(
                "field `lifetime_secs` must be at least 1".into(),
            ))
        }
        Some(n) if n > WRIT_LIFETIME_SECS_MAX => {
            return Err(BadRequest(format!(
                "field `lifetime_secs` is {n}; at most {WRIT_LIFETIME_SECS_MAX}"
            )))
        }
        _ => {}
    }
    if let Some(p) = &req.parent {
        if p.len() != 32 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadRequest(
                "field `parent` must be a writ jti (32 hex digits)".into(),
            ));
        }
    }
    if req.probe && req.start {
        return Err(BadRequest(
            "field `probe` cannot go with `start`: a probe's writ is never started".into(),
        ));
    }
    if let Some(d) = &req.definition {
        if !d.is_object() {
            return Err(BadRequest("field `definition` must be an object".into()));
        }
        // The policy reads the description the pin covers, not another.
        if let Some(c) = req.context.get("description") {
            if d.get("description") != Some(c) {
                return Err(BadRequest(
                    "field `context.description` must be the `definition`'s description".into(),
                ));
            }
        }
    }
    if req.credential && !req.start {
        return Err(BadRequest(
            "field `credential` needs `start`: a credential belongs to a running execution".into(),
        ));
    }
    principals::check_delegates(&req.delegates)
}

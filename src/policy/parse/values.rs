//! Small readers of JSON values, and the wording of errors: paths, descriptions of what
//! was found, and "did you mean" suggestions.

use super::*;

pub(super) fn action(name: &str, path: &str) -> Result<Action, PolicyError> {
    Action::from_name(name).ok_or_else(|| {
        PolicyError::at(
            path,
            format!(
                "expected {ACTIONS}, found {}{}",
                describe_str(name),
                suggestion(name, &["allow", "deny", "require_approval"])
            ),
        )
    })
}

pub(super) fn check_tool_key(key: &str, path: &str) -> Result<(), PolicyError> {
    if key.is_empty() {
        return Err(PolicyError::at(
            path,
            "expected a tool name or glob such as \"whmcs_get_*\", found an empty string",
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(PolicyError::at(
            path,
            format!(
                "expected a tool name or glob without control characters, found {}",
                describe_str(key)
            ),
        ));
    }
    if key.len() > MAX_NAME_BYTES {
        return Err(PolicyError::at(
            path,
            format!(
                "a tool name or glob is at most {MAX_NAME_BYTES} bytes (MCP tool names are at \
                 most 128 characters); this one has {} bytes: {}",
                key.len(),
                describe_str(key)
            ),
        ));
    }
    Ok(())
}

pub(super) fn object<'v>(
    v: &'v Value,
    path: &str,
    expected: &str,
) -> Result<&'v Map<String, Value>, PolicyError> {
    match v {
        Value::Object(map) => Ok(map),
        other => Err(PolicyError::at(
            path,
            format!("expected {expected}, found {}", describe(other)),
        )),
    }
}

pub(super) fn array<'v>(
    v: &'v Value,
    path: &str,
    expected: &str,
) -> Result<&'v [Value], PolicyError> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(PolicyError::at(
            path,
            format!("expected {expected}, found {}", describe(other)),
        )),
    }
}

pub(super) fn is_empty_list(v: &Value) -> bool {
    matches!(v, Value::Array(items) if items.is_empty())
}

pub(super) fn optional_string<'v>(
    map: &'v Map<String, Value>,
    path: &str,
    field: &str,
) -> Result<Option<&'v str>, PolicyError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(PolicyError::at(
            &join(path, field),
            format!("expected a string, found {}", describe(other)),
        )),
    }
}

pub(super) fn required_string<'v>(
    map: &'v Map<String, Value>,
    path: &str,
    field: &str,
    expected: &str,
) -> Result<&'v str, PolicyError> {
    optional_string(map, path, field)?.ok_or_else(|| {
        PolicyError::at(
            path,
            format!("missing field \"{field}\": expected {expected}"),
        )
    })
}

pub(super) fn known_fields(
    map: &Map<String, Value>,
    path: &str,
    allowed: &[&str],
) -> Result<(), PolicyError> {
    let unknown = map
        .keys()
        .filter(|key| !allowed.contains(&key.as_str()))
        .map(|key| {
            PolicyError::at(
                &join(path, key),
                format!(
                    "unknown field {}; expected one of {}{}",
                    describe_str(key),
                    allowed.join(", "),
                    suggestion(key, allowed)
                ),
            )
        })
        .collect();
    match PolicyError::combine(unknown) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// `" (did you mean \"limits\"?)"` when a known word is a small edit away.
pub(super) fn suggestion(found: &str, known: &[&str]) -> String {
    closest_name(found, known.iter().copied())
        .map(|word| format!(" (did you mean \"{word}\"?)"))
        .unwrap_or_default()
}

/// The name among `known` a small edit away from `found` (at most two edits, or a
/// quarter of its length for long names), for "did you mean" messages; `None` when none
/// is close, or `found` is one of them.
///
/// ```
/// use mcp_policy::closest_name;
///
/// let tools = ["whmcs_get_ticket", "whmcs_update_ticket"];
/// assert_eq!(closest_name("whmcs_get_tickets", tools), Some("whmcs_get_ticket"));
/// assert_eq!(closest_name("whmcs_delete_client", tools), None);
/// ```
pub fn closest_name<'k>(found: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    // Names are short: a long word is no typo of one, and comparing costs its length.
    if found.len() > 256 {
        return None;
    }
    known
        .into_iter()
        .filter(|word| word.len() <= 256)
        .map(|word| (strsim::levenshtein(found, word), word))
        .filter(|&(distance, word)| distance <= 2.max(word.chars().count() / 4) && distance > 0)
        .min()
        .map(|(_, word)| word)
}

/// `path.key`, or `path["odd key"]` when the key is not a plain name.
pub(crate) fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 60
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'*');
    match (path.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", describe_str(key)),
    }
}

pub(super) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => describe_str(s),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A JSON-quoted string, cut short when long so messages stay readable.
pub(super) fn describe_str(s: &str) -> String {
    const LIMIT: usize = 60;
    match s.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!(
            "{}…",
            serde_json::to_string(s.get(..cut).unwrap_or_default()).unwrap_or_default()
        ),
        None => serde_json::to_string(s).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_keys_that_are_not_plain_names() {
        assert_eq!(join("tools", "whmcs_get_*"), "tools.whmcs_get_*");
        assert_eq!(join("tools", "a.b"), "tools[\"a.b\"]");
        assert_eq!(join("", "version"), "version");
    }
}

//! What limits read from a call's arguments: the `cost` and the `key` value, each with
//! one reading, and reasons that name paths and types, never values.

use super::*;

/// The longest string a limit's `key` argument may be, in bytes: each value is a count
/// kept in the store, so values cost memory.
pub(crate) const MAX_KEY_BYTES: usize = 256;

/// The call's value of a limit's `key` argument, or why it cannot be used. The reason
/// names the path and what is wrong with the value's type or form, never the value: it
/// reaches audit logs.
///
/// One value has one spelling: an integer and the string of its canonical decimal form
/// (`7`, `"7"`) are one value, and a string a lenient server could read as another
/// spelling of a number (`"07"`, `" 7"`, `"+7"`, `"7\n"`, `"0_7"`, `"7.0"`) is refused,
/// so no spelling of one ticket id gets a count of its own.
pub(crate) fn key_value<'a>(
    path: &ArgPath,
    args: Option<&'a Value>,
) -> Result<KeyValue<'a>, String> {
    let value = path.resolve(args);
    let path = path.as_str();
    let expected = "it must be an integer or a string (such as a ticket id)";
    match value {
        None => Err(format!("the key argument {path} is missing; {expected}")),
        Some(Value::String(text)) => text_key(path, text),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
            (Some(n), _) => Ok(KeyValue::Integer(n)),
            (None, Some(n)) => Ok(KeyValue::Unsigned(n)),
            (None, None) => Err(format!(
                "the key argument {path} is a number that is not an integer; {expected}"
            )),
        },
        Some(other) => Err(format!(
            "the key argument {path} is {}; {expected}",
            type_name(other)
        )),
    }
}

/// A string key value: its canonical integer, itself, or why it is refused.
fn text_key<'a>(path: &str, text: &'a str) -> Result<KeyValue<'a>, String> {
    if text.len() > MAX_KEY_BYTES {
        return Err(format!(
            "the key argument {path} is a string of {} bytes; at most {MAX_KEY_BYTES} are \
             allowed",
            text.len()
        ));
    }
    if is_canonical_integer(text) {
        if let Ok(n) = text.parse::<i64>() {
            return Ok(KeyValue::Integer(n));
        }
        if let Ok(n) = text.parse::<u64>() {
            return Ok(KeyValue::Unsigned(n));
        }
        // Beyond u64: no JSON integer the engine reads can be this value; it is a string.
        return Ok(KeyValue::Text(text));
    }
    if reads_as_number(text) {
        return Err(format!(
            "the key argument {path} is a string that a server could read as a number \
             spelled another way (a sign, leading zeros, spaces, underscores, a fraction or \
             an exponent); send the number itself, or its plain decimal digits"
        ));
    }
    Ok(KeyValue::Text(text))
}

/// `0`, or an optional `-` and ASCII digits without a leading zero (not `-0`).
fn is_canonical_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let well_formed = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    well_formed && text != "-0"
}

/// Whether a lenient reader (Python's `int` and `float`, Go's `strconv` with base 0,
/// JavaScript's `Number`) could take `text` for a number: after surrounding whitespace,
/// a sign, a radix prefix, and digits (any script's), with underscores, a point and
/// an exponent.
fn reads_as_number(text: &str) -> bool {
    let trimmed = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let unsigned = trimmed
        .strip_prefix(['+', '-'])
        .unwrap_or(trimmed)
        .trim_start_matches(char::is_whitespace);
    let lower = unsigned.to_ascii_lowercase();
    if let Some(rest) = ["0x", "0o", "0b"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
    {
        return !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit() || c == '_');
    }
    let mut digits = 0;
    let mut rest = lower.chars().peekable();
    while let Some(c) = rest.next() {
        match c {
            c if c.is_numeric() => digits += 1,
            '_' | '.' => {}
            'e' if digits > 0 => {
                if matches!(rest.peek(), Some('+' | '-')) {
                    rest.next();
                }
            }
            _ => return false,
        }
    }
    digits > 0
}

/// A JSON value's type, in words, for reasons that must not quote the value.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The units a call uses, or why its `cost` argument cannot be used.
pub(super) fn call_cost(cost: &Cost, args: Option<&Value>) -> Result<u64, String> {
    let path = match cost {
        Cost::Fixed(units) => return Ok(*units),
        Cost::Argument(path) => path,
    };
    match path.resolve(args) {
        None => Err(format!(
            "the cost argument {} is missing; it must be a non-negative integer",
            path.as_str()
        )),
        Some(value) => value.as_u64().ok_or_else(|| {
            format!(
                "the cost argument {} must be a non-negative integer, found {}",
                path.as_str(),
                match value {
                    Value::Number(_) => "a negative or non-integer number",
                    other => type_name(other),
                }
            )
        }),
    }
}

//! Resource URIs in the form a server resolves them to, so that a policy's URI patterns
//! and conditions see what the server will open: RFC 3986 §6.2.2 normalization (scheme
//! and host lowercased, percent-encoded unreserved characters decoded, hex digits of the
//! other escapes uppercased, dot segments removed) and RFC 8089 (`file://localhost/` is
//! `file:///`). What cannot be normalized unambiguously is refused, never guessed: an
//! encoded `/`, `\` or `%`, an encoded or raw NUL or other control character, a raw `\`,
//! dot segments that climb above the root, a malformed escape, an escape that decodes to
//! invalid UTF-8, a URI without a scheme.

use std::fmt::Write as _;

/// A resource URI, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NormalUri {
    /// The whole URI, normalized.
    pub(crate) uri: String,
    /// The scheme, lowercase.
    pub(crate) scheme: String,
    /// The host, lowercase (empty when there is none, and for `file://localhost`).
    pub(crate) host: String,
    /// The path, normalized.
    pub(crate) path: String,
}

impl NormalUri {
    /// What a resource rule's conditions and limits read (`uri`, `uri.scheme`, `uri.host`,
    /// `uri.path`), as the object their paths resolve in.
    pub(crate) fn parts(&self) -> serde_json::Value {
        serde_json::json!({"uri": self.uri, "scheme": self.scheme,
            "host": self.host, "path": self.path})
    }
}

/// Normalizes `uri`, or says why it cannot be decided unambiguously.
pub(crate) fn normalize(uri: &str) -> Result<NormalUri, &'static str> {
    if uri.chars().any(char::is_control) {
        return Err("it contains a control character");
    }
    if uri.contains('\\') {
        return Err("it contains a backslash, which some servers read as a path separator");
    }
    let colon = uri.find(':').ok_or("it has no scheme")?;
    let (scheme, rest) = uri.split_at(colon);
    let rest = rest.get(1..).unwrap_or("");
    let mut letters = scheme.chars();
    let valid_scheme = letters.next().is_some_and(|c| c.is_ascii_alphabetic())
        && letters.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return Err("it has no valid scheme");
    }
    let scheme = scheme.to_ascii_lowercase();
    // Fragment and query are kept as sent (escapes checked), the path normalized.
    let (before_fragment, fragment) = match rest.find('#') {
        Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
        None => (rest, ""),
    };
    let (hier, query) = match before_fragment.find('?') {
        Some(i) => (
            before_fragment.get(..i).unwrap_or(""),
            before_fragment.get(i..).unwrap_or(""),
        ),
        None => (before_fragment, ""),
    };
    let (authority, path) = match hier.strip_prefix("//") {
        Some(after) => match after.find('/') {
            Some(i) => (
                Some(after.get(..i).unwrap_or("")),
                after.get(i..).unwrap_or(""),
            ),
            None => (Some(after), ""),
        },
        None => (None, hier),
    };
    let (authority, host) = match authority {
        Some(authority) => {
            let authority = decode_unreserved(authority)?;
            let (userinfo, host_port) = match authority.rfind('@') {
                Some(i) => (
                    authority.get(..=i).unwrap_or(""),
                    authority.get(i + 1..).unwrap_or(""),
                ),
                None => ("", authority.as_str()),
            };
            let host_port = host_port.to_ascii_lowercase();
            let host = match host_port.strip_prefix('[') {
                Some(v6) => format!("[{}", v6.split(']').next().unwrap_or("")) + "]",
                None => host_port.split(':').next().unwrap_or("").to_owned(),
            };
            let host = if scheme == "file" && host == "localhost" && userinfo.is_empty() {
                String::new()
            } else {
                host
            };
            let port = host_port.strip_prefix(&*host).unwrap_or("").to_owned();
            let port = if host.is_empty() { String::new() } else { port };
            (Some(format!("{userinfo}{host}{port}")), host)
        }
        None => (None, String::new()),
    };
    let path = remove_dot_segments(&decode_unreserved(path)?)?;
    check_escapes(query)?;
    check_escapes(fragment)?;
    let mut normal = String::with_capacity(uri.len());
    let _ = write!(normal, "{scheme}:");
    if let Some(authority) = &authority {
        let _ = write!(normal, "//{authority}");
    }
    normal.push_str(&path);
    normal.push_str(query);
    normal.push_str(fragment);
    Ok(NormalUri {
        uri: normal,
        scheme,
        host,
        path,
    })
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Decodes escapes of unreserved characters, uppercases the others' hex digits, and
/// refuses what would change the path's meaning when decoded (`%2F`, `%5C`, `%25`, `%00`
/// and other control characters), malformed escapes, and escapes whose bytes are not
/// UTF-8.
fn decode_unreserved(text: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(text.len());
    let mut decoded = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('%') {
        let (plain, escape) = rest.split_at(i);
        out.push_str(plain);
        decoded.extend_from_slice(plain.as_bytes());
        let value = escape
            .get(1..3)
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .ok_or("it has a malformed percent escape")?;
        match value {
            b'/' | b'\\' => return Err("it has an encoded / or \\ (%2F, %5C)"),
            b'%' => return Err("it has an encoded % (%25)"),
            v if v < 0x20 || v == 0x7f => return Err("it has an encoded NUL or control character"),
            v if is_unreserved(v) => out.push(char::from(v)),
            v => {
                let _ = write!(out, "%{v:02X}");
            }
        }
        decoded.push(value);
        rest = escape.get(3..).unwrap_or("");
    }
    out.push_str(rest);
    decoded.extend_from_slice(rest.as_bytes());
    if std::str::from_utf8(&decoded).is_err() {
        return Err("its escapes decode to invalid UTF-8");
    }
    Ok(out)
}

/// Checks the escapes of a query or fragment, which are kept as sent.
fn check_escapes(text: &str) -> Result<(), &'static str> {
    decode_unreserved(text).map(|_| ())
}

/// RFC 3986 §5.2.4, refusing `..` that would climb above the root.
fn remove_dot_segments(path: &str) -> Result<String, &'static str> {
    let absolute = path.starts_with('/');
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        if i == 0 && absolute {
            continue;
        }
        match *segment {
            "." => trailing_slash = i == last,
            ".." => {
                if kept.pop().is_none() {
                    return Err("its dot segments climb above the root");
                }
                trailing_slash = i == last;
            }
            segment => {
                kept.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    if absolute {
        out.push('/');
    }
    out.push_str(&kept.join("/"));
    if trailing_slash && !out.ends_with('/') {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn normal(uri: &str) -> String {
        normalize(uri).unwrap().uri
    }

    #[test]
    fn uris_are_read_as_a_server_resolves_them() {
        assert_eq!(normal("FILE://LocalHost/etc/../tmp/./x"), "file:///tmp/x");
        assert_eq!(
            normal("HTTPS://Example.COM:8443/A/%7Euser/%41"),
            "https://example.com:8443/A/~user/A"
        );
        assert_eq!(
            normal("db://customers/%e2%82%ac"),
            "db://customers/%E2%82%AC"
        );
        assert_eq!(
            normal("whmcs://tickets/7/attachments/"),
            "whmcs://tickets/7/attachments/"
        );
        assert_eq!(normal("file:///a/b/.."), "file:///a/");
        assert_eq!(normal("urn:isbn:0451450523"), "urn:isbn:0451450523");
        let parts = normalize("WHMCS://Admin.Example/x?y=%41#z").unwrap();
        assert_eq!(
            (
                parts.scheme.as_str(),
                parts.host.as_str(),
                parts.path.as_str()
            ),
            ("whmcs", "admin.example", "/x")
        );
        assert_eq!(parts.uri, "whmcs://admin.example/x?y=%41#z");
    }

    #[test]
    fn what_cannot_be_decided_is_refused() {
        for uri in [
            "file:///etc%2Fpasswd",
            "file:///etc%5cpasswd",
            "file:///a/%252e%252e/b",
            "file:///a%00b",
            "file:///a/../../etc/passwd",
            "file:///a/%2e%2e/%2e%2e/etc",
            "file:///a%zz",
            "file:///a%4",
            "file:///%ff%fe",
            "file:///a\\b",
            "no-scheme",
            "1http://x/",
            "file:///a\u{0}b",
        ] {
            assert!(normalize(uri).is_err(), "{uri}");
        }
    }
}

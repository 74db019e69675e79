//! `args.a.b.0` paths into a call's arguments (`params.…` into a server request's
//! parameters, `uri…` into a resource's URI).

use serde_json::Value;

/// A validated `args.…` path. Each segment descends one object level, or indexes an
/// array when the segment is a decimal number and the value there is an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArgPath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    key: String,
    index: Option<usize>,
}

/// What a path reads, by the kind of call its rule governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathRoot {
    /// `args.…`: a tool's or a prompt's arguments.
    Args,
    /// `params.…`: a server request's parameters.
    Params,
    /// `uri`, `uri.scheme`, `uri.host`, `uri.path`: a resource's URI, normalized.
    Uri,
}

/// The names a resource rule may read, and where each lives in the object the engine
/// builds for a resource call.
pub(crate) const URI_PATHS: [(&str, &str); 4] = [
    ("uri", "uri"),
    ("uri.scheme", "scheme"),
    ("uri.host", "host"),
    ("uri.path", "path"),
];

impl ArgPath {
    /// Parses a path of `root`; the error says what such a path must look like.
    pub(crate) fn parse_in(text: &str, root: PathRoot) -> Result<ArgPath, String> {
        if root == PathRoot::Uri {
            return match URI_PATHS.iter().find(|(name, _)| *name == text) {
                Some((_, key)) => Ok(ArgPath {
                    text: text.to_owned(),
                    segments: vec![Segment {
                        key: (*key).to_owned(),
                        index: None,
                    }],
                }),
                None => Err(format!(
                    "{} is not a path a resource rule reads; expected \"uri\", \"uri.scheme\", \
                     \"uri.host\" or \"uri.path\"",
                    quoted(text)
                )),
            };
        }
        let prefix = match root {
            PathRoot::Params => "params.",
            _ => "args.",
        };
        let expected = match root {
            PathRoot::Params => {
                "expected a path such as \"params.maxTokens\": \"params.\" \
                                 followed by one or more dot-separated names"
            }
            _ => {
                "expected a path such as \"args.amount\" or \"args.items.0.id\": \
                  \"args.\" followed by one or more dot-separated names"
            }
        };
        let Some(rest) = text.strip_prefix(prefix) else {
            return Err(format!(
                "{} does not start with \"{prefix}\"; {expected}",
                quoted(text)
            ));
        };
        let mut segments = Vec::new();
        for key in rest.split('.') {
            if key.is_empty() {
                return Err(format!("{} has an empty segment; {expected}", quoted(text)));
            }
            if key.chars().any(char::is_control) {
                return Err(format!(
                    "{} contains a control character; {expected}",
                    quoted(text)
                ));
            }
            let index = if key.bytes().all(|b| b.is_ascii_digit()) {
                key.parse().ok()
            } else {
                None
            };
            segments.push(Segment {
                key: key.to_owned(),
                index,
            });
        }
        Ok(ArgPath {
            text: text.to_owned(),
            segments,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The names the path descends through, `args.` left out.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(|s| s.key.as_str())
    }

    /// The value at this path in `args`, or `None` when any step is absent.
    pub(crate) fn resolve<'v>(&self, args: Option<&'v Value>) -> Option<&'v Value> {
        let mut here = args?;
        for segment in &self.segments {
            here = match here {
                Value::Object(map) => map.get(&segment.key)?,
                Value::Array(items) => items.get(segment.index?)?,
                _ => return None,
            };
        }
        Some(here)
    }
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

//! Annotation rules and pins: the parts of a policy that look at the server's tool
//! definitions (`tools/list`) rather than at the call alone.

use super::rule::Rule;
use serde_json::{Map, Value};

/// The four MCP tool hints, as a server sent them (`None`: not sent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hints {
    pub(crate) read_only: Option<bool>,
    pub(crate) destructive: Option<bool>,
    pub(crate) idempotent: Option<bool>,
    pub(crate) open_world: Option<bool>,
}

/// The hint names, in the order of [`Hints`]' fields, with MCP's default for a hint a
/// server did not send.
pub(crate) const HINTS: [(&str, bool); 4] = [
    ("readOnlyHint", false),
    ("destructiveHint", true),
    ("idempotentHint", false),
    ("openWorldHint", true),
];

impl Hints {
    /// The hints of a `tools/list` entry's `annotations`; values that are not booleans
    /// count as not sent.
    pub(crate) fn of_tool(tool: &Value) -> Hints {
        let annotations = tool.get("annotations");
        let hint = |name: &str| {
            annotations
                .and_then(|a| a.get(name))
                .and_then(Value::as_bool)
        };
        Hints {
            read_only: hint("readOnlyHint"),
            destructive: hint("destructiveHint"),
            idempotent: hint("idempotentHint"),
            open_world: hint("openWorldHint"),
        }
    }

    fn values(&self) -> [Option<bool>; 4] {
        [
            self.read_only,
            self.destructive,
            self.idempotent,
            self.open_world,
        ]
    }

    fn from_values(values: [Option<bool>; 4]) -> Hints {
        let [read_only, destructive, idempotent, open_world] = values;
        Hints {
            read_only,
            destructive,
            idempotent,
            open_world,
        }
    }

    /// Whether a tool with `listed` hints (`None`: never listed) matches these, the
    /// `match` of a rule: every named hint equal, a hint not sent taking MCP's default.
    /// A tool never listed matches only an empty `match`.
    pub(crate) fn matched_by(&self, listed: Option<&Hints>) -> bool {
        let Some(listed) = listed else {
            return self.values().iter().all(Option::is_none);
        };
        self.values().iter().zip(listed.values()).zip(HINTS).all(
            |((wanted, sent), (_, default))| {
                wanted.map_or(true, |wanted| wanted == sent.unwrap_or(default))
            },
        )
    }

    /// Reads a `match` object; `Err` names the offending field.
    pub(crate) fn parse_match(map: &Map<String, Value>) -> Result<Hints, (String, String)> {
        let mut values = [None; 4];
        for (name, value) in map {
            let Some(i) = HINTS.iter().position(|(hint, _)| hint == name) else {
                return Err((
                    name.clone(),
                    format!(
                        "unknown hint; expected one of {}",
                        HINTS.map(|(hint, _)| hint).join(", ")
                    ),
                ));
            };
            match (value.as_bool(), values.get_mut(i)) {
                (Some(b), Some(slot)) => *slot = Some(b),
                _ => return Err((name.clone(), "expected true or false".into())),
            }
        }
        Ok(Hints::from_values(values))
    }

    /// The `match` object, as written.
    pub(crate) fn to_json(self) -> Value {
        let map: Map<String, Value> = self
            .values()
            .iter()
            .zip(HINTS)
            .filter_map(|(value, (name, _))| Some((name.to_owned(), Value::Bool((*value)?))))
            .collect();
        Value::Object(map)
    }
}

/// A rule chosen by a tool's annotations, for tools no `tools` key matches.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AnnotationRule {
    pub(crate) hints: Hints,
    pub(crate) rule: Rule,
}

/// What a pinned tool whose definition drifted gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnDrift {
    /// Calls are denied (`pin_drift`); the tool stays out of `tools/list`. The default.
    #[default]
    Deny,
    /// As `Deny`: left out of `tools/list`, calls denied.
    Hide,
    /// Calls need a person's approval; the tool stays listed.
    RequireApproval,
}

impl OnDrift {
    /// The policy spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnDrift::Deny => "deny",
            OnDrift::Hide => "hide",
            OnDrift::RequireApproval => "require_approval",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<OnDrift> {
        Some(match name {
            "deny" => OnDrift::Deny,
            "hide" => OnDrift::Hide,
            "require_approval" => OnDrift::RequireApproval,
            _ => return None,
        })
    }
}

/// Whether `text` is `sha256:` and 64 lowercase hex digits.
pub(crate) fn is_pin(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_hints_take_mcp_defaults_and_unlisted_tools_match_only_empty() {
        let destructive = Hints {
            destructive: Some(true),
            ..Hints::default()
        };
        let read_only = Hints {
            read_only: Some(true),
            ..Hints::default()
        };
        let bare = Hints::of_tool(&json!({"name": "t"}));
        assert!(
            destructive.matched_by(Some(&bare)),
            "destructiveHint defaults to true"
        );
        assert!(
            !read_only.matched_by(Some(&bare)),
            "readOnlyHint defaults to false"
        );
        let reader = Hints::of_tool(
            &json!({"name": "t", "annotations": {"readOnlyHint": true, "destructiveHint": false}}),
        );
        assert!(read_only.matched_by(Some(&reader)));
        assert!(!destructive.matched_by(Some(&reader)));
        assert!(!destructive.matched_by(None), "never listed");
        assert!(Hints::default().matched_by(None));
        assert!(Hints::default().matched_by(Some(&reader)));
    }

    #[test]
    fn pins_are_sha256_and_64_lowercase_hex() {
        assert!(is_pin(&format!("sha256:{}", "0a".repeat(32))));
        assert!(!is_pin(&format!("sha256:{}", "0A".repeat(32))));
        assert!(!is_pin(&format!("sha256:{}", "0a".repeat(31))));
        assert!(!is_pin(&"0a".repeat(32)));
    }
}

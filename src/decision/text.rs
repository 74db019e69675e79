//! The texts a decision carries: the tool name, the rule key (shared with the policy),
//! and the reason.

use super::*;

/// The key of the rule that decided a call, such as `"whmcs_get_*"`. Derefs to `str`.
///
/// `Copy`: the text is the policy's own, kept for the life of the process (a policy
/// keeps each distinct rule key once, however often it is reloaded), so making, copying
/// or dropping a key costs nothing.
#[derive(Debug, Clone, Copy)]
pub struct RuleKey(&'static str);

impl RuleKey {
    pub(crate) fn new(key: &'static str) -> RuleKey {
        RuleKey(key)
    }

    /// The key's text.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl PartialEq for RuleKey {
    fn eq(&self, other: &RuleKey) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RuleKey {}

impl Deref for RuleKey {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for RuleKey {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for RuleKey {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for RuleKey {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for RuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RuleKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The name of the tool a decision is about. Derefs to `str`.
///
/// Names of up to 24 bytes are kept inline, without allocating.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToolName(CompactString);

impl ToolName {
    pub(crate) fn new(name: &str) -> ToolName {
        ToolName(CompactString::new(name))
    }

    /// The name's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for ToolName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ToolName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for ToolName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ToolName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ToolName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The text of a reason: taken from the policy without copying, or composed for the call.
/// Derefs to `str`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(ReasonText);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ReasonText {
    Fixed(&'static str),
    Shared(Arc<str>),
    Composed(String),
}

impl Reason {
    pub(crate) fn fixed(text: &'static str) -> Reason {
        Reason(ReasonText::Fixed(text))
    }

    pub(crate) fn shared(text: &Arc<str>) -> Reason {
        Reason(ReasonText::Shared(Arc::clone(text)))
    }

    pub(crate) fn composed(text: String) -> Reason {
        Reason(ReasonText::Composed(text))
    }

    /// The reason's text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            ReasonText::Fixed(text) => text,
            ReasonText::Shared(text) => text,
            ReasonText::Composed(text) => text,
        }
    }
}

impl Deref for Reason {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Reason {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

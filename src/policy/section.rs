//! The rule tables of the kinds of call other than tools: `resources` (URI patterns),
//! `prompts` (prompt names) and `server_requests` (methods a server sends the client).

use super::arg_path::PathRoot;
use super::rule::Rule;
use crate::call::CallKind;
use crate::matcher::Matcher;

/// One kind's rules, and the matcher from a name (URI, prompt name, method) to them.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub(crate) rules: Vec<Rule>,
    pub(crate) matcher: Matcher,
}

impl Section {
    pub(crate) fn new(rules: Vec<Rule>) -> Section {
        let matcher = Matcher::new::<&str>(&[], rules.iter().map(|r| r.key));
        Section { rules, matcher }
    }

    /// The rule governing `name`, if any key matches it.
    pub(crate) fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.get(self.matcher.rule(name)?)
    }

    /// How this section governs a call of `kind` named `name`: a resource is matched by
    /// its URI as the server resolves it (refused when that is ambiguous: why), anything
    /// else by its name.
    pub(crate) fn govern(&self, kind: CallKind, name: &str) -> Result<Governed<'_>, &'static str> {
        match kind {
            CallKind::Resource => {
                let uri = crate::uri::normalize(name)?;
                Ok(Governed {
                    rule: self.rule(&uri.uri),
                    uri: Some(uri),
                })
            }
            _ => Ok(Governed {
                rule: self.rule(name),
                uri: None,
            }),
        }
    }
}

/// What a section makes of one call.
pub(crate) struct Governed<'s> {
    /// The rule; `None`: the policy's default applies.
    pub(crate) rule: Option<&'s Rule>,
    /// A resource's URI, normalized.
    pub(crate) uri: Option<crate::uri::NormalUri>,
}

/// The kinds that have a section: the policy key, the kind, what its conditions read.
pub(crate) const SECTIONS: [(&str, CallKind, PathRoot); 3] = [
    ("resources", CallKind::Resource, PathRoot::Uri),
    ("prompts", CallKind::Prompt, PathRoot::Args),
    ("server_requests", CallKind::ServerRequest, PathRoot::Params),
];

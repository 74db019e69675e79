//! Filtering `resources/list`, `resources/templates/list` and `prompts/list` results by
//! the policy's `resources` and `prompts`: an entry whose rule (or the default) denies it
//! outright is left out. A policy without the section leaves the list as it is.

use super::tools_list::{check_members, remove_refused, ListingError};
use super::Revision;
use crate::call::CallKind;
use crate::engine::Engine;
use crate::policy::{Action, Policy};
use serde_json::Value;

/// A list result the policy filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    Resources,
    Templates,
    Prompts,
}

impl Listing {
    /// The listing a request's method asks for.
    pub(crate) fn of(method: &str) -> Option<Listing> {
        match method {
            "resources/list" => Some(Listing::Resources),
            "resources/templates/list" => Some(Listing::Templates),
            "prompts/list" => Some(Listing::Prompts),
            _ => None,
        }
    }

    fn method(self) -> &'static str {
        match self {
            Listing::Resources => "resources/list",
            Listing::Templates => "resources/templates/list",
            Listing::Prompts => "prompts/list",
        }
    }

    /// The result's array, and the member of each entry the policy matches.
    fn members(self) -> (&'static str, &'static str) {
        match self {
            Listing::Resources => ("resources", "uri"),
            Listing::Templates => ("resourceTemplates", "uriTemplate"),
            Listing::Prompts => ("prompts", "name"),
        }
    }

    fn kind(self) -> CallKind {
        match self {
            Listing::Prompts => CallKind::Prompt,
            _ => CallKind::Resource,
        }
    }
}

/// Leaves out of `result` the entries the policy denies outright; how many. A result the
/// gateway would have to guess about (case-variant members, entries without their URI or
/// name) is an error, never relayed.
pub(crate) fn filter_listing(
    engine: &Engine,
    result: &mut Value,
    listing: Listing,
    revision: Revision,
) -> Result<usize, ListingError> {
    let policy = engine.policy();
    if policy.section(listing.kind()).is_none() {
        return Ok(0);
    }
    let method = listing.method();
    let (array, member) = listing.members();
    let map = result
        .as_object_mut()
        .ok_or_else(|| ListingError::of(method, "is not an object"))?;
    let known = [array, "nextCursor", "_meta", "resultType", "cacheScope"];
    check_members(map, &known, "").map_err(|e| ListingError::of(method, e.problem()))?;
    let entries = map
        .get_mut(array)
        .and_then(Value::as_array_mut)
        .ok_or_else(|| ListingError::of(method, format!("has no \"{array}\" array")))?;
    let mut refused = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let object = entry.as_object().ok_or_else(|| {
            ListingError::of(method, format!("has {array}[{i}] that is not an object"))
        })?;
        check_members(object, &[member], &format!("{array}[{i}]."))
            .map_err(|e| ListingError::of(method, e.problem()))?;
        let name = object.get(member).and_then(Value::as_str).ok_or_else(|| {
            ListingError::of(
                method,
                format!("has {array}[{i}] without a string \"{member}\""),
            )
        })?;
        refused.push(denies_outright(&policy, listing.kind(), name));
    }
    let removed = remove_refused(entries, &refused);
    if revision.requires_result_type() {
        map.insert("cacheScope".into(), "private".into());
    }
    Ok(removed)
}

/// Whether every request for `name` (a URI, a URI template, a prompt name) is refused
/// before its arguments are looked at. A URI that cannot be read unambiguously is.
fn denies_outright(policy: &Policy, kind: CallKind, name: &str) -> bool {
    let Some(section) = policy.section(kind) else {
        return false;
    };
    match section.govern(kind, name) {
        Ok(governed) => governed.rule.map_or(policy.default_action(), |r| r.action) == Action::Deny,
        Err(_) => true,
    }
}

//! `resources`, `prompts`, `server_requests`: a key (URI pattern, prompt name, method, or
//! a glob of them) to a rule, with the whole rule vocabulary; conditions read what the
//! kind has (`uri…`, `args.…`, `params.…`).

use super::*;

pub(super) fn section_rules(
    v: &Value,
    field: &str,
    kind: CallKind,
    root: PathRoot,
    counters: &mut Counters,
) -> Result<Vec<Rule>, PolicyError> {
    let example = match kind {
        CallKind::Resource => "URI patterns such as \"whmcs://tickets/*\"",
        CallKind::Prompt => "prompt names or globs",
        _ => "methods such as \"sampling/createMessage\"",
    };
    let map = object(v, field, &format!("an object mapping {example} to rules"))?;
    let mut problems = Problems::default();
    let mut rules = Vec::new();
    for (key, rule_value) in map {
        let path = join(field, key);
        if problems.take(check_tool_key(key, &path)).is_none() {
            continue;
        }
        if kind == CallKind::Resource {
            if let Some(problem) = resource_key_problem(key) {
                problems.0.push(PolicyError::at(&path, problem));
                continue;
            }
        }
        let expected = "a rule: an object such as {} or {\"action\": \"deny\"}";
        let Some(rule_map) = problems.take(object(rule_value, &path, expected)) else {
            continue;
        };
        problems.take(known_fields(rule_map, &path, RULE_FIELDS));
        if let Some(rule) = problems.take(rule(key, rule_map, &path, root, counters)) {
            rules.push(rule);
        }
    }
    problems.into_result(rules)
}

/// Why a resource key would never match: keys are compared with URIs in their normal form
/// (lowercase scheme and host, no dot segments, unreserved characters unescaped), so a
/// key must be written in that form.
fn resource_key_problem(key: &str) -> Option<String> {
    // A glob's `*` stands for any run of characters; check the rest of it.
    let sample = key.replace('*', "x");
    match crate::uri::normalize(&sample) {
        Err(why) => Some(format!(
            "{} is not a URI pattern a request can match: {why}",
            describe_str(key)
        )),
        Ok(normal) if normal.uri != sample => {
            let written = if key.contains('*') {
                String::new()
            } else {
                format!("; write {}", describe_str(&normal.uri))
            };
            Some(format!(
                "{} is not in normal form (requests are matched lowercase in scheme and host, \
                 without dot segments or escaped unreserved characters){written}",
                describe_str(key)
            ))
        }
        Ok(_) => None,
    }
}

//! Rules (`tools` entries, `all_tools`, annotation rules) and their conditions.

use super::*;

pub(super) fn rule(
    key: &str,
    map: &Map<String, Value>,
    path: &str,
    root: PathRoot,
    counters: &mut Counters,
) -> Result<Rule, PolicyError> {
    let mut problems = Problems::default();
    let action = match problems
        .take(optional_string(map, path, "action"))
        .flatten()
    {
        Some(name) => problems.take(action(name, &join(path, "action"))),
        None => Some(Action::Allow),
    };
    if action == Some(Action::Deny) {
        for &field in ALLOWING_FIELDS {
            if map.get(field).is_some_and(|v| !is_empty_list(v)) {
                problems.0.push(PolicyError::at(
                    &join(path, field),
                    format!(
                        "this rule's action is \"deny\", so it refuses every call and \
                         \"{field}\" would never apply; remove \"{field}\" or change the action"
                    ),
                ));
            }
        }
    }
    let body = problems.take(body(
        key,
        map,
        path,
        action.unwrap_or(Action::Allow),
        root,
        counters,
    ));
    let reason = problems
        .take(optional_string(map, path, "reason"))
        .flatten()
        .map(Arc::from);
    let mut rate = None;
    if let Some(v) = map.get("rate_limit") {
        let rate_path = join(path, "rate_limit");
        let limit = rate_limit(v, &rate_path).and_then(|(max, window_secs, scope)| {
            let counter = counters.get(key, window_secs, scope, None, &rate_path)?;
            Ok(Limit {
                counter,
                key: None,
                max,
                cost: Cost::Fixed(1),
                refund: Refund::default(),
            })
        });
        rate = problems.take(limit);
    }
    let mut rule = body.unwrap_or_else(|| empty_rule(key));
    rule.reason = reason;
    rule.rate_limit = rate;
    problems.into_result(rule)
}

/// The parts a rule shares with `all_tools`: conditions and limits.
pub(super) fn body(
    key: &str,
    map: &Map<String, Value>,
    path: &str,
    action: Action,
    root: PathRoot,
    counters: &mut Counters,
) -> Result<Rule, PolicyError> {
    let mut problems = Problems::default();
    let mut rule = empty_rule(key);
    rule.action = action;
    rule.require = problems
        .take(conditions(map, path, "require", root))
        .unwrap_or_default();
    rule.deny_if = problems
        .take(conditions(map, path, "deny_if", root))
        .unwrap_or_default();
    rule.approve_if = problems
        .take(conditions(map, path, "approve_if", root))
        .unwrap_or_default();
    if let Some(v) = map.get("scopes") {
        rule.scopes = problems
            .take(scopes(v, &join(path, "scopes")))
            .unwrap_or_default();
    }
    if let Some(v) = map.get("approvers") {
        rule.approvers = problems.take(approvers(v, &rule, &join(path, "approvers")));
    }
    if let Some(v) = map.get("limits") {
        let list_path = join(path, "limits");
        let items = problems.take(array(v, &list_path, "a list of limits"));
        for (i, item) in items.unwrap_or_default().iter().enumerate() {
            if let Some(limit) = problems.take(limit(item, &index(&list_path, i), root, counters)) {
                rule.limits.push(limit);
            }
        }
    }
    problems.into_result(rule)
}

/// `approvers`: who approves what the rule holds, on a rule that can hold a call.
fn approvers(v: &Value, rule: &Rule, path: &str) -> Result<Approvers, PolicyError> {
    let expected = "\"client\", \"console\" or \"either\"";
    let Some(name) = v.as_str() else {
        return Err(PolicyError::at(
            path,
            format!("expected {expected}, found {}", describe(v)),
        ));
    };
    let approvers = Approvers::from_name(name).ok_or_else(|| {
        PolicyError::at(
            path,
            format!(
                "expected {expected}, found {}{}",
                describe_str(name),
                suggestion(name, &["client", "console", "either"])
            ),
        )
    })?;
    // A deny rule is refused for its own reason (`ALLOWING_FIELDS`).
    if rule.action == Action::Allow && rule.approve_if.is_empty() {
        return Err(PolicyError::at(
            path,
            "this rule never holds a call for approval, so \"approvers\" would never \
             apply; set \"action\": \"require_approval\" or add \"approve_if\", or remove \
             \"approvers\"",
        ));
    }
    Ok(approvers)
}

/// `scopes`: OAuth scope tokens (RFC 6749 §3.3: printable ASCII but space, `"` and `\\`),
/// each once.
fn scopes(v: &Value, path: &str) -> Result<Vec<Arc<str>>, PolicyError> {
    let items = array(
        v,
        path,
        "a list of OAuth scopes such as [\"tickets:write\"]",
    )?;
    let mut problems = Problems::default();
    let mut scopes: Vec<Arc<str>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = index(path, i);
        let scope = match item.as_str() {
            Some(s) if is_scope_token(s) => s,
            Some(_) => {
                problems.0.push(PolicyError::at(
                    &at,
                    "a scope is one or more printable ASCII characters other than space, \
                     '\"' and '\\' (such as \"tickets:write\")",
                ));
                continue;
            }
            None => {
                problems.0.push(PolicyError::at(
                    &at,
                    format!("expected a scope as a string, found {}", describe(item)),
                ));
                continue;
            }
        };
        if scopes.iter().any(|known| &**known == scope) {
            problems.0.push(PolicyError::at(
                &at,
                format!("the scope {scope:?} is listed twice"),
            ));
            continue;
        }
        scopes.push(Arc::from(scope));
    }
    problems.into_result(scopes)
}

fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

pub(super) fn conditions(
    map: &Map<String, Value>,
    path: &str,
    field: &str,
    root: PathRoot,
) -> Result<Vec<Condition>, PolicyError> {
    let Some(v) = map.get(field) else {
        return Ok(Vec::new());
    };
    let list_path = join(path, field);
    let items = array(
        v,
        &list_path,
        "a list of conditions such as [{\"path\": \"args.amount\", \"op\": \"lte\", \"value\": 100}]",
    )?;
    let mut problems = Problems::default();
    let parsed = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| problems.take(condition(item, &index(&list_path, i), field, root)))
        .collect();
    problems.into_result(parsed)
}

pub(super) fn condition(
    v: &Value,
    path: &str,
    field: &str,
    root: PathRoot,
) -> Result<Condition, PolicyError> {
    let map = object(
        v,
        path,
        "a condition such as {\"path\": \"args.status\", \"op\": \"eq\", \"value\": \"Open\"}",
    )?;
    known_fields(map, path, CONDITION_FIELDS)?;
    let arg_path_text = required_string(map, path, "path", "a path such as \"args.amount\"")?;
    let arg_path = ArgPath::parse_in(arg_path_text, root)
        .map_err(|msg| PolicyError::at(&join(path, "path"), msg))?;
    let op_name = required_string(map, path, "op", "an operator name")?;
    if !OP_NAMES.contains(&op_name) {
        return Err(PolicyError::at(
            &join(path, "op"),
            format!(
                "unknown operator {}; expected one of {}{}",
                describe_str(op_name),
                OP_NAMES.join(", "),
                suggestion(op_name, &OP_NAMES)
            ),
        ));
    }
    let Some(operand) = map.get("value") else {
        return Err(PolicyError::at(
            path,
            format!("missing field \"value\": the operand of \"{op_name}\""),
        ));
    };
    let op = Op::build(op_name, operand).map_err(|msg| {
        PolicyError::at(
            &join(path, "value"),
            format!("{msg}, found {}", describe(operand)),
        )
    })?;
    let because = match field {
        "require" => "requirement not met:",
        "deny_if" => "denied because",
        _ => "needs approval because",
    };
    let ignore_case = match map.get("ignore_case") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) if CASE_OPS.contains(&op_name) => true,
        Some(Value::Bool(true)) => {
            return Err(PolicyError::at(
                &join(path, "ignore_case"),
                format!(
                    "ignore_case applies to the string comparisons of {}; \"{op_name}\" has none",
                    CASE_OPS.join(", ")
                ),
            ))
        }
        Some(other) => {
            return Err(PolicyError::at(
                &join(path, "ignore_case"),
                format!("expected true or false, found {}", describe(other)),
            ))
        }
    };
    let fallback = format!("{because} {} {op_name} {operand}", arg_path.as_str());
    Ok(Condition {
        path: arg_path,
        folded: ignore_case.then(|| op.folded()),
        op,
        reason: optional_string(map, path, "reason")?.map(Arc::from),
        fallback: fallback.into(),
    })
}

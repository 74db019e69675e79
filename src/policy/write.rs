//! Writing a [`Policy`] back as policy JSON, in the form it was loaded from.

use super::*;

impl Policy {
    /// The policy as JSON, in the form it was loaded from.
    pub fn to_json_value(&self) -> Value {
        let mut top = Map::new();
        top.insert("version".into(), "1".into());
        if let Some(description) = &self.description {
            top.insert("description".into(), description.as_str().into());
        }
        top.insert("default".into(), self.default.as_str().into());
        if !self.hide.is_empty() {
            let hide = self.hide.iter().map(|key| Value::from(&**key)).collect();
            top.insert("hide".into(), Value::Array(hide));
        }
        let all_tools = rule_json(&self.all_tools);
        if !all_tools.is_empty() {
            top.insert("all_tools".into(), Value::Object(all_tools));
        }
        if !self.annotations.is_empty() {
            let annotations = self
                .annotations
                .iter()
                .map(|a| {
                    let mut map = Map::new();
                    map.insert("match".into(), a.hints.to_json());
                    map.extend(rule_json(&a.rule));
                    Value::Object(map)
                })
                .collect();
            top.insert("annotations".into(), Value::Array(annotations));
        }
        if !self.pins.is_empty() {
            let pins = self
                .pins
                .iter()
                .map(|(name, digest)| (name.clone(), Value::from(digest.as_str())))
                .collect();
            top.insert("pins".into(), Value::Object(pins));
        }
        if self.on_drift != OnDrift::default() {
            top.insert("on_drift".into(), self.on_drift.as_str().into());
        }
        let tools = self
            .rules
            .iter()
            .map(|rule| (rule.key.to_string(), Value::Object(rule_json(rule))))
            .collect();
        top.insert("tools".into(), Value::Object(tools));
        for (field, kind, _) in section::SECTIONS {
            if let Some(section) = self.section(kind) {
                let rules = section
                    .rules
                    .iter()
                    .map(|rule| (rule.key.to_string(), Value::Object(rule_json(rule))))
                    .collect();
                top.insert(field.into(), Value::Object(rules));
            }
        }
        Value::Object(top)
    }
}

fn rule_json(rule: &Rule) -> Map<String, Value> {
    let mut map = Map::new();
    if rule.action != Action::Allow {
        map.insert("action".into(), rule.action.as_str().into());
    }
    if let Some(reason) = &rule.reason {
        map.insert("reason".into(), (**reason).into());
    }
    if let Some(approvers) = rule.approvers {
        map.insert("approvers".into(), approvers.as_str().into());
    }
    if !rule.scopes.is_empty() {
        let scopes = rule.scopes.iter().map(|s| Value::from(&**s)).collect();
        map.insert("scopes".into(), Value::Array(scopes));
    }
    for (field, conditions) in [
        ("require", &rule.require),
        ("deny_if", &rule.deny_if),
        ("approve_if", &rule.approve_if),
    ] {
        if !conditions.is_empty() {
            map.insert(
                field.into(),
                conditions.iter().map(condition_json).collect(),
            );
        }
    }
    if !rule.limits.is_empty() {
        map.insert(
            "limits".into(),
            rule.limits.iter().map(limit_json).collect(),
        );
    }
    if let Some(limit) = &rule.rate_limit {
        map.insert(
            "rate_limit".into(),
            json!({
                "max": limit.max,
                "window": window_json(limit.counter.window_secs()),
                "scope": limit.counter.scope().as_str(),
            }),
        );
    }
    map
}

fn condition_json(condition: &Condition) -> Value {
    let mut map = Map::new();
    map.insert("path".into(), condition.path.as_str().into());
    map.insert("op".into(), condition.op.name().into());
    map.insert("value".into(), condition.op.value());
    if let Some(reason) = &condition.reason {
        map.insert("reason".into(), (**reason).into());
    }
    if condition.folded.is_some() {
        map.insert("ignore_case".into(), true.into());
    }
    Value::Object(map)
}

fn limit_json(limit: &Limit) -> Value {
    let mut map = Map::new();
    if !limit.counter.is_private() {
        map.insert("counter".into(), limit.counter.name().into());
    }
    map.insert("window".into(), window_json(limit.counter.window_secs()));
    map.insert("max".into(), limit.max.into());
    map.insert("scope".into(), limit.counter.scope().as_str().into());
    if let Some(key) = &limit.key {
        map.insert("key".into(), key.as_str().into());
    }
    match &limit.cost {
        Cost::Fixed(1) => {}
        Cost::Fixed(units) => {
            map.insert("cost".into(), (*units).into());
        }
        Cost::Argument(path) => {
            map.insert("cost".into(), path.as_str().into());
        }
    }
    if limit.refund != Refund::default() {
        map.insert("refund".into(), limit.refund.as_str().into());
    }
    Value::Object(map)
}

fn window_json(secs: u64) -> Value {
    match limit::window_name(secs) {
        Some(name) => name.into(),
        None => secs.into(),
    }
}

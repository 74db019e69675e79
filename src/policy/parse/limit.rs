//! Limits, `rate_limit`, and the counters limits name, which must agree.

use super::*;

pub(super) fn limit(
    v: &Value,
    path: &str,
    root: PathRoot,
    counters: &mut Counters,
) -> Result<Limit, PolicyError> {
    let map = object(
        v,
        path,
        "a limit such as {\"window\": \"minute\", \"max\": 30}",
    )?;
    known_fields(map, path, LIMIT_FIELDS)?;
    let window_secs = match map.get("window") {
        Some(w) => window(w, &join(path, "window"))?,
        None => {
            return Err(PolicyError::at(
                path,
                format!("missing field \"window\"; expected {WINDOWS}"),
            ))
        }
    };
    let max = match map.get("max") {
        Some(m) => units(m, &join(path, "max"))?,
        None => {
            return Err(PolicyError::at(
                path,
                "missing field \"max\": how many units the window admits, such as \"max\": 30",
            ))
        }
    };
    let scope = match optional_string(map, path, "scope")? {
        Some(name) => scope(name, &join(path, "scope"))?,
        None => Scope::Grant,
    };
    let cost = match map.get("cost") {
        None => Cost::Fixed(1),
        Some(Value::String(text)) => Cost::Argument(
            ArgPath::parse_in(text, root)
                .map_err(|msg| PolicyError::at(&join(path, "cost"), msg))?,
        ),
        Some(n @ Value::Number(_)) => Cost::Fixed(units(n, &join(path, "cost"))?),
        Some(other) => {
            return Err(PolicyError::at(
                &join(path, "cost"),
                format!(
                "expected a positive integer or an argument path such as \"args.amount\", found {}",
                describe(other)
            ),
            ))
        }
    };
    let refund = match optional_string(map, path, "refund")? {
        None => Refund::default(),
        Some(name) => Refund::from_name(name).ok_or_else(|| {
            PolicyError::at(
                &join(path, "refund"),
                format!(
                    "expected \"not_run\", \"failed\" or \"never\", found {}{}",
                    describe_str(name),
                    suggestion(name, &["not_run", "failed", "never"])
                ),
            )
        })?,
    };
    let key = match map.get("key") {
        None => None,
        Some(Value::String(text)) => Some(
            ArgPath::parse_in(text, root)
                .map_err(|msg| PolicyError::at(&join(path, "key"), msg))?,
        ),
        Some(other) => {
            return Err(PolicyError::at(
                &join(path, "key"),
                format!(
                    "expected an argument path such as \"args.ticket_id\", found {}",
                    describe(other)
                ),
            ))
        }
    };
    let key_text = key.as_ref().map(ArgPath::as_str);
    let counter = match map.get("counter") {
        None => counters.private(path, window_secs, scope, key_text),
        Some(Value::String(name)) => {
            let counter_path = join(path, "counter");
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(PolicyError::at(
                    &counter_path,
                    "expected a non-empty counter name without control characters",
                ));
            }
            counters.get(name, window_secs, scope, key_text, &counter_path)?
        }
        Some(other) => {
            return Err(PolicyError::at(
                &join(path, "counter"),
                format!("expected a counter name, found {}", describe(other)),
            ))
        }
    };
    Ok(Limit {
        counter,
        key,
        max,
        cost,
        refund,
    })
}

pub(super) fn rate_limit(v: &Value, path: &str) -> Result<(u64, u64, Scope), PolicyError> {
    match v {
        Value::String(text) => {
            let malformed = || {
                PolicyError::at(
                    path,
                    format!(
                        "expected \"<max>/<second|minute|hour|day>\" such as \"30/minute\", found {}",
                        describe_str(text)
                    ),
                )
            };
            let (count, unit) = text.split_once('/').ok_or_else(malformed)?;
            if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            let max: u64 = count.parse().map_err(|_| malformed())?;
            let window = window_from_name(unit).ok_or_else(malformed)?;
            if !(1..=MAX_UNITS).contains(&max) {
                return Err(PolicyError::at(
                    path,
                    format!("expected a max from 1 to {MAX_UNITS}, found {max}"),
                ));
            }
            Ok((max, window, Scope::Session))
        }
        Value::Object(map) => {
            known_fields(map, path, RATE_LIMIT_FIELDS)?;
            let max = match map.get("max") {
                Some(m) => units(m, &join(path, "max"))?,
                None => return Err(PolicyError::at(path, "missing field \"max\"")),
            };
            let window = match map.get("window") {
                Some(w) => window(w, &join(path, "window"))?,
                None => {
                    return Err(PolicyError::at(
                        path,
                        format!("missing field \"window\"; expected {WINDOWS}"),
                    ))
                }
            };
            let scope = match optional_string(map, path, "scope")? {
                Some(name) => scope(name, &join(path, "scope"))?,
                None => Scope::Session,
            };
            Ok((max, window, scope))
        }
        other => Err(PolicyError::at(
            path,
            format!(
                "expected \"<max>/<window>\" such as \"30/minute\", or an object such as \
                 {{\"max\": 30, \"window\": \"minute\"}}, found {}",
                describe(other)
            ),
        )),
    }
}

/// Named counters seen so far, so that limits sharing a counter agree on its identity.
#[derive(Default)]
pub(super) struct Counters {
    named: HashMap<String, (&'static Counter, String)>,
}

impl Counters {
    /// The counter of a limit that names none.
    pub(super) fn private(
        &mut self,
        path: &str,
        window_secs: u64,
        scope: Scope,
        key: Option<&str>,
    ) -> &'static Counter {
        interned::counter(Counter::with_identity(path, true, window_secs, scope, key))
    }

    pub(super) fn get(
        &mut self,
        name: &str,
        window_secs: u64,
        scope: Scope,
        key: Option<&str>,
        path: &str,
    ) -> Result<&'static Counter, PolicyError> {
        if let Some(&(existing, ref first_path)) = self.named.get(name) {
            if existing.key_path() != key {
                let shown =
                    |k: Option<&str>| k.map_or("no key".to_owned(), |k| format!("key \"{k}\""));
                return Err(PolicyError::at(
                    path,
                    format!(
                        "counter {} is used here with {}, but at {} with {}; limits sharing a \
                         counter must use the same key (or give one a different counter name)",
                        describe_str(name),
                        shown(key),
                        first_path,
                        shown(existing.key_path()),
                    ),
                ));
            }
            if existing.window_secs() != window_secs || existing.scope() != scope {
                return Err(PolicyError::at(
                    path,
                    format!(
                        "counter {} is used here with window {} s and scope \"{}\", but at {} \
                         with window {} s and scope \"{}\"; limits sharing a counter must use \
                         the same window and scope (or give one a different counter name)",
                        describe_str(name),
                        window_secs,
                        scope,
                        first_path,
                        existing.window_secs(),
                        existing.scope()
                    ),
                ));
            }
            return Ok(existing);
        }
        let counter =
            interned::counter(Counter::with_identity(name, false, window_secs, scope, key));
        self.named
            .insert(name.to_owned(), (counter, path.to_owned()));
        Ok(counter)
    }
}

pub(super) fn window(v: &Value, path: &str) -> Result<u64, PolicyError> {
    let found = match v {
        Value::String(name) => match window_from_name(name) {
            Some(secs) => return Ok(secs),
            None => format!(
                "{}{}",
                describe(v),
                suggestion(name, &["second", "minute", "hour", "day"])
            ),
        },
        Value::Number(n) => match n.as_u64() {
            Some(secs) if (1..=MAX_WINDOW_SECS).contains(&secs) => return Ok(secs),
            _ => describe(v),
        },
        _ => describe(v),
    };
    Err(PolicyError::at(
        path,
        format!("expected {WINDOWS}, found {found}"),
    ))
}

/// An integer count of units: 1 ..= 2^53.
pub(super) fn units(v: &Value, path: &str) -> Result<u64, PolicyError> {
    match v.as_u64() {
        Some(n) if (1..=MAX_UNITS).contains(&n) => Ok(n),
        _ => Err(PolicyError::at(
            path,
            format!(
                "expected an integer from 1 to {MAX_UNITS}, found {}",
                describe(v)
            ),
        )),
    }
}

pub(super) fn scope(name: &str, path: &str) -> Result<Scope, PolicyError> {
    Scope::from_name(name).ok_or_else(|| {
        PolicyError::at(
            path,
            format!(
                "expected {SCOPES}, found {}{}",
                describe_str(name),
                suggestion(name, &["grant", "session", "agent", "global"])
            ),
        )
    })
}

//! The last step: a call's limits, checked and recorded in the store atomically.

use super::arguments::*;
use super::*;

impl Engine {
    pub(super) fn check_limits<'p, 'a, R: Reply>(
        &self,
        limits: impl Iterator<Item = &'p Limit>,
        rule: Option<&Rule>,
        call: &ToolCall<'a>,
        record: bool,
    ) -> R {
        let mut limits = limits.peekable();
        if limits.peek().is_none() {
            return R::allow(call, rule, Usage::none);
        }
        let mut requests = SmallVec::<[LimitRequest<'_>; INLINE_LIMITS]>::new();
        // Each request's first limit, scope id (kept at the call's lifetime for the
        // decision) and refund setting.
        let mut sources = SmallVec::<[(&Limit, &'a str, Refund); INLINE_LIMITS]>::new();
        for limit in limits {
            let info = |scope_id: Option<&'a str>, cost| LimitInfo {
                counter: limit.counter,
                scope_id: scope_id.map(CompactString::new),
                key: None,
                max: limit.max,
                cost,
            };
            let deny = |code, reason: String, info| {
                R::deny(call, rule, code, Why::Composed(reason), Some(info))
            };
            let scope = limit.counter.scope();
            let Some(scope_id) = call.scope_id(scope) else {
                return deny(
                    DenyCode::MissingIdentity,
                    format!(
                        "counter \"{}\" counts calls per {scope}, but the call has no {scope} id",
                        limit.counter.name()
                    ),
                    info(None, None),
                );
            };
            let cost = match call_cost(&limit.cost, call.args()) {
                Ok(cost) => cost,
                Err(why) => {
                    return deny(DenyCode::InvalidCost, why, info(Some(scope_id), None));
                }
            };
            let value = match &limit.key {
                None => None,
                Some(path) => match key_value(path, call.args()) {
                    Ok(value) => Some(value),
                    Err(why) => {
                        return deny(DenyCode::InvalidKey, why, info(Some(scope_id), Some(cost)));
                    }
                },
            };
            // Limits that resolve to one count share it: their costs add up, and the
            // smallest max and the least generous refund setting apply.
            let same = requests.iter().position(|r| {
                r.key.scope_id == scope_id
                    && r.key.value == value
                    && *r.key.counter == *limit.counter
            });
            let merged = same.and_then(|i| {
                let request = requests.get_mut(i)?;
                Some((request, i))
            });
            match merged {
                Some((request, i)) => {
                    request.cost = request.cost.saturating_add(cost);
                    request.max = request.max.min(limit.max);
                    if let Some(source) = sources.get_mut(i) {
                        source.2 = source.2.least_generous(limit.refund);
                    }
                }
                None => {
                    requests.push(LimitRequest {
                        key: CounterKey {
                            counter: limit.counter,
                            scope_id,
                            value,
                        },
                        max: limit.max,
                        cost,
                    });
                    sources.push((limit, scope_id, limit.refund));
                }
            }
        }
        for (request, &(limit, scope_id, _)) in requests.iter().zip(&sources) {
            if request.cost > request.max {
                let reason = format!(
                    "this call costs {} units but counter \"{}\" admits at most {} per window, \
                     so it can never pass",
                    request.cost,
                    limit.counter.name(),
                    request.max
                );
                return R::deny(
                    call,
                    rule,
                    DenyCode::CostExceedsMax,
                    Why::Composed(reason),
                    Some(limit_info(request, limit, scope_id)),
                );
            }
        }

        let now = self.clock.now();
        let answer = if record {
            self.store.acquire(now, &requests)
        } else {
            self.store.peek(now, &requests)
        };
        let refused = |index: usize, retry_after| {
            let request = requests.get(index)?;
            let &(limit, scope_id, _) = sources.get(index)?;
            let info = || limit_info(request, limit, scope_id);
            Some(R::limit(call, rule, retry_after, info))
        };
        let error = match answer {
            Ok(Admission::Admitted { at }) => {
                let usage = || {
                    let mut charges = Charges::default();
                    if record {
                        for (request, &(limit, scope_id, refund)) in requests.iter().zip(&sources) {
                            charges.push(Charge {
                                counter: limit.counter,
                                scope_id: CompactString::new(scope_id),
                                key: request.key.value.map(OwnedKeyValue::new),
                                cost: request.cost,
                                refund,
                            });
                        }
                    }
                    Usage::recorded(at, charges, self.id)
                };
                return R::allow(call, rule, usage);
            }
            Ok(Admission::Refused { limit, retry_after }) => match refused(limit, retry_after) {
                Some(decision) => return decision,
                None => StoreError::new(
                    "counter",
                    format!("refused limit {limit}, which does not exist"),
                ),
            },
            Err(error) => error,
        };
        if self.fail_open {
            return R::allow(call, rule, Usage::none);
        }
        let reason = Why::Composed(error.to_string());
        R::deny(call, rule, DenyCode::StoreFailed, reason, None)
    }
}

/// What a refusal says about the limit of `request` (whose first limit is `limit`).
fn limit_info(request: &LimitRequest<'_>, limit: &Limit, scope_id: &str) -> LimitInfo {
    LimitInfo {
        counter: limit.counter,
        scope_id: Some(CompactString::new(scope_id)),
        key: request.key.value.map(OwnedKeyValue::new),
        max: request.max,
        cost: Some(request.cost),
    }
}

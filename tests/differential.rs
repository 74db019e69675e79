//! Differential model test of the engine: random policies (counters shared by rules and
//! `all_tools`, fixed and argument costs, every `refund` setting, identities present or
//! not) and random sequences of calls, time steps, reported outcomes and reloads, run on
//! `MemoryStore` and (feature `redis`) on `RedisStore` against a real `redis-server`.
//!
//! An independent model of the policy predicts every denial that does not depend on the
//! counts (missing identity, invalid cost, a cost above `max`, with limits naming one
//! count adding their costs) exactly, and keeps an exact log of the units each count
//! admitted and got back. After every step it checks:
//! - `peek` gives the decision `evaluate` (or `check`, for some calls) then gives;
//! - `check`, which returns the answer alone, counts and refuses exactly as `evaluate`;
//! - an `Allow` charged exactly the model's counts, and no count ever holds more than its
//!   `max` in any window (safety);
//! - a `Limit` was due: some count lacked room counting everything in the preceding
//!   W·(1 + 1/16) (liveness), and `retry_after` is at most W·(1 + 1/16);
//! - `report_outcome` gives back exactly what each limit's `refund` names, once.
//!
//! `PROPTEST_CASES` sets the number of cases (default 64 per store).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(feature = "redis")]
#[path = "common/redis_server.rs"]
mod redis_server;

use mcp_policy::{
    Answer, CounterStore, Decision, Engine, ManualClock, MemoryStore, Outcome, Policy, Refund,
    ToolCall,
};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Shared counters: (name, window seconds, scope). A name keeps its window and scope in
/// every generated policy, as validation requires.
const SHARED: [(&str, u64, &str); 3] = [
    ("c0", 10, "grant"),
    ("c1", 60, "global"),
    ("c2", 5, "grant"),
];
const TOOLS: [&str; 3] = ["t0", "t1", "t2"];
const REFUNDS: [&str; 3] = ["not_run", "failed", "never"];
const OUTCOMES: [Outcome; 4] = [
    Outcome::Succeeded,
    Outcome::Failed,
    Outcome::NotRun,
    Outcome::Unknown,
];

/// A limit as the model sees it.
#[derive(Debug, Clone)]
struct ModelLimit {
    /// (name, private, window, scope): the count's identity across reloads.
    name: String,
    private: bool,
    window_s: u64,
    scope: &'static str,
    max: u64,
    /// `None`: the cost is the `n` argument.
    cost: Option<u64>,
    refund: Refund,
}

#[derive(Debug, Clone)]
struct ModelPolicy {
    json: Value,
    /// Per tool: the rule's limits, then `all_tools`'.
    limits: HashMap<&'static str, Vec<ModelLimit>>,
}

fn refund_of(name: &str) -> Refund {
    match name {
        "failed" => Refund::Failed,
        "never" => Refund::Never,
        _ => Refund::NotRun,
    }
}

fn limit_strategy(path: String) -> impl Strategy<Value = (Value, ModelLimit)> {
    (
        prop::option::of(0..SHARED.len()),
        prop::sample::select(vec![3u64, 7, 20]),
        prop::sample::select(vec![1u64, 5, 30]),
        1u64..=6,
        prop_oneof![3 => (1u64..=3).prop_map(Some), 1 => Just(None)],
        0..REFUNDS.len(),
    )
        .prop_map(
            move |(shared, own_window, own_scope_pick, max, cost, refund)| {
                let (name, private, window_s, scope) = match shared {
                    Some(i) => (SHARED[i].0.to_string(), false, SHARED[i].1, SHARED[i].2),
                    None => {
                        let scope = if own_scope_pick == 1 {
                            "global"
                        } else {
                            "grant"
                        };
                        (path.clone(), true, own_window, scope)
                    }
                };
                let mut limit = json!({"window": window_s, "max": max, "scope": scope,
                "refund": REFUNDS[refund]});
                if !private {
                    limit["counter"] = json!(name);
                }
                match cost {
                    Some(units) => limit["cost"] = json!(units),
                    None => limit["cost"] = json!("args.n"),
                }
                let model = ModelLimit {
                    name,
                    private,
                    window_s,
                    scope,
                    max,
                    cost,
                    refund: refund_of(REFUNDS[refund]),
                };
                (limit, model)
            },
        )
}

fn policy_strategy() -> impl Strategy<Value = ModelPolicy> {
    let rule_limits = |tool: &'static str| {
        prop::collection::vec(0..3usize, 0..=2).prop_flat_map(move |slots| {
            slots
                .iter()
                .enumerate()
                .map(|(i, _)| limit_strategy(format!("tools.{tool}.limits[{i}]")))
                .collect::<Vec<_>>()
        })
    };
    let all_tools = prop::collection::vec(0..1usize, 0..=1).prop_flat_map(|slots| {
        slots
            .iter()
            .enumerate()
            .map(|(i, _)| limit_strategy(format!("all_tools.limits[{i}]")))
            .collect::<Vec<_>>()
    });
    (
        rule_limits(TOOLS[0]),
        rule_limits(TOOLS[1]),
        rule_limits(TOOLS[2]),
        all_tools,
    )
        .prop_map(|(l0, l1, l2, all)| {
            let mut tools = serde_json::Map::new();
            let mut limits = HashMap::new();
            let all_models: Vec<ModelLimit> = all.iter().map(|(_, m)| m.clone()).collect();
            for (tool, rule) in TOOLS.iter().zip([l0, l1, l2]) {
                let json_limits: Vec<Value> = rule.iter().map(|(j, _)| j.clone()).collect();
                tools.insert((*tool).into(), json!({"limits": json_limits}));
                let mut models: Vec<ModelLimit> = rule.into_iter().map(|(_, m)| m).collect();
                models.extend(all_models.iter().cloned());
                limits.insert(*tool, models);
            }
            let all_json: Vec<Value> = all.into_iter().map(|(j, _)| j).collect();
            ModelPolicy {
                json: json!({"version": "1", "default": "deny",
                    "all_tools": {"limits": all_json}, "tools": tools}),
                limits,
            }
        })
}

#[derive(Debug, Clone)]
enum Step {
    Call {
        tool: usize,
        grant: Option<u8>,
        n: Option<i64>,
        /// Decided with `check` (the answer alone, nothing to report) instead of `evaluate`.
        check: bool,
    },
    Advance {
        millis: u64,
    },
    Report {
        back: usize,
        outcome: usize,
    },
    Reload,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..TOOLS.len(), prop_oneof![5 => (0u8..2).prop_map(Some), 1 => Just(None)],
              prop_oneof![4 => (0i64..4).prop_map(Some), 1 => Just(None), 1 => Just(Some(-1))],
              prop::bool::weighted(0.3))
            .prop_map(|(tool, grant, n, check)| Step::Call { tool, grant, n, check }),
        3 => prop_oneof![0u64..500, 0u64..5_000, 0u64..70_000].prop_map(|millis| Step::Advance { millis }),
        2 => (0usize..8, 0..OUTCOMES.len()).prop_map(|(back, outcome)| Step::Report { back, outcome }),
        1 => Just(Step::Reload),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    policies: [ModelPolicy; 2],
    steps: Vec<Step>,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        policy_strategy(),
        policy_strategy(),
        prop::collection::vec(step_strategy(), 1..60),
    )
        .prop_map(|(a, b, steps)| Case {
            policies: [a, b],
            steps,
        })
}

/// (name, private, window, scope, scope id): one count.
type CountKey = (String, bool, u64, &'static str, String);

/// A merged request: one count, the summed cost, the smallest max, the least generous
/// refund setting.
#[derive(Debug, Clone)]
struct Merged {
    key: CountKey,
    window_s: u64,
    cost: u64,
    max: u64,
    refund: Refund,
}

/// What the model expects for a call before the store is asked.
enum Expect {
    Deny(&'static str),
    Counts(Vec<Merged>),
}

fn least_generous(a: Refund, b: Refund) -> Refund {
    match (a, b) {
        (Refund::Never, _) | (_, Refund::Never) => Refund::Never,
        (Refund::NotRun, _) | (_, Refund::NotRun) => Refund::NotRun,
        _ => Refund::Failed,
    }
}

fn expect(limits: &[ModelLimit], grant: Option<&str>, n: Option<i64>) -> Expect {
    let mut merged: Vec<Merged> = Vec::new();
    for limit in limits {
        let scope_id = match limit.scope {
            "global" => String::new(),
            _ => match grant {
                Some(g) => g.to_string(),
                None => return Expect::Deny("missing_identity"),
            },
        };
        let cost = match limit.cost {
            Some(units) => units,
            None => match n {
                Some(v) if v >= 0 => v as u64,
                _ => return Expect::Deny("invalid_cost"),
            },
        };
        let key = (
            limit.name.clone(),
            limit.private,
            limit.window_s,
            limit.scope,
            scope_id,
        );
        match merged.iter_mut().find(|m| m.key == key) {
            Some(m) => {
                m.cost += cost;
                m.max = m.max.min(limit.max);
                m.refund = least_generous(m.refund, limit.refund);
            }
            None => merged.push(Merged {
                key,
                window_s: limit.window_s,
                cost,
                max: limit.max,
                refund: limit.refund,
            }),
        }
    }
    if merged.iter().any(|m| m.cost > m.max) {
        return Expect::Deny("cost_exceeds_max");
    }
    Expect::Counts(merged)
}

/// Exact log of units per count: (time in ms, units).
#[derive(Default)]
struct Log(HashMap<CountKey, Vec<(u64, u64)>>);

impl Log {
    fn units_since(&self, key: &CountKey, after_ms: i128) -> u64 {
        self.0.get(key).map_or(0, |entries| {
            entries
                .iter()
                .filter(|(t, _)| i128::from(*t) > after_ms)
                .map(|(_, u)| u)
                .sum()
        })
    }
}

fn refunds(setting: Refund, outcome: Outcome) -> bool {
    match outcome {
        Outcome::NotRun => setting != Refund::Never,
        Outcome::Failed => setting == Refund::Failed,
        _ => false,
    }
}

fn run_case(case: &Case, store: Arc<dyn CounterStore>) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1_000_000));
    let load = |i: usize| Policy::from_value(&case.policies[i].json).unwrap();
    let engine = Engine::builder(load(0))
        .clock(clock.clone())
        .store(Arc::clone(&store))
        .build();
    let mut current = 0;
    let mut now_ms: u64 = 1_000_000_000;
    let mut log = Log::default();
    // Allowed decisions not yet reported: the decision and its model charges.
    let mut open: Vec<(Decision, Vec<Merged>, u64)> = Vec::new();
    for (index, step) in case.steps.iter().enumerate() {
        match step {
            Step::Advance { millis } => {
                clock.advance(Duration::from_millis(*millis));
                now_ms += millis;
            }
            Step::Reload => {
                current = 1 - current;
                engine.reload(load(current));
            }
            Step::Report { back, outcome } => {
                if open.is_empty() {
                    continue;
                }
                let at = open.len() - 1 - back % open.len();
                let (decision, charges, recorded_ms) = open.remove(at);
                let outcome = OUTCOMES[*outcome];
                let given = engine.report_outcome(&decision, outcome).unwrap();
                let due: Vec<&Merged> = charges
                    .iter()
                    .filter(|m| refunds(m.refund, outcome))
                    .collect();
                prop_assert_eq!(
                    given,
                    !due.is_empty(),
                    "step {}: report {:?}",
                    index,
                    outcome
                );
                for m in due {
                    let entries = log.0.entry(m.key.clone()).or_default();
                    if let Some(pos) = entries
                        .iter()
                        .position(|&(t, u)| t == recorded_ms && u == m.cost)
                    {
                        entries.remove(pos);
                    }
                }
            }
            Step::Call {
                tool,
                grant,
                n,
                check,
            } => {
                let tool = TOOLS[*tool];
                let grant = grant.map(|g| format!("g{g}"));
                let args = match n {
                    Some(v) => json!({"n": v}),
                    None => json!({}),
                };
                let mut call = ToolCall::new(tool).arguments(&args);
                if let Some(g) = &grant {
                    call = call.grant(g);
                }
                let peeked = engine.peek(&call);
                let decision = (!*check).then(|| engine.evaluate(&call));
                let answer = match &decision {
                    Some(decision) => decision.answer(),
                    None => engine.check(&call),
                };
                prop_assert_eq!(
                    peeked.code(),
                    answer.code(),
                    "step {}: peek and evaluate differ",
                    index
                );
                let limits = &case.policies[current].limits[tool];
                // An allowed call with charges, kept to report its outcome later.
                let mut keep = None;
                match expect(limits, grant.as_deref(), *n) {
                    Expect::Deny(code) => {
                        prop_assert_eq!(answer.code(), code, "step {}", index);
                    }
                    Expect::Counts(merged) => match answer {
                        Answer::Allow { .. } => {
                            if let Some(Decision::Allow { usage, .. }) = &decision {
                                let mut charged: Vec<(String, String, u64)> = usage
                                    .charges()
                                    .map(|(c, id, cost)| {
                                        (c.name().to_string(), id.to_string(), cost)
                                    })
                                    .collect();
                                let mut wanted: Vec<(String, String, u64)> = merged
                                    .iter()
                                    .map(|m| (m.key.0.clone(), m.key.4.clone(), m.cost))
                                    .collect();
                                charged.sort();
                                wanted.sort();
                                prop_assert_eq!(charged, wanted, "step {}: charges", index);
                            }
                            for m in &merged {
                                log.0
                                    .entry(m.key.clone())
                                    .or_default()
                                    .push((now_ms, m.cost));
                                let window_ms = i128::from(m.window_s * 1000);
                                let held = log.units_since(&m.key, i128::from(now_ms) - window_ms);
                                prop_assert!(
                                    held <= m.max,
                                    "step {}: {:?} holds {} in one window, max {}",
                                    index,
                                    m.key,
                                    held,
                                    m.max
                                );
                            }
                            if !merged.is_empty() {
                                keep = decision.map(|decision| (decision, merged));
                            }
                        }
                        Answer::Limit { retry_after, .. } => {
                            let slack = |m: &Merged| i128::from(m.window_s * 1000 * 17 / 16);
                            let lacking = merged.iter().any(|m| {
                                log.units_since(&m.key, i128::from(now_ms) - slack(m)) + m.cost
                                    > m.max
                            });
                            prop_assert!(
                                lacking,
                                "step {}: refused with room: {:?}",
                                index,
                                answer
                            );
                            let longest = merged
                                .iter()
                                .map(|m| m.window_s * 1000 * 17 / 16)
                                .max()
                                .unwrap_or(0);
                            prop_assert!(
                                retry_after.as_millis() <= u128::from(longest) + 1,
                                "step {}: retry_after {:?}",
                                index,
                                retry_after
                            );
                        }
                        other => {
                            return Err(TestCaseError::fail(format!(
                                "step {index}: unexpected {other:?}"
                            )));
                        }
                    },
                }
                if let Some((decision, merged)) = keep {
                    open.push((decision, merged, now_ms));
                }
            }
        }
    }
    Ok(())
}

fn cases_to_run() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

#[test]
fn the_engine_on_memory_store_agrees_with_the_model() {
    let mut runner = TestRunner::new(ProptestConfig::with_cases(cases_to_run()));
    runner
        .run(&cases(), |case| {
            run_case(&case, Arc::new(MemoryStore::new()))
        })
        .unwrap();
}

#[cfg(feature = "redis")]
#[test]
#[ignore = "needs redis-server"]
fn the_engine_on_redis_store_agrees_with_the_model() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let server = redis_server::RedisServer::start();
    let next = AtomicU64::new(0);
    let mut runner = TestRunner::new(ProptestConfig::with_cases(cases_to_run()));
    runner
        .run(&cases(), |case| {
            // A fresh prefix per case: no count of one case is seen by another.
            let prefix = format!("diff{}:", next.fetch_add(1, Ordering::Relaxed));
            run_case(&case, Arc::new(server.store().prefix(prefix)))
        })
        .unwrap();
}

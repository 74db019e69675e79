//! The relays of the sessions in use (2025 revisions' `Mcp-Session-Id`), so that one
//! session's requests get ids that never collide and their answers are matched to them
//! on any stream: the POST's own, the `GET` stream, or a stream resumed with
//! `Last-Event-ID`.

use super::Identity;
use crate::mcp::{Output, Relay};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most sessions kept; past it the one unused longest is forgotten.
const MAX_SESSIONS: usize = 100_000;

/// Session id and the identity using it: another identity naming the same id gets a
/// relay of its own, never this one's requests or held calls.
type Key = (String, Identity);

pub(crate) struct Sessions {
    relays: HashMap<Key, Session>,
    /// Sessions the server created, with whether their `initialize` declared
    /// elicitation: their relays, made on first use, ask approvals of the client.
    started: HashMap<String, Started>,
    idle: Duration,
    last_sweep: Instant,
}

struct Started {
    elicits: crate::mcp::ClientElicitation,
    used: Instant,
}

struct Session {
    relay: Arc<Relay>,
    used: Instant,
}

impl Sessions {
    pub(crate) fn new(idle: Duration) -> Sessions {
        Sessions {
            relays: HashMap::new(),
            started: HashMap::new(),
            idle,
            last_sweep: Instant::now(),
        }
    }

    pub(crate) fn set_idle(&mut self, idle: Duration) {
        self.idle = idle;
    }

    /// The session's relay, made by `make` when the session is new here (told whether
    /// the session's `initialize` declared elicitation). Also forgets sessions idle too
    /// long; what their relays still held is returned for the audit log.
    pub(crate) fn relay(
        &mut self,
        id: &str,
        who: &Identity,
        make: impl FnOnce(crate::mcp::ClientElicitation) -> Relay,
    ) -> (Arc<Relay>, Vec<Output>) {
        let now = Instant::now();
        let swept = self.sweep(now);
        let elicits = self
            .started
            .get_mut(id)
            .map(|started| {
                started.used = now;
                started.elicits
            })
            .unwrap_or_default();
        let key = (id.to_owned(), who.clone());
        if let Some(session) = self.relays.get_mut(&key) {
            session.used = now;
            return (Arc::clone(&session.relay), swept);
        }
        let relay = Arc::new(make(elicits));
        bounded_insert(
            &mut self.relays,
            key,
            Session {
                relay: Arc::clone(&relay),
                used: now,
            },
            |s| s.used,
        );
        (relay, swept)
    }

    /// A session the server just created in answer to an `initialize` that did or did
    /// not declare elicitation.
    pub(crate) fn start(&mut self, id: &str, elicits: crate::mcp::ClientElicitation) {
        let started = Started {
            elicits,
            used: Instant::now(),
        };
        bounded_insert(&mut self.started, id.to_owned(), started, |s| s.used);
    }

    /// The session ended (`DELETE`).
    pub(crate) fn end(&mut self, id: &str, who: &Identity) {
        self.relays.remove(&(id.to_owned(), who.clone()));
        self.started.remove(id);
    }

    /// Every so often: forgets idle sessions and answers requests their relays waited
    /// on too long (their HTTP exchanges ended already; the records remain).
    fn sweep(&mut self, now: Instant) -> Vec<Output> {
        if now.saturating_duration_since(self.last_sweep) < self.idle / 8 {
            return Vec::new();
        }
        self.last_sweep = now;
        let idle = self.idle;
        self.relays
            .retain(|_, session| now.saturating_duration_since(session.used) < idle);
        self.started
            .retain(|_, started| now.saturating_duration_since(started.used) < idle);
        self.relays
            .values()
            .map(|session| session.relay.expire())
            .filter(|out| !out.audit.is_empty())
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.relays.len()
    }
}

/// Inserts into a map of at most `MAX_SESSIONS` entries, forgetting the one unused
/// longest when full.
fn bounded_insert<K, V>(map: &mut HashMap<K, V>, key: K, value: V, used: impl Fn(&V) -> Instant)
where
    K: std::hash::Hash + Eq + Clone,
{
    if map.len() >= MAX_SESSIONS && !map.contains_key(&key) {
        let oldest = map
            .iter()
            .min_by_key(|(_, v)| used(v))
            .map(|(k, _)| k.clone());
        if let Some(oldest) = oldest {
            map.remove(&oldest);
        }
    }
    map.insert(key, value);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Engine, Policy};

    fn relay(_elicits: crate::mcp::ClientElicitation) -> Relay {
        let policy: Policy = r#"{"version": "1"}"#.parse().unwrap();
        Relay::builder(Engine::new(policy)).build()
    }

    #[test]
    fn sessions_are_per_identity_and_forgotten_when_ended_or_idle() {
        let mut sessions = Sessions::new(Duration::from_secs(3600));
        let alice = Identity {
            grant: Some("alice".into()),
            ..Identity::default()
        };
        let mallory = Identity {
            grant: Some("mallory".into()),
            ..Identity::default()
        };
        let (a, _) = sessions.relay("s1", &alice, relay);
        let (again, _) = sessions.relay("s1", &alice, relay);
        assert!(Arc::ptr_eq(&a, &again));
        let (m, _) = sessions.relay("s1", &mallory, relay);
        assert!(
            !Arc::ptr_eq(&a, &m),
            "another identity never shares a session's relay"
        );
        sessions.end("s1", &alice);
        assert_eq!(sessions.len(), 1);
        sessions.set_idle(Duration::ZERO);
        let _ = sessions.relay("s2", &alice, relay);
        assert_eq!(sessions.len(), 1, "idle sessions were swept");
    }
}

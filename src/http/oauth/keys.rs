//! The issuer's signing keys: fetched through a [`JwksSource`], cached for the document's
//! max-age, fetched again (at most once per 30 s) when a token names a key not in the
//! cache. Keys stay in use until a fetch succeeds; with none yet, every token is refused.

use crate::clock::Timestamp;
use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A JWKS as fetched: its body, and how long it may be kept (`Cache-Control: max-age`).
#[derive(Debug, Clone)]
pub struct JwksDocument {
    /// The JSON document, `{"keys": [...]}`.
    pub body: String,
    /// How long to keep it before fetching again; 300 s when `None`.
    pub max_age: Option<Duration>,
}

/// Where the issuer's keys come from: its `jwks_uri`, fetched with the HTTP client of your
/// choice (and, when you like, the issuer's metadata before it).
///
/// # Contract
/// `fetch` is called once at start ([`Verifier::load_keys`](super::Verifier::load_keys)),
/// when the last document's max-age has passed, and when a token names a key id the cache
/// lacks, at most once per 30 s and never twice at once. An error keeps the keys in use.
pub trait JwksSource: Send + Sync + 'static {
    /// Fetches the issuer's current JWKS.
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<JwksDocument, String>> + Send + '_>>;
}

/// How long a JWKS without `max-age` is kept.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// The least time between two fetches that were not asked for by age.
const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// What a key verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    Ed25519,
}

/// One usable signing key of the issuer.
pub(crate) struct Key {
    kid: Option<String>,
    /// The JWK's own `alg`, which a token's must then equal.
    alg: Option<String>,
    kind: KeyKind,
    pub(crate) decoding: DecodingKey,
}

impl Key {
    fn of(jwk: &Jwk) -> Option<Key> {
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyKind::Rsa,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                KeyKind::EcP256
            }
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                KeyKind::Ed25519
            }
            // HMAC secrets and other curves never verify a token here.
            _ => return None,
        };
        let alg = match &jwk.common.key_algorithm {
            Some(alg) => Some(serde_json::to_value(alg).ok()?.as_str()?.to_owned()),
            None => None,
        };
        Some(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            kind,
            decoding: DecodingKey::from_jwk(jwk).ok()?,
        })
    }

    /// Whether this key may verify a token signed with `alg` (`alg` is one of the four
    /// the verifier accepts).
    pub(crate) fn fits(&self, alg: Algorithm, name: &str) -> bool {
        let kind = match alg {
            Algorithm::RS256 | Algorithm::PS256 => KeyKind::Rsa,
            Algorithm::ES256 => KeyKind::EcP256,
            Algorithm::EdDSA => KeyKind::Ed25519,
            _ => return false,
        };
        kind == self.kind && self.alg.as_deref().map_or(true, |own| own == name)
    }
}

/// The keys of one fetched JWKS.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// The usable keys of a JWKS document; keys of other kinds (encryption keys, HMAC
    /// secrets, curves other than P-256 and Ed25519) are left out, not an error.
    pub(crate) fn parse(body: &str) -> Result<KeySet, String> {
        let document: Value =
            serde_json::from_str(body).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
        let keys = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("the JWKS has no \"keys\" array")?;
        let usable = keys
            .iter()
            .filter(|key| {
                key.get("use")
                    .and_then(Value::as_str)
                    .map_or(true, |u| u == "sig")
            })
            .filter_map(|key| serde_json::from_value::<Jwk>(key.clone()).ok())
            .filter_map(|jwk| Key::of(&jwk))
            .collect();
        Ok(KeySet { keys: usable })
    }

    /// The keys that may have signed a token naming `kid` (any, without one) with `alg`.
    pub(crate) fn candidates<'k>(
        &'k self,
        kid: Option<&'k str>,
        alg: Algorithm,
        name: &'k str,
    ) -> impl Iterator<Item = &'k Key> + 'k {
        self.keys
            .iter()
            .filter(move |key| kid.is_none() || key.kid.as_deref() == kid)
            .filter(move |key| key.fits(alg, name))
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

/// Why a fetch is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// At start: always.
    Start,
    /// A token names a key the cache lacks: at most once per 30 s.
    UnknownKey,
    /// The document's max-age has passed.
    Stale,
}

#[derive(Default)]
struct FetchState {
    in_flight: bool,
    /// The last fetch of any cause: a stale cache is fetched again at most this often.
    last_attempt: Option<Timestamp>,
    /// The last fetch an unknown key asked for: at most one per 30 s.
    last_unknown: Option<Timestamp>,
    fresh_until: Option<Timestamp>,
}

/// The cache of the issuer's keys.
pub(crate) struct KeyCache {
    source: Box<dyn JwksSource>,
    keys: ArcSwap<KeySet>,
    state: Mutex<FetchState>,
}

/// Clears `in_flight` however the fetch ends, a dropped request included.
struct InFlight<'c>(&'c Mutex<FetchState>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.lock() {
            state.in_flight = false;
        }
    }
}

impl KeyCache {
    pub(crate) fn new(source: impl JwksSource) -> KeyCache {
        KeyCache {
            source: Box::new(source),
            keys: ArcSwap::from_pointee(KeySet::default()),
            state: Mutex::new(FetchState::default()),
        }
    }

    pub(crate) fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Whether the cached document's max-age has passed (or none was fetched yet).
    pub(crate) fn is_stale(&self, now: Timestamp) -> bool {
        self.state.lock().map_or(true, |state| {
            state.fresh_until.map_or(true, |until| until <= now)
        })
    }

    /// Fetches the keys again if `why` allows it now; `Ok(true)` when new keys are in use,
    /// `Ok(false)` when no fetch was allowed, `Err` with why a fetch failed.
    pub(crate) async fn refresh(&self, now: Timestamp, why: Why) -> Result<bool, String> {
        {
            let Ok(mut state) = self.state.lock() else {
                return Ok(false);
            };
            let recent = |last: Option<Timestamp>| {
                last.is_some_and(|last| now < last.saturating_add(REFETCH_INTERVAL))
            };
            let allowed = match why {
                Why::Start => true,
                Why::UnknownKey => !recent(state.last_unknown),
                Why::Stale => !recent(state.last_attempt),
            };
            if state.in_flight || !allowed {
                return Ok(false);
            }
            state.in_flight = true;
            state.last_attempt = Some(now);
            if why == Why::UnknownKey {
                state.last_unknown = Some(now);
            }
        }
        let _in_flight = InFlight(&self.state);
        let document = self.source.fetch().await?;
        let keys = KeySet::parse(&document.body)?;
        self.keys.store(Arc::new(keys));
        if let Ok(mut state) = self.state.lock() {
            let max_age = document.max_age.unwrap_or(DEFAULT_MAX_AGE);
            state.fresh_until = Some(now.saturating_add(max_age));
        }
        Ok(true)
    }
}

//! What a limit says (`LimitInfo`), and what an allowed call recorded (`Usage`), so a
//! refund can give it back.

use super::*;

/// The limit a decision is about: its counter, whose count it is, and its numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitInfo {
    pub(crate) counter: &'static Counter,
    pub(crate) scope_id: Option<CompactString>,
    pub(crate) key: Option<OwnedKeyValue>,
    pub(crate) max: u64,
    pub(crate) cost: Option<u64>,
}

impl LimitInfo {
    /// The counter: name, window, scope.
    pub fn counter(&self) -> &Counter {
        self.counter
    }

    /// The id the count is kept for (`""` for a global counter); `None` when the call
    /// lacked it.
    pub fn scope_id(&self) -> Option<&str> {
        self.scope_id.as_deref()
    }

    /// The call's value of the limit's `key` argument, when the limit has one and the
    /// call gave a usable value.
    pub fn key(&self) -> Option<KeyValue<'_>> {
        self.key.as_ref().map(OwnedKeyValue::borrow)
    }

    /// Units the limit admits per window.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        self.counter.window()
    }

    /// Units the call would have used, when known.
    pub fn cost(&self) -> Option<u64> {
        self.cost
    }
}

impl fmt::Display for LimitInfo {
    /// `counter "x" admits 30 per minute per grant "g1"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "counter \"{}\" admits {} per {}",
            self.counter.name(),
            self.max,
            WindowText(self.counter.window_secs())
        )?;
        match (self.counter.scope(), &self.scope_id) {
            (Scope::Global, _) => f.write_str(" in total")?,
            (scope, Some(id)) => write!(f, " per {scope} \"{id}\"")?,
            (scope, None) => write!(f, " per {scope}")?,
        }
        // The key's value is an argument value: it is in `limit.key` of audit records,
        // never in text (reasons reach logs and agents).
        match self.counter.key_path() {
            Some(path) => write!(f, " and value of {path}"),
            None => Ok(()),
        }
    }
}

impl Serialize for LimitInfo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("counter", self.counter.name())?;
        map.serialize_entry("scope", &self.counter.scope())?;
        map.serialize_entry("scope_id", &self.scope_id.as_deref())?;
        map.serialize_entry("key", &self.key().map(|k| k.to_json()))?;
        map.serialize_entry("max", &self.max)?;
        map.serialize_entry("window_s", &self.counter.window_secs())?;
        if let Some(cost) = self.cost {
            map.serialize_entry("cost", &cost)?;
        }
        map.end()
    }
}

/// What an allowed call recorded in its counters, so [`Engine::refund`] can give it back.
///
/// # Clones share one refund
/// A clone of a `Usage` (or of the `Decision` holding it) is the same ticket: whichever
/// copy reports the call's outcome, its units are given back at most once among all of
/// them. Evaluating and refunding allocate nothing; the first clone of a usage with
/// charges moves its refund progress to the heap, to share it. A clone made while a
/// refund of the same usage is under way on another thread waits for that refund.
///
/// [`Engine::refund`]: crate::Engine::refund
#[derive(Debug)]
pub struct Usage {
    pub(crate) at: Timestamp,
    pub(crate) charges: Charges,
    /// The engine that recorded it: only that engine gives it back.
    pub(crate) engine: u64,
    /// The refund's progress while no clone exists; `SHARED` once it moved to `shared`.
    own: RefundProgress,
    /// The refund's progress shared with clones, once there are any.
    shared: OnceLock<Arc<RefundProgress>>,
}

/// How far a usage's refund got.
#[derive(Debug, Default)]
pub(crate) struct RefundProgress {
    state: AtomicU8,
    /// Charges given back so far, in order; a retried refund resumes here. (32 bits: a
    /// call has a handful of charges, and every decision carries this.)
    released: AtomicU32,
}

/// Nobody is refunding; a refund may begin (again, after a store failure).
const IDLE: u8 = 0;
/// A refund owns the give-back.
const REFUNDING: u8 = 1;
/// Given back: nothing more to do.
const DONE: u8 = 2;
/// (`own` only) a clone is moving the progress to `shared`.
const SHARING: u8 = 3;
/// (`own` only) the progress lives in `shared`.
const SHARED: u8 = 4;

impl RefundProgress {
    fn at(state: u8, released: u32) -> RefundProgress {
        RefundProgress {
            state: AtomicU8::new(state),
            released: AtomicU32::new(released),
        }
    }

    /// Charges given back so far.
    pub(crate) fn released(&self) -> usize {
        usize::try_from(self.released.load(Ordering::Acquire)).unwrap_or(usize::MAX)
    }

    /// One more charge given back.
    pub(crate) fn advance(&self) {
        self.released.fetch_add(1, Ordering::AcqRel);
    }

    /// Ends the refund this caller began: `complete`, or stopped by a store failure (then
    /// it can be retried).
    pub(crate) fn end(&self, complete: bool) {
        let state = if complete { DONE } else { IDLE };
        self.state.store(state, Ordering::Release);
    }

    fn try_begin(&self) -> bool {
        self.state
            .compare_exchange(IDLE, REFUNDING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl Usage {
    pub(crate) fn none() -> Usage {
        Usage::recorded(Timestamp::EPOCH, Charges::default(), 0)
    }

    pub(crate) fn recorded(at: Timestamp, charges: Charges, engine: u64) -> Usage {
        Usage {
            at,
            charges,
            engine,
            own: RefundProgress::default(),
            shared: OnceLock::new(),
        }
    }

    /// Begins the refund, if nobody began it yet (or the last try failed): the progress
    /// to advance and [`end`](RefundProgress::end). `None`: refunded, or being refunded.
    pub(crate) fn begin_refund(&self) -> Option<&RefundProgress> {
        loop {
            match self.own.state.load(Ordering::Acquire) {
                SHARED => {
                    let shared = self.shared.get()?;
                    return shared.try_begin().then_some(&**shared);
                }
                SHARING => std::thread::yield_now(),
                IDLE => {
                    if self.own.try_begin() {
                        return Some(&self.own);
                    }
                }
                _ => return None,
            }
        }
    }

    /// When the call was recorded.
    pub fn recorded_at(&self) -> Timestamp {
        self.at
    }

    /// Each counter charged, the id it was charged for, and how many units.
    pub fn charges(&self) -> impl Iterator<Item = (&Counter, &str, u64)> {
        self.charges
            .iter()
            .map(|c| (c.counter, &*c.scope_id, c.cost))
    }

    /// The `key` value each charge was counted under (`None` for limits without a key),
    /// in the order of [`charges`](Self::charges).
    pub fn charged_keys(&self) -> impl Iterator<Item = Option<KeyValue<'_>>> {
        self.charges
            .iter()
            .map(|c| c.key.as_ref().map(OwnedKeyValue::borrow))
    }

    /// Whether it was refunded already, through this copy or any clone of it.
    pub fn is_refunded(&self) -> bool {
        let progress = match self.own.state.load(Ordering::Acquire) {
            SHARED | SHARING => match self.shared.get() {
                Some(shared) => &**shared,
                None => return false,
            },
            _ => &self.own,
        };
        progress.state.load(Ordering::Acquire) == DONE
    }

    /// The progress every clone shares, moved out of `own` on the first clone.
    fn share(&self) -> Arc<RefundProgress> {
        loop {
            let state = self.own.state.load(Ordering::Acquire);
            match state {
                SHARED => {
                    if let Some(shared) = self.shared.get() {
                        return Arc::clone(shared);
                    }
                }
                IDLE | DONE => {
                    let moving = self.own.state.compare_exchange(
                        state,
                        SHARING,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    if moving.is_ok() {
                        let released = self.own.released.load(Ordering::Acquire);
                        let shared = Arc::clone(
                            self.shared
                                .get_or_init(|| Arc::new(RefundProgress::at(state, released))),
                        );
                        self.own.state.store(SHARED, Ordering::Release);
                        return shared;
                    }
                }
                // A refund (or another clone) is under way here: wait for it.
                _ => std::thread::yield_now(),
            }
        }
    }
}

impl Clone for Usage {
    /// The same ticket: the clone and the original share one refund.
    fn clone(&self) -> Usage {
        let (own, shared) = match self.charges.is_empty() {
            // Nothing to give back: nothing to share.
            true => (RefundProgress::default(), OnceLock::new()),
            false => (RefundProgress::at(SHARED, 0), OnceLock::from(self.share())),
        };
        Usage {
            at: self.at,
            charges: self.charges.clone(),
            engine: self.engine,
            own,
            shared,
        }
    }
}

impl PartialEq for Usage {
    /// Usages are equal when they record the same charges at the same time for the same
    /// engine, refunded or not.
    fn eq(&self, other: &Usage) -> bool {
        self.at == other.at
            && self.engine == other.engine
            && self.charges.iter().eq(other.charges.iter())
    }
}

impl Serialize for Usage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for charge in &self.charges {
            seq.serialize_element(&serde_json::json!({
                "counter": charge.counter.name(), "scope_id": &*charge.scope_id,
                "key": charge.key.as_ref().map(|k| k.borrow().to_json()), "cost": charge.cost,
            }))?;
        }
        seq.end()
    }
}

/// One counter charge.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Charge {
    pub(crate) counter: &'static Counter,
    pub(crate) scope_id: CompactString,
    pub(crate) key: Option<OwnedKeyValue>,
    pub(crate) cost: u64,
    /// The charging limit's `refund` setting: which outcomes give the units back.
    pub(crate) refund: Refund,
}

/// The charges of one call: two inline (a rule's limit and `all_tools`' are the common
/// case), more on the heap. Kept small because every `Decision` carries one.
pub(crate) type Charges = smallvec::SmallVec<[Charge; 2]>;

/// A window's length for people: `minute`, `3 hours`, `90 s`.
pub(super) struct WindowText(u64);

impl fmt::Display for WindowText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("second"),
            60 => f.write_str("minute"),
            3600 => f.write_str("hour"),
            86_400 => f.write_str("day"),
            secs if secs % 86_400 == 0 => write!(f, "{} days", secs / 86_400),
            secs if secs % 3600 == 0 => write!(f, "{} hours", secs / 3600),
            secs if secs % 60 == 0 => write!(f, "{} minutes", secs / 60),
            secs => write!(f, "{secs} s"),
        }
    }
}

/// A wait rounded up to a tenth of a second, so an agent never retries too early.
pub(crate) struct Seconds(pub(crate) Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = self.0.as_nanos().div_ceil(100_000_000);
        write!(f, "{}.{} s", tenths / 10, tenths % 10)
    }
}

//! Typed decisions from the JSON of LAPI's `/v1/decisions/stream`.
//!
//! The answer is `{"new": [...] | null, "deleted": [...] | null}` and can be hundreds of MB. It
//! is parsed in one pass as it is read ([`StreamBatch::from_reader`]): each list item is turned
//! into a compact [`Decision`] as soon as it is read, so neither the answer nor a
//! `serde_json::Value` tree of it is ever held whole.
//!
//! One bad item (an unparsable value, a scope we don't enforce, a bad duration, a field of the
//! wrong JSON type) is skipped and reported in [`StreamBatch::skipped`]; it never costs the rest
//! of the batch. Only a document that is not the shape LAPI sends (truncated, garbage, a list
//! that is not a list) fails as a whole, with [`DecisionsError::Json`].

use std::{
    collections::{HashMap, VecDeque},
    fmt::{self, Write as _},
    io::Read,
    net::{AddrParseError, IpAddr},
    time::{Duration, SystemTime},
};

use blocker_common::origin;
use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One ban (or captcha, ...) on an address or a range, as LAPI streams it. Small and without
/// strings: a startup answer holds up to millions of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// LAPI's decision id: a deletion names the decision it ends by this id.
    pub id: i64,
    /// The banned network: a /32 or /128 for a single address, never host bits set, and an
    /// IPv4-mapped IPv6 value turned into its IPv4 network.
    pub net: IpNet,
    /// Who made it, as its counter slot (`blocker_common::origin`): `crowdsec`, `cscli`,
    /// `CAPI`, `lists:NAME`... `origin::OTHER` for any other name, or none.
    pub origin: u8,
    /// Its `type` (`ban`, `captcha`...), as an index into [`StreamBatch::kinds`].
    pub kind: u32,
    /// When the decision ends: the parser's clock when it read the item, plus its `duration`.
    /// In the past for an already expired decision (LAPI sends negative durations).
    pub until: SystemTime,
}

/// Which list of the stream answer an item came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    New,
    Deleted,
}

impl fmt::Display for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::New => "new",
            Self::Deleted => "deleted",
        })
    }
}

/// A list item that was not turned into a [`Decision`].
///
/// `Display` prints the whole cause, e.g.
/// `new[3] (id 42): decision for "1.2.3.999" has an unparsable value: invalid IP address syntax`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub list: List,
    /// Position in its list.
    pub index: usize,
    /// The item's id, when it had a usable one.
    pub id: Option<i64>,
    pub reason: SkipReason,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.list, self.index)?;
        if let Some(id) = self.id {
            write!(f, " (id {id})")?;
        }
        write!(f, ": {}", self.reason)?;
        let mut source = std::error::Error::source(&self.reason);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Why an item was skipped. Each variant names the culprit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("item is a JSON {found}, not an object")]
    NotAnObject { found: &'static str },
    #[error("field `{field}` is missing")]
    MissingField { field: &'static str },
    #[error("field `{field}` is a JSON {found}, expected {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("decision for {value:?} has scope {scope:?}: only Ip and Range are enforced")]
    UnknownScope { scope: String, value: String },
    #[error("decision for {value:?} (scope {scope:?}) has an unparsable value")]
    BadValue {
        value: String,
        scope: String,
        #[source]
        source: NetParseError,
    },
    #[error("decision for {value:?} has an unusable duration")]
    BadDuration {
        value: String,
        #[source]
        source: DurationError,
    },
    #[error("decision for {value:?} ends out of the clock's range (duration {duration:?})")]
    UntilOutOfRange { value: String, duration: String },
    #[error("decision for {value:?} is simulated")]
    Simulated { value: String },
}

/// Why a decision's `value` is not an address or a network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetParseError {
    #[error("not an IP address")]
    Addr {
        #[source]
        source: AddrParseError,
    },
    #[error("not an IP network (ADDRESS/LENGTH)")]
    Net {
        #[source]
        source: ipnet::AddrParseError,
    },
}

/// The answer as a whole is unusable.
#[derive(Debug, thiserror::Error)]
pub enum DecisionsError {
    #[error(
        "malformed decisions stream answer: expected {{\"new\": [...] | null, \"deleted\": [...] | null}}"
    )]
    Json {
        #[source]
        source: serde_json::Error,
    },
}

/// Unusable items kept with their reasons: the rest are only counted, since a junk item can
/// be two bytes of JSON (`0,`) and its reason a hundred in memory.
pub const SKIPPED_KEPT: usize = 16;

/// The decoded answer of one `/v1/decisions/stream` pull.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamBatch {
    /// Decisions to enforce.
    pub new: Vec<Decision>,
    /// Decisions to lift (LAPI also lists expired ones here).
    pub deleted: Vec<Decision>,
    /// The first [`SKIPPED_KEPT`] items of either list that were not usable.
    pub skipped: Vec<Skipped>,
    /// How many items were not usable, all told.
    pub skipped_count: usize,
    /// The decision types of the batch, each once, as LAPI wrote them: [`Decision::kind`]
    /// indexes this.
    pub kinds: Vec<String>,
}

impl StreamBatch {
    /// Parses a stream answer as `reader` yields it (read it through a buffer: the parser
    /// reads a byte at a time). Each item's `duration` is counted from `now()` as the item is
    /// read, which is never before LAPI counted it down, even when LAPI writes a long answer
    /// page by page: a ban never ends early. A `startup` answer's `deleted` list (decisions
    /// that have ended, every one LAPI still keeps) is skipped unread: what it names has ended
    /// here too.
    pub fn from_reader(
        reader: impl Read,
        startup: bool,
        now: impl Fn() -> SystemTime,
    ) -> Result<Self, DecisionsError> {
        let mut de = serde_json::Deserializer::from_reader(reader);
        let batch = BatchSeed { now: &now, startup }
            .deserialize(&mut de)
            .and_then(|batch| de.end().map(|()| batch))
            .map_err(|source| DecisionsError::Json { source })?;
        Ok(batch)
    }

    /// The `type` of `decision`, one of this batch's.
    #[must_use]
    pub fn kind(&self, decision: &Decision) -> &str {
        &self.kinds[decision.kind as usize]
    }
}

/// Hands out `decisions` in order and gives their memory back as it goes: a startup answer
/// holds up to millions, and keeping them all until the last one is indexed would add their
/// size to the daemon's peak.
pub fn consume(decisions: Vec<Decision>) -> impl Iterator<Item = Decision> {
    let mut left = VecDeque::from(decisions);
    std::iter::from_fn(move || {
        let next = left.pop_front()?;
        // Halving the buffer whenever half of it is spent moves each decision once on average.
        if left.len() < left.capacity() / 2 {
            left.shrink_to_fit();
        }
        Some(next)
    })
}

/// Parses a decision `value` into a network, whatever the scope says: a bare address is a
/// /32 or /128, `ADDRESS/LENGTH` is a network with its host bits cleared, and an IPv4-mapped
/// IPv6 address or network (`::ffff:1.2.3.4`, `::ffff:1.2.3.0/120`) becomes the IPv4 one.
pub fn parse_net(value: &str) -> Result<IpNet, NetParseError> {
    let net = if value.contains('/') {
        value
            .parse::<IpNet>()
            .map_err(|source| NetParseError::Net { source })?
    } else {
        IpNet::from(
            value
                .parse::<IpAddr>()
                .map_err(|source| NetParseError::Addr { source })?,
        )
    };
    Ok(normalize_net(net))
}

/// Clears host bits and maps `::ffff:a.b.c.d/96+n` to `a.b.c.d/n`. An IPv4 packet and an
/// IPv4-mapped source are judged by the same IPv4 maps, so a mapped ban must land there.
#[must_use]
pub fn normalize_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Ok(v4net) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(v4net.trunc());
    }
    net.trunc()
}

// ---------------------------------------------------------------------------------------------
// Go durations

/// A Go `time.Duration`, which may be negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoDuration {
    pub negative: bool,
    pub magnitude: Duration,
}

impl GoDuration {
    /// `time` moved by this duration, or `None` past the clock's range.
    #[must_use]
    pub fn after(self, time: SystemTime) -> Option<SystemTime> {
        if self.negative {
            time.checked_sub(self.magnitude)
        } else {
            time.checked_add(self.magnitude)
        }
    }

    /// The duration if it is not negative (`-0s` counts as zero).
    #[must_use]
    pub fn to_unsigned(self) -> Option<Duration> {
        (!self.negative || self.magnitude.is_zero()).then_some(self.magnitude)
    }
}

/// A string that Go's `time.ParseDuration` would refuse. Each variant names the string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {input:?}: empty")]
    Empty { input: String },
    #[error("invalid duration {input:?}: expected a number at byte {at}")]
    ExpectedNumber { input: String, at: usize },
    #[error("invalid duration {input:?}: missing unit (h, m, s, ms, us, ns) after a number")]
    MissingUnit { input: String },
    #[error("invalid duration {input:?}: unknown unit {unit:?} (expected h, m, s, ms, us, ns)")]
    UnknownUnit { input: String, unit: String },
    #[error("invalid duration {input:?}: out of range (about 292 years at most)")]
    Overflow { input: String },
}

const NANOS_PER_SEC: u128 = 1_000_000_000;
/// Go keeps durations in an `i64` of nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a duration the way Go's `time.ParseDuration` does: an optional sign, then one or more
/// decimal numbers (fractions allowed) each followed by a unit among `h`, `m`, `s`, `ms`, `us`
/// (`µs`, `μs`) and `ns`, e.g. `4h`, `3h59m58.123456789s`, `-2.5s`, `1h0m0.5s`. A lone `0` is
/// allowed too. Precision is one nanosecond; further fraction digits are dropped.
pub fn parse_go_duration(input: &str) -> Result<GoDuration, DurationError> {
    let owned = || input.to_owned();
    let (negative, body) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if body == "0" {
        return Ok(GoDuration {
            negative,
            magnitude: Duration::ZERO,
        });
    }
    if body.is_empty() {
        return Err(DurationError::Empty { input: owned() });
    }

    let bytes = body.as_bytes();
    let offset = input.len() - body.len();
    let mut pos = 0;
    let mut total: u128 = 0;
    while pos < bytes.len() {
        let start = pos;
        // Integer part.
        let mut whole: u128 = 0;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            whole = whole * 10 + u128::from(bytes[pos] - b'0');
            if whole > MAX_NANOS {
                return Err(DurationError::Overflow { input: owned() });
            }
            pos += 1;
        }
        let has_whole = pos > start;
        // Fraction: at most 18 digits are kept, which is more than a nanosecond of an hour.
        let (mut frac, mut scale, mut has_frac) = (0_u128, 1_u128, false);
        if pos < bytes.len() && bytes[pos] == b'.' {
            pos += 1;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                if scale < 1_000_000_000_000_000_000 {
                    frac = frac * 10 + u128::from(bytes[pos] - b'0');
                    scale *= 10;
                }
                has_frac = true;
                pos += 1;
            }
        }
        if !has_whole && !has_frac {
            return Err(DurationError::ExpectedNumber {
                input: owned(),
                at: offset + start,
            });
        }
        // Unit: everything up to the next number. Multi-byte characters (µ) never contain an
        // ASCII digit or '.', so the slice stays on character boundaries.
        let unit_start = pos;
        while pos < bytes.len() && bytes[pos] != b'.' && !bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        let unit = &body[unit_start..pos];
        if unit.is_empty() {
            return Err(DurationError::MissingUnit { input: owned() });
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3_600 * NANOS_PER_SEC,
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: owned(),
                    unit: unit.to_owned(),
                });
            }
        };
        total += whole * unit_nanos + frac * unit_nanos / scale;
        // Go allows one more nanosecond below zero than above.
        if total > MAX_NANOS + u128::from(negative) {
            return Err(DurationError::Overflow { input: owned() });
        }
    }

    let secs = u64::try_from(total / NANOS_PER_SEC)
        .map_err(|_| DurationError::Overflow { input: owned() })?;
    // A remainder of 1e9 fits in u32 (clippy sees it too).
    let nanos = (total % NANOS_PER_SEC) as u32;
    Ok(GoDuration {
        negative,
        magnitude: Duration::new(secs, nanos),
    })
}

/// Writes a duration so that both Go and [`parse_go_duration`] read it back: `0s`, `500ms`,
/// `10s`, `15m`, `4h`, `1m30s`, `1h0.5s`.
#[must_use]
pub fn format_go_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let nanos = duration.subsec_nanos();
    if secs == 0 {
        return match nanos {
            0 => "0s".to_owned(),
            n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{}us", n / 1_000),
            n => format!("{n}ns"),
        };
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let (hours, minutes, seconds) = (secs / 3_600, secs % 3_600 / 60, secs % 60);
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        let _ = write!(out, "{seconds}.{}s", fraction.trim_end_matches('0'));
    } else if seconds > 0 {
        let _ = write!(out, "{seconds}s");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Streaming deserialization

/// Top level: an object with `new` and `deleted`, both required (each may be `null`).
struct BatchSeed<'c> {
    now: &'c dyn Fn() -> SystemTime,
    startup: bool,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum TopField {
    New,
    Deleted,
    #[serde(other)]
    Other,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = StreamBatch;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<StreamBatch, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = StreamBatch;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with `new` and `deleted` lists")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StreamBatch, A::Error> {
        let mut batch = StreamBatch::default();
        let mut kinds = Kinds::default();
        let (mut seen_new, mut seen_deleted) = (false, false);
        while let Some(field) = map.next_key::<TopField>()? {
            let (list, seen, out) = match field {
                TopField::New => (List::New, &mut seen_new, &mut batch.new),
                TopField::Deleted => (List::Deleted, &mut seen_deleted, &mut batch.deleted),
                TopField::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if *seen {
                return Err(de::Error::custom(format_args!("duplicate field `{list}`")));
            }
            *seen = true;
            if self.startup && list == List::Deleted {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            map.next_value_seed(ListSeed {
                list,
                now: self.now,
                out,
                skipped: &mut batch.skipped,
                skipped_count: &mut batch.skipped_count,
                kinds: &mut kinds,
            })?;
        }
        if !seen_new {
            return Err(de::Error::missing_field("new"));
        }
        if !seen_deleted {
            return Err(de::Error::missing_field("deleted"));
        }
        batch.kinds = kinds.names;
        Ok(batch)
    }
}

/// The decision types met so far, each once, and where each is in the list.
#[derive(Default)]
struct Kinds {
    names: Vec<String>,
    index_of: HashMap<String, u32>,
}

impl Kinds {
    /// The index of `name`, added if new.
    fn index(&mut self, name: String) -> u32 {
        if let Some(&index) = self.index_of.get(&name) {
            return index;
        }
        let index = u32::try_from(self.names.len()).expect("far fewer types than items");
        self.names.push(name.clone());
        self.index_of.insert(name, index);
        index
    }
}

/// One list (`null` or an array), converted item by item.
struct ListSeed<'a> {
    list: List,
    now: &'a dyn Fn() -> SystemTime,
    out: &'a mut Vec<Decision>,
    skipped: &'a mut Vec<Skipped>,
    skipped_count: &'a mut usize,
    kinds: &'a mut Kinds,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` as a list of decisions or null", self.list)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // The hint is the number of items left, if known; don't trust it for more than a guess.
        self.out.reserve(seq.size_hint().unwrap_or(0).min(1 << 20));
        let mut index = 0;
        while let Some(item) = seq.next_element::<RawItem>()? {
            match item.into_decision((self.now)(), self.kinds) {
                Ok(decision) => self.out.push(decision),
                Err((id, reason)) => {
                    *self.skipped_count += 1;
                    if self.skipped.len() < SKIPPED_KEPT {
                        self.skipped.push(Skipped {
                            list: self.list,
                            index,
                            id,
                            reason,
                        });
                    }
                }
            }
            index += 1;
        }
        Ok(())
    }
}

/// A list item read leniently: any JSON value is accepted here, and judged in
/// [`RawItem::into_decision`], so a bad item never stops the parse.
enum RawItem {
    Object(Box<RawDecision>),
    Other(&'static str),
}

#[derive(Default)]
struct RawDecision {
    id: Option<Value>,
    origin: Option<Value>,
    kind: Option<Value>,
    scope: Option<Value>,
    value: Option<Value>,
    duration: Option<Value>,
    scenario: Option<Value>,
    simulated: Option<Value>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum RawField {
    Id,
    Origin,
    #[serde(rename = "type")]
    Kind,
    Scope,
    Value,
    Duration,
    Scenario,
    Simulated,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for RawItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawItemVisitor)
    }
}

struct RawItemVisitor;

impl<'de> Visitor<'de> for RawItemVisitor {
    type Value = RawItem;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decision object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawItem, A::Error> {
        let mut raw = RawDecision::default();
        while let Some(field) = map.next_key::<RawField>()? {
            let slot = match field {
                RawField::Id => &mut raw.id,
                RawField::Origin => &mut raw.origin,
                RawField::Kind => &mut raw.kind,
                RawField::Scope => &mut raw.scope,
                RawField::Value => &mut raw.value,
                RawField::Duration => &mut raw.duration,
                RawField::Scenario => &mut raw.scenario,
                RawField::Simulated => &mut raw.simulated,
                RawField::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value::<Value>()?);
        }
        Ok(RawItem::Object(Box::new(raw)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawItem, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawItem::Other("array"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawItem, E> {
        Ok(RawItem::Other("null"))
    }

    fn visit_none<E: de::Error>(self) -> Result<RawItem, E> {
        Ok(RawItem::Other("null"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawItem, E> {
        Ok(RawItem::Other("boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawItem, E> {
        Ok(RawItem::Other("number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawItem, E> {
        Ok(RawItem::Other("number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawItem, E> {
        Ok(RawItem::Other("number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<RawItem, E> {
        Ok(RawItem::Other("string"))
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A string field; `None` when missing or `null`.
fn opt_string(field: &'static str, value: Option<Value>) -> Result<Option<String>, SkipReason> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(SkipReason::WrongType {
            field,
            expected: "a string",
            found: json_kind(&other),
        }),
    }
}

fn required_string(field: &'static str, value: Option<Value>) -> Result<String, SkipReason> {
    opt_string(field, value)?.ok_or(SkipReason::MissingField { field })
}

impl RawItem {
    /// The decision, or why not (with the item's id when it had a usable one).
    fn into_decision(
        self,
        now: SystemTime,
        kinds: &mut Kinds,
    ) -> Result<Decision, (Option<i64>, SkipReason)> {
        let mut raw = match self {
            Self::Object(raw) => *raw,
            Self::Other(found) => return Err((None, SkipReason::NotAnObject { found })),
        };
        let wrong_type = |found| {
            let reason = SkipReason::WrongType {
                field: "id",
                expected: "an integer",
                found,
            };
            Err((None, reason))
        };
        let id = match raw.id.take() {
            None | Some(Value::Null) => {
                return Err((None, SkipReason::MissingField { field: "id" }));
            }
            Some(Value::Number(n)) => match n.as_i64() {
                Some(id) => id,
                None => return wrong_type("non-integer number"),
            },
            Some(other) => return wrong_type(json_kind(&other)),
        };
        raw.decision(id, now, kinds)
            .map_err(|reason| (Some(id), reason))
    }
}

impl RawDecision {
    fn decision(self, id: i64, now: SystemTime, kinds: &mut Kinds) -> Result<Decision, SkipReason> {
        // Fields needed to act are required (and `id`, checked by the caller); `origin` and
        // `scenario` are only labels, so a missing one must not keep a deletion from being
        // applied.
        let scope = required_string("scope", self.scope)?;
        let value = required_string("value", self.value)?;
        let kind = required_string("type", self.kind)?;
        let duration = required_string("duration", self.duration)?;
        let origin = opt_string("origin", self.origin)?
            .map_or(origin::OTHER, |name| origin::from_name(&name));
        // Read for its type only: a wrong one says the item is not what LAPI sends.
        opt_string("scenario", self.scenario)?;
        let simulated = match self.simulated {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(other) => {
                return Err(SkipReason::WrongType {
                    field: "simulated",
                    expected: "a boolean",
                    found: json_kind(&other),
                });
            }
        };
        if simulated {
            return Err(SkipReason::Simulated { value });
        }
        if !scope.eq_ignore_ascii_case("ip") && !scope.eq_ignore_ascii_case("range") {
            return Err(SkipReason::UnknownScope { scope, value });
        }
        let net = match parse_net(&value) {
            Ok(net) => net,
            Err(source) => {
                return Err(SkipReason::BadValue {
                    value,
                    scope,
                    source,
                });
            }
        };
        let until = match parse_go_duration(&duration) {
            Ok(d) => d.after(now),
            Err(source) => return Err(SkipReason::BadDuration { value, source }),
        };
        let Some(until) = until else {
            return Err(SkipReason::UntilOutOfRange { value, duration });
        };
        Ok(Decision {
            id,
            net,
            origin: u8::try_from(origin).expect("origin slots are fewer than 256"),
            kind: kinds.index(kind),
            until,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn item(id: i64, scope: &str, value: &str, duration: &str) -> String {
        format!(
            r#"{{"id":{id},"origin":"cscli","type":"ban","scope":"{scope}","value":"{value}","duration":"{duration}","scenario":"manual 'ban' from 'x'","simulated":false,"uuid":"u-{id}"}}"#
        )
    }

    fn parse(json: &str) -> StreamBatch {
        StreamBatch::from_reader(json.as_bytes(), false, now).unwrap()
    }

    fn dur(s: &str) -> GoDuration {
        parse_go_duration(s).unwrap()
    }

    fn pos(secs: u64, nanos: u32) -> GoDuration {
        GoDuration {
            negative: false,
            magnitude: Duration::new(secs, nanos),
        }
    }

    #[test]
    fn null_lists_are_empty() {
        assert_eq!(
            parse(r#"{"new": null, "deleted": null}"#),
            StreamBatch::default()
        );
        assert_eq!(
            parse(r#"{"new": [], "deleted": []}"#),
            StreamBatch::default()
        );
    }

    #[test]
    fn full_item() {
        let batch = parse(&format!(
            r#"{{"new":[{}],"deleted":null}}"#,
            item(7, "Ip", "198.51.100.7", "3h59m58.5s")
        ));
        assert!(batch.skipped.is_empty());
        assert_eq!(
            batch.new,
            vec![Decision {
                id: 7,
                net: net("198.51.100.7/32"),
                origin: u8::try_from(origin::CSCLI).unwrap(),
                kind: 0,
                until: now() + Duration::new(4 * 3600 - 2, 500_000_000),
            }]
        );
        assert_eq!(u32::from(batch.new[0].origin), origin::CSCLI);
        assert_eq!(batch.kind(&batch.new[0]), "ban");
    }

    #[test]
    fn each_type_is_listed_once() {
        let with_type = |id, kind: &str| {
            item(id, "Ip", "198.51.100.1", "1h").replace("\"ban\"", &format!("{kind:?}"))
        };
        let batch = parse(&format!(
            r#"{{"new":[{},{},{}],"deleted":[{},{}]}}"#,
            with_type(1, "ban"),
            with_type(2, "captcha"),
            with_type(3, "ban"),
            with_type(4, "captcha"),
            with_type(5, "Ban"),
        ));
        assert_eq!(batch.kinds, ["ban", "captcha", "Ban"]);
        let kinds: Vec<&str> = batch
            .new
            .iter()
            .chain(&batch.deleted)
            .map(|d| batch.kind(d))
            .collect();
        assert_eq!(kinds, ["ban", "captcha", "ban", "captcha", "Ban"]);
    }

    #[test]
    fn consume_hands_out_every_decision_in_order() {
        let json = format!(
            r#"{{"new":[{}],"deleted":null}}"#,
            (0..1_000)
                .map(|id| item(id, "Ip", "198.51.100.1", "1h"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let batch = parse(&json);
        let ids: Vec<i64> = consume(batch.new).map(|d| d.id).collect();
        assert_eq!(ids, (0..1_000).collect::<Vec<_>>());
    }

    #[test]
    fn origins_become_their_slots() {
        let json = format!(
            r#"{{"new":[{},{},{},{}],"deleted":null}}"#,
            item(1, "Ip", "198.51.100.1", "1h"),
            item(2, "Ip", "198.51.100.1", "1h").replace("cscli", "lists:firehol"),
            item(3, "Ip", "198.51.100.1", "1h").replace("cscli", "CAPI"),
            item(4, "Ip", "198.51.100.1", "1h").replace("cscli", "somebody"),
        );
        let origins: Vec<u32> = parse(&json)
            .new
            .iter()
            .map(|d| u32::from(d.origin))
            .collect();
        assert_eq!(
            origins,
            [origin::CSCLI, origin::LISTS, origin::CAPI, origin::OTHER]
        );
    }

    #[test]
    fn a_startup_answer_s_deleted_list_is_skipped_unread() {
        let json = format!(
            r#"{{"new":[{}],"deleted":[{},0,"junk"]}}"#,
            item(1, "Ip", "198.51.100.1", "4h"),
            item(2, "Ip", "198.51.100.2", "-1s")
        );
        let batch = StreamBatch::from_reader(json.as_bytes(), true, now).unwrap();
        assert_eq!(batch.new.len(), 1);
        assert!(batch.deleted.is_empty());
        assert_eq!(batch.skipped_count, 0);
        let delta = parse(&json);
        assert_eq!((delta.deleted.len(), delta.skipped_count), (1, 2));
    }

    #[test]
    fn a_flood_of_junk_items_is_counted_not_kept() {
        let junk = vec!["0"; 100_000].join(",");
        let json = format!(
            r#"{{"new":[{junk},{}],"deleted":null}}"#,
            item(1, "Ip", "198.51.100.1", "4h")
        );
        let batch = parse(&json);
        assert_eq!(batch.new.len(), 1);
        assert_eq!(batch.skipped_count, 100_000);
        assert_eq!(batch.skipped.len(), SKIPPED_KEPT);
        assert_eq!(batch.skipped[SKIPPED_KEPT - 1].index, SKIPPED_KEPT - 1);
    }

    #[test]
    fn bad_items_are_skipped_others_kept() {
        let json = format!(
            r#"{{"new":[{},{},{},{},{}, 42, {{"id":"x"}}, {{"id":9,"type":"ban","scope":"ip","value":"198.51.100.9","duration":5}}],
                "deleted":[{},{}]}}"#,
            item(1, "Ip", "198.51.100.1", "4h"),
            item(2, "Ip", "198.51.100.999", "4h"),
            item(3, "Country", "FR", "4h"),
            item(4, "Ip", "198.51.100.4", "4 hours"),
            item(5, "Range", "203.0.113.0/24", "1h"),
            item(6, "Ip", "2001:db8::6", "-1.5s"),
            item(7, "Ip", "not-an-ip", "1h"),
        );
        let batch = parse(&json);
        let new: Vec<_> = batch.new.iter().map(|d| (d.id, d.net)).collect();
        assert_eq!(
            new,
            vec![(1, net("198.51.100.1/32")), (5, net("203.0.113.0/24"))]
        );
        assert_eq!(batch.deleted.len(), 1);
        assert_eq!(batch.deleted[0].net, net("2001:db8::6/128"));

        let skipped: Vec<_> = batch
            .skipped
            .iter()
            .map(|s| (s.list, s.index, s.id))
            .collect();
        assert_eq!(
            skipped,
            vec![
                (List::New, 1, Some(2)),
                (List::New, 2, Some(3)),
                (List::New, 3, Some(4)),
                (List::New, 5, None),
                (List::New, 6, None),
                (List::New, 7, Some(9)),
                (List::Deleted, 1, Some(7)),
            ]
        );
        assert!(matches!(
            &batch.skipped[0].reason,
            SkipReason::BadValue { value, scope, .. } if value == "198.51.100.999" && scope == "Ip"
        ));
        assert_eq!(
            batch.skipped[1].reason,
            SkipReason::UnknownScope {
                scope: "Country".into(),
                value: "FR".into()
            }
        );
        assert!(matches!(
            &batch.skipped[2].reason,
            SkipReason::BadDuration { value, source: DurationError::UnknownUnit { input, .. } }
                if value == "198.51.100.4" && input == "4 hours"
        ));
        assert_eq!(
            batch.skipped[3].reason,
            SkipReason::NotAnObject { found: "number" }
        );
        assert_eq!(
            batch.skipped[4].reason,
            SkipReason::WrongType {
                field: "id",
                expected: "an integer",
                found: "string"
            }
        );
        assert_eq!(
            batch.skipped[5].reason,
            SkipReason::WrongType {
                field: "duration",
                expected: "a string",
                found: "number"
            }
        );
        let shown = batch.skipped[0].to_string();
        assert!(
            shown.starts_with("new[1] (id 2): decision for \"198.51.100.999\""),
            "{shown}"
        );
        assert!(shown.ends_with("invalid IP address syntax"), "{shown}");
    }

    #[test]
    fn missing_and_simulated() {
        let batch = parse(
            r#"{"new":[{"id":1,"type":"ban","scope":"ip","duration":"1h"},
                       {"id":2,"type":"ban","scope":"ip","value":"198.51.100.2","duration":"1h","simulated":true},
                       {"id":3,"type":"ban","scope":"ip","value":"198.51.100.3","duration":"1h"}],
                "deleted":[{"id":null,"type":"ban","scope":"ip","value":"198.51.100.4","duration":"1h"},
                           {"id":1.5,"type":"ban","scope":"ip","value":"198.51.100.4","duration":"1h"}]}"#,
        );
        assert_eq!(batch.new.len(), 1);
        assert_eq!(u32::from(batch.new[0].origin), origin::OTHER);
        assert_eq!(
            batch.skipped[0].reason,
            SkipReason::MissingField { field: "value" }
        );
        assert_eq!(
            batch.skipped[1].reason,
            SkipReason::Simulated {
                value: "198.51.100.2".into()
            }
        );
        assert!(batch.deleted.is_empty());
        assert_eq!(
            batch.skipped[2].reason,
            SkipReason::MissingField { field: "id" }
        );
        assert_eq!(
            batch.skipped[3].reason,
            SkipReason::WrongType {
                field: "id",
                expected: "an integer",
                found: "non-integer number"
            }
        );
    }

    #[test]
    fn scope_is_case_insensitive() {
        let json = format!(
            r#"{{"new":[{},{},{},{}],"deleted":null}}"#,
            item(1, "ip", "198.51.100.1", "1h"),
            item(2, "IP", "198.51.100.2", "1h"),
            item(3, "RANGE", "198.51.100.0/28", "1h"),
            item(4, "range", "2001:db8::/48", "1h"),
        );
        let batch = parse(&json);
        assert!(batch.skipped.is_empty(), "{:?}", batch.skipped);
        assert_eq!(batch.new.len(), 4);
    }

    #[test]
    fn value_normalization() {
        for (value, want) in [
            ("198.51.100.4", "198.51.100.4/32"),
            ("198.51.100.4/24", "198.51.100.0/24"),
            ("198.51.100.4/32", "198.51.100.4/32"),
            ("2001:db8::1", "2001:db8::1/128"),
            ("2001:db8::1/32", "2001:db8::/32"),
            ("::ffff:198.51.100.4", "198.51.100.4/32"),
            ("::ffff:198.51.100.0/120", "198.51.100.0/24"),
            ("::ffff:198.51.100.77/120", "198.51.100.0/24"),
            ("::ffff:0:0/96", "0.0.0.0/0"),
            // Shorter than /96 is more than the mapped space: it stays an IPv6 prefix (mapped
            // sources are judged by the IPv4 maps alone, so it does not cover them).
            ("::ffff:0:0/80", "::/80"),
        ] {
            assert_eq!(parse_net(value).unwrap(), net(want), "{value}");
        }
        for bad in [
            "",
            "1.2.3",
            "198.51.100.4/33",
            "198.51.100.4/",
            "fe80::1%eth0",
            " 1.2.3.4",
        ] {
            assert!(parse_net(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scope_does_not_decide_the_length() {
        let json = format!(
            r#"{{"new":[{},{}],"deleted":null}}"#,
            item(1, "Ip", "198.51.100.4/24", "1h"),
            item(2, "Range", "198.51.100.4", "1h"),
        );
        let batch = parse(&json);
        assert_eq!(batch.new[0].net, net("198.51.100.0/24"));
        assert_eq!(batch.new[1].net, net("198.51.100.4/32"));
    }

    #[test]
    fn negative_duration_is_already_expired() {
        let json = format!(
            r#"{{"new":null,"deleted":[{}]}}"#,
            item(1, "Ip", "198.51.100.4", "-2.5s")
        );
        let batch = parse(&json);
        assert_eq!(batch.deleted[0].until, now() - Duration::from_millis(2_500));
    }

    #[test]
    fn malformed_documents_fail_as_a_whole() {
        for bad in [
            "",
            "garbage",
            r#"{"new": [{"id": 1"#,
            r#"{"new": null, "deleted": null} trailing"#,
            "[]",
            r#"{"new": "x", "deleted": null}"#,
            r#"{"new": {}, "deleted": null}"#,
            r#"{"new": null}"#,
            r#"{"new": null, "new": null, "deleted": null}"#,
        ] {
            let err = StreamBatch::from_reader(bad.as_bytes(), false, now).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("malformed decisions stream answer"),
                "{bad:?}: {err}"
            );
            let DecisionsError::Json { source } = &err;
            assert!(!source.to_string().is_empty());
        }
    }

    #[test]
    fn unknown_top_level_keys_are_ignored() {
        let batch = parse(r#"{"links": {"a": [1, 2]}, "new": null, "deleted": null}"#);
        assert_eq!(batch, StreamBatch::default());
    }

    #[test]
    fn durations() {
        assert_eq!(dur("4h"), pos(4 * 3600, 0));
        assert_eq!(dur("3h59m58.123s"), pos(4 * 3600 - 2, 123_000_000));
        assert_eq!(dur("3h59m58.123456789s"), pos(4 * 3600 - 2, 123_456_789));
        assert_eq!(
            dur("-1.5s"),
            GoDuration {
                negative: true,
                magnitude: Duration::from_millis(1_500)
            }
        );
        assert_eq!(dur("0s"), pos(0, 0));
        assert_eq!(dur("0"), pos(0, 0));
        assert_eq!(dur("+5s"), pos(5, 0));
        assert_eq!(dur("1h0m0.5s"), pos(3600, 500_000_000));
        assert_eq!(dur("1m30s"), pos(90, 0));
        assert_eq!(dur("500ms"), pos(0, 500_000_000));
        assert_eq!(dur("1.5us"), pos(0, 1_500));
        assert_eq!(dur("2\u{b5}s"), pos(0, 2_000));
        assert_eq!(dur("2\u{3bc}s"), pos(0, 2_000));
        assert_eq!(dur("7ns"), pos(0, 7));
        assert_eq!(dur(".5m"), pos(30, 0));
        assert_eq!(dur("5.m"), pos(300, 0));
        assert_eq!(dur("1.0000000001s"), pos(1, 0));
        assert_eq!(
            dur("2562047h47m16.854775807s"),
            pos(9_223_372_036, 854_775_807)
        );
        assert_eq!(
            dur("-2562047h47m16.854775808s").magnitude,
            Duration::new(9_223_372_036, 854_775_808)
        );
    }

    #[test]
    fn duration_errors_name_the_string() {
        for (bad, want) in [
            (
                "",
                DurationError::Empty {
                    input: String::new(),
                },
            ),
            ("-", DurationError::Empty { input: "-".into() }),
            (
                "abc",
                DurationError::ExpectedNumber {
                    input: "abc".into(),
                    at: 0,
                },
            ),
            (
                "1h.s",
                DurationError::ExpectedNumber {
                    input: "1h.s".into(),
                    at: 2,
                },
            ),
            ("5", DurationError::MissingUnit { input: "5".into() }),
            (
                "1h2",
                DurationError::MissingUnit {
                    input: "1h2".into(),
                },
            ),
            (
                "4 hours",
                DurationError::UnknownUnit {
                    input: "4 hours".into(),
                    unit: " hours".into(),
                },
            ),
            (
                "1d",
                DurationError::UnknownUnit {
                    input: "1d".into(),
                    unit: "d".into(),
                },
            ),
            (
                "2562047h47m16.854775808s",
                DurationError::Overflow {
                    input: "2562047h47m16.854775808s".into(),
                },
            ),
            (
                "99999999999999999999999s",
                DurationError::Overflow {
                    input: "99999999999999999999999s".into(),
                },
            ),
        ] {
            let err = parse_go_duration(bad).unwrap_err();
            assert_eq!(err, want, "{bad:?}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn duration_formatting_round_trips() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_micros(3), "3us"),
            (Duration::from_nanos(5), "5ns"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_mins(15), "15m"),
            (Duration::from_hours(4), "4h"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(3_600_500), "1h0.5s"),
            (Duration::new(3 * 3600 + 61, 123), "3h1m1.000000123s"),
        ] {
            assert_eq!(format_go_duration(d), text);
            assert_eq!(dur(text).to_unsigned(), Some(d), "{text}");
        }
        assert_eq!(dur("-0s").to_unsigned(), Some(Duration::ZERO));
        assert_eq!(dur("-1s").to_unsigned(), None);
    }
}

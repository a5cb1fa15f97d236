//! Rings stored apart from the state, in fixed segments, so a checkpoint rewrites only what changed.
//!
//! Most of a mature stream's state is rings that take one entry per event and drop the oldest: the detector's
//! value history (4,000 values) and evidence histories (2,000 each), and the recent normal windows (100 rows).
//! Serialised inline they made the state about 80 KB, rewritten by every checkpoint; a socket that waits for each
//! answer gets a checkpoint per event, and that rewrite was most of its latency tail (ARCHITECTURE.md, "Fair
//! scheduling in the process").
//!
//! A [`Ring`] numbers its entries by absolute index: the n-th entry ever pushed has index n, and the ring holds
//! the indexes `end − len .. end`. Entries never change once pushed (the only mutations are push, drop the oldest
//! and clear), so the ring is cut into segments of [`SEGMENT_BYTES`] keyed by `index / per_segment`: a segment
//! whose indexes are all below the last stored `end` is already stored as it is. The serialised state holds only
//! `{end, len}` per ring; a checkpoint writes the segments from the one holding the last stored `end` on (usually
//! one segment of ≤ 1 KB per ring) and prunes those that left the ring.
//!
//! A stored segment holds the little-endian f64s of consecutive entries and the index of its first one (it may
//! start after `index · per_segment` when the oldest entries had already left the ring when it was written).
//! Entries never change once pushed, so a segment written later than the core being loaded (it only has more
//! entries) still reads right; a missing one, or one short of the entries the core names, is refused, never
//! misread. A ring made anew in memory (its indexes start again at 0) knows nothing is stored, so its first
//! checkpoint rewrites all of it and prunes the rest.

use std::collections::VecDeque;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

/// Target size of a stored segment. Small enough that the open segment a checkpoint rewrites is cheap, large
/// enough that loading a 4,000-entry ring reads a few dozen rows.
pub const SEGMENT_BYTES: usize = 1024;

/// What a ring holds: fixed-size records of f64s, stored as their little-endian bytes.
pub trait Entry: Copy + for<'de> Deserialize<'de> {
    /// f64s per entry.
    const WIDTH: usize;
    /// Appends the entry's f64s.
    fn put(&self, out: &mut Vec<u8>);
    /// The entry of `WIDTH` f64s at the start of `bytes`; `None` when one is not finite.
    fn take(bytes: &[u8]) -> Option<Self>;
}

fn f64_at(bytes: &[u8], i: usize) -> Option<f64> {
    let b: [u8; 8] = bytes.get(8 * i..8 * i + 8)?.try_into().ok()?;
    let x = f64::from_le_bytes(b);
    x.is_finite().then_some(x)
}

impl Entry for f64 {
    const WIDTH: usize = 1;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn take(bytes: &[u8]) -> Option<Self> {
        f64_at(bytes, 0)
    }
}

impl<const W: usize> Entry for [f64; W]
where
    [f64; W]: for<'de> Deserialize<'de>,
{
    const WIDTH: usize = W;
    fn put(&self, out: &mut Vec<u8>) {
        for x in self {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    fn take(bytes: &[u8]) -> Option<Self> {
        let mut a = [0.0; W];
        for (i, x) in a.iter_mut().enumerate() {
            *x = f64_at(bytes, i)?;
        }
        Some(a)
    }
}

/// One stored segment of a ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The ring's name within its stream's state (e.g. `detector.values`).
    pub ring: String,
    /// `first / per_segment`.
    pub index: u64,
    /// Index of the first entry held.
    pub first: u64,
    /// The entries' little-endian f64s.
    pub data: Vec<u8>,
}

/// Which of a ring's stored segments stay: those with `keep_from ≤ index < keep_until`; the store deletes the
/// ring's others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prune {
    pub ring: String,
    pub keep_from: u64,
    pub keep_until: u64,
}

/// A ring of entries numbered by absolute index (see the module docs). Deserialised from a stored core it is
/// *detached*: it knows its length but not its entries until [`Ring::attach`] gives them their segments.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    buf: VecDeque<T>,
    /// Entries ever pushed: one past the newest entry's index.
    end: u64,
    /// The length a stored core declared, until the entries are attached.
    detached: Option<usize>,
    /// The `(start, end)` the store holds for this ring, as of the last load or [`Ring::mark_stored`]; `None`:
    /// unknown (a ring made in memory, or one read from a state that stored it inline), so everything is written.
    stored: Option<(u64, u64)>,
}

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Self {
            buf: VecDeque::new(),
            end: 0,
            detached: None,
            stored: None,
        }
    }
}

impl<T: PartialEq> PartialEq for Ring<T> {
    /// Same entries at the same indexes; what is known stored does not matter.
    fn eq(&self, other: &Self) -> bool {
        self.buf == other.buf && self.end == other.end && self.detached == other.detached
    }
}

impl<T: Entry> Ring<T> {
    /// Entries per stored segment.
    pub const PER_SEGMENT: u64 = {
        let n = SEGMENT_BYTES / (8 * T::WIDTH);
        if n == 0 { 1 } else { n as u64 }
    };

    pub fn len(&self) -> usize {
        self.detached.unwrap_or(self.buf.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of the oldest entry held.
    fn start(&self) -> u64 {
        self.end - self.len() as u64
    }

    /// Appends `x` and drops the oldest entries beyond `cap`. Only on an attached ring: a state is analysed only
    /// once [`crate::StreamState::from_parts`] has attached all of its rings.
    pub fn push(&mut self, x: T, cap: usize) {
        debug_assert!(self.detached.is_none(), "push on a detached ring");
        self.buf.push_back(x);
        self.end += 1;
        while self.buf.len() > cap {
            self.buf.pop_front();
        }
    }

    /// Drops every entry; indexes go on from where they were, so nothing stored can be mistaken for new entries.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    pub fn back(&self) -> Option<&T> {
        self.buf.back()
    }

    pub fn iter(&self) -> std::collections::vec_deque::Iter<'_, T> {
        self.buf.iter()
    }

    pub fn range(&self, r: std::ops::RangeFrom<usize>) -> std::collections::vec_deque::Iter<'_, T> {
        self.buf.range(r)
    }

    /// The entries as one slice, oldest first (moves them only when the ring has wrapped).
    pub fn make_contiguous(&mut self) -> &[T] {
        self.buf.make_contiguous()
    }

    /// Whether the entries still have to be attached (see [`Ring::attach`]).
    pub fn is_detached(&self) -> bool {
        self.detached.is_some()
    }

    /// Records that the store now holds this ring as it is.
    pub fn mark_stored(&mut self) {
        self.stored = Some((self.start(), self.end));
    }

    /// The segments to write so that the store holds this ring as it is, and which of its stored segments to
    /// keep. `all`: as if nothing were stored.
    pub fn delta(&self, name: &str, all: bool) -> (Vec<Segment>, Option<Prune>) {
        let per = Self::PER_SEGMENT;
        let (start, end) = (self.start(), self.end);
        let first = start / per;
        let until = if self.is_empty() {
            first
        } else {
            (end - 1) / per + 1
        };
        let (write_from, prune) = match self.stored.filter(|_| !all) {
            // Segments wholly below the stored end are stored as they are; the one holding it may have grown.
            Some((s0, e0)) if e0 <= end => {
                let from = if e0 == end { until } else { e0 / per };
                (from, s0 / per != first)
            }
            _ => (first, true),
        };
        let mut segments = Vec::new();
        for index in write_from.max(first)..until {
            let lo = (index * per).max(start);
            let hi = ((index + 1) * per).min(end);
            let mut data = Vec::with_capacity((hi - lo) as usize * 8 * T::WIDTH);
            // Indexes lo..hi are held: start ≤ lo < hi ≤ end.
            let from = (lo - start) as usize;
            for x in self.buf.range(from..from + (hi - lo) as usize) {
                x.put(&mut data);
            }
            segments.push(Segment {
                ring: name.to_owned(),
                index,
                first: lo,
                data,
            });
        }
        let prune = prune.then(|| Prune {
            ring: name.to_owned(),
            keep_from: first,
            keep_until: until,
        });
        (segments, prune)
    }

    /// Gives a detached ring its entries from its stored segments (any order; others' are ignored). Refuses a
    /// missing segment or one whose size does not fit the ring's declared range.
    pub fn attach<'a>(
        &mut self,
        name: &str,
        segments: impl IntoIterator<Item = &'a Segment>,
    ) -> Result<(), String> {
        let Some(len) = self.detached else {
            return Ok(());
        };
        let per = Self::PER_SEGMENT;
        let bytes = 8 * T::WIDTH;
        let start = self.end - len as u64;
        let mut mine: Vec<&Segment> = segments.into_iter().filter(|s| s.ring == name).collect();
        mine.sort_by_key(|s| s.index);
        let mut buf = VecDeque::with_capacity(len);
        let mut next = start;
        for s in mine {
            if next >= self.end {
                break;
            }
            if s.index != next / per {
                continue;
            }
            let hi = ((s.index + 1) * per).min(self.end);
            let n = (s.data.len() / bytes) as u64;
            if s.data.len() % bytes != 0 || s.first > next || s.first + n < hi {
                return Err(format!(
                    "ring {name}: segment {} holds entries {}..{}, short of {next}..{hi}",
                    s.index,
                    s.first,
                    s.first + n
                ));
            }
            for k in (next - s.first) as usize..(hi - s.first) as usize {
                let x = T::take(&s.data[k * bytes..]).ok_or_else(|| {
                    format!("ring {name}: non-finite value in segment {}", s.index)
                })?;
                buf.push_back(x);
            }
            next = hi;
        }
        if next < self.end {
            return Err(format!(
                "ring {name}: the entries from {next} on are not stored"
            ));
        }
        self.buf = buf;
        self.detached = None;
        self.stored = Some((start, self.end));
        Ok(())
    }
}

impl<T> std::ops::Index<usize> for Ring<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.buf[i]
    }
}

/// A ring of any entry type, for code that stores or loads every ring of a state by name.
pub trait StoredRing {
    /// See [`Ring::delta`].
    fn delta(&self, name: &str, all: bool) -> (Vec<Segment>, Option<Prune>);
    /// See [`Ring::attach`].
    fn attach(&mut self, name: &str, segments: &[Segment]) -> Result<(), String>;
    /// See [`Ring::mark_stored`].
    fn mark_stored(&mut self);
}

impl<T: Entry> StoredRing for Ring<T> {
    fn delta(&self, name: &str, all: bool) -> (Vec<Segment>, Option<Prune>) {
        Ring::delta(self, name, all)
    }
    fn attach(&mut self, name: &str, segments: &[Segment]) -> Result<(), String> {
        Ring::attach(self, name, segments)
    }
    fn mark_stored(&mut self) {
        Ring::mark_stored(self);
    }
}

impl<T: Entry> Serialize for Ring<T> {
    /// `{"end": …, "len": …}`: the entries are stored apart, as segments.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Ring", 2)?;
        st.serialize_field("end", &self.end)?;
        st.serialize_field("len", &self.len())?;
        st.end()
    }
}

impl<'de, T: Entry> Deserialize<'de> for Ring<T> {
    /// `{"end", "len"}` (detached), or the inline forms of states written before rings were stored apart
    /// (`STATE_VERSION` 3): base64 of little-endian f64s, or a JSON array of entries.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Entry> Visitor<'de> for V<T> {
            type Value = Ring<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a ring: {end, len}, base64 of f64s or an array of entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ring<T>, A::Error> {
                let (mut end, mut len) = (None, None);
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "end" => end = Some(m.next_value::<u64>()?),
                        "len" => len = Some(m.next_value::<usize>()?),
                        _ => {
                            m.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                let end = end.ok_or_else(|| de::Error::missing_field("end"))?;
                let len = len.ok_or_else(|| de::Error::missing_field("len"))?;
                if len as u64 > end {
                    return Err(de::Error::custom(
                        "a ring longer than its entries ever pushed",
                    ));
                }
                Ok(Ring {
                    buf: VecDeque::new(),
                    end,
                    detached: Some(len),
                    stored: None,
                })
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Ring<T>, E> {
                let bytes = STANDARD.decode(text.as_bytes()).map_err(E::custom)?;
                let w = 8 * T::WIDTH;
                if bytes.len() % w != 0 {
                    return Err(E::custom("buffer length is not a whole number of entries"));
                }
                let buf = bytes
                    .chunks_exact(w)
                    .map(|c| {
                        T::take(c).ok_or_else(|| E::custom("non-finite value in a stored buffer"))
                    })
                    .collect::<Result<VecDeque<T>, E>>()?;
                Ok(Ring::inline(buf))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Ring<T>, A::Error> {
                let mut buf = VecDeque::new();
                while let Some(x) = s.next_element::<T>()? {
                    buf.push_back(x);
                }
                Ok(Ring::inline(buf))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<T> Ring<T> {
    /// A ring read inline from an older state: its indexes start at 0 and nothing of it is stored apart yet.
    fn inline(buf: VecDeque<T>) -> Self {
        Self {
            end: buf.len() as u64,
            buf,
            detached: None,
            stored: None,
        }
    }
}

impl<T: Entry> FromIterator<T> for Ring<T> {
    fn from_iter<I: IntoIterator<Item = T>>(it: I) -> Self {
        Self::inline(it.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stores `ring`'s delta into `store` the way the database does: upsert the segments, prune the rest.
    fn apply(store: &mut Vec<Segment>, name: &str, ring: &mut Ring<f64>) {
        let (segments, prune) = ring.delta(name, false);
        for s in segments {
            store.retain(|o| !(o.ring == s.ring && o.index == s.index));
            store.push(s);
        }
        if let Some(p) = prune {
            store
                .retain(|o| o.ring != p.ring || (p.keep_from <= o.index && o.index < p.keep_until));
        }
        ring.mark_stored();
    }

    fn reload(store: &[Segment], ring: &Ring<f64>) -> Ring<f64> {
        let core = serde_json::to_string(ring).unwrap();
        let mut back: Ring<f64> = serde_json::from_str(&core).unwrap();
        assert!(back.is_detached() || ring.is_empty());
        back.attach("r", store).unwrap();
        back
    }

    #[test]
    fn checkpoints_write_only_the_open_segment_and_reload_exactly() {
        let per = Ring::<f64>::PER_SEGMENT;
        assert_eq!(per, 128);
        let mut ring = Ring::default();
        let mut store = Vec::new();
        let cap = 300;
        for i in 0..2_000u64 {
            ring.push(i as f64 * 0.5, cap);
            if i % 7 == 0 {
                let (segments, _) = ring.delta("r", false);
                // After the first write, a checkpoint rewrites the segment holding the last stored end and any
                // that filled since: never the whole ring.
                if i > 0 {
                    assert!(segments.len() <= 2, "{} segments at {i}", segments.len());
                }
                apply(&mut store, "r", &mut ring);
                assert_eq!(reload(&store, &ring), ring, "at {i}");
                // What left the ring is pruned: at most the segments spanning the cap, plus the one cut.
                assert!(
                    store.len() as u64 <= (cap as u64).div_ceil(per) + 1,
                    "{}",
                    store.len()
                );
            }
        }
    }

    #[test]
    fn a_cleared_or_replaced_ring_never_reads_stale_segments() {
        let mut ring = Ring::default();
        let mut store = Vec::new();
        for i in 0..1_000 {
            ring.push(f64::from(i), 500);
        }
        apply(&mut store, "r", &mut ring);
        ring.clear();
        ring.push(-1.0, 500);
        apply(&mut store, "r", &mut ring);
        let back = reload(&store, &ring);
        assert_eq!(back.iter().copied().collect::<Vec<_>>(), vec![-1.0]);
        // A ring made anew in memory starts at index 0 again: everything is rewritten and the rest pruned.
        let mut fresh = Ring::default();
        for i in 0..3 {
            fresh.push(f64::from(i) + 0.25, 500);
        }
        apply(&mut store, "r", &mut fresh);
        assert_eq!(reload(&store, &fresh), fresh);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_missing_segment_is_refused() {
        let mut ring = Ring::default();
        for i in 0..400 {
            ring.push(f64::from(i), 1_000);
        }
        let (mut segments, _) = ring.delta("r", true);
        segments.remove(1);
        let mut back: Ring<f64> =
            serde_json::from_str(&serde_json::to_string(&ring).unwrap()).unwrap();
        assert!(back.attach("r", &segments).is_err());
    }

    #[test]
    fn rows_and_the_inline_forms_of_older_states() {
        let mut rows: Ring<[f64; 3]> = Ring::default();
        for i in 0..100 {
            rows.push([f64::from(i), 1.0, 2.0], 50);
        }
        assert_eq!(Ring::<[f64; 3]>::PER_SEGMENT, 42);
        let (segments, _) = rows.delta("rows", true);
        let mut back: Ring<[f64; 3]> =
            serde_json::from_str(&serde_json::to_string(&rows).unwrap()).unwrap();
        back.attach("rows", &segments).unwrap();
        assert_eq!(back, rows);

        let old: Ring<[f64; 2]> = serde_json::from_str("[[1.0, 2.0], [3.0, 4.0]]").unwrap();
        assert_eq!(
            old.iter().copied().collect::<Vec<_>>(),
            vec![[1.0, 2.0], [3.0, 4.0]]
        );
        let mut bytes = Vec::new();
        for x in [1.5f64, -2.0] {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let old: Ring<f64> = serde_json::from_value(STANDARD.encode(bytes).into()).unwrap();
        assert_eq!((old.len(), old.back().copied()), (2, Some(-2.0)));
        // Read inline, nothing of it is stored apart yet: the first checkpoint writes it all.
        assert_eq!(old.delta("v", false).0.len(), 1);
        assert!(serde_json::from_str::<Ring<f64>>("{\"end\": 2, \"len\": 3}").is_err());
    }
}

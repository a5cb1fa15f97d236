//! Per-stream analysis feeds: every analysis of one stream, for the people watching that stream (the console's
//! stream detail, over `GET /api/realtime/stream?stream=`), whichever replica analyses it.
//!
//! A feed exists only while someone watches: the engine asks [`Watchers::interest`] before a batch and builds
//! the messages on the analysis thread only then, so a stream nobody watches anywhere pays two map lookups per
//! batch. Each feed is a bounded ring (`tokio::sync::broadcast`, `--stream-subscriber-queue` messages) that
//! never waits for its receivers: a watcher that falls behind is told how many analyses it missed and goes on.
//!
//! ## Across replicas (PostgreSQL)
//! The replica that analyses a stream is usually not the one its watchers are connected to, so feeds cross
//! replicas through the relay ([`crate::relay`]):
//! * **Presence.** Each replica announces the streams it has watchers for ([`crate::relay::Item::Watching`])
//!   at once when a stream gets its first watcher here, every [`PRESENCE_INTERVAL`] while it has watchers, and
//!   when another replica starts listening (it asks with [`crate::relay::Item::Hello`]). A replica remembers
//!   another's interest for [`PRESENCE_TTL`] after the last announcement, so a stream stops being relayed at
//!   most that long after its last watcher left (or its replica died).
//! * **Publishing.** The replica that stores a batch of a stream watched elsewhere relays each analysis as a
//!   compact watch message ([`compact_message`]: what the stream page draws per event, a few hundred bytes,
//!   marked `"compact":true`; the whole result with its persistence diagrams and landscape would not fit a
//!   `NOTIFY`). The page fetches the window's diagrams through `GET /api/streams/{s}/analysis`, at a bounded rate.
//!   Its own watchers get the whole result directly; its own announcements never come back to it, so nobody
//!   receives an analysis twice.
//! * **Order and gaps.** Every message carries its position: the stream's row version that stored its batch
//!   and the event's ordinal in the stream ([`vigil_stream::StreamState::events`]). A feed delivers positions in
//!   increasing order only: an older or repeated position (a late relayed batch, a replay) is dropped, and a jump
//!   in ordinals (an announcement dropped by a full queue or lost during a reconnect) reaches the watchers as
//!   [`Delivery::Missed`] (SSE `lagged`) before the next analysis. A newer version with a smaller ordinal is a
//!   stream that started over, and is followed.
//!
//! Metrics: `topoforge_watch_relayed_total` (compact messages handed to the relay),
//! `topoforge_watch_received_total` (relayed messages delivered to a feed here),
//! `topoforge_watch_dropped_total{reason}` (`stale`: a position already passed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Notify, broadcast};
use vigil_stream::{Analysis, AnalysisResult};

use crate::hub::Shared;

/// How often a replica with watchers announces which streams they watch.
pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(2);

/// How long a replica keeps publishing a stream for another replica's watchers after that replica's last
/// announcement: three announcements may be lost before a live watcher is forgotten.
pub const PRESENCE_TTL: Duration = Duration::from_secs(7);

/// What a watcher's receiver gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// One analysis, as the SSE `analysis` event's data.
    Analysis(Shared),
    /// This many analyses of the stream never reached this feed (SSE `lagged`).
    Missed(u64),
}

/// Where an analysis stands in its stream: the row version that stored its batch, and the event's ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub version: i64,
    pub ordinal: u64,
}

/// Who wants a stream's analyses now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interest {
    /// Watchers on this replica.
    pub local: bool,
    /// Watchers on other replicas (announced within [`PRESENCE_TTL`]), and a relay to reach them.
    pub remote: bool,
}

impl Interest {
    pub fn any(self) -> bool {
        self.local || self.remote
    }
}

/// Hands a watch message to the relay; `false` when it was dropped (counted there).
pub(crate) type Outbox = Box<dyn Fn(&str, Position, &Shared) -> bool + Send + Sync>;

struct Feed {
    tx: broadcast::Sender<Delivery>,
    /// The newest position delivered (`None` before the first).
    last: Option<Position>,
}

/// The per-stream feeds of this process, and which streams other replicas watch.
pub struct Watchers {
    capacity: usize,
    feeds: Mutex<HashMap<String, Feed>>,
    /// Streams other replicas have watchers for, until when.
    remote: Mutex<HashMap<String, Instant>>,
    /// Set when a stream gets its first watcher here (or another replica asks), so presence goes out at once.
    changed: Notify,
    /// The relay's sending half, once the relay runs (PostgreSQL).
    outbox: OnceLock<Outbox>,
    relayed: AtomicU64,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Watchers {
    /// `capacity`: analyses a watcher may fall behind before it misses some.
    pub fn new(capacity: usize) -> Self {
        Watchers {
            capacity: capacity.max(1),
            feeds: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            outbox: OnceLock::new(),
            relayed: AtomicU64::new(0),
        }
    }

    /// A receiver of every analysis of `stream` from now on.
    pub fn watch(&self, stream: &str) -> broadcast::Receiver<Delivery> {
        let mut feeds = locked(&self.feeds);
        // Feeds whose watchers all left are forgotten here and in `publish`, so the map holds watched streams only.
        feeds.retain(|_, f| f.tx.receiver_count() > 0);
        if let Some(f) = feeds.get(stream) {
            return f.tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(self.capacity);
        feeds.insert(stream.to_owned(), Feed { tx, last: None });
        drop(feeds);
        // The other replicas learn of the new watcher now rather than at the next refresh.
        self.changed.notify_one();
        rx
    }

    /// Whether anyone watches `stream` on this replica now.
    pub fn is_watched(&self, stream: &str) -> bool {
        locked(&self.feeds)
            .get(stream)
            .is_some_and(|f| f.tx.receiver_count() > 0)
    }

    /// Who wants `stream`'s analyses now: watchers here, and watchers on other replicas reachable by the relay.
    pub fn interest(&self, stream: &str) -> Interest {
        let local = self.is_watched(stream);
        let remote = self.outbox.get().is_some() && {
            let mut remote = locked(&self.remote);
            match remote.get(stream) {
                Some(until) if *until > Instant::now() => true,
                Some(_) => {
                    remote.remove(stream);
                    false
                }
                None => false,
            }
        };
        Interest { local, remote }
    }

    /// Delivers `messages` (in order, each with its position) to `stream`'s watchers here; never waits. Positions
    /// at or before the newest one delivered are dropped; a jump in ordinals is delivered as
    /// [`Delivery::Missed`] first.
    pub fn publish(&self, stream: &str, messages: impl IntoIterator<Item = (Position, Shared)>) {
        let mut feeds = locked(&self.feeds);
        let Some(feed) = feeds.get_mut(stream) else {
            return;
        };
        if feed.tx.receiver_count() == 0 {
            feeds.remove(stream);
            return;
        }
        for (pos, m) in messages {
            match next_step(feed.last, pos) {
                Step::Stale => {
                    metrics::counter!("topoforge_watch_dropped_total", "reason" => "stale")
                        .increment(1);
                    continue;
                }
                Step::After(0) => {}
                Step::After(missed) => {
                    // An error only means the last watcher left meanwhile.
                    let _ = feed.tx.send(Delivery::Missed(missed));
                }
            }
            feed.last = Some(pos);
            let _ = feed.tx.send(Delivery::Analysis(m));
        }
    }

    /// Hands compact messages of `stream` (each with its position) to the relay for the other replicas' watchers.
    pub(crate) fn relay(
        &self,
        stream: &str,
        messages: impl IntoIterator<Item = (Position, Shared)>,
    ) {
        let Some(out) = self.outbox.get() else {
            return;
        };
        for (pos, m) in messages {
            if out(stream, pos, &m) {
                self.relayed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("topoforge_watch_relayed_total").increment(1);
            }
        }
    }

    /// Compact messages this replica handed to the relay since it started (tests: nothing is relayed for a
    /// stream nobody watches).
    pub fn relayed(&self) -> u64 {
        self.relayed.load(Ordering::Relaxed)
    }

    /// Connects the relay's sending half (once; later calls are ignored).
    pub(crate) fn set_outbox(&self, outbox: Outbox) {
        let _ = self.outbox.set(outbox);
    }

    /// Remembers that another replica watches `streams`, for [`PRESENCE_TTL`].
    pub(crate) fn watched_elsewhere(&self, streams: &[String]) {
        let until = Instant::now() + PRESENCE_TTL;
        let mut remote = locked(&self.remote);
        let now = Instant::now();
        remote.retain(|_, t| *t > now);
        for s in streams {
            remote.insert(s.clone(), until);
        }
    }

    /// Asks for this replica's presence to be announced now (another replica started listening).
    pub(crate) fn announce_soon(&self) {
        self.changed.notify_one();
    }

    /// Waits until presence should be announced before the next periodic refresh.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The streams with at least one watcher here, by name.
    pub fn watched(&self) -> Vec<String> {
        let mut v: Vec<String> = locked(&self.feeds)
            .iter()
            .filter(|(_, f)| f.tx.receiver_count() > 0)
            .map(|(s, _)| s.clone())
            .collect();
        v.sort_unstable();
        v
    }

    /// Streams with at least one watcher.
    pub fn watched_streams(&self) -> usize {
        locked(&self.feeds)
            .values()
            .filter(|f| f.tx.receiver_count() > 0)
            .count()
    }
}

/// What to do with an analysis at `pos` after `last`.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Already passed (or a repeat): drop it.
    Stale,
    /// Deliver it, after telling the watchers this many analyses were missed.
    After(u64),
}

fn next_step(last: Option<Position>, pos: Position) -> Step {
    let Some(last) = last else {
        return Step::After(0);
    };
    if pos.version < last.version || (pos.version == last.version && pos.ordinal <= last.ordinal) {
        return Step::Stale;
    }
    if pos.ordinal <= last.ordinal {
        // A newer version whose count went back: the stream started over (an unreadable state); follow it.
        return Step::After(0);
    }
    Step::After(pos.ordinal - last.ordinal - 1)
}

/// One analysis as a local watcher receives it: `{"value":…,"timestamp":…,"analysis":…}` (the event's value and
/// client time, null without one, and the whole analysis result or the buffering status).
pub fn message(value: f64, timestamp_ms: Option<i64>, analysis: &str) -> Shared {
    let value = serde_json::to_string(&value).unwrap_or_else(|_| "null".into());
    let ts = timestamp_ms.map_or_else(|| "null".into(), |t| t.to_string());
    Shared::from(format!(
        "{{\"value\":{value},\"timestamp\":{ts},\"analysis\":{analysis}}}"
    ))
}

/// What the stream page draws of one result, as relayed to other replicas' watchers.
#[derive(Serialize)]
struct Compact<'a> {
    stream: &'a str,
    window_size: usize,
    timestamp: &'a str,
    betti_numbers: &'a vigil_stream::BettiNumbers,
    scores: &'a vigil_stream::Scores,
    anomaly_score: f64,
    is_anomaly: bool,
    calibrated: bool,
    risk_level: vigil_stream::RiskLevel,
    #[serde(skip_serializing_if = "Option::is_none")]
    incident_id: Option<&'a str>,
    /// Always true: persistence, landscape, security analysis and detector report are left out.
    compact: bool,
}

/// One analysis as another replica's watchers receive it: [`message`] with the result cut to what the stream
/// page draws per event (`{"stream","window_size","timestamp","betti_numbers","scores","anomaly_score",
/// "is_anomaly","calibrated","risk_level","incident_id"?,"compact":true}`; the buffering status whole).
pub fn compact_message(
    value: f64,
    timestamp_ms: Option<i64>,
    analysis: &Analysis,
) -> Result<Shared, serde_json::Error> {
    let json = match analysis {
        Analysis::Buffering(b) => serde_json::to_string(b)?,
        Analysis::Result(r) => serde_json::to_string(&compact_of(r))?,
    };
    Ok(message(value, timestamp_ms, &json))
}

fn compact_of(r: &AnalysisResult) -> Compact<'_> {
    Compact {
        stream: &r.stream,
        window_size: r.window_size,
        timestamp: &r.timestamp,
        betti_numbers: &r.betti_numbers,
        scores: &r.scores,
        anomaly_score: r.anomaly_score,
        is_anomaly: r.is_anomaly,
        calibrated: r.calibrated,
        risk_level: r.security_analysis.risk_level,
        incident_id: r.incident_id.as_deref(),
        compact: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn at(version: i64, ordinal: u64, text: &str) -> (Position, Shared) {
        (Position { version, ordinal }, Arc::from(text))
    }

    fn analysis(text: &str) -> Delivery {
        Delivery::Analysis(Arc::from(text))
    }

    #[tokio::test]
    async fn feeds_exist_while_watched_and_never_block() {
        let w = Watchers::new(2);
        assert!(!w.is_watched("a"));
        w.publish("a", [at(1, 1, "lost")]);
        let mut rx = w.watch("a");
        assert!(w.is_watched("a") && !w.is_watched("b"));
        assert_eq!(w.watched(), vec!["a".to_owned()]);
        w.publish("b", [at(1, 1, "other stream")]);
        w.publish("a", [at(2, 1, "1"), at(2, 2, "2"), at(2, 3, "3")]);
        // Three into a ring of two: the watcher learns it missed one, then reads on.
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(1))
        ));
        assert_eq!(rx.recv().await.ok(), Some(analysis("2")));
        assert_eq!(rx.recv().await.ok(), Some(analysis("3")));
        drop(rx);
        assert!(!w.is_watched("a"));
        w.publish("a", [at(3, 4, "x")]);
        assert_eq!(w.watched_streams(), 0);
    }

    #[tokio::test]
    async fn feeds_deliver_each_position_once_in_order_and_report_gaps() {
        let w = Watchers::new(64);
        let mut rx = w.watch("s");
        // Batch at version 5 (ordinals 1–2), the same batch again (relayed late), an older batch, then a batch
        // whose predecessor never arrived (ordinals 3–4 missing).
        w.publish("s", [at(5, 1, "a"), at(5, 2, "b")]);
        w.publish("s", [at(5, 1, "a"), at(5, 2, "b")]);
        w.publish("s", [at(4, 9, "old")]);
        w.publish("s", [at(7, 5, "e")]);
        // A newer version whose count went back: the stream started over.
        w.publish("s", [at(9, 1, "fresh")]);
        let mut got = Vec::new();
        while let Ok(d) = rx.try_recv() {
            got.push(d);
        }
        assert_eq!(
            got,
            vec![
                analysis("a"),
                analysis("b"),
                Delivery::Missed(2),
                analysis("e"),
                analysis("fresh")
            ]
        );
    }

    #[test]
    fn positions_order_by_version_then_ordinal() {
        let p = |version, ordinal| Position { version, ordinal };
        assert_eq!(next_step(None, p(3, 10)), Step::After(0));
        assert_eq!(next_step(Some(p(3, 10)), p(3, 11)), Step::After(0));
        assert_eq!(next_step(Some(p(3, 10)), p(4, 11)), Step::After(0));
        assert_eq!(next_step(Some(p(3, 10)), p(4, 14)), Step::After(3));
        assert_eq!(next_step(Some(p(3, 10)), p(3, 10)), Step::Stale);
        assert_eq!(next_step(Some(p(3, 10)), p(2, 11)), Step::Stale);
        assert_eq!(next_step(Some(p(3, 10)), p(4, 2)), Step::After(0));
    }

    #[tokio::test]
    async fn other_replicas_interest_needs_a_relay_and_expires() {
        let w = Watchers::new(4);
        w.watched_elsewhere(&["s".to_owned()]);
        // Without a relay there is nobody to reach.
        assert_eq!(w.interest("s"), Interest::default());
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        w.set_outbox(Box::new(move |s: &str, p: Position, m: &Shared| {
            locked(&log).push((s.to_owned(), p.ordinal, m.to_string()));
            true
        }));
        assert_eq!(
            w.interest("s"),
            Interest {
                local: false,
                remote: true
            }
        );
        assert!(!w.interest("t").any());
        w.relay("s", [at(1, 1, "m")]);
        assert_eq!(w.relayed(), 1);
        assert_eq!(*locked(&sent), vec![("s".to_owned(), 1, "m".to_owned())]);
        // An announcement already expired is forgotten.
        locked(&w.remote).insert("s".into(), Instant::now() - Duration::from_millis(1));
        assert!(!w.interest("s").remote);
        assert!(locked(&w.remote).is_empty());
    }

    #[test]
    fn messages_are_json() {
        let m = message(1.5, Some(7), "{\"status\":\"buffering\",\"count\":1}");
        let v: serde_json::Value = serde_json::from_str(&m).expect("json");
        assert_eq!(v["value"], 1.5);
        assert_eq!(v["timestamp"], 7);
        assert_eq!(v["analysis"]["count"], 1);
        let m = message(2.0, None, "{}");
        let v: serde_json::Value = serde_json::from_str(&m).expect("json");
        assert!(v["timestamp"].is_null());
    }

    #[test]
    fn compact_messages_keep_what_the_page_draws_per_event_and_stay_small() {
        let mut r = vigil_stream::bench_data::SplitMix::new(3);
        let mut state = vigil_stream::StreamState::new("s");
        let cfg = vigil_stream::StreamConfig::default();
        let mut last = None;
        for i in 0..120 {
            let e = vigil_stream::Event::new("s", 10.0 + r.normal(), None);
            let a = state.analyse(&e, &cfg).expect("analysed");
            let m = compact_message(e.value, Some(i), &a).expect("serialised");
            assert!(m.len() < 1000, "{} bytes: {m}", m.len());
            if i == 0 {
                let v: serde_json::Value = serde_json::from_str(&m).expect("json");
                assert_eq!(v["analysis"]["status"], "buffering");
            }
            last = Some((a, m));
        }
        let (a, m) = last.expect("analysed");
        let full = a.result().expect("a result");
        let v: serde_json::Value = serde_json::from_str(&m).expect("json");
        let c = &v["analysis"];
        assert_eq!(c["compact"], true);
        assert_eq!(c["window_size"], full.window_size);
        assert_eq!(c["scores"]["total"], full.scores.total);
        assert_eq!(c["betti_numbers"]["h0"], full.betti_numbers.h0);
        assert_eq!(c["calibrated"], full.calibrated);
        assert!(c.get("persistence").is_none());
    }
}

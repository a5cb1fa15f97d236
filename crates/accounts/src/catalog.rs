//! The built-in catalogue of public event feeds that `vigil sources load-catalog` loads.
//!
//! Every entry is a public, unauthenticated (or free-key) feed that emits a steady stream of events, which is what
//! the TopoForge pipeline needs to calibrate a baseline. Loading is idempotent: entries are keyed by a stable id,
//! and reloading refreshes their descriptions without re-enabling feeds an analyst switched off.

use vigil_store::sources::{self, Source};
use vigil_store::time::now_ms;
use vigil_store::{Store, StoreError};

/// `(id, name, type, url, protocol, description)`.
pub const CATALOG: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "wikipedia-recentchange",
        "Wikipedia recent changes",
        "wiki",
        "https://stream.wikimedia.org/v2/stream/recentchange",
        "sse",
        "Every edit, page creation and log action on all Wikimedia wikis (EventStreams, Server-Sent Events).",
    ),
    (
        "wikipedia-page-create",
        "Wikipedia page creations",
        "wiki",
        "https://stream.wikimedia.org/v2/stream/page-create",
        "sse",
        "New pages across Wikimedia wikis (EventStreams).",
    ),
    (
        "github-events",
        "GitHub public events",
        "code",
        "https://api.github.com/events",
        "https-poll",
        "Public activity (pushes, issues, pull requests) across GitHub; poll, honouring X-Poll-Interval and ETag.",
    ),
    (
        "usgs-earthquakes",
        "USGS earthquakes (past hour)",
        "seismic",
        "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_hour.geojson",
        "https-poll",
        "All earthquakes recorded by the USGS in the past hour, GeoJSON, refreshed every minute.",
    ),
    (
        "hackernews-new",
        "Hacker News new stories",
        "news",
        "https://hacker-news.firebaseio.com/v0/newstories.json",
        "https-poll",
        "Ids of the newest Hacker News stories (official Firebase API).",
    ),
    (
        "bluesky-jetstream",
        "Bluesky firehose (Jetstream)",
        "social",
        "wss://jetstream2.us-east.bsky.network/subscribe",
        "websocket",
        "Posts, likes and follows on the AT Protocol network as JSON (Jetstream).",
    ),
    (
        "coinbase-btc-usd",
        "Coinbase BTC-USD ticker",
        "market",
        "wss://ws-feed.exchange.coinbase.com",
        "websocket",
        "Trades and price ticks for BTC-USD; subscribe to the ticker channel after connecting.",
    ),
    (
        "certstream",
        "Certificate Transparency (CertStream)",
        "security",
        "wss://certstream.calidog.io/",
        "websocket",
        "Certificates as they are logged to public Certificate Transparency logs.",
    ),
    (
        "nasa-eonet",
        "NASA EONET natural events",
        "environment",
        "https://eonet.gsfc.nasa.gov/api/v3/events",
        "https-poll",
        "Wildfires, storms, volcanoes and other natural events curated by NASA (Earth Observatory Natural Event Tracker).",
    ),
    (
        "opensky-states",
        "OpenSky aircraft states",
        "aviation",
        "https://opensky-network.org/api/states/all",
        "https-poll",
        "Positions of aircraft seen by the OpenSky Network (anonymous access is rate limited).",
    ),
];

/// Inserts or refreshes every catalogue entry; returns `(newly added, catalogue size)`.
pub async fn load_catalog(store: &Store) -> Result<(usize, usize), StoreError> {
    let now = now_ms();
    let mut added = 0;
    for &(id, name, kind, url, protocol, description) in CATALOG {
        let source = Source {
            id: id.into(),
            name: name.into(),
            kind: kind.into(),
            url: url.into(),
            protocol: protocol.into(),
            description: description.into(),
            active: true,
            created_at: now,
        };
        if sources::upsert(store, &source).await? {
            added += 1;
        }
    }
    Ok((added, CATALOG.len()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_unique_and_urls_absolute() {
        let ids: HashSet<_> = CATALOG.iter().map(|e| e.0).collect();
        assert_eq!(ids.len(), CATALOG.len());
        assert!(CATALOG.iter().all(|e| e.3.contains("://")));
    }

    #[tokio::test]
    async fn loading_twice_adds_once() {
        for db in vigil_store::testing::TestDb::all().await {
            assert_eq!(
                load_catalog(&db.store).await.expect("load"),
                (CATALOG.len(), CATALOG.len())
            );
            assert_eq!(
                load_catalog(&db.store).await.expect("reload"),
                (0, CATALOG.len())
            );
            assert_eq!(
                sources::list(&db.store).await.expect("list").len(),
                CATALOG.len(),
                "{}",
                db.label
            );
        }
    }
}

//! Seed 004's events: clickstream events with epoch-millisecond timestamps
//! and CDC events with RFC 3339 timestamps, spread over a few hours across a
//! day boundary so they land in several date/hour directories.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const EVENT_TYPES: &[&str] = &["page_view", "click", "scroll", "add_to_cart", "purchase"];
const PAGES: &[&str] = &["/home", "/search", "/product", "/cart", "/checkout"];
const REFERRERS: &[&str] = &["google", "direct", "newsletter", "ads"];
const ACTIONS: &[&str] = &["INSERT", "UPDATE", "DELETE"];

/// Which of seed 004's event kinds to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestionKind {
    Clickstream,
    Cdc,
}

/// One generated event: its id (`event_id` or `id`), time and JSON.
#[derive(Debug, Clone)]
pub struct IngestionEvent {
    pub id: String,
    pub time: DateTime<Utc>,
    pub payload: String,
}

pub struct IngestionEvents {
    kind: IngestionKind,
    rng: SmallRng,
    n: u64,
    start: DateTime<Utc>,
    /// Time between consecutive events.
    step: Duration,
}

impl IngestionEvents {
    /// `count` events spread evenly over three hours from 22:30 UTC.
    pub fn new(kind: IngestionKind, seed: u64, count: u64) -> Self {
        let span_ms = 3 * 3600 * 1000;
        Self {
            kind,
            rng: SmallRng::seed_from_u64(seed),
            n: 0,
            start: Utc
                .with_ymd_and_hms(2024, 3, 13, 22, 30, 0)
                .single()
                .unwrap_or_default(),
            step: Duration::milliseconds(span_ms / count.max(1) as i64),
        }
    }
}

impl Iterator for IngestionEvents {
    type Item = IngestionEvent;

    fn next(&mut self) -> Option<IngestionEvent> {
        let n = self.n;
        self.n += 1;
        let time = self.start + self.step * n as i32;
        let pick =
            |rng: &mut SmallRng, from: &[&'static str]| from[rng.random_range(0..from.len())];
        Some(match self.kind {
            IngestionKind::Clickstream => {
                let id = format!("evt_{n}");
                let payload = json!({
                    "event_id": id,
                    "timestamp": time.timestamp_millis(),
                    "user_id": format!("user_{}", self.rng.random_range(0..500)),
                    "event_type": pick(&mut self.rng, EVENT_TYPES),
                    "data": {"page": pick(&mut self.rng, PAGES), "referrer": pick(&mut self.rng, REFERRERS)},
                });
                IngestionEvent {
                    id,
                    time,
                    payload: payload.to_string(),
                }
            }
            IngestionKind::Cdc => {
                let id = format!("change_{n}");
                let payload = json!({
                    "id": id,
                    "action": pick(&mut self.rng, ACTIONS),
                    "timestamp": time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "currentEvent": {
                        "field1": format!("value{}", self.rng.random_range(0..1000)),
                        "field2": format!("value{}", self.rng.random_range(0..1000)),
                    },
                });
                IngestionEvent {
                    id,
                    time,
                    payload: payload.to_string(),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_cross_midnight_and_name_their_ids() {
        let events: Vec<_> = IngestionEvents::new(IngestionKind::Cdc, 1, 300)
            .take(300)
            .collect();
        assert_eq!(events.len(), 300);
        assert!(events[0].payload.contains("\"id\":\"change_0\""));
        assert!(events[0].payload.contains("2024-03-13T22:30:00.000Z"));
        assert_eq!(events[299].time.format("%F").to_string(), "2024-03-14");
        let clicks: Vec<_> = IngestionEvents::new(IngestionKind::Clickstream, 1, 2)
            .take(2)
            .collect();
        assert!(clicks[1].payload.contains("\"event_id\":\"evt_1\""));
    }
}

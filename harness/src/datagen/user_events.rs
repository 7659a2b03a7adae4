//! Seed 000's `UserEvent`: user id, event type and time, event id and a
//! string-to-string metadata map, as JSON.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

const EVENT_TYPES: &[&str] = &[
    "page_view",
    "click",
    "add_to_cart",
    "purchase",
    "login",
    "logout",
];
const PAGES: &[&str] = &["/", "/search", "/product", "/cart", "/checkout", "/account"];
const DEVICES: &[&str] = &["mobile", "desktop", "tablet"];

/// One generated message; `event` is `None` for a malformed one.
#[derive(Debug, Clone)]
pub struct Generated {
    pub payload: String,
    pub event: Option<UserEvent>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserEvent {
    pub event_id: Uuid,
    pub user_id: Uuid,
    pub event_type: String,
    pub event_time: DateTime<Utc>,
    pub metadata: Vec<(String, String)>,
}

pub struct UserEvents {
    rng: SmallRng,
    users: Vec<Uuid>,
    n: u64,
    malformed_every: Option<u64>,
    start: DateTime<Utc>,
}

impl UserEvents {
    /// Every `malformed_every`-th message is malformed, in turn: not JSON at
    /// all, an unparseable `event_time`, and a `user_id` that is not a UUID.
    pub fn new(seed: u64, users: usize, malformed_every: Option<u64>) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let users = (0..users.max(1))
            .map(|_| Uuid::from_u128(rng.random()))
            .collect();
        Self {
            rng,
            users,
            n: 0,
            malformed_every,
            start: Utc
                .with_ymd_and_hms(2024, 5, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
        }
    }
}

impl Iterator for UserEvents {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        self.n += 1;
        let n = self.n;
        let user_id = self.users[self.rng.random_range(0..self.users.len())];
        let event_type = EVENT_TYPES[self.rng.random_range(0..EVENT_TYPES.len())].to_string();
        // Strictly increasing times keep every event a distinct row; 37 s apart
        // spreads a few thousand events over several date buckets.
        let event_time = self.start
            + Duration::seconds(37 * n as i64)
            + Duration::milliseconds((n % 1000) as i64);
        let event_id = Uuid::from_u128(self.rng.random());
        let metadata = vec![
            (
                "page".to_string(),
                PAGES[self.rng.random_range(0..PAGES.len())].to_string(),
            ),
            (
                "device".to_string(),
                DEVICES[self.rng.random_range(0..DEVICES.len())].to_string(),
            ),
        ];
        let time = event_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        if let Some(k) = self.malformed_every
            && k > 0
            && n.is_multiple_of(k)
        {
            let payload = match (n / k) % 3 {
                1 => format!(
                    "{{\"event_id\": \"{event_id}\", \"user_id\": \"{user_id}\", \"event_type\": "
                ),
                2 => json!({"event_id": event_id, "user_id": user_id, "event_type": event_type,
                            "event_time": format!("not-a-time-{n}"), "metadata": {}})
                .to_string(),
                _ => json!({"event_id": event_id, "user_id": format!("user-{n}"), "event_type": event_type,
                            "event_time": time, "metadata": {}})
                .to_string(),
            };
            return Some(Generated {
                payload,
                event: None,
            });
        }
        let payload = json!({
            "event_id": event_id,
            "user_id": user_id,
            "event_type": event_type,
            "event_time": time,
            "metadata": metadata.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
        .to_string();
        Some(Generated {
            payload,
            event: Some(UserEvent {
                event_id,
                user_id,
                event_type,
                event_time,
                metadata,
            }),
        })
    }
}

//! Users as the seed pipelines receive them: seed 001's `users_created`
//! messages (flat) and seed 003's RandomUser API results (nested, with
//! credentials that must never be stored, missing values, untidy genders and
//! repeated `login.uuid`s).

use chrono::{Duration, TimeZone, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

const FIRST: &[&str] = &[
    "Jennie", "Ahmed", "Lena", "Tomás", "Aiko", "Kwame", "Olga", "Ravi",
];
const LAST: &[&str] = &[
    "Nichols", "Haddad", "Berg", "Silva", "Tanaka", "Mensah", "Ivanova", "Rao",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Billings", "Michigan", "United States"),
    ("Lyon", "Rhône", "France"),
    ("Kyoto", "Kyoto", "Japan"),
    ("Accra", "Greater Accra", "Ghana"),
];
const STREETS: &[&str] = &["Valwood Pkwy", "Rue de la Paix", "Sakura Dori", "Ring Road"];
/// Genders as an untidy API gives them, and what the pipeline makes of them.
pub const GENDERS: &[(&str, &str)] = &[
    ("female", "female"),
    ("male", "male"),
    (" Female ", "female"),
    ("MALE", "male"),
    ("f", "female"),
    ("m", "male"),
    ("", "unknown"),
];

fn pick<'a, T>(rng: &mut SmallRng, from: &'a [T]) -> &'a T {
    &from[rng.random_range(0..from.len())]
}

fn iso(rng: &mut SmallRng, from_year: i32, years: i64) -> String {
    let start = Utc
        .with_ymd_and_hms(from_year, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let t = start + Duration::milliseconds(rng.random_range(0..years * 365 * 86_400_000));
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Seed 001: the flat user a `users_created` message carries.
pub struct CreatedUsers {
    rng: SmallRng,
}

impl CreatedUsers {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
        }
    }
}

impl Iterator for CreatedUsers {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        let r = &mut self.rng;
        let (first, last) = (*pick(r, FIRST), *pick(r, LAST));
        let (city, state, country) = *pick(r, CITIES);
        let username = format!("{}{}", first.to_lowercase(), r.random_range(100..999));
        Some(json!({
            "id": Uuid::from_u128(r.random()).to_string(),
            "first_name": first,
            "last_name": last,
            "gender": if r.random_bool(0.5) { "female" } else { "male" },
            "address": format!("{} {}, {city}, {state}, {country}", r.random_range(1..9999), pick(r, STREETS)),
            "post_code": format!("{:05}", r.random_range(0..99_999)),
            "email": format!("{username}@example.com"),
            "username": username,
            "dob": iso(r, 1950, 50),
            "registered_date": iso(r, 2005, 18),
            "phone": format!("({:03}) {:03}-{:04}", r.random_range(200..999), r.random_range(0..999), r.random_range(0..9999)),
            "picture": format!("https://randomuser.me/api/portraits/med/women/{}.jpg", r.random_range(0..99)),
        }))
    }
}

/// Seed 003: RandomUser API results. Every `repeat_every`-th user reuses the
/// `login.uuid` of an earlier one (with other details); every
/// `missing_every`-th lacks its phone, state and postcode.
pub struct RandomUsers {
    rng: SmallRng,
    n: u64,
    repeat_every: u64,
    missing_every: u64,
    uuids: Vec<String>,
}

impl RandomUsers {
    pub fn new(seed: u64, repeat_every: u64, missing_every: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            n: 0,
            repeat_every,
            missing_every,
            uuids: Vec::new(),
        }
    }
}

impl Iterator for RandomUsers {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        self.n += 1;
        let r = &mut self.rng;
        let repeat = self.repeat_every > 0
            && self.n.is_multiple_of(self.repeat_every)
            && !self.uuids.is_empty();
        let uuid = if repeat {
            self.uuids[r.random_range(0..self.uuids.len())].clone()
        } else {
            let u = Uuid::from_u128(r.random()).to_string();
            self.uuids.push(u.clone());
            u
        };
        let (first, last) = (*pick(r, FIRST), *pick(r, LAST));
        let (city, state, country) = *pick(r, CITIES);
        let (gender, _) = *pick(r, GENDERS);
        let username = format!("{}{}", first.to_lowercase(), r.random_range(100..999));
        let mut user = json!({
            "gender": gender,
            "name": {"title": "Ms", "first": format!("  {first} "), "last": last},
            "location": {
                "street": {"number": r.random_range(1..9999), "name": pick(r, STREETS)},
                "city": city,
                "state": state,
                "country": country,
                "postcode": r.random_range(10_000..99_999),
                "coordinates": {
                    "latitude": format!("{:.4}", r.random_range(-90.0..90.0)),
                    "longitude": format!("{:.4}", r.random_range(-180.0..180.0)),
                },
                "timezone": {"offset": "+9:30", "description": "Adelaide, Darwin"},
            },
            "email": format!("{username}@example.com"),
            "login": {
                "uuid": uuid,
                "username": username,
                "password": format!("secret{}", r.random_range(0..9999)),
                "salt": format!("salt{:06}", r.random_range(0..999_999)),
                "md5": format!("{:032x}", r.random::<u128>()),
                "sha1": format!("{:040x}", r.random::<u128>()),
                "sha256": format!("{:064x}", r.random::<u128>()),
            },
            "dob": {"date": iso(r, 1950, 50), "age": 40},
            "registered": {"date": iso(r, 2005, 18), "age": 10},
            "phone": format!("({:03}) {:03}-{:04}", r.random_range(200..999), r.random_range(0..999), r.random_range(0..9999)),
            "cell": "(489) 330-2385",
            "nat": "US",
        });
        if self.missing_every > 0 && self.n.is_multiple_of(self.missing_every) {
            if let Some(loc) = user["location"].as_object_mut() {
                loc.remove("state");
                loc.remove("postcode");
            }
            if let Some(u) = user.as_object_mut() {
                u.remove("phone");
            }
        }
        Some(user)
    }
}

/// What the shipped seed 003 job makes of a RandomUser result: its row of
/// `user_data.users` as Cassandra's `SELECT JSON` shows it.
pub fn seed_003_row(u: &Value) -> Value {
    let text = |v: &Value| -> String {
        let s = match v {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        if s.is_empty() { "unknown".into() } else { s }
    };
    let gender = GENDERS
        .iter()
        .find(|(raw, _)| Some(*raw) == u["gender"].as_str())
        .map_or("unknown", |(_, clean)| clean);
    let loc = &u["location"];
    json!({
        "user_id": u["login"]["uuid"],
        "first_name": text(&u["name"]["first"]),
        "last_name": text(&u["name"]["last"]),
        "gender": gender,
        "email": text(&u["email"]).to_lowercase(),
        "username": text(&u["login"]["username"]),
        "address": format!("{} {}", loc["street"]["number"], loc["street"]["name"].as_str().unwrap_or_default()),
        "city": text(&loc["city"]),
        "state": text(&loc["state"]),
        "country": text(&loc["country"]),
        "postcode": text(&loc["postcode"]),
        "latitude": loc["coordinates"]["latitude"].as_str().and_then(|s| s.parse::<f64>().ok()),
        "longitude": loc["coordinates"]["longitude"].as_str().and_then(|s| s.parse::<f64>().ok()),
        "date_of_birth": cql_time(u["dob"]["date"].as_str().unwrap_or_default()),
        "registration_date": cql_time(u["registered"]["date"].as_str().unwrap_or_default()),
        "phone": text(&u["phone"]),
        "nationality": text(&u["nat"]),
    })
}

/// Cassandra's JSON form of a timestamp given as RFC 3339 with milliseconds.
fn cql_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.to_utc().format("%Y-%m-%d %H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_users_repeat_uuids_and_miss_values() {
        let users: Vec<Value> = RandomUsers::new(3, 5, 7).take(35).collect();
        let uuids: std::collections::BTreeSet<_> = users
            .iter()
            .map(|u| u["login"]["uuid"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(uuids.len(), 35 - 7, "every fifth user repeats a uuid");
        assert!(users[6].get("phone").is_none() && users[5].get("phone").is_some());
        let created: Vec<Value> = CreatedUsers::new(1).take(2).collect();
        assert_ne!(created[0]["id"], created[1]["id"]);
    }
}

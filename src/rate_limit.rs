//! Rate limits per client address and key: on the expensive HTTP endpoints (a snapshot may
//! decode a frame, a WebRTC offer builds a pipeline) and on wrong passwords (HTTP and RTSP).
//! A token bucket per address and key, so one busy client (Home Assistant proxies every
//! dashboard through one address) is limited per camera, not overall.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WARN_EVERY: Duration = Duration::from_secs(60);
/// Buckets kept before idle full ones are dropped, which bounds the memory a scan can take.
const MAX_BUCKETS: usize = 4096;

pub struct RateLimit {
    what: &'static str,
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<(IpAddr, String), Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    warned: Option<Instant>,
}

/// Wrong passwords an address may try in a row, then one a minute: a person who mistypes is
/// not locked out, a script guessing gets nowhere.
const LOGIN_BURST: u32 = 10;
const LOGIN_RATE: f64 = 1.0 / 60.0;

impl RateLimit {
    /// The limit on wrong passwords. While an address is over it, even the right password is
    /// refused, so a guesser cannot learn which try was right.
    pub fn for_logins() -> Self {
        Self::new("password tries", LOGIN_RATE, LOGIN_BURST)
    }

    pub fn new(what: &'static str, per_second: f64, burst: u32) -> Self {
        Self {
            what,
            per_second,
            burst: f64::from(burst),
            buckets: Mutex::default(),
        }
    }

    /// Takes a token for `client` on `camera`; when there is none, how long until there is.
    pub fn check(&self, client: IpAddr, camera: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            let full_after = Duration::from_secs_f64(self.burst / self.per_second);
            buckets.retain(|_, b| now.duration_since(b.at) < full_after);
        }
        let bucket = buckets
            .entry((client, camera.to_string()))
            .or_insert(Bucket {
                tokens: self.burst,
                at: now,
                warned: None,
            });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        self.warn_once(bucket, client, camera, now);
        Err(Duration::from_secs_f64(
            (1.0 - bucket.tokens) / self.per_second,
        ))
    }

    /// How long until `client` has a token on `camera` again, without taking one; `None` when
    /// it has one now. Being refused is logged as in [`RateLimit::check`].
    pub fn waiting(&self, client: IpAddr, camera: &str, now: Instant) -> Option<Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.get_mut(&(client, camera.to_string()))?;
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        let tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        if tokens >= 1.0 {
            return None;
        }
        self.warn_once(bucket, client, camera, now);
        Some(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
    }

    fn warn_once(&self, bucket: &mut Bucket, client: IpAddr, camera: &str, now: Instant) {
        // Once a minute per client and camera, not per request: a flood must not flood the log.
        if bucket
            .warned
            .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
        {
            let rate = if self.per_second >= 1.0 {
                format!("{} a second", self.per_second)
            } else {
                format!("{:.0} a minute", self.per_second * 60.0)
            };
            tracing::warn!(
                "{client} asks for {} of {camera} faster than {rate}; refusing it until it slows down",
                self.what,
            );
            bucket.warned = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_and_other_clients_and_cameras_are_apart() {
        let limit = RateLimit::new("snapshots", 2.0, 4);
        let start = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..4 {
            assert!(limit.check(a, "nursery", start).is_ok());
        }
        let wait = limit.check(a, "nursery", start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(limit.check(a, "porch", start).is_ok(), "per camera");
        assert!(limit.check(b, "nursery", start).is_ok(), "per client");
        let later = start + Duration::from_millis(500);
        assert!(limit.check(a, "nursery", later).is_ok(), "one token back");
        assert!(limit.check(a, "nursery", later).is_err());
        let much_later = start + Duration::from_secs(60);
        for _ in 0..4 {
            assert!(
                limit.check(a, "nursery", much_later).is_ok(),
                "never above the burst"
            );
        }
        assert!(limit.check(a, "nursery", much_later).is_err());
    }

    #[test]
    fn waiting_looks_without_taking() {
        let limit = RateLimit::new("failed logins", 1.0, 2);
        let start = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(limit.waiting(a, "login", start), None);
        assert!(limit.check(a, "login", start).is_ok());
        assert!(limit.check(a, "login", start).is_ok());
        assert_eq!(
            limit.waiting(a, "login", start),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            limit.waiting(a, "login", start),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            limit.waiting(a, "login", start + Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn idle_buckets_are_dropped_when_there_are_too_many() {
        let limit = RateLimit::new("snapshots", 10.0, 10);
        let start = Instant::now();
        for i in 0..MAX_BUCKETS as u32 {
            let client = IpAddr::from(std::net::Ipv4Addr::from(i));
            let _ = limit.check(client, "nursery", start);
        }
        let _ = limit.check(
            "192.0.2.1".parse().unwrap(),
            "nursery",
            start + Duration::from_secs(5),
        );
        assert_eq!(limit.buckets.lock().unwrap().len(), 1);
    }
}

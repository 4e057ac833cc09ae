//! When a snapshot is taken: the modes, the triggers and the button's rate limit. Pure.

pub use crate::choices::{DEFAULT_INTERVAL_S, MAX_INTERVAL_S, MIN_INTERVAL_S, Mode};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Why a snapshot was taken: the `type` attribute of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Interval,
    Cry,
    Motion,
    /// A manual clip (the "Record clip" button).
    Manual,
    /// The "Take snapshot" button.
    OnDemand,
}

/// What a trigger should do in `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Skip,
    /// Take it, connecting to the camera if it is idle.
    Take,
    /// Take it only from a stream that is already running.
    TakeIfStreaming,
}

pub fn decide(mode: Mode, kind: Kind) -> Decision {
    match (mode, kind) {
        (_, Kind::OnDemand) => Decision::Take,
        (Mode::Disabled, _) => Decision::Skip,
        (Mode::Interval | Mode::IntervalAndEvents, Kind::Interval) => Decision::Take,
        (Mode::Auto, Kind::Interval) => Decision::TakeIfStreaming,
        (Mode::Events, Kind::Interval) => Decision::Skip,
        (Mode::Events | Mode::IntervalAndEvents | Mode::Auto, _) => Decision::Take,
        (Mode::Interval, _) => Decision::Skip,
    }
}

/// Where the still image a dashboard polls (`still_image_url`, about every 10 s while a card or
/// the camera entity is on screen) comes from. A poll must never hold an idle camera open, or a
/// dashboard left on a tablet keeps it streaming all day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Still {
    /// The camera streams anyway: a picture of now costs no connection.
    Fresh,
    /// The newest snapshot there is (or a "no picture yet" card), without connecting.
    Newest,
    /// Connect for a moment: an Interval mode whose newest snapshot is an interval old.
    Connect,
}

pub fn still(mode: Mode, streaming: bool, newest_age: Option<Duration>, interval_s: u32) -> Still {
    let interval = Duration::from_secs(interval_s.into());
    match mode {
        _ if streaming => Still::Fresh,
        Mode::Interval | Mode::IntervalAndEvents
            if newest_age.is_none_or(|age| age >= interval) =>
        {
            Still::Connect
        }
        _ => Still::Newest,
    }
}

/// Parses the "Snapshot interval" number; HA sends `60` or `60.0`.
pub fn parse_interval(text: &str) -> Result<u32, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| "a number of seconds".to_string())?;
    if value.fract() != 0.0
        || !(f64::from(MIN_INTERVAL_S)..=f64::from(MAX_INTERVAL_S)).contains(&value)
    {
        return Err(format!(
            "a whole number of seconds from {MIN_INTERVAL_S} to {MAX_INTERVAL_S}"
        ));
    }
    Ok(value as u32)
}

/// The "Take snapshot" button: at most one press per [`RateLimit::PERIOD`].
#[derive(Debug, Default)]
pub struct RateLimit {
    last: Option<Instant>,
}

impl RateLimit {
    pub const PERIOD: Duration = Duration::from_secs(5);

    /// `Ok` to go ahead, or `Err(wait)` with how long until the next press counts.
    pub fn check(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(last) = self.last {
            let since = now.saturating_duration_since(last);
            if since < Self::PERIOD {
                return Err(Self::PERIOD - since);
            }
        }
        self.last = Some(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_does_what_the_docs_say() {
        use Decision::*;
        let table = [
            (Mode::Disabled, [Skip, Skip, Take]),
            (Mode::Interval, [Take, Skip, Take]),
            (Mode::Events, [Skip, Take, Take]),
            (Mode::IntervalAndEvents, [Take, Take, Take]),
            (Mode::Auto, [TakeIfStreaming, Take, Take]),
        ];
        for (mode, [interval, cry, button]) in table {
            assert_eq!(decide(mode, Kind::Interval), interval, "{mode:?}");
            assert_eq!(decide(mode, Kind::Cry), cry, "{mode:?}");
            assert_eq!(decide(mode, Kind::Motion), cry, "{mode:?}");
            assert_eq!(decide(mode, Kind::OnDemand), button, "{mode:?}");
        }
    }

    #[test]
    fn a_dashboard_connects_an_idle_camera_at_most_once_an_interval_and_never_in_auto() {
        let minute = Some(Duration::from_secs(60));
        let fresh = Some(Duration::from_secs(5));
        for mode in Mode::ALL {
            assert_eq!(still(mode, true, None, 60), Still::Fresh, "{mode:?}");
        }
        for mode in [Mode::Auto, Mode::Events, Mode::Disabled] {
            assert_eq!(still(mode, false, None, 60), Still::Newest, "{mode:?}");
            assert_eq!(still(mode, false, minute, 60), Still::Newest, "{mode:?}");
        }
        for mode in [Mode::Interval, Mode::IntervalAndEvents] {
            assert_eq!(still(mode, false, None, 60), Still::Connect, "{mode:?}");
            assert_eq!(still(mode, false, minute, 60), Still::Connect, "{mode:?}");
            assert_eq!(still(mode, false, fresh, 60), Still::Newest, "{mode:?}");
        }
    }

    #[test]
    fn modes_parse_from_labels_and_names() {
        for mode in Mode::ALL {
            assert_eq!(Mode::from_label(mode.label()), Some(mode));
        }
        assert_eq!(
            Mode::from_label("interval + events"),
            Some(Mode::IntervalAndEvents)
        );
        assert_eq!(
            Mode::from_label("interval_and_events"),
            Some(Mode::IntervalAndEvents)
        );
        assert_eq!(Mode::from_label("sometimes"), None);
    }

    #[test]
    fn interval_takes_whole_seconds_in_range() {
        assert_eq!(parse_interval("60"), Ok(60));
        assert_eq!(parse_interval(" 60.0\n"), Ok(60));
        assert!(parse_interval("9").is_err());
        assert!(parse_interval("86401").is_err());
        assert!(parse_interval("12.5").is_err());
        assert!(parse_interval("NaN").is_err());
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn the_button_counts_once_per_five_seconds() {
        let mut limit = RateLimit::default();
        let t0 = Instant::now();
        assert!(limit.check(t0).is_ok());
        assert_eq!(
            limit.check(t0 + Duration::from_secs(2)),
            Err(Duration::from_secs(3))
        );
        assert!(limit.check(t0 + Duration::from_secs(5)).is_ok());
    }
}

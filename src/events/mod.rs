//! Events: local clips with pre-roll, their store and retention, the Event select's slots,
//! and RTSP `<camera>_event` playback.
//!
//! - [`preroll`] keeps the last seconds of a camera's media (passthrough, no decoding).
//! - [`recorder`] writes a clip per event: pre-roll + event + post-roll, fragmented MP4.
//! - [`store`] indexes a camera's clips on disk and applies retention.
//! - [`playback`] serves the selected clip at `<camera>_event`.
//! - [`task`] turns cry events and MQTT commands into recordings and publishes the state.

pub mod preroll;
pub mod recorder;
pub mod store;
pub mod task;

use std::time::SystemTime;

pub use crate::choices::{Kind, SLOTS, Slot};

/// `cry-20261121-204916-123`: the kind and the start in UTC, to the millisecond. Safe in file
/// names and URLs, and sorts by time within a kind.
pub fn event_id(kind: Kind, started_at: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_millis(started_at).to_string();
    // 2026-11-21T20:49:16.123Z → 20261121-204916-123
    let digits: String = stamp
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T' || *c == '.')
        .collect();
    let compact = digits.replace(['T', '.'], "-");
    format!("{}-{compact}", kind.key())
}

/// Whether `text` has the form [`event_id`] gives, and so names a clip file we wrote. Names read
/// back from disk are checked with it before they become paths.
pub fn is_event_id(text: &str) -> bool {
    let Some((kind, stamp)) = text.split_once('-') else {
        return false;
    };
    let digits: Vec<&str> = stamp.split('-').collect();
    [Kind::Cry, Kind::Motion, Kind::Manual]
        .iter()
        .any(|k| k.key() == kind)
        && digits.len() == 3
        && digits
            .iter()
            .zip([8, 6, 3])
            .all(|(part, len)| part.len() == len && part.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_our_own_event_ids_pass_the_check() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        for kind in [Kind::Cry, Kind::Motion, Kind::Manual] {
            assert!(is_event_id(&event_id(kind, at)));
        }
        for bad in [
            "../../etc/passwd",
            "cry-20270115-080000-123/../x",
            "cry-2027011-080000-123",
            "dog-20270115-080000-123",
            "cry-20270115-080000",
            "holiday",
            "",
        ] {
            assert!(!is_event_id(bad), "{bad}");
        }
    }

    #[test]
    fn slots_are_fifteen_labels_that_parse_back() {
        let all = Slot::all();
        assert_eq!(all.len(), 15);
        assert_eq!(all[0].label(), "Cry 1");
        assert_eq!(all[14].label(), "Manual 5");
        for slot in all {
            assert_eq!(Slot::parse(&slot.label()), Some(slot));
        }
        assert_eq!(
            Slot::parse(" motion 2 ").map(Slot::label).as_deref(),
            Some("Motion 2")
        );
        for bad in ["Cry 0", "Cry 6", "Dog 1", "Cry", "", "Cry one"] {
            assert_eq!(Slot::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn event_ids_name_the_kind_and_the_moment() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        assert_eq!(event_id(Kind::Cry, at), "cry-20270115-080000-123");
    }
}

//! What a user chooses per camera and the settings keep: the Event select's slots and the
//! snapshot mode and interval. A leaf: `settings`, `events` and `snapshot` all use it, and it
//! uses none of them.

use serde::{Deserialize, Serialize};

/// What made a clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Cry,
    Motion,
    Manual,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Cry, Kind::Motion, Kind::Manual];

    pub fn key(self) -> &'static str {
        match self {
            Kind::Cry => "cry",
            Kind::Motion => "motion",
            Kind::Manual => "manual",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Cry => "Cry",
            Kind::Motion => "Motion",
            Kind::Manual => "Manual",
        }
    }

    pub fn from_key(key: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.key() == key)
    }
}

/// Slots per kind in the Event select.
pub const SLOTS: u8 = 5;

/// One option of the Event select: `Cry 1` is the newest cry clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    pub kind: Kind,
    /// 1 is the most recent.
    pub index: u8,
}

impl Slot {
    /// Every option, in the order the select lists them.
    pub fn all() -> Vec<Slot> {
        Kind::ALL
            .into_iter()
            .flat_map(|kind| (1..=SLOTS).map(move |index| Slot { kind, index }))
            .collect()
    }

    pub fn label(self) -> String {
        format!("{} {}", self.kind.label(), self.index)
    }

    /// Parses a label, any case: `cry 1`, `Motion 5`.
    pub fn parse(text: &str) -> Option<Slot> {
        let (kind, index) = text.trim().split_once(' ')?;
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.label().eq_ignore_ascii_case(kind))?;
        let index: u8 = index.trim().parse().ok()?;
        (1..=SLOTS).contains(&index).then_some(Slot { kind, index })
    }
}

impl Serialize for Slot {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.label())
    }
}

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Slot::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an event slot: {text}")))
    }
}

/// The "Snapshot mode" select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Nothing automatic; the button and `frame.jpeg` still work.
    Disabled,
    /// Every interval, connecting to an idle camera for a moment if need be.
    Interval,
    /// At each event (cry, motion, manual clip), from the stream that event already runs.
    Events,
    /// Both of the above.
    IntervalAndEvents,
    /// Events always; the interval only while the camera streams anyway, so it never
    /// opens a connection of its own.
    #[default]
    Auto,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Mode::Disabled,
        Mode::Interval,
        Mode::Events,
        Mode::IntervalAndEvents,
        Mode::Auto,
    ];

    /// The option as Home Assistant shows it.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Disabled => "Disabled",
            Mode::Interval => "Interval",
            Mode::Events => "Events",
            Mode::IntervalAndEvents => "Interval + Events",
            Mode::Auto => "Auto",
        }
    }

    /// Accepts the label in any case, or the snake_case name scripts may prefer.
    pub fn from_label(text: &str) -> Option<Mode> {
        let wanted = text.trim();
        Mode::ALL.into_iter().find(|mode| {
            mode.label().eq_ignore_ascii_case(wanted)
                || serde_json::to_value(mode)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    == Some(wanted.to_ascii_lowercase())
        })
    }
}

pub const MIN_INTERVAL_S: u32 = 10;
pub const MAX_INTERVAL_S: u32 = 86_400;
pub const DEFAULT_INTERVAL_S: u32 = 60;

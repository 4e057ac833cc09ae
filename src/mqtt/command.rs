//! Pure parsing of MQTT commands into typed [`Command`]s: no I/O, tested directly.

use super::discovery::PRESS;
use super::topics::{Entity, Topics};
use crate::events::Slot;
use crate::snapshot::policy::{self, Mode};
use std::fmt;
use std::time::Duration;

/// Payloads are tiny words; anything bigger is a mistake or an attack.
pub const MAX_PAYLOAD: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// ON holds the camera connection with no viewers; OFF stops it and disconnects every viewer.
    LiveStream(bool),
    SnapshotMode(Mode),
    SnapshotInterval(u32),
    TakeSnapshot,
    /// The camera's motion, from an automation: ON starts a clip, OFF ends it after the post-roll.
    Motion(bool),
    /// "Record clip": `PRESS` for the default length, or a number of seconds.
    RecordClip(Option<Duration>),
    SelectEvent(Slot),
    EventStream(bool),
    /// The "Cry sensitivity" number, in percent.
    CrySensitivity(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressed {
    pub camera: String,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    NotACommandTopic,
    UnknownCamera(String),
    ReadOnly { camera: String, entity: String },
    UnknownEntity { camera: String, entity: String },
    PayloadTooLarge(usize),
    BadPayload { expected: String, got: String },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::NotACommandTopic => f.write_str("not a command topic"),
            CommandError::UnknownCamera(camera) => write!(f, "no camera with id \"{camera}\""),
            CommandError::ReadOnly { camera, entity } => {
                write!(f, "{camera}/{entity} is read-only")
            }
            CommandError::UnknownEntity { camera, entity } => {
                write!(f, "camera {camera} has no entity \"{entity}\"")
            }
            CommandError::PayloadTooLarge(len) => {
                write!(f, "payload of {len} bytes is larger than {MAX_PAYLOAD}")
            }
            CommandError::BadPayload { expected, got } => {
                write!(f, "payload \"{got}\" is not {expected}")
            }
        }
    }
}

pub fn parse(
    topics: &Topics,
    is_known_camera: impl Fn(&str) -> bool,
    topic: &str,
    payload: &[u8],
) -> Result<Addressed, CommandError> {
    let (camera, entity_key) = topics
        .parse_command(topic)
        .ok_or(CommandError::NotACommandTopic)?;
    if !is_known_camera(camera) {
        return Err(CommandError::UnknownCamera(shorten(camera, 40)));
    }
    let entity = Entity::from_key(entity_key).ok_or_else(|| CommandError::UnknownEntity {
        camera: camera.into(),
        entity: shorten(entity_key, 40),
    })?;
    if payload.len() > MAX_PAYLOAD {
        return Err(CommandError::PayloadTooLarge(payload.len()));
    }
    let text = String::from_utf8_lossy(payload);
    let text = text.trim();
    let bad = |expected: String| CommandError::BadPayload {
        expected,
        got: shorten(text, 40),
    };
    let command = match entity {
        Entity::LiveStream => Command::LiveStream(parse_switch(text)?),
        Entity::SnapshotMode => Command::SnapshotMode(Mode::from_label(text).ok_or_else(|| {
            let labels: Vec<_> = Mode::ALL.into_iter().map(Mode::label).collect();
            bad(format!("one of {}", labels.join(", ")))
        })?),
        Entity::SnapshotInterval => {
            Command::SnapshotInterval(policy::parse_interval(text).map_err(bad)?)
        }
        Entity::TakeSnapshot if text.eq_ignore_ascii_case(PRESS) => Command::TakeSnapshot,
        Entity::TakeSnapshot => return Err(bad(PRESS.into())),
        Entity::Motion => Command::Motion(parse_switch(text)?),
        Entity::EventStream => Command::EventStream(parse_switch(text)?),
        Entity::Event => Command::SelectEvent(
            Slot::parse(text)
                .ok_or_else(|| bad("one of Cry 1…5, Motion 1…5, Manual 1…5".into()))?,
        ),
        Entity::CrySensitivity => Command::CrySensitivity(
            parse_percent(text).ok_or_else(|| bad("a whole percent from 1 to 99".into()))?,
        ),
        Entity::RecordClip if text.eq_ignore_ascii_case(PRESS) => Command::RecordClip(None),
        Entity::RecordClip => {
            Command::RecordClip(Some(parse_clip_seconds(text).ok_or_else(|| {
                bad(format!("{PRESS} or whole seconds, 1 to {MAX_CLIP_S}"))
            })?))
        }
        Entity::StreamStatus
        | Entity::Info
        | Entity::Snapshot
        | Entity::Crying
        | Entity::CryConfidence => {
            return Err(CommandError::ReadOnly {
                camera: camera.into(),
                entity: entity_key.into(),
            });
        }
    };
    Ok(Addressed {
        camera: camera.into(),
        command,
    })
}

/// The longest manual clip, in seconds.
pub const MAX_CLIP_S: u64 = 600;

/// HA's number entity sends `60` or `60.0`.
fn parse_percent(text: &str) -> Option<u8> {
    let value: f64 = text.parse().ok()?;
    (value.fract() == 0.0 && (1.0..=99.0).contains(&value)).then_some(value as u8)
}

fn parse_clip_seconds(text: &str) -> Option<Duration> {
    let seconds: f64 = text.parse().ok()?;
    (seconds.fract() == 0.0 && (1.0..=MAX_CLIP_S as f64).contains(&seconds))
        .then(|| Duration::from_secs(seconds as u64))
}

fn parse_switch(text: &str) -> Result<bool, CommandError> {
    if text.eq_ignore_ascii_case("on") {
        Ok(true)
    } else if text.eq_ignore_ascii_case("off") {
        Ok(false)
    } else {
        Err(CommandError::BadPayload {
            expected: "ON or OFF".into(),
            got: shorten(text, 40),
        })
    }
}

/// Keeps log lines one line long whatever a client sends.
pub fn shorten(text: &str, max_chars: usize) -> String {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect();
    if clean.len() < text.len() {
        format!("{clean}…")
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MqttConfig;

    fn run(topic: &str, payload: &[u8]) -> Result<Addressed, CommandError> {
        parse(
            &Topics::new(&MqttConfig::default()),
            |c| c == "nursery",
            topic,
            payload,
        )
    }

    #[test]
    fn on_and_off_in_any_case_with_whitespace() {
        for (payload, on) in [("ON", true), (" on\n", true), ("Off", false)] {
            assert_eq!(
                run("ipcam/nursery/live_stream/command", payload.as_bytes()),
                Ok(Addressed {
                    camera: "nursery".into(),
                    command: Command::LiveStream(on)
                })
            );
        }
    }

    #[test]
    fn bad_input_is_named_precisely() {
        assert_eq!(
            run("ipcam/garage/live_stream/command", b"ON"),
            Err(CommandError::UnknownCamera("garage".into()))
        );
        assert!(matches!(
            run("ipcam/nursery/live_stream/command", b"maybe"),
            Err(CommandError::BadPayload { .. })
        ));
        assert_eq!(
            run("ipcam/nursery/live_stream/command", &[b'O'; 1000]),
            Err(CommandError::PayloadTooLarge(1000))
        );
        assert!(matches!(
            run("ipcam/nursery/info/command", b"ON"),
            Err(CommandError::ReadOnly { .. })
        ));
        assert!(matches!(
            run("ipcam/nursery/toaster/command", b"ON"),
            Err(CommandError::UnknownEntity { .. })
        ));
    }

    #[test]
    fn cry_sensitivity_takes_a_whole_percent() {
        let command = |payload: &str| {
            run("ipcam/nursery/cry_sensitivity/command", payload.as_bytes()).map(|a| a.command)
        };
        assert_eq!(command("60"), Ok(Command::CrySensitivity(60)));
        assert_eq!(command(" 35.0 "), Ok(Command::CrySensitivity(35)));
        for bad in ["0", "100", "42.5", "loud", "NaN"] {
            let err = command(bad).unwrap_err().to_string();
            assert!(err.contains("1 to 99"), "{bad}: {err}");
        }
    }

    #[test]
    fn snapshot_commands_take_labels_seconds_and_press() {
        let command = |topic: &str, payload: &str| {
            run(
                &format!("ipcam/nursery/{topic}/command"),
                payload.as_bytes(),
            )
            .map(|a| a.command)
        };
        assert_eq!(
            command("snapshot_mode", "Interval + Events"),
            Ok(Command::SnapshotMode(Mode::IntervalAndEvents))
        );
        assert_eq!(
            command("snapshot_interval", "30.0"),
            Ok(Command::SnapshotInterval(30))
        );
        assert_eq!(command("take_snapshot", "PRESS"), Ok(Command::TakeSnapshot));
        let err = command("snapshot_mode", "Sometimes")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Interval + Events"), "{err}");
        let err = command("snapshot_interval", "5").unwrap_err().to_string();
        assert!(err.contains("10 to 86400"), "{err}");
        assert!(matches!(
            command("snapshot", "x"),
            Err(CommandError::ReadOnly { .. })
        ));
    }

    #[test]
    fn garbage_is_shortened_for_the_log() {
        let long = "x".repeat(200);
        let err = run(&format!("ipcam/{long}/live_stream/command"), b"ON").unwrap_err();
        assert!(err.to_string().len() < 80, "{err}");
    }
}

//! `cameras:`: each camera, its stream, snapshots, cry detection and clips.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
}

/// When an H.265 camera is transcoded to H.264 for a WebRTC viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum H265ToH264 {
    /// Only for a viewer whose browser cannot take H.265, and only while one is watching.
    #[default]
    Auto,
    /// For every WebRTC viewer.
    Always,
    /// Never: a browser without H.265 gets a clear refusal.
    Never,
}

#[derive(Debug, Clone)]
pub struct CameraConfig {
    pub id: String,
    pub name: String,
    /// The camera URL without credentials: safe to log.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub transport: Transport,
    pub h265_to_h264: H265ToH264,
    pub close_after: Duration,
    pub start_timeout: Duration,
    pub snapshot: SnapshotConfig,
    pub cry: CryConfig,
    pub clips: ClipConfig,
}

/// Event clips: how much before and after an event, and how many are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub pre_roll: Duration,
    pub post_roll: Duration,
    /// Clips kept per kind (cry, motion, manual); at least 5, so the Event select is full.
    pub keep: usize,
    pub max_age: Option<Duration>,
    pub max_disk_mb: Option<u64>,
}

pub const DEFAULT_PRE_ROLL: Duration = Duration::from_secs(5);

pub const DEFAULT_POST_ROLL: Duration = Duration::from_secs(10);

pub const DEFAULT_CLIPS_KEPT: usize = 5;

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            pre_roll: DEFAULT_PRE_ROLL,
            post_roll: DEFAULT_POST_ROLL,
            keep: DEFAULT_CLIPS_KEPT,
            max_age: None,
            max_disk_mb: None,
        }
    }
}

/// Cry detection on a camera's audio; see DOCS for how the defaults were chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct CryConfig {
    pub enabled: bool,
    /// How readily a sound counts as crying, in percent (1 to 99): the detector's mean cry
    /// probability must reach `1 − sensitivity`. The "Cry sensitivity" entity changes it at run
    /// time (kept in the settings); this is its value until then.
    pub sensitivity: u8,
    /// How long the votes must go on before the sensor turns on.
    pub min_duration: Duration,
    /// How long the sensor stays on after the last crying patch.
    pub hold: Duration,
}

/// Chosen on the validation split's curve (`models/yamnet/README.md`).
pub const DEFAULT_CRY_SENSITIVITY: u8 = 50;

pub const DEFAULT_CRY_HOLD: Duration = Duration::from_secs(10);

impl Default for CryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            sensitivity: DEFAULT_CRY_SENSITIVITY,
            min_duration: Duration::ZERO,
            hold: DEFAULT_CRY_HOLD,
        }
    }
}

/// How a camera's still images are made.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotConfig {
    /// Output width; `None` keeps the camera's own. The height follows the aspect ratio.
    pub width: Option<u32>,
    /// JPEG quality, 1 to 100.
    pub quality: u8,
    /// The camera's own still-image URL, used while the stream is idle.
    pub url: Option<SnapshotUrl>,
}

/// An HTTP still-image URL with its credentials split out, so the URL is safe to log.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotUrl {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

pub const DEFAULT_SNAPSHOT_QUALITY: u8 = 85;

/// The camera entry as written by the user, before credentials are split out of the URL.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCamera {
    id: String,
    name: Option<String>,
    url: String,
    username: Option<String>,
    password: Option<Secret>,
    #[serde(default)]
    transport: Transport,
    #[serde(default)]
    h265_to_h264: H265ToH264,
    #[serde(default = "default_close_after")]
    close_after: f64,
    #[serde(default = "default_start_timeout")]
    start_timeout: f64,
    snapshot_url: Option<String>,
    snapshot_width: Option<u32>,
    #[serde(default = "default_snapshot_quality")]
    snapshot_quality: u8,
    #[serde(default)]
    cry_detection: bool,
    #[serde(default = "default_cry_sensitivity")]
    cry_sensitivity: f64,
    #[serde(default)]
    cry_min_duration: f64,
    #[serde(default = "default_cry_hold")]
    cry_hold: f64,
    #[serde(default = "default_pre_roll")]
    pre_roll: f64,
    #[serde(default = "default_post_roll")]
    post_roll: f64,
    #[serde(default = "default_clips_kept")]
    clips_kept: usize,
    clip_max_age: Option<String>,
    clip_max_disk_mb: Option<u64>,
}

pub(super) fn default_pre_roll() -> f64 {
    DEFAULT_PRE_ROLL.as_secs_f64()
}

pub(super) fn default_post_roll() -> f64 {
    DEFAULT_POST_ROLL.as_secs_f64()
}

pub(super) fn default_clips_kept() -> usize {
    DEFAULT_CLIPS_KEPT
}

pub(super) fn default_cry_sensitivity() -> f64 {
    f64::from(DEFAULT_CRY_SENSITIVITY)
}

pub(super) fn default_cry_hold() -> f64 {
    DEFAULT_CRY_HOLD.as_secs_f64()
}

pub(super) fn default_snapshot_quality() -> u8 {
    DEFAULT_SNAPSHOT_QUALITY
}

pub(super) fn default_close_after() -> f64 {
    10.0
}

pub(super) fn default_start_timeout() -> f64 {
    10.0
}

pub(super) fn is_valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub(super) fn camera(
    raw: RawCamera,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<CameraConfig> {
    let before = problems.len();
    let mut problem = |name: &str, message: String| {
        problems.push(Problem {
            field: format!("{field}.{name}"),
            message,
        })
    };
    if !is_valid_id(&raw.id) {
        problem(
            "id",
            format!(
                "\"{}\" is not a valid id: use 1 to 32 of a-z, 0-9 and _ (it becomes part of topics and RTSP paths)",
                raw.id
            ),
        );
    }
    let mut username = raw.username.filter(|u| !u.is_empty());
    let mut password = raw.password.filter(|p| !p.is_empty());
    let url = match parse_url(&raw.url, &["rtsp", "rtsps"]) {
        Err(message) => {
            problem("url", message);
            None
        }
        Ok(credentialed) => {
            if credentialed.username.is_some() {
                if username.is_some() || password.is_some() {
                    problem(
                        "url",
                        "has credentials and username/password are set too; keep only one".into(),
                    );
                }
                username = credentialed.username;
                password = credentialed.password;
            }
            Some(credentialed.url)
        }
    };
    if password.is_some() && username.is_none() {
        problem("password", "is set without a username".into());
    }
    let close_after = seconds(raw.close_after, 0.0, 3600.0, "close_after", &mut problem);
    let start_timeout = seconds(raw.start_timeout, 1.0, 120.0, "start_timeout", &mut problem);
    let snapshot_url = raw
        .snapshot_url
        .filter(|u| !u.trim().is_empty())
        .and_then(|text| match parse_url(&text, &["http"]) {
            Ok(parsed) if parsed.username.is_some() => Some(parsed),
            // Most cameras take the same account for stills as for the stream.
            Ok(parsed) => Some(SnapshotUrl {
                username: username.clone(),
                password: password.clone(),
                ..parsed
            }),
            Err(message) => {
                problem("snapshot_url", message);
                None
            }
        });
    if let Some(width) = raw.snapshot_width {
        if !(16..=7680).contains(&width) {
            problem(
                "snapshot_width",
                format!(
                    "{width} is out of range; use 16 to 7680 pixels, or leave it out for the camera's own"
                ),
            );
        }
    }
    if !(1..=100).contains(&raw.snapshot_quality) {
        problem(
            "snapshot_quality",
            format!("{} is out of range; use 1 to 100", raw.snapshot_quality),
        );
    }
    let cry_sensitivity = if (1.0..=99.0).contains(&raw.cry_sensitivity)
        && raw.cry_sensitivity.fract() == 0.0
    {
        Some(raw.cry_sensitivity as u8)
    } else {
        problem(
            "cry_sensitivity",
            format!(
                "{} is not a whole percent from 1 to 99 (the default {DEFAULT_CRY_SENSITIVITY} suits most rooms)",
                raw.cry_sensitivity
            ),
        );
        None
    };
    let cry_min_duration = seconds(
        raw.cry_min_duration,
        0.0,
        60.0,
        "cry_min_duration",
        &mut problem,
    );
    let cry_hold = seconds(raw.cry_hold, 0.0, 3600.0, "cry_hold", &mut problem);
    let pre_roll = seconds(raw.pre_roll, 0.0, 30.0, "pre_roll", &mut problem);
    let post_roll = seconds(raw.post_roll, 0.0, 300.0, "post_roll", &mut problem);
    if !(DEFAULT_CLIPS_KEPT..=100).contains(&raw.clips_kept) {
        problem(
            "clips_kept",
            format!(
                "{} is out of range; use {DEFAULT_CLIPS_KEPT} to 100 (the Event select shows 5 per kind)",
                raw.clips_kept
            ),
        );
    }
    let clip_max_age = match raw.clip_max_age.as_deref().map(humantime::parse_duration) {
        None => Some(None),
        Some(Ok(age)) if age >= Duration::from_secs(60) => Some(Some(age)),
        Some(_) => {
            problem(
                "clip_max_age",
                format!(
                    "\"{}\" is not a duration of a minute or more, like \"7d\" or \"12h\"",
                    raw.clip_max_age.as_deref().unwrap_or_default()
                ),
            );
            None
        }
    };
    if raw.clip_max_disk_mb == Some(0) {
        problem(
            "clip_max_disk_mb",
            "must be at least 1 (or left out)".into(),
        );
    }
    if problems.len() > before {
        return None;
    }
    Some(CameraConfig {
        name: raw
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| raw.id.clone()),
        id: raw.id,
        url: url?,
        username,
        password,
        transport: raw.transport,
        h265_to_h264: raw.h265_to_h264,
        close_after: close_after?,
        start_timeout: start_timeout?,
        snapshot: SnapshotConfig {
            width: raw.snapshot_width,
            quality: raw.snapshot_quality,
            url: snapshot_url,
        },
        cry: CryConfig {
            enabled: raw.cry_detection,
            sensitivity: cry_sensitivity?,
            min_duration: cry_min_duration?,
            hold: cry_hold?,
        },
        clips: ClipConfig {
            pre_roll: pre_roll?,
            post_roll: post_roll?,
            keep: raw.clips_kept,
            max_age: clip_max_age?,
            max_disk_mb: raw.clip_max_disk_mb,
        },
    })
}

/// Checks a URL's scheme and host, and moves credentials written into it into their own
/// fields, so the URL is safe to log.
pub(super) fn parse_url(text: &str, schemes: &[&str]) -> Result<SnapshotUrl, String> {
    let mut url = url::Url::parse(text)
        .map_err(|e| format!("\"{}\" is not a URL: {e}", crate::secret::redact_urls(text)))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!(
            "scheme \"{}\" is not supported; use {}://",
            url.scheme(),
            schemes[0]
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    let (mut username, mut password) = (None, None);
    if !url.username().is_empty() || url.password().is_some() {
        username = Some(decode(url.username()));
        password = url.password().map(|p| Secret::new(decode(p)));
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    Ok(SnapshotUrl {
        url: url.to_string(),
        username,
        password,
    })
}

pub(super) fn decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

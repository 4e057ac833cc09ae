//! A camera's clips on disk: `<media_dir>/<camera>/<event_id>.mp4`, each with a JSON sidecar
//! that says what it is. The index is rebuilt from the folder at start, so a clip written
//! before a crash is found again; a clip that cannot be read is left out with a log line.
//!
//! Retention keeps the newest `keep` clips of each kind, drops clips older than `max_age`, then
//! the oldest until the folder fits `max_disk_mb`. A clip being played is never deleted: it is
//! deleted when its last viewer leaves.

use super::{Kind, is_event_id};
use crate::config::ClipConfig;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipMeta {
    pub event_id: String,
    pub kind: Kind,
    pub started_at: SystemTime,
    pub duration_s: Option<f64>,
    /// `h264` or `h265`.
    pub video: String,
    pub audio: bool,
    /// False while recording, and for a clip whose recording was cut off (a kill).
    pub complete: bool,
    #[serde(default)]
    pub bytes: u64,
}

pub struct ClipStore {
    camera: String,
    dir: PathBuf,
    config: ClipConfig,
    state: Mutex<State>,
    changes: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// Newest first.
    clips: Vec<ClipMeta>,
    pins: HashMap<String, usize>,
    /// Past retention but being played: deleted when the last viewer leaves.
    doomed: HashSet<String>,
}

/// Keeps a clip from being deleted while it is played.
pub struct Pin {
    store: Arc<ClipStore>,
    event_id: String,
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.store.unpin(&self.event_id);
    }
}

impl std::fmt::Debug for ClipStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipStore")
            .field("camera", &self.camera)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ClipStore {
    pub fn open(media_dir: &Path, camera: &str, config: &ClipConfig) -> anyhow::Result<Arc<Self>> {
        let dir = media_dir.join(camera);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the clip folder {}", dir.display()))?;
        let marker = dir.join(MARKER);
        if !marker.exists() {
            std::fs::write(&marker, MARKER_TEXT)
                .with_context(|| format!("cannot mark the clip folder {}", dir.display()))?;
        }
        let mut clips = scan(&dir);
        clips.sort_by_key(|c| std::cmp::Reverse(c.started_at));
        let store = Arc::new(Self {
            camera: camera.to_string(),
            dir,
            config: config.clone(),
            state: Mutex::new(State {
                clips,
                ..State::default()
            }),
            changes: watch::Sender::new(0),
        });
        store.apply_retention();
        Ok(store)
    }

    pub fn camera(&self) -> &str {
        &self.camera
    }

    pub fn path(&self, event_id: &str) -> PathBuf {
        self.dir.join(format!("{event_id}.mp4"))
    }

    fn sidecar(&self, event_id: &str) -> PathBuf {
        self.dir.join(format!("{event_id}.json"))
    }

    /// Records that a clip is being written; a kill leaves it findable.
    pub fn begin(&self, meta: &ClipMeta) -> anyhow::Result<PathBuf> {
        write_sidecar(&self.sidecar(&meta.event_id), meta)?;
        Ok(self.path(&meta.event_id))
    }

    /// A finished clip joins the index; retention runs.
    /// Adds a written clip to the index; `complete` is false for one whose writer did not close
    /// it cleanly (a fragmented MP4 still plays up to its last fragment).
    pub fn finish(&self, mut meta: ClipMeta, complete: bool) -> anyhow::Result<()> {
        meta.complete = complete;
        meta.bytes = std::fs::metadata(self.path(&meta.event_id)).map_or(0, |m| m.len());
        write_sidecar(&self.sidecar(&meta.event_id), &meta)?;
        {
            let mut state = self.lock();
            state.clips.retain(|c| c.event_id != meta.event_id);
            state.clips.push(meta);
            state.clips.sort_by_key(|c| std::cmp::Reverse(c.started_at));
        }
        self.apply_retention();
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    /// A recording that failed: its files go.
    pub fn abandon(&self, event_id: &str) {
        let _ = std::fs::remove_file(self.path(event_id));
        let _ = std::fs::remove_file(self.sidecar(event_id));
    }

    /// The `index`-th newest clip of `kind` (1 is the newest).
    pub fn nth(&self, kind: Kind, index: u8) -> Option<ClipMeta> {
        self.lock()
            .clips
            .iter()
            .filter(|c| c.kind == kind)
            .nth(usize::from(index).checked_sub(1)?)
            .cloned()
    }

    pub fn newest(&self) -> Option<ClipMeta> {
        self.lock().clips.first().cloned()
    }

    pub fn clip(&self, event_id: &str) -> Option<ClipMeta> {
        self.lock()
            .clips
            .iter()
            .find(|c| c.event_id == event_id)
            .cloned()
    }

    /// Every clip, newest first.
    pub fn clips(&self) -> Vec<ClipMeta> {
        self.lock().clips.clone()
    }

    pub fn pin(self: &Arc<Self>, event_id: &str) -> Pin {
        *self.lock().pins.entry(event_id.to_string()).or_default() += 1;
        Pin {
            store: self.clone(),
            event_id: event_id.to_string(),
        }
    }

    fn unpin(&self, event_id: &str) {
        let delete = {
            let mut state = self.lock();
            let left = state.pins.get_mut(event_id).map(|n| {
                *n -= 1;
                *n
            });
            if left == Some(0) {
                state.pins.remove(event_id);
            }
            left == Some(0) && state.doomed.remove(event_id)
        };
        if delete {
            self.delete(event_id);
        }
    }

    /// Bumped whenever the index changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn apply_retention(&self) {
        let now = SystemTime::now();
        let deleted: Vec<String> = {
            let mut state = self.lock();
            let expired = expired(&state.clips, &self.config, now);
            if expired.is_empty() {
                return;
            }
            state.clips.retain(|c| !expired.contains(&c.event_id));
            let (pinned, free): (Vec<String>, Vec<String>) = expired
                .into_iter()
                .partition(|id| state.pins.contains_key(id));
            state.doomed.extend(pinned);
            free
        };
        for event_id in &deleted {
            self.delete(event_id);
        }
        self.changes.send_modify(|n| *n += 1);
    }

    fn delete(&self, event_id: &str) {
        tracing::info!(camera = %self.camera, "retention: deleting clip {event_id}");
        self.abandon(event_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Marks a clip folder as made by the add-on: only a marked folder is ever removed.
const MARKER: &str = ".ipcam-mqtt";
const MARKER_TEXT: &str = "ipcam-mqtt keeps a camera's event clips here. It removes this folder when the camera leaves its configuration, and only if nothing else is in it.\n";

/// Whether a file in a clip folder is one the add-on wrote: the marker, or a clip, its sidecar
/// or its partial file, named by an event id.
fn is_ours(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name == MARKER {
        return true;
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    // A sidecar being written is `<event_id>.json.tmp`.
    let stem = stem.strip_suffix(".json").unwrap_or(stem);
    path.extension()
        .is_some_and(|e| e == "mp4" || e == "json" || e == "tmp")
        && is_event_id(stem)
}

/// Removes the clip folders of cameras that left the config (no ghost state): only folders the
/// add-on marked as its own, holding nothing but what it wrote. Anything else on the media share
/// is the user's and left alone, named in the log.
pub fn remove_unconfigured(media_dir: &Path, cameras: &[&str]) {
    let Ok(entries) = std::fs::read_dir(media_dir) else {
        return;
    };
    for dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        let name = dir.file_name().map(|n| n.to_string_lossy().to_string());
        if name.as_deref().is_none_or(|n| cameras.contains(&n)) {
            continue;
        }
        if !dir.join(MARKER).is_file() {
            continue;
        }
        let ours =
            std::fs::read_dir(&dir).is_ok_and(|files| files.flatten().all(|f| is_ours(&f.path())));
        if ours {
            tracing::info!(
                "camera \"{}\" is no longer configured: removing its clips in {}",
                name.unwrap_or_default(),
                dir.display()
            );
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!("cannot remove {}: {e}", dir.display());
            }
        } else {
            tracing::warn!(
                "{} belongs to no configured camera but holds other files; left alone",
                dir.display()
            );
        }
    }
}

/// Which clips retention removes, newest-first input; pure.
pub fn expired(clips: &[ClipMeta], config: &ClipConfig, now: SystemTime) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen: HashMap<Kind, usize> = HashMap::new();
    let mut kept = Vec::new();
    for clip in clips {
        let count = seen.entry(clip.kind).or_default();
        *count += 1;
        let too_many = *count > config.keep;
        let too_old = config
            .max_age
            .is_some_and(|age| now.duration_since(clip.started_at).unwrap_or_default() > age);
        if too_many || too_old {
            out.push(clip.event_id.clone());
        } else {
            kept.push(clip);
        }
    }
    if let Some(limit) = config.max_disk_mb.map(|mb| mb * 1024 * 1024) {
        let mut total: u64 = kept.iter().map(|c| c.bytes).sum();
        for clip in kept.iter().rev() {
            if total <= limit {
                break;
            }
            total -= clip.bytes;
            out.push(clip.event_id.clone());
        }
    }
    out
}

fn write_sidecar(path: &Path, meta: &ClipMeta) -> anyhow::Result<()> {
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, serde_json::to_vec_pretty(meta)?)
        .with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Far beyond any clip the recorder makes (minutes); a longer one is not ours.
const MAX_CLIP_SECONDS: f64 = 86_400.0;
/// The last second RFC 3339 (and so MQTT's `started_at`) can write: the end of year 9999.
const LAST_WRITABLE_TIME: Duration = Duration::from_secs(253_402_300_799);

/// A clip's description from its sidecar's bytes, under the id its file name gives; `None` when
/// they do not describe a clip we could have made (a time out of range, a negative length).
pub fn parse_sidecar(event_id: &str, bytes: &[u8]) -> Option<ClipMeta> {
    let meta: ClipMeta = serde_json::from_slice(bytes).ok()?;
    let started = meta
        .started_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?;
    let length_ok = meta
        .duration_s
        .is_none_or(|d| d.is_finite() && (0.0..=MAX_CLIP_SECONDS).contains(&d));
    (started <= LAST_WRITABLE_TIME && length_ok).then(|| ClipMeta {
        event_id: event_id.to_string(),
        ..meta
    })
}

/// Reads every sidecar; a clip cut off by a kill is kept with the length its file covers.
fn scan(dir: &Path) -> Vec<ClipMeta> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|sidecar| {
            // The id comes from the file's own name, checked against our format, never from
            // its content: a planted `"event_id": "../../x"` must not become a path.
            let event_id = sidecar
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| is_event_id(s))?
                .to_string();
            let meta = match std::fs::read(&sidecar)
                .ok()
                .and_then(|bytes| parse_sidecar(&event_id, &bytes))
            {
                Some(meta) => meta,
                None => {
                    tracing::warn!("skipping {}: not a clip description", sidecar.display());
                    return None;
                }
            };
            let clip = sidecar.with_extension("mp4");
            match readable_mp4(&clip) {
                Ok(stat) => Some(ClipMeta {
                    bytes: stat.len(),
                    duration_s: meta.duration_s.or_else(|| {
                        let written = stat.modified().ok()?;
                        let lasted = written.duration_since(meta.started_at).ok()?;
                        Some(round_tenths(lasted))
                    }),
                    ..meta
                }),
                Err(why) => {
                    tracing::warn!("skipping clip {}: {why}", clip.display());
                    None
                }
            }
        })
        .collect()
}

fn readable_mp4(path: &Path) -> Result<std::fs::Metadata, String> {
    use std::io::Read;
    let stat = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("cannot read it ({e})"))?;
    if &head[4..8] != b"ftyp" {
        return Err("not an MP4 file".into());
    }
    Ok(stat)
}

pub fn round_tenths(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sidecar_is_read_under_its_file_name_and_only_with_times_we_can_write() {
        let sidecar = |started: u64, duration: &str| {
            format!(
                r#"{{"event_id": "../../etc", "kind": "motion", "started_at": {{"secs_since_epoch": {started}, "nanos_since_epoch": 0}}, "duration_s": {duration}, "video": "h264", "audio": true, "complete": true}}"#
            )
        };
        let id = "motion-20261204-061500-000";
        let meta = parse_sidecar(id, sidecar(1_796_365_000, "15.0").as_bytes()).unwrap();
        assert_eq!(
            meta.event_id, id,
            "the id is the file's, never the content's"
        );
        assert!(parse_sidecar(id, sidecar(1_796_365_000, "null").as_bytes()).is_some());
        // Past year 9999 MQTT's started_at cannot be written; a negative length is nonsense.
        assert!(parse_sidecar(id, sidecar(300_000_000_000, "15.0").as_bytes()).is_none());
        assert!(parse_sidecar(id, sidecar(1_796_365_000, "-1").as_bytes()).is_none());
        assert!(parse_sidecar(id, sidecar(1_796_365_000, "1e300").as_bytes()).is_none());
        assert!(parse_sidecar(id, b"not json").is_none());
    }

    fn clip(kind: Kind, minutes_ago: u64, bytes: u64, now: SystemTime) -> ClipMeta {
        let started_at = now - Duration::from_secs(minutes_ago * 60);
        ClipMeta {
            event_id: super::super::event_id(kind, started_at),
            kind,
            started_at,
            duration_s: Some(15.0),
            video: "h264".into(),
            audio: true,
            complete: true,
            bytes,
        }
    }

    #[test]
    fn retention_keeps_the_newest_per_kind_then_age_then_disk() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // Newest first: 7 cries, 2 motions.
        let mut clips: Vec<ClipMeta> = (0..7).map(|m| clip(Kind::Cry, m, 1 << 20, now)).collect();
        clips.push(clip(Kind::Motion, 100, 1 << 20, now));
        clips.push(clip(Kind::Motion, 200, 1 << 20, now));
        clips.sort_by_key(|c| std::cmp::Reverse(c.started_at));
        let config = ClipConfig::default();
        let gone = expired(&clips, &config, now);
        assert_eq!(
            gone,
            vec![clips[5].event_id.clone(), clips[6].event_id.clone()]
        );

        let aged = ClipConfig {
            max_age: Some(Duration::from_secs(150 * 60)),
            ..ClipConfig::default()
        };
        let gone = expired(&clips, &aged, now);
        assert!(
            gone.contains(&clips[8].event_id),
            "the 200-minute-old motion clip"
        );
        assert!(!gone.contains(&clips[7].event_id));

        let small = ClipConfig {
            max_disk_mb: Some(3),
            ..ClipConfig::default()
        };
        let gone = expired(&clips, &small, now);
        // 5 cries + 2 motions kept by count = 7 MB; the 4 oldest go to fit 3 MB.
        assert_eq!(gone.len(), 2 + 4, "{gone:?}");
        assert!(gone.contains(&clips[8].event_id) && gone.contains(&clips[4].event_id));
    }

    #[test]
    fn a_played_clip_outlives_retention_until_its_viewer_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let store = ClipStore::open(dir.path(), "cam", &ClipConfig::default()).unwrap();
        let now = SystemTime::now();
        let mut ids = Vec::new();
        for i in 0..6u64 {
            let meta = clip(Kind::Manual, 10 - i, 0, now);
            let path = store.begin(&meta).unwrap();
            std::fs::write(&path, b"\0\0\0\x20ftypisom").unwrap();
            ids.push(meta.event_id.clone());
            if i == 0 {
                // The oldest is being watched when the sixth arrives.
                let pin = store.pin(&meta.event_id);
                store.finish(meta, true).unwrap();
                std::mem::forget(pin);
                continue;
            }
            store.finish(meta, true).unwrap();
        }
        assert_eq!(store.clips().len(), 5);
        assert!(store.path(&ids[0]).exists(), "pinned: still on disk");
        store.unpin(&ids[0]);
        assert!(
            !store.path(&ids[0]).exists(),
            "deleted once the viewer left"
        );
        assert_eq!(store.nth(Kind::Manual, 1).unwrap().event_id, ids[5]);

        // A restart finds the same five; an unreadable one is skipped.
        std::fs::write(store.path(&ids[5]), b"garbage").unwrap();
        let reopened = ClipStore::open(dir.path(), "cam", &ClipConfig::default()).unwrap();
        assert_eq!(reopened.clips().len(), 4);
        assert_eq!(reopened.newest().unwrap().event_id, ids[4]);
    }
}

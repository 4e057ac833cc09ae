//! Settings changed at run time from Home Assistant (snapshot mode and interval, the Event
//! select, the cry sensitivity), kept in `<data_dir>/settings.json` so they survive a restart.
//!
//! Written atomically (temp file + rename), so a crash mid-write leaves the old file. A file
//! that cannot be read is moved aside, never silently overwritten, and the log says where.

use crate::choices::{DEFAULT_INTERVAL_S, Mode, Slot};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const FILE_NAME: &str = "settings.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CameraSettings {
    pub snapshot_mode: Mode,
    pub snapshot_interval_s: u32,
    /// The Event select; `None` follows the newest clip.
    pub selected_event: Option<Slot>,
    /// The "Cry sensitivity" entity, in percent; `None` follows the option `cry_sensitivity`.
    pub cry_sensitivity: Option<u8>,
}

impl Default for CameraSettings {
    fn default() -> Self {
        Self {
            snapshot_mode: Mode::default(),
            snapshot_interval_s: DEFAULT_INTERVAL_S,
            selected_event: None,
            cry_sensitivity: None,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    cameras: BTreeMap<String, CameraSettings>,
}

#[derive(Debug)]
pub struct Settings {
    path: PathBuf,
    file: Mutex<File>,
}

impl Settings {
    /// Loads the settings of `cameras`; settings of cameras that left the config are dropped.
    pub fn open<'a>(
        data_dir: &Path,
        cameras: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<Settings> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let path = data_dir.join(FILE_NAME);
        let mut file = read(&path);
        let configured: Vec<&str> = cameras.into_iter().collect();
        let before = file.cameras.len();
        file.cameras.retain(|id, _| {
            let keep = configured.contains(&id.as_str());
            if !keep {
                tracing::info!("camera \"{id}\" is no longer configured: forgetting its settings");
            }
            keep
        });
        if file.cameras.len() != before {
            write(&path, &file)?;
        }
        Ok(Settings {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn camera(&self, id: &str) -> CameraSettings {
        self.lock().cameras.get(id).copied().unwrap_or_default()
    }

    /// Changes one camera's settings and writes the file before returning.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut CameraSettings)) -> anyhow::Result<()> {
        let mut file = self.lock();
        change(file.cameras.entry(id.to_string()).or_default());
        write(&self.path, &file)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Atomically: a crash mid-write leaves the old file.
fn write(path: &Path, file: &File) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(file)?;
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, text)
        .and_then(|_| std::fs::rename(&temp, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn read(path: &Path) -> File {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return File::default(),
        Err(e) => {
            tracing::warn!("cannot read {}: {e}; using defaults", path.display());
            return File::default();
        }
    };
    match serde_json::from_str(&text) {
        Ok(file) => file,
        Err(e) => {
            let aside = path.with_extension("json.bad");
            let moved = std::fs::rename(path, &aside).is_ok();
            tracing::warn!(
                "{} is not valid ({e}); using defaults{}",
                path.display(),
                if moved {
                    format!(" and keeping the old file as {}", aside.display())
                } else {
                    String::new()
                }
            );
            File::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_reopening_and_removed_cameras_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::open(dir.path(), ["nursery", "hall"]).unwrap();
        settings
            .update("nursery", |s| s.snapshot_mode = Mode::Interval)
            .unwrap();
        settings
            .update("hall", |s| s.snapshot_interval_s = 30)
            .unwrap();
        drop(settings);

        let reopened = Settings::open(dir.path(), ["nursery"]).unwrap();
        assert_eq!(reopened.camera("nursery").snapshot_mode, Mode::Interval);
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(!text.contains("hall"), "{text}");
    }

    #[test]
    fn a_corrupt_file_is_kept_aside_and_defaults_are_used() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "{not json").unwrap();
        let settings = Settings::open(dir.path(), ["nursery"]).unwrap();
        assert_eq!(settings.camera("nursery"), CameraSettings::default());
        assert!(dir.path().join("settings.json.bad").exists());
    }
}

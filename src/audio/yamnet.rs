//! YAMNet through ONNX Runtime (`ort`, loaded at run time from `libonnxruntime.so`).
//!
//! The model is a file the user (or the add-on image) provides: nothing is downloaded. Its
//! input is `input_1`, f32 `[1, 15600]` in [-1, 1]; its output `Identity` is f32 `[1, 521]`
//! per-class sigmoid scores, and `cry` (f32 `[1, 1]`) the cry head's probability, which
//! `scripts/cry-train.py` adds on YAMNet's embedding (`models/yamnet/README.md`).

use super::PATCH_SAMPLES;
use super::onnx;
use super::onnx::ModelError;
use std::path::Path;

pub const CLASSES: usize = 521;
/// YAMNet's official class map, looked for next to the model for readable class names.
pub const CLASS_MAP_FILE: &str = "yamnet_class_map.csv";

/// What the model says of one patch.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchScores {
    /// YAMNet's 521 class scores, for showing what a sound is.
    pub classes: Vec<f32>,
    /// The cry head's probability that a baby is crying: what the detector decides on.
    pub cry: f32,
}

pub struct Yamnet {
    session: onnx::Session,
    names: Vec<String>,
}

impl std::fmt::Debug for Yamnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Yamnet").finish_non_exhaustive()
    }
}

impl Yamnet {
    /// Loads ONNX Runtime (once per process) and the model.
    pub fn load(model: &Path) -> Result<Self, ModelError> {
        if !model.is_file() {
            return Err(ModelError::Missing(model.to_path_buf()));
        }
        let session = onnx::Session::load(model)?;
        Ok(Self {
            session,
            names: class_names(model),
        })
    }

    /// The scores of one 15,600-sample patch.
    pub fn score(&mut self, patch: &[f32]) -> Result<PatchScores, ModelError> {
        assert_eq!(patch.len(), PATCH_SAMPLES, "YAMNet takes exactly one patch");
        let (classes, cry) = self.session.score(patch)?;
        if classes.len() != CLASSES {
            return Err(ModelError::Run(format!(
                "expected {CLASSES} scores, got {}",
                classes.len()
            )));
        }
        Ok(PatchScores { classes, cry })
    }

    /// A class's display name from the class map next to the model, else `class <n>`.
    pub fn class_name(&self, index: usize) -> String {
        self.names
            .get(index)
            .cloned()
            .unwrap_or_else(|| format!("class {index}"))
    }
}

/// Reads `index,mid,display_name` rows (CRLF, names with commas quoted).
fn class_names(model: &Path) -> Vec<String> {
    let Some(path) = model.parent().map(|dir| dir.join(CLASS_MAP_FILE)) else {
        return Vec::new();
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            let mut parts = line.splitn(3, ',');
            let (_, _, name) = (parts.next()?, parts.next()?, parts.next()?);
            Some(name.trim_matches('"').to_string())
        })
        .collect()
}

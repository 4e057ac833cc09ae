//! YAMNet through ONNX Runtime (`ort`, loaded at run time from `libonnxruntime.so`).
//!
//! The model is a file the user (or the add-on image) provides: nothing is downloaded. Its
//! input is `input_1`, f32 `[1, 15600]` in [-1, 1]; its output `Identity` is f32 `[1, 521]`
//! per-class sigmoid scores.

use super::PATCH_SAMPLES;
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const CLASSES: usize = 521;
/// Where the ONNX Runtime library is looked for when `ORT_DYLIB_PATH` is not set: the system
/// library path.
const DEFAULT_LIBRARY: &str = "libonnxruntime.so";
/// YAMNet's official class map, looked for next to the model for readable class names.
pub const CLASS_MAP_FILE: &str = "yamnet_class_map.csv";

/// Why cry detection cannot run; each says what to do.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("the cry model {0} does not exist; set cry_model to a YAMNet .onnx file")]
    Missing(PathBuf),
    #[error(
        "the ONNX Runtime library could not be loaded ({0}); install it (pip install onnxruntime==1.31.*) and point ORT_DYLIB_PATH at its libonnxruntime.so"
    )]
    Runtime(String),
    #[error("the cry model {path} cannot be used: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("scoring failed: {0}")]
    Run(String),
}

pub struct Yamnet {
    session: Session,
    names: Vec<String>,
}

impl std::fmt::Debug for Yamnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Yamnet").finish_non_exhaustive()
    }
}

/// The library path `ort` loads: `ORT_DYLIB_PATH`, else the system's.
pub fn runtime_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LIBRARY))
}

/// ONNX Runtime allows one environment per process; every camera's session shares it. A load
/// failure is kept too, so each camera reports the same one clear error.
fn environment() -> Result<&'static Environment, ModelError> {
    static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();
    ENVIRONMENT
        .get_or_init(|| {
            let library = runtime_library();
            ort::init_from(&library)
                .map_err(|e| e.to_string())?
                .with_name("ipcam-mqtt")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ModelError::Runtime(e.clone()))
}

impl Yamnet {
    /// Loads ONNX Runtime (once per process) and the model, with one intra-op thread: a patch
    /// takes a few ms, and cameras must not compete with media for the cores.
    pub fn load(model: &Path) -> Result<Self, ModelError> {
        if !model.is_file() {
            return Err(ModelError::Missing(model.to_path_buf()));
        }
        let environment = environment()?;
        let invalid = |e: &dyn std::fmt::Display| ModelError::Invalid {
            path: model.to_path_buf(),
            reason: e.to_string(),
        };
        let runtime = |e: &dyn std::fmt::Display| ModelError::Runtime(e.to_string());
        let session = Session::builder(environment)
            .map_err(|e| runtime(&e))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| runtime(&e))?
            .with_intra_threads(1)
            .map_err(|e| runtime(&e))?
            .with_inter_threads(1)
            .map_err(|e| runtime(&e))?
            .with_intra_op_spinning(false)
            .map_err(|e| runtime(&e))?
            .commit_from_file(model)
            .map_err(|e| invalid(&e))?;
        let input_ok = session
            .inputs()
            .first()
            .is_some_and(|i| i.name() == "input_1");
        let output_ok = session.outputs().iter().any(|o| o.name() == "Identity");
        if !input_ok || !output_ok {
            return Err(invalid(
                &"not a YAMNet export: expected input `input_1` and output `Identity`",
            ));
        }
        Ok(Self {
            session,
            names: class_names(model),
        })
    }

    /// 521 class scores for one 15,600-sample patch.
    pub fn score(&mut self, patch: &[f32]) -> Result<Vec<f32>, ModelError> {
        assert_eq!(patch.len(), PATCH_SAMPLES, "YAMNet takes exactly one patch");
        let input = Tensor::from_array(([1usize, PATCH_SAMPLES], patch.to_vec()))
            .map_err(|e| ModelError::Run(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs!["input_1" => input])
            .map_err(|e| ModelError::Run(e.to_string()))?;
        let (_, scores) = outputs["Identity"]
            .try_extract_tensor::<f32>()
            .map_err(|e| ModelError::Run(e.to_string()))?;
        if scores.len() != CLASSES {
            return Err(ModelError::Run(format!(
                "expected {CLASSES} scores, got {}",
                scores.len()
            )));
        }
        Ok(scores.to_vec())
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

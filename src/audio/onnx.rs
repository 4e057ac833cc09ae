//! The ONNX Runtime session behind [`super::yamnet::Yamnet`], in the `cry` feature (on by default).
//! Built without it, loading says so and nothing else changes.

#[cfg(feature = "cry")]
pub use with_ort::Session;
#[cfg(not(feature = "cry"))]
pub use without_ort::Session;

use std::path::PathBuf;

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

#[cfg(feature = "cry")]
mod with_ort {
    use super::super::PATCH_SAMPLES;
    use super::ModelError;
    use ort::environment::Environment;
    use ort::session::builder::GraphOptimizationLevel;
    use ort::value::Tensor;
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    pub struct Session(ort::session::Session);

    /// Where the ONNX Runtime library is looked for when `ORT_DYLIB_PATH` is not set: the system
    /// library path.
    const DEFAULT_LIBRARY: &str = "libonnxruntime.so";

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

    impl Session {
        /// One intra-op thread: a patch takes a few ms, and cameras must not compete with
        /// media for the cores.
        pub fn load(model: &Path) -> Result<Self, ModelError> {
            let environment = environment()?;
            let invalid = |e: &dyn std::fmt::Display| ModelError::Invalid {
                path: model.to_path_buf(),
                reason: e.to_string(),
            };
            let runtime = |e: &dyn std::fmt::Display| ModelError::Runtime(e.to_string());
            let session = ort::session::Session::builder(environment)
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
            let has = |name: &str| session.outputs().iter().any(|o| o.name() == name);
            if !input_ok || !has("Identity") {
                return Err(invalid(
                    &"not a YAMNet export: expected input `input_1` and output `Identity`",
                ));
            }
            if !has("cry") {
                return Err(invalid(
                    &"a plain YAMNet without the cry head: use yamnet-cry.onnx (the image ships it; scripts/cry-train.py makes it)",
                ));
            }
            Ok(Self(session))
        }

        /// YAMNet's 521 class scores and the cry head's probability.
        pub fn score(&mut self, patch: &[f32]) -> Result<(Vec<f32>, f32), ModelError> {
            let input = Tensor::from_array(([1usize, PATCH_SAMPLES], patch.to_vec()))
                .map_err(|e| ModelError::Run(e.to_string()))?;
            let outputs = self
                .0
                .run(ort::inputs!["input_1" => input])
                .map_err(|e| ModelError::Run(e.to_string()))?;
            let (_, scores) = outputs["Identity"]
                .try_extract_tensor::<f32>()
                .map_err(|e| ModelError::Run(e.to_string()))?;
            let (_, cry) = outputs["cry"]
                .try_extract_tensor::<f32>()
                .map_err(|e| ModelError::Run(e.to_string()))?;
            let cry = cry
                .first()
                .copied()
                .ok_or_else(|| ModelError::Run("the cry output is empty".into()))?;
            Ok((scores.to_vec(), cry))
        }
    }
}

#[cfg(not(feature = "cry"))]
mod without_ort {
    use super::ModelError;
    use std::path::Path;

    /// No value exists: without ONNX Runtime nothing can be loaded.
    pub enum Session {}

    impl Session {
        pub fn load(_model: &Path) -> Result<Self, ModelError> {
            Err(ModelError::Runtime(
                "this build has no cry detection (rebuild with the `cry` feature)".into(),
            ))
        }

        pub fn score(&mut self, _patch: &[f32]) -> Result<(Vec<f32>, f32), ModelError> {
            match *self {}
        }
    }
}

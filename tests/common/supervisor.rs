//! What the Supervisor writes to `/data/options.json`, checked by its own rules
//! (`../shared/supervisor/check-addon-options.py`), for tests that run the binary as the add-on.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// `addon/config.yaml` as JSON.
pub fn addon_config() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("addon/config.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The Supervisor's merge at every start: the defaults of `config.yaml`, then the saved options
/// over them; dicts merge key by key, lists and scalars replace.
pub fn merged_options(saved: &Value) -> Value {
    fn merge(base: &mut Value, over: &Value) {
        match (base, over) {
            (Value::Object(base), Value::Object(over)) => {
                for (key, value) in over {
                    match base.get_mut(key) {
                        Some(slot) => merge(slot, value),
                        None => {
                            base.insert(key.clone(), value.clone());
                        }
                    }
                }
            }
            (base, over) => *base = over.clone(),
        }
    }
    let mut options = addon_config()["options"].clone();
    merge(&mut options, saved);
    options
}

/// Runs the Supervisor's checks on `config.yaml` and, when given, on the saved `options`
/// (Save, then Start with the merge). `Err` carries its output; `None` when the checker is absent.
pub fn supervisor_check(saved: Option<&Value>) -> Option<Result<String, String>> {
    let checker = super::shared_file("supervisor/check-addon-options.py")?;
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("python3");
    command
        .arg(&checker)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("addon/config.yaml"));
    if let Some(saved) = saved {
        let path = dir.path().join("options.json");
        std::fs::write(&path, serde_json::to_vec_pretty(saved).unwrap()).unwrap();
        command.arg(path);
    }
    let out = command
        .output()
        .expect("python3 runs the Supervisor checker");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Some(if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    })
}

/// The options.json the Supervisor writes when a user changes `saved` in the options editor
/// (which sends the whole set it shows: the defaults with the changes), after asserting that it
/// accepts them at Save and at Start.
pub fn options_json(saved: &Value) -> String {
    let full = merged_options(saved);
    match supervisor_check(Some(&full)) {
        Some(Err(output)) => panic!("the Supervisor refuses these options:\n{output}\n{full:#}"),
        // The Supervisor drops an option its schema lacks: the add-on would never see it.
        Some(Ok(output)) if output.contains("Unknown option") => {
            panic!("the Supervisor drops options unknown to config.yaml:\n{output}")
        }
        _ => {}
    }
    serde_json::to_string_pretty(&full).unwrap()
}

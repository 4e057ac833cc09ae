//! The add-on package, checked offline as the Supervisor and the add-on linter would:
//! `addon/config.yaml` against the linter's JSON Schema and extra rules (from `../shared/`),
//! `options` against `schema`, a translation for every option, and an `options.json` the UI
//! could write loading into the same configuration as the YAML.
mod common;
use common::shared_file;
use serde_json::Value;
use std::path::Path;

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn addon_config() -> Value {
    read_yaml(&repo("addon/config.yaml"))
}

/// The draft-07 keywords the linter's schema uses; any other keyword fails the check rather
/// than passing unseen.
fn validate(schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(rules) = schema.as_object() else {
        return;
    };
    for (keyword, rule) in rules {
        match keyword.as_str() {
            "$schema"
            | "default"
            | "format"
            | "required"
            | "properties"
            | "additionalProperties" => {}
            "type" => {
                let types: Vec<&str> = match rule {
                    Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
                    other => vec![other.as_str().unwrap_or("")],
                };
                let fits = types.iter().any(|t| match *t {
                    "string" => value.is_string(),
                    "boolean" => value.is_boolean(),
                    "integer" => value.is_i64() || value.is_u64(),
                    "number" => value.is_number(),
                    "array" => value.is_array(),
                    "object" => value.is_object(),
                    "null" => value.is_null(),
                    other => panic!("schema type {other} is not known to this check"),
                });
                if !fits {
                    errors.push(format!("{at}: {value} is not of type {rule}"));
                }
            }
            "enum" => {
                if !rule.as_array().unwrap().contains(value) {
                    errors.push(format!("{at}: {value} is not one of {rule}"));
                }
            }
            "pattern" => {
                let pattern = regex::Regex::new(rule.as_str().unwrap()).unwrap();
                if let Some(text) = value.as_str()
                    && !pattern.is_match(text)
                {
                    errors.push(format!("{at}: \"{text}\" does not match {rule}"));
                }
            }
            "minimum" | "maximum" => {
                if let (Some(v), Some(limit)) = (value.as_f64(), rule.as_f64()) {
                    let out = if keyword == "minimum" {
                        v < limit
                    } else {
                        v > limit
                    };
                    if out {
                        errors.push(format!("{at}: {v} is beyond the {keyword} {limit}"));
                    }
                }
            }
            "items" => {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    validate(rule, item, &format!("{at}[{i}]"), errors);
                }
            }
            "oneOf" | "anyOf" => {
                let passing = rule
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|option| {
                        let mut inner = Vec::new();
                        validate(option, value, at, &mut inner);
                        inner.is_empty()
                    })
                    .count();
                let ok = if keyword == "oneOf" {
                    passing == 1
                } else {
                    passing > 0
                };
                if !ok {
                    errors.push(format!("{at}: {passing} of the {keyword} choices fit"));
                }
            }
            other => panic!("schema keyword {other} is not known to this check"),
        }
    }
    if let (Some(object), Some(properties)) = (value.as_object(), rules.get("properties")) {
        for (key, item) in object {
            match properties.get(key) {
                Some(rule) => validate(rule, item, &format!("{at}.{key}"), errors),
                None if rules.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{at}: unknown key {key}"))
                }
                None => {
                    if let Some(rule) = rules.get("additionalProperties") {
                        validate(rule, item, &format!("{at}.{key}"), errors);
                    }
                }
            }
        }
        for key in rules["required"].as_array().into_iter().flatten() {
            if !object.contains_key(key.as_str().unwrap()) {
                errors.push(format!("{at}: {key} is required"));
            }
        }
    } else if let (Some(object), Some(rule)) =
        (value.as_object(), rules.get("additionalProperties"))
    {
        for (key, item) in object {
            validate(rule, item, &format!("{at}.{key}"), errors);
        }
    }
}

#[test]
fn config_yaml_passes_the_add_on_linter_schema_and_rules() {
    let Some(schema_path) = shared_file("addon-schema/config.schema.json") else {
        return;
    };
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let config = addon_config();
    let mut errors = Vec::new();
    validate(&schema, &config, "config.yaml", &mut errors);
    // The linter's rules beyond the schema (see ../shared/addon-schema/README.md).
    for (key, value) in config.as_object().unwrap() {
        if schema["properties"][key].get("default") == Some(value) {
            errors.push(format!("{key}: {value} is the default; leave it out"));
        }
    }
    for arch in config["arch"].as_array().unwrap() {
        if ["armhf", "armv7", "i386"].contains(&arch.as_str().unwrap()) {
            errors.push(format!("arch {arch} is deprecated"));
        }
    }
    if config.get("webui").is_some() && config["ingress"] == true {
        errors.push("webui together with ingress".into());
    }
    if config["ingress_port"] == 0 && config["host_network"] != true {
        errors.push("ingress_port 0 without host_network".into());
    }
    if config.get("watchdog").is_some() {
        errors.push("watchdog is obsolete; the Dockerfile has a HEALTHCHECK".into());
    }
    let maps = config["map"].as_array().unwrap();
    if maps.iter().any(|m| m == "config" || m["type"] == "config") {
        errors.push("map config is deprecated".into());
    }
    assert!(errors.is_empty(), "{errors:#?}");

    // What this add-on needs, as issue 7 lists it.
    assert_eq!(config["slug"], "ipcam_mqtt");
    assert_eq!(config["init"], false, "s6-overlay v3 is the init");
    assert_eq!(config["arch"], serde_json::json!(["aarch64", "amd64"]));
    assert_eq!(config["services"], serde_json::json!(["mqtt:need"]));
    assert_eq!(config["host_network"], true, "WebRTC offers LAN addresses");
    assert!(config.get("ports").is_none(), "host networking maps none");
    assert_eq!(config["ingress"], true);
    assert_eq!(config["ingress_port"], 0, "the Supervisor picks a free one");
    assert_eq!(
        config["homeassistant"], "2024.11.0",
        "device-based MQTT discovery"
    );
    assert!(config["timeout"].as_u64().unwrap() >= 20, "room for clips");
    assert_eq!(config["homeassistant_api"], true);
    let mapped: Vec<&str> = maps.iter().filter_map(|m| m["type"].as_str()).collect();
    // /ssl read-only: where a home broker's CA certificate lives (mqtt.ca_file).
    assert_eq!(mapped, ["media", "addon_config", "ssl"]);
}

/// A Supervisor option type: `str`, `int(1,100)`, `list(a|b)`, `match(…)`, … with `?` optional.
fn fits_option_type(kind: &str, value: &Value) -> bool {
    let kind = kind.trim_end_matches('?');
    let (name, args) = kind
        .split_once('(')
        .map(|(n, a)| (n, a.trim_end_matches(')')))
        .unwrap_or((kind, ""));
    let range = |v: f64| {
        let (low, high) = args.split_once(',').unwrap_or(("", ""));
        low.parse().is_ok_and(|l: f64| v < l) || high.parse().is_ok_and(|h: f64| v > h)
    };
    match name {
        "str" | "password" | "url" | "email" => value.is_string(),
        "bool" => value.is_boolean(),
        "port" => value.as_u64().is_some_and(|p| (1..=65535).contains(&p)),
        "int" => value.as_i64().is_some_and(|v| !range(v as f64)),
        "float" => value.as_f64().is_some_and(|v| !range(v)),
        "list" => value
            .as_str()
            .is_some_and(|v| args.split('|').any(|a| a == v)),
        "match" => value
            .as_str()
            .is_some_and(|v| regex::Regex::new(args).unwrap().is_match(v)),
        other => panic!("option type {other} is not one the Supervisor knows"),
    }
}

/// Every option type in the schema, with a value of that type (for the options.json test).
fn sample_value(kind: &str) -> Value {
    let kind = kind.trim_end_matches('?');
    let name = kind.split('(').next().unwrap();
    let args = kind
        .split_once('(')
        .map(|(_, a)| a.trim_end_matches(')'))
        .unwrap_or("");
    match name {
        "bool" => Value::Bool(false),
        "port" => 1883.into(),
        "int" | "float" => {
            let low: f64 = args.split(',').next().unwrap().parse().unwrap();
            if name == "int" {
                (low as i64).into()
            } else {
                serde_json::json!(low)
            }
        }
        "list" => args.split('|').next().unwrap().into(),
        "url" => "http://camera.local/snap.jpg".into(),
        "password" => "a-secret".into(),
        _ => Value::Null,
    }
}

#[test]
fn options_agree_with_the_schema() {
    let config = addon_config();
    let schema = config["schema"].as_object().unwrap();
    for (key, value) in config["options"].as_object().unwrap() {
        let kind = &schema[key];
        match kind {
            Value::String(kind) => {
                assert!(
                    fits_option_type(kind, value),
                    "options.{key}: {value} is not {kind}"
                )
            }
            Value::Array(_) => assert!(value.is_array(), "options.{key} is a list"),
            Value::Object(_) => assert!(value.is_object(), "options.{key} is a dict"),
            _ => panic!("schema.{key} is neither a type, a list nor a dict"),
        }
    }
    for (key, kind) in schema {
        if kind.as_str().is_some_and(|k| !k.ends_with('?')) {
            assert!(
                config["options"].get(key).is_some(),
                "required option {key} has no default"
            );
        }
    }
}

/// Walks the schema's options, with their translation entries.
fn each_option(schema: &Value, translations: &Value, at: &str, missing: &mut Vec<String>) {
    for (key, kind) in schema.as_object().unwrap() {
        let entry = &translations[key];
        for text in ["name", "description"] {
            if entry[text].as_str().is_none_or(|t| t.trim().is_empty()) {
                missing.push(format!("{at}{key}.{text}"));
            }
        }
        let nested = match kind {
            Value::Object(_) => Some(kind),
            Value::Array(items) => items.first().filter(|i| i.is_object()),
            _ => None,
        };
        if let Some(nested) = nested {
            each_option(
                nested,
                &entry["fields"],
                &format!("{at}{key}.fields."),
                missing,
            );
        }
    }
}

#[test]
fn every_option_and_port_has_a_name_and_description() {
    let config = addon_config();
    let translations = read_yaml(&repo("translations/en.yaml"));
    let mut missing = Vec::new();
    each_option(
        &config["schema"],
        &translations["configuration"],
        "",
        &mut missing,
    );
    for port in config["ports"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|p| p.0)
    {
        if translations["network"][port].as_str().is_none() {
            missing.push(format!("network.{port}"));
        }
    }
    assert!(
        missing.is_empty(),
        "translations/en.yaml lacks: {missing:#?}"
    );
    assert_eq!(
        std::fs::read(repo("addon/translations/en.yaml")).unwrap(),
        std::fs::read(repo("translations/en.yaml")).unwrap(),
        "addon/translations must be the top-level translations"
    );
}

/// What the Supervisor writes to /data/options.json when a user fills in every field: it loads
/// into the same configuration as the standalone YAML, with nothing refused.
#[test]
fn an_options_json_with_every_field_filled_loads_into_the_config() {
    let config = addon_config();
    let schema = &config["schema"];
    let mut options = config["options"].clone();
    let fill = |schema: &Value| -> Value {
        let mut filled = serde_json::Map::new();
        for (key, kind) in schema.as_object().unwrap() {
            let value = match kind {
                Value::String(kind) => sample_value(kind),
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .filter_map(|i| i.as_str())
                        .map(|_| Value::from("stun:stun.example.org:3478"))
                        .collect(),
                ),
                _ => Value::Null,
            };
            if !value.is_null() {
                filled.insert(key.clone(), value);
            }
        }
        Value::Object(filled)
    };
    for section in ["mqtt", "rtsp", "http", "webrtc"] {
        options[section] = fill(&schema[section]);
    }
    options["mqtt"]["host"] = "core-mosquitto".into();
    options["mqtt"]["node_id"] = "ipcam".into();
    for section in ["mqtt", "rtsp", "http"] {
        options[section]["username"] = "someone".into();
    }
    options["rtsp"]["allow_anonymous"] = false.into();
    options["http"]["allow_anonymous"] = false.into();
    options["webrtc"]["turn_username"] = "someone".into();
    options["webrtc"]["candidates"] = serde_json::json!(["203.0.113.7"]);
    options["webrtc"]["udp_ports"] = "50000-50100".into();
    options["rtsp"]["port"] = 8554.into();
    options["http"]["port"] = 1984.into();
    let mut camera = fill(&schema["cameras"][0]);
    camera["id"] = "nursery".into();
    camera["name"] = "Nursery".into();
    camera["url"] = "rtsp://192.168.1.50:554/stream1".into();
    camera["username"] = "admin".into();
    camera["clip_max_age"] = "7d".into();
    options["cameras"] = serde_json::json!([camera]);
    options["data_dir"] = "/data".into();
    let text = serde_json::to_string_pretty(&options).unwrap();
    let loaded = ipcam_mqtt::config::Config::parse(&text, std::path::Path::new("/data"))
        .unwrap_or_else(|problems| panic!("{problems}\n{text}"));
    assert_eq!(loaded.cameras[0].id, "nursery");
    assert_eq!(loaded.media_dir, Path::new("/media/ipcam-mqtt"));
    assert_eq!(loaded.mqtt.host.as_deref(), Some("core-mosquitto"));
    assert!(loaded.ha_cameras);
    assert_eq!(
        loaded.webrtc.stun_server.as_deref(),
        Some("stun://stun.example.org:3478")
    );

    // The defaults alone, as after installing: no cameras yet, the broker from the Supervisor.
    let defaults = serde_json::to_string(&config["options"]).unwrap();
    let loaded =
        ipcam_mqtt::config::Config::parse(&defaults, std::path::Path::new("/data")).unwrap();
    assert!(loaded.cameras.is_empty() && loaded.mqtt.host.is_none());
}

/// The Supervisor's own rules (`../shared/supervisor/check-addon-options.py`): a fresh install
/// starts with the defaults, and a realistic two-camera home saves and starts; the binary loads
/// what the Supervisor then writes.
#[test]
fn the_supervisor_starts_the_defaults_and_saves_a_two_camera_home() {
    let Some(defaults) = common::supervisor::supervisor_check(None) else {
        return;
    };
    if let Err(output) = defaults {
        panic!("the Supervisor refuses to start a fresh install:\n{output}");
    }
    // What the options editor sends for a nursery camera and a Tapo on the landing.
    let saved = serde_json::json!({
        "log_level": "info",
        "media_dir": "/media/ipcam-mqtt",
        "cry_model": "/usr/share/ipcam-mqtt/yamnet-cry.onnx",
        "ha_cameras": true,
        "mqtt": {},
        "rtsp": {"username": "viewer", "password": "a-long-rtsp-secret"},
        "http": {"port": 1985},
        "webrtc": {"ice_servers": ["stun:stun.l.google.com:19302"]},
        "cameras": [
            {"id": "nursery", "name": "Nursery", "url": "rtsp://192.168.1.50:554/h264Preview_01_main",
             "username": "admin", "password": "cam-secret", "cry_detection": true, "cry_sensitivity": 60},
            {"id": "landing", "name": "Landing", "url": "rtsp://192.168.1.51:554/stream1",
             "username": "tapo", "password": "tapo-secret", "transport": "udp", "close_after": 30}
        ]
    });
    let written = common::supervisor::options_json(&saved);
    let loaded = ipcam_mqtt::config::Config::parse(&written, std::path::Path::new("/data"))
        .unwrap_or_else(|problems| panic!("{problems}\n{written}"));
    assert_eq!(loaded.cameras.len(), 2);
    assert_eq!(loaded.http.port(), 1985);
    assert_eq!(loaded.rtsp.port(), 8554);
    assert!(!loaded.rtsp.credentials_in_mqtt, "off unless asked");
    // A section left out of what was saved still comes from the defaults at Start.
    let mut without = saved.clone();
    without.as_object_mut().unwrap().remove("webrtc");
    let merged = common::supervisor::merged_options(&without);
    assert_eq!(merged["webrtc"], serde_json::json!({}));
}

/// The image is built from the repository root (the release workflow's context), so every file
/// the Dockerfile copies must exist there; the arch comes from the build platform; the workflow
/// publishes the image `config.yaml` names.
#[test]
fn the_image_builds_from_the_context_the_release_workflow_gives_it() {
    let dockerfile = std::fs::read_to_string(repo("addon/Dockerfile")).unwrap();
    let workflow = std::fs::read_to_string(repo(".github/workflows/release.yaml")).unwrap();
    assert!(workflow.contains("context: .") && workflow.contains("file: addon/Dockerfile"));
    for line in dockerfile.lines().map(str::trim) {
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        if args.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = args.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                repo(source).exists(),
                "the Dockerfile copies {source}, which the repository root does not have"
            );
        }
    }
    assert!(
        !dockerfile.contains("BUILD_ARCH"),
        "the arch is not hand-passed"
    );
    assert!(dockerfile.contains("ARG TARGETARCH"));
    assert!(
        !dockerfile.contains("releases/download"),
        "the model ships in the repository, not from a release"
    );
    let image = addon_config()["image"].as_str().unwrap().to_string();
    assert_eq!(image, "ghcr.io/ipcam-mqtt/{arch}-ipcam-mqtt");
    assert!(workflow.contains("ghcr.io/ipcam-mqtt/${{ matrix.arch }}-ipcam-mqtt:"));
    for arch in addon_config()["arch"].as_array().unwrap() {
        assert!(
            workflow.contains(&format!("arch: {}", arch.as_str().unwrap())),
            "the workflow builds {arch}"
        );
    }
}

/// The model in the repository is the one its README describes, byte for byte.
#[test]
fn the_shipped_model_matches_its_provenance_checksums() {
    let readme = std::fs::read_to_string(repo("models/yamnet/README.md")).unwrap();
    for file in [
        "yamnet.onnx",
        "yamnet_class_map.csv",
        "LICENSE-Apache-2.0.txt",
    ] {
        let out = std::process::Command::new("sha256sum")
            .arg(repo(&format!("models/yamnet/{file}")))
            .output()
            .unwrap();
        assert!(out.status.success(), "models/yamnet/{file} is missing");
        let sum = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        assert!(
            readme.contains(&format!("| `{file}` |")) && readme.contains(&sum),
            "{file}: sha256 {sum} is not the one models/yamnet/README.md gives"
        );
    }
}

//! The things under test and beside it: the add-on binary, synthetic cameras in their own
//! process, and their configuration.
use super::*;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `ipcam-mqtt test-camera`'s arguments for a small camera on `port`, for a test that starts it
/// its own way (in a network namespace).
pub fn small_camera_args(port: u16) -> Vec<String> {
    let port = port.to_string();
    [
        "test-camera",
        "--port",
        &port,
        "--width",
        "320",
        "--height",
        "240",
    ]
    .map(String::from)
    .to_vec()
}

/// A synthetic camera in its own process (`ipcam-mqtt test-camera`), so it can be killed and restored.
pub struct Camera {
    pub port: u16,
    args: Vec<String>,
    proc: Option<Proc>,
}

impl Camera {
    /// `args` are extra test-camera flags, e.g. `["--video", "h265", "--audio", "aac"]`.
    pub fn start(args: &[&str]) -> Camera {
        let mut camera = Camera {
            port: free_port(),
            args: args.iter().map(|s| s.to_string()).collect(),
            proc: None,
        };
        camera.restore();
        camera
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/stream", self.port)
    }

    /// How many RTSP connections the camera has accepted since it (re)started.
    pub fn connections(&self) -> usize {
        self.proc
            .as_ref()
            .map_or(0, |p| p.output.count("client connected"))
    }

    pub fn kill(&mut self) {
        self.proc = None;
    }

    pub fn restore(&mut self) {
        let mut cmd = Command::new(BIN);
        cmd.args(["test-camera", "--port", &self.port.to_string()]);
        // Small by default, to keep tests light; callers may ask for more.
        for (flag, value) in [("--width", "320"), ("--height", "240")] {
            if !self.args.iter().any(|a| a == flag) {
                cmd.args([flag, value]);
            }
        }
        cmd.args(&self.args);
        let proc = Proc::spawn(&mut cmd);
        // Not a TCP probe: the camera would count it as a client.
        wait_until("the test camera to listen", Duration::from_secs(10), || {
            proc.output.count("test-camera: serving") > 0
        });
        self.proc = Some(proc);
    }

    /// Sends a signal to the camera process (`STOP` freezes it with its connections open).
    pub fn signal(&self, signal: &str) {
        if let Some(proc) = &self.proc {
            proc.signal(signal);
        }
    }
}

/// The add-on under test, run as its real binary with a generated config.
pub struct AddOn {
    pub rtsp_port: u16,
    pub http_port: u16,
    pub proc: Proc,
    pub dir: tempfile::TempDir,
}

impl AddOn {
    /// Settings go to a fresh data directory unless `config_yaml` names one.
    pub fn start(config_yaml: &str) -> AddOn {
        Self::start_with_env(config_yaml, &[])
    }

    /// As [`AddOn::start`], with extra environment variables for the add-on process.
    pub fn start_with_env(config_yaml: &str, env: &[(&str, &str)]) -> AddOn {
        Self::start_binary(BIN, config_yaml, env)
    }

    /// As [`AddOn::start_with_env`], running the binary at `bin` (an older build, for a
    /// benchmark's before and after in one run).
    pub fn start_binary(bin: &str, config_yaml: &str, env: &[(&str, &str)]) -> AddOn {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cameras.yaml");
        let mut yaml = config_yaml.to_string();
        if !yaml.contains("data_dir:") {
            yaml.push_str(&format!(
                "data_dir: {}\n",
                dir.path().join("data").display()
            ));
        }
        std::fs::write(&path, yaml.as_bytes()).unwrap();
        let parsed = serde_yaml::from_str::<serde_yaml::Value>(&yaml).unwrap();
        Self::launch(bin, dir, &path, &[], parsed, env)
    }

    /// As the add-on: `saved` are the options a user saved, and the binary reads what the
    /// Supervisor writes for them (checked by its rules, merged with the defaults), with a
    /// data directory of its own in place of `/data`. `saved` sets `rtsp.port` and `http.port`.
    pub fn start_as_addon(saved: &serde_json::Value, env: &[(&str, &str)]) -> AddOn {
        Self::start_as_addon_in(tempfile::tempdir().unwrap(), saved, env)
    }

    /// [`AddOn::start_as_addon`] with `/data` in `dir`'s `data`, kept across restarts.
    pub fn start_as_addon_in(
        dir: tempfile::TempDir,
        saved: &serde_json::Value,
        env: &[(&str, &str)],
    ) -> AddOn {
        let path = dir.path().join("options.json");
        let mut saved = saved.clone();
        if saved.get("media_dir").is_none() {
            saved["media_dir"] = dir.path().join("media").to_str().unwrap().into();
        }
        let json = supervisor::options_json(&saved);
        std::fs::write(&path, &json).unwrap();
        let parsed = serde_yaml::from_str::<serde_yaml::Value>(&json).unwrap();
        let data = dir.path().join("data").to_str().unwrap().to_string();
        Self::launch(BIN, dir, &path, &["--data-dir", &data], parsed, env)
    }

    fn launch(
        bin: &str,
        dir: tempfile::TempDir,
        path: &Path,
        args: &[&str],
        parsed: serde_yaml::Value,
        env: &[(&str, &str)],
    ) -> AddOn {
        let rtsp_port = parsed["rtsp"]["port"]
            .as_u64()
            .expect("the test config sets rtsp.port") as u16;
        let http_port = parsed["http"]["port"]
            .as_u64()
            .expect("the test config sets http.port") as u16;
        let mut command = Command::new(bin);
        command
            .args([
                "--config",
                path.to_str().unwrap(),
                "--log-level",
                "info,ipcam_mqtt=debug,rumqttd=warn",
            ])
            .args(args)
            .env("NO_COLOR", "1");
        if let Some(library) = onnxruntime_library() {
            command.env("ORT_DYLIB_PATH", library);
        }
        command.envs(env.iter().copied());
        let mut proc = Proc::spawn(&mut command);
        // Ten add-ons and their cameras starting at once on two cores can take a while.
        wait_until(
            "the add-on's RTSP server to listen",
            Duration::from_secs(30),
            || std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, rtsp_port)).is_ok(),
        );
        if let Some(status) = proc.exited() {
            panic!(
                "the add-on exited at start ({status}):\n{}",
                proc.output.text()
            );
        }
        // Commands are not retained, so a test's first one must not beat the add-on's
        // subscription: it publishes `online` right after subscribing. Best effort, as some
        // tests run without a broker.
        if let Some(port) = parsed["mqtt"]["port"].as_u64() {
            let mqtt = &parsed["mqtt"];
            let prefix = mqtt["prefix"]
                .as_str()
                .or(mqtt["node_id"].as_str())
                .unwrap_or("ipcam");
            let status = MqttWatch::start(port as u16, &[&format!("{prefix}/status")]);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while status.messages().iter().all(|(_, p)| p != "online")
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        AddOn {
            rtsp_port,
            http_port,
            proc,
            dir,
        }
    }

    /// Stops the add-on and hands back its folder (its `/data` among it) for the next start.
    pub fn stop(self) -> tempfile::TempDir {
        let AddOn { proc, dir, .. } = self;
        drop(proc);
        dir
    }

    pub fn live_url(&self, camera: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{camera}_live", self.rtsp_port)
    }

    pub fn logs(&self) -> String {
        self.proc.output.text()
    }

    /// `GET /api/frame.jpeg?<query>` → (status, body).
    pub fn frame(&self, query: &str) -> (u16, Vec<u8>) {
        http_get(&format!(
            "http://127.0.0.1:{}/api/frame.jpeg?{query}",
            self.http_port
        ))
    }
}

/// A config for `cameras` given as (id, url, extra YAML lines for that camera).
pub fn config(mqtt_port: u16, rtsp_port: u16, cameras: &[(&str, &str, &str)]) -> String {
    let mut yaml = format!(
        "mqtt:\n  host: 127.0.0.1\n  port: {mqtt_port}\nrtsp:\n  port: {rtsp_port}\nhttp:\n  port: {}\ncameras:\n",
        free_port()
    );
    for (id, url, extra) in cameras {
        yaml.push_str(&format!(
            "  - id: {id}\n    name: Camera {id}\n    url: {url}\n"
        ));
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            yaml.push_str(&format!("    {}\n", line.trim()));
        }
    }
    yaml
}

/// [`config`] with the YAMNet model for cry detection set.
pub fn cry_config(
    mqtt_port: u16,
    cameras: &[(&str, &str, &str)],
    model: impl AsRef<Path>,
) -> String {
    let mut yaml = config(mqtt_port, free_port(), cameras);
    yaml.push_str(&format!("cry_model: {}\n", model.as_ref().display()));
    yaml
}

/// ONNX Runtime for cry detection: `ORT_DYLIB_PATH`, else the library of the `onnxruntime`
/// wheel that `scripts/setup.sh` installs.
pub fn onnxruntime_library() -> Option<String> {
    if let Ok(path) = std::env::var("ORT_DYLIB_PATH") {
        return Some(path).filter(|p| !p.is_empty());
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import glob, os, onnxruntime as o; print(sorted(glob.glob(os.path.join(os.path.dirname(o.__file__), 'capi', 'libonnxruntime.so*')))[0])",
        ])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !path.is_empty()).then_some(path)
}

/// The cry model the add-on ships (YAMNet with the cry head), from the repository.
pub fn cry_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/yamnet/yamnet-cry.onnx")
}

/// The shared fixtures beside the checkout, or `None` with a message naming what is missing.
pub fn shared_file(relative: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(relative);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIP: {} is missing (the shared/ folder belongs beside the checkout)",
            path.display()
        );
        None
    }
}

/// The usual setup: a broker with a watcher, one synthetic camera started with `camera_args`,
/// and the add-on serving it as `cam` (with `camera_yaml` added to its config entry).
/// Fields drop in order: the add-on first, the broker last.
pub struct Rig {
    pub addon: AddOn,
    pub camera: Camera,
    pub mqtt: MqttWatch,
    pub broker: Mosquitto,
}

impl Rig {
    pub fn start(camera_args: &[&str], camera_yaml: &str) -> Rig {
        let broker = Mosquitto::start();
        let mqtt = broker.watch();
        let camera = Camera::start(camera_args);
        let addon = AddOn::start(&config(
            broker.port,
            free_port(),
            &[("cam", &camera.url(), camera_yaml)],
        ));
        Rig {
            addon,
            camera,
            mqtt,
            broker,
        }
    }
}

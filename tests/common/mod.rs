//! Real parts for the end-to-end tests: a Mosquitto broker, synthetic cameras served by
//! gst-rtsp-server in their own process, the add-on binary itself, and real RTSP clients.
#![allow(dead_code)]

pub mod browser;
pub mod supervisor;
#[cfg(feature = "webrtc")]
pub mod whep;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ipcam-mqtt");

/// A port for a test's server, free now and handed out once per test process. Taken below the
/// kernel's ephemeral range (32768 and up), since under load the outgoing connections of other
/// tests' clients could take an ephemeral port between this check and the server's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const COUNT: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Test binaries (and scripts) that overlap start far apart.
    let start = std::process::id().wrapping_mul(997);
    loop {
        let taken = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + start.wrapping_add(taken) % COUNT) as u16;
        let free = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
            && std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
        if free {
            return port;
        }
    }
}

/// Polls `check` until it holds or `timeout` passes; panics with `what` otherwise.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// Lines a child process printed (stdout and stderr), collected by reader threads.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<Vec<String>>>);

impl Output {
    fn capture(&self, stream: impl std::io::Read + Send + 'static) {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            // Lossy: a binary payload (a snapshot JPEG) must not end the capture.
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&line);
                lines
                    .lock()
                    .unwrap()
                    .push(text.trim_end_matches(['\n', '\r']).to_string());
                line.clear();
            }
        });
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub output: Output,
}

impl Proc {
    pub fn spawn(command: &mut Command) -> Proc {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let output = Output::default();
        output.capture(child.stdout.take().unwrap());
        output.capture(child.stderr.take().unwrap());
        Proc { child, output }
    }

    /// Frames decoded so far by an ffmpeg run with `-progress pipe:1`.
    pub fn decoded_frames(&self) -> u64 {
        self.output
            .lines()
            .iter()
            .filter_map(|l| l.strip_prefix("frame=")?.trim().parse::<u64>().ok())
            .next_back()
            .unwrap_or(0)
    }

    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status();
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Wrappers such as `runuser` leave their child running when killed: take the children first.
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Mosquitto on a free loopback port.
pub struct Mosquitto {
    pub port: u16,
    proc: Proc,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Self::start_on(free_port())
    }

    /// On a given port, e.g. to restart a broker where the add-on expects it.
    pub fn start_on(port: u16) -> Mosquitto {
        let proc = Proc::spawn(Command::new("mosquitto").args(["-p", &port.to_string()]));
        wait_until("mosquitto to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
        });
        Mosquitto { port, proc }
    }

    /// With `extra` lines in its configuration (e.g. a TLS listener), besides its plain
    /// loopback listener on `port`.
    pub fn start_with(extra: &str) -> Mosquitto {
        let port = free_port();
        let conf = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            conf.path(),
            format!("allow_anonymous true\nlistener {port} 127.0.0.1\n{extra}"),
        )
        .unwrap();
        let proc = Proc::spawn(Command::new("mosquitto").arg("-c").arg(conf.path()));
        wait_until("mosquitto to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
        });
        Mosquitto { port, proc }
    }

    /// E.g. `STOP` to freeze the broker with its connections open.
    pub fn signal(&self, signal: &str) {
        self.proc.signal(signal);
    }

    /// A `mosquitto_sub` on everything, to watch what the add-on publishes.
    pub fn watch(&self) -> MqttWatch {
        MqttWatch::start(self.port, &["#"])
    }

    pub fn publish(&self, topic: &str, payload: &str, retain: bool) {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-t",
            topic,
            "-m",
            payload,
        ]);
        if retain {
            cmd.arg("-r");
        }
        assert!(cmd.status().unwrap().success(), "mosquitto_pub failed");
    }
}

/// Messages seen by a real MQTT client (`mosquitto_sub -v`), as (topic, payload).
pub struct MqttWatch {
    proc: Proc,
}

impl MqttWatch {
    pub fn start(port: u16, filters: &[&str]) -> MqttWatch {
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-v",
            "-F",
            "%t\t%p",
        ]);
        for filter in filters {
            cmd.args(["-t", filter]);
        }
        let watch = MqttWatch {
            proc: Proc::spawn(&mut cmd),
        };
        std::thread::sleep(Duration::from_millis(200));
        watch
    }

    pub fn messages(&self) -> Vec<(String, String)> {
        self.proc
            .output
            .lines()
            .into_iter()
            .filter_map(|l| {
                let (topic, payload) = l.split_once('\t')?;
                Some((topic.to_string(), payload.to_string()))
            })
            .collect()
    }

    /// The last payload seen on `topic`.
    pub fn last(&self, topic: &str) -> Option<String> {
        self.messages()
            .into_iter()
            .rev()
            .find(|(t, _)| t == topic)
            .map(|(_, p)| p)
    }

    pub fn count(&self, topic: &str) -> usize {
        self.messages().iter().filter(|(t, _)| t == topic).count()
    }

    pub fn wait_for(&self, topic: &str, payload: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.last(topic).as_deref() != Some(payload) {
            if std::time::Instant::now() > deadline {
                let seen = self.messages();
                panic!(
                    "timed out after {timeout:?} waiting for {topic} = {payload} (last seen: {:?}; {} messages on {} topics seen, the first: {:?})",
                    self.last(topic),
                    seen.len(),
                    seen.iter()
                        .map(|(t, _)| t)
                        .collect::<std::collections::BTreeSet<_>>()
                        .len(),
                    seen.first().map(|(t, _)| t)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_for_json(
        &self,
        topic: &str,
        timeout: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut found = None;
        wait_until(
            &format!(
                "a matching message on {topic} (last: {:?})",
                self.last(topic)
            ),
            timeout,
            || {
                found = self
                    .last(topic)
                    .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
                    .filter(|v| check(v));
                found.is_some()
            },
        );
        found.unwrap()
    }
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
        Self::launch(dir, &path, &[], parsed, env)
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
        Self::launch(dir, &path, &["--data-dir", &data], parsed, env)
    }

    fn launch(
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
        let mut command = Command::new(BIN);
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

/// A plain HTTP GET with curl, a real client: (status, body). `curl_args` add e.g. `-u user:pass`.
pub fn http_get_with(url: &str, curl_args: &[&str]) -> (u16, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let output = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "30",
            "-o",
            body.to_str().unwrap(),
            "-w",
            "%{http_code}",
        ])
        .args(curl_args)
        .arg(url)
        .output()
        .expect("curl runs");
    let status = String::from_utf8_lossy(&output.stdout).parse().unwrap_or(0);
    (status, std::fs::read(&body).unwrap_or_default())
}

pub fn http_get(url: &str) -> (u16, Vec<u8>) {
    http_get_with(url, &[])
}

/// Decodes a JPEG with ffmpeg (a real decoder) and returns its size.
pub fn jpeg_size(jpeg: &[u8]) -> Result<(u32, u32), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.jpg");
    std::fs::write(&path, jpeg).unwrap();
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe runs");
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    if !decode.status.success() || !decode.stderr.is_empty() {
        return Err(format!(
            "ffmpeg cannot decode it: {}",
            String::from_utf8_lossy(&decode.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let (w, h) = text
        .trim()
        .split_once(',')
        .ok_or(format!("ffprobe gave {text:?}"))?;
    Ok((w.parse().unwrap(), h.parse().unwrap()))
}

/// The images published on one topic, as hex through `mosquitto_sub`, with arrival times.
pub struct ImageWatch {
    proc: Proc,
}

impl ImageWatch {
    pub fn start(port: u16, topic: &str) -> ImageWatch {
        let watch = ImageWatch {
            proc: Proc::spawn(Command::new("mosquitto_sub").args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                topic,
                "-F",
                "%U %x",
            ])),
        };
        std::thread::sleep(Duration::from_millis(200));
        watch
    }

    /// (unix time in seconds, image) for each message so far.
    pub fn images(&self) -> Vec<(f64, Vec<u8>)> {
        self.proc
            .output
            .lines()
            .iter()
            .filter_map(|line| {
                let (time, hex) = line.split_once(' ')?;
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                    .collect::<Option<Vec<u8>>>()?;
                Some((time.parse().ok()?, bytes))
            })
            .collect()
    }

    pub fn wait_for_count(&self, count: usize, timeout: Duration) -> Vec<(f64, Vec<u8>)> {
        wait_until(
            &format!("{count} image(s), have {}", self.images().len()),
            timeout,
            || self.images().len() >= count,
        );
        self.images()
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

/// The codecs ffprobe sees on an RTSP URL, e.g. `["h264", "aac"]`.
pub fn ffprobe_codecs(url: &str, transport: &str) -> Result<Vec<String>, String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            transport,
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            url,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// A GStreamer viewer over RTSP/TCP (as Home Assistant connects) that decodes until killed.
pub fn gst_viewer(url: &str) -> Proc {
    let tcp_url = url.replacen("rtsp://", "rtspt://", 1);
    Proc::spawn(Command::new("gst-launch-1.0").args([
        "-q",
        "playbin",
        &format!("uri={tcp_url}"),
        "video-sink=fakesink sync=false",
        "audio-sink=fakesink sync=false",
    ]))
}

/// `ffmpeg` reading `url` over RTSP/TCP, with `output_args` after the input.
pub fn ffmpeg_command(url: &str, output_args: &[&str]) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-nostdin",
        "-v",
        "error",
        "-rtsp_transport",
        "tcp",
        "-i",
        url,
    ])
    .args(output_args);
    cmd
}

/// Runs ffmpeg to completion; its stdout, or its error output.
fn ffmpeg_output(url: &str, output_args: &[&str]) -> Result<Vec<u8>, String> {
    let out = ffmpeg_command(url, output_args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// An ffmpeg viewer that decodes and reports its progress every `period` seconds, for
/// [`Proc::decoded_frames`].
pub fn counting_viewer(url: &str, period: &str) -> Proc {
    counting_viewer_with(url, period, &[])
}

/// [`counting_viewer`] with codec options, e.g. `["-c", "copy"]` to count without decoding.
pub fn counting_viewer_with(url: &str, period: &str, codec_args: &[&str]) -> Proc {
    let progress = [
        "-f",
        "null",
        "-",
        "-progress",
        "pipe:1",
        "-stats_period",
        period,
    ];
    Proc::spawn(&mut ffmpeg_command(url, &[codec_args, &progress].concat()))
}

/// Turns a camera's live stream ON over MQTT and waits until it streams.
pub fn switch_on(broker: &Mosquitto, mqtt: &MqttWatch, camera: &str) {
    broker.publish(&format!("ipcam/{camera}/live_stream/command"), "ON", false);
    mqtt.wait_for(
        &format!("ipcam/{camera}/stream_status/state"),
        "active",
        Duration::from_secs(15),
    );
}

/// Decodes `frames` video frames with ffmpeg; returns how many it decoded.
pub fn ffmpeg_decode_frames(url: &str, frames: u32) -> Result<u32, String> {
    let frames = frames.to_string();
    let progress = ffmpeg_output(
        url,
        &[
            "-frames:v",
            &frames,
            "-f",
            "null",
            "-",
            "-progress",
            "pipe:1",
            "-nostats",
        ],
    )?;
    Ok(String::from_utf8_lossy(&progress)
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
        .unwrap_or(0))
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

/// Writes an MP4 that ffmpeg makes from the lavfi `source`, with encoder `args`.
pub fn write_mp4(path: &Path, source: &str, args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", source])
        .args(args)
        .arg(path)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "ffmpeg could not write {}",
        path.display()
    );
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

/// Decodes `seconds` of a stream's audio with ffmpeg; returns (samples, RMS on a 0..1 scale).
pub fn ffmpeg_audio(url: &str, seconds: u32) -> Result<(usize, f64), String> {
    let seconds = seconds.to_string();
    let pcm = ffmpeg_output(
        url,
        &[
            "-vn", "-t", &seconds, "-f", "s16le", "-ac", "1", "-ar", "16000", "-",
        ],
    )?;
    let samples: Vec<f64> = pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f64 / 32768.0)
        .collect();
    let rms = (samples.iter().map(|s| s * s).sum::<f64>() / samples.len().max(1) as f64).sqrt();
    Ok((samples.len(), rms))
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

/// A TCP connection to `port` from the loopback address `from` (127.0.0.0/8 is all ours).
pub fn connect_from(from: std::net::Ipv4Addr, port: u16) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    use std::net::{Ipv4Addr, SocketAddr};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket
        .connect(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())
        .unwrap();
    socket.into()
}

/// Sends one RTSP request on a raw connection and reads the reply (headers and body);
/// panics unless it is `200 OK`. Returns the reply's headers.
pub fn rtsp_request(
    stream: &mut std::net::TcpStream,
    cseq: u32,
    line: &str,
    headers: &str,
) -> String {
    let text = rtsp_exchange(stream, cseq, line, headers);
    assert!(text.starts_with("RTSP/1.0 200"), "{line}: {text}");
    text
}

/// Sends one RTSP request on a raw connection and reads the reply, whatever its status.
/// Returns the reply's headers.
pub fn rtsp_exchange(
    stream: &mut std::net::TcpStream,
    cseq: u32,
    line: &str,
    headers: &str,
) -> String {
    use std::io::Read;
    // One write: several small ones would wait on Nagle and the server's delayed ACK (40 ms).
    let request = format!("{line} RTSP/1.0\r\nCSeq: {cseq}\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        response.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    if let Some(length) = text
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
    {
        let mut body = vec![0u8; length.trim().parse().unwrap()];
        stream.read_exact(&mut body).unwrap();
    }
    text
}

/// A client that has sent DESCRIBE for `url` and nothing more: a viewer still negotiating.
pub fn rtsp_described(port: u16, url: &str) -> std::net::TcpStream {
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    rtsp_request(
        &mut socket,
        1,
        &format!("DESCRIBE {url}"),
        "Accept: application/sdp\r\n",
    );
    socket
}

/// Panics unless the server has closed `socket` (it reads end of stream, or a reset).
pub fn assert_closed_by_server(mut socket: std::net::TcpStream, what: &str) {
    use std::io::Read;
    let read = socket.read(&mut [0u8; 1]).map_err(|e| e.kind());
    assert!(
        matches!(read, Ok(0) | Err(std::io::ErrorKind::ConnectionReset)),
        "{what}: the connection is still open ({read:?})"
    );
}

/// SETUPs both tracks of `url` (video, then audio) interleaved on the connection, with CSeq
/// `cseq` and `cseq + 1`; returns the `Session:` header line for what follows.
pub fn rtsp_setup_both_tracks(stream: &mut std::net::TcpStream, url: &str, cseq: u32) -> String {
    let setup = rtsp_request(
        stream,
        cseq,
        &format!("SETUP {url}/stream=0"),
        "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n",
    );
    let session = setup
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|s| s.split(';').next())
        .unwrap();
    let session = format!("Session: {session}\r\n");
    rtsp_request(
        stream,
        cseq + 1,
        &format!("SETUP {url}/stream=1"),
        &format!("{session}Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n"),
    );
    session
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Threads of a process.
pub fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// Resident memory of a process, in kB.
pub fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

/// The anonymous part of the resident set (heap and stacks, not mapped libraries): where a
/// leak shows.
pub fn heap_kb(pid: u32) -> u64 {
    status_kb(pid, "RssAnon:")
}

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

//! MQTT: a real Mosquitto broker, and watchers that record what the add-on publishes.
use super::*;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

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

/// Turns a camera's live stream ON over MQTT and waits until it streams.
pub fn switch_on(broker: &Mosquitto, mqtt: &MqttWatch, camera: &str) {
    broker.publish(&format!("ipcam/{camera}/live_stream/command"), "ON", false);
    mqtt.wait_for(
        &format!("ipcam/{camera}/stream_status/state"),
        "active",
        Duration::from_secs(15),
    );
}

//! The MQTT bridge: publishes discovery and states, turns commands into camera commands.
//!
//! Two tasks: the rumqttc event loop (which must always be polled, and reconnects with backoff)
//! and the bridge, which owns every publication so nothing else writes to the broker.

use super::command::{self, Command};
use super::discovery::{self, OFFLINE, ONLINE};
use super::states::{
    CameraLinks, camera_states, cry_event, cry_states, events_states, snapshot_states,
};
use super::topics::{Entity, Leaf, Topics};
use crate::audio::task::{CryNotice, CryState};
use crate::camera::CameraHandle;
use crate::config::MqttConfig;
use crate::error::{Error, ErrorKind};
use crate::events::task::{DEFAULT_MANUAL, EventRequest, EventsHandle};
use crate::snapshot::{Request, SnapshotHandle};
use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, Transport};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// One camera as the bridge sees it.
#[derive(Debug, Clone)]
pub struct BridgedCamera {
    pub handle: CameraHandle,
    pub snapshot: SnapshotHandle,
    /// `None` when cry detection is disabled for this camera.
    pub cry: Option<watch::Receiver<CryState>>,
    /// The "Cry sensitivity" entity's way in; `None` when cry detection is disabled.
    pub cry_sensitivity: Option<watch::Sender<u8>>,
    pub events: EventsHandle,
    pub name: String,
    pub links: CameraLinks,
}

/// The longest wait between attempts to reach the broker: a broker back from a restart is found
/// within this, and trying a home broker every few seconds costs nothing.
const RECONNECT_MAX: Duration = Duration::from_secs(4);
/// Our largest message is a snapshot JPEG (a 4K one is ~2 MB); commands are tiny.
const MAX_OUTGOING: usize = 16 * 1024 * 1024;
const MAX_INCOMING: usize = 256 * 1024;

enum Incoming {
    Connected,
    /// The broker sent a message over our packet limit, which breaks the connection.
    Oversized,
    Message {
        topic: String,
        payload: Vec<u8>,
        retained: bool,
    },
}

pub async fn run(
    config: &MqttConfig,
    transport: Transport,
    cameras: Vec<BridgedCamera>,
    cry_notices: mpsc::Receiver<CryNotice>,
    cancel: CancellationToken,
) {
    let topics = Topics::new(config);
    let mut options = MqttOptions::new(
        format!("ipcam-mqtt-{}", config.node_id),
        config.host().to_string(),
        config.port(),
    );
    options.set_transport(transport);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(MAX_INCOMING, MAX_OUTGOING);
    options.set_last_will(LastWill::new(
        topics.bridge_status(),
        OFFLINE,
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(user) = &config.username {
        let password = config.password.as_ref().map(|p| p.expose()).unwrap_or("");
        options.set_credentials(user.clone(), password);
    }
    let (client, event_loop) = AsyncClient::new(options, 256);
    let (incoming_tx, incoming) = mpsc::channel(256);
    let broker = format!("{}:{}", config.host(), config.port());
    let poller = tokio::spawn(poll(event_loop, incoming_tx, broker));
    let queues = cameras
        .iter()
        .map(|camera| Commander::for_camera(camera).spawn())
        .collect();
    let mut bridge = Bridge {
        client,
        topics,
        cameras,
        queues,
        published: HashMap::new(),
        clear_commands: false,
    };
    bridge.serve(incoming, cry_notices, cancel).await;
    poller.abort();
}

async fn poll(mut event_loop: EventLoop, incoming: mpsc::Sender<Incoming>, broker: String) {
    let mut delay = Duration::from_secs(1);
    loop {
        match event_loop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!("connected to the MQTT broker at {broker}");
                delay = Duration::from_secs(1);
                if incoming.send(Incoming::Connected).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let message = Incoming::Message {
                    topic: publish.topic,
                    payload: publish.payload.to_vec(),
                    retained: publish.retain,
                };
                if incoming.send(message).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                let oversized = matches!(
                    e,
                    rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
                        rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_)
                    ))
                );
                if oversized && incoming.send(Incoming::Oversized).await.is_err() {
                    return;
                }
                let hint = if matches!(e, rumqttc::ConnectionError::Tls(_)) {
                    " (with mqtt.tls the broker's certificate must be signed by mqtt.ca_file, or \
                     an authority the system trusts, for the name in mqtt.host)"
                } else {
                    ""
                };
                tracing::warn!(
                    "MQTT broker {broker}: {}{hint}; reconnecting in {} s",
                    crate::secret::redact_urls(&e.to_string()),
                    delay.as_secs()
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// How many commands may wait for one camera; beyond that a flood is dropped, with a warning.
const COMMAND_QUEUE: usize = 64;

/// What a camera's MQTT commands reach.
struct Commander {
    handle: CameraHandle,
    snapshot: SnapshotHandle,
    events: EventsHandle,
    cry_sensitivity: Option<watch::Sender<u8>>,
}

impl Commander {
    fn for_camera(camera: &BridgedCamera) -> Commander {
        Commander {
            handle: camera.handle.clone(),
            snapshot: camera.snapshot.clone(),
            events: camera.events.clone(),
            cry_sensitivity: camera.cry_sensitivity.clone(),
        }
    }

    /// The camera's queue; its task applies each command before taking the next, and ends when
    /// the bridge drops the queue.
    fn spawn(self) -> mpsc::Sender<Command> {
        let (queue, mut commands) = mpsc::channel(COMMAND_QUEUE);
        tokio::spawn(async move {
            while let Some(command) = commands.recv().await {
                if let Err(e) = self.apply(command).await {
                    tracing::warn!(camera = %self.handle.id, "command not applied: {e}");
                }
            }
        });
        queue
    }

    async fn apply(&self, command: Command) -> Result<(), Error> {
        match command {
            Command::LiveStream(on) => self.handle.set_live(on).await,
            Command::SnapshotMode(mode) => self.snapshot.request(Request::SetMode(mode)).await,
            Command::SnapshotInterval(seconds) => {
                self.snapshot.request(Request::SetInterval(seconds)).await
            }
            Command::TakeSnapshot => self.snapshot.request(Request::Take).await,
            Command::Motion(on) => self.events.request(EventRequest::Motion(on)).await,
            Command::RecordClip(length) => {
                let length = length.unwrap_or(DEFAULT_MANUAL);
                self.events.request(EventRequest::RecordClip(length)).await
            }
            Command::SelectEvent(slot) => self.events.request(EventRequest::Select(slot)).await,
            Command::EventStream(on) => self.events.request(EventRequest::EventStream(on)).await,
            Command::CrySensitivity(percent) => match &self.cry_sensitivity {
                Some(sensitivity) => {
                    sensitivity.send_replace(percent);
                    Ok(())
                }
                None => Err(Error::new(
                    ErrorKind::Unsupported,
                    "cry detection is off for this camera",
                )),
            },
        }
    }
}

struct Bridge {
    client: AsyncClient,
    topics: Topics,
    cameras: Vec<BridgedCamera>,
    /// Each camera's command queue, in the order of `cameras`.
    queues: Vec<mpsc::Sender<Command>>,
    /// The last payload per retained topic, to publish only changes and to republish all.
    published: HashMap<String, Bytes>,
    /// Set when an oversized message broke the connection: cleared before subscribing again.
    clear_commands: bool,
}

impl Bridge {
    async fn serve(
        &mut self,
        mut incoming: mpsc::Receiver<Incoming>,
        mut cry_notices: mpsc::Receiver<CryNotice>,
        cancel: CancellationToken,
    ) {
        let (changed_tx, mut changed) = mpsc::channel::<usize>(64);
        let mut watchers = Vec::new();
        for (index, camera) in self.cameras.iter().enumerate() {
            let mut state = camera.handle.state();
            let mut snapshot = camera.snapshot.state();
            let mut cry = camera.cry.clone();
            let mut events = camera.events.state();
            let changed_tx = changed_tx.clone();
            watchers.push(tokio::spawn(async move {
                loop {
                    let cry_changed = async {
                        match cry.as_mut() {
                            Some(cry) => cry.changed().await,
                            None => std::future::pending().await,
                        }
                    };
                    let changed = tokio::select! {
                        changed = state.changed() => changed,
                        changed = snapshot.changed() => changed,
                        changed = cry_changed => match changed {
                            Ok(()) => Ok(()),
                            // Cry detection gave up (no model, say); its last state stands,
                            // and the camera's other changes must still be published.
                            Err(_) => {
                                cry = None;
                                continue;
                            }
                        },
                        changed = events.changed() => changed,
                    };
                    if changed.is_err() || changed_tx.send(index).await.is_err() {
                        return;
                    }
                }
            }));
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(message) = incoming.recv() => self.on_incoming(message).await,
                Some(index) = changed.recv() => self.publish_camera(index, false).await,
                Some(notice) = cry_notices.recv() => self.publish_cry_event(&notice).await,
            }
        }
        for watcher in watchers {
            watcher.abort();
        }
        // A clean goodbye: the will covers crashes, this covers shutdown.
        let _ = self
            .client
            .publish(self.topics.bridge_status(), QoS::AtLeastOnce, true, OFFLINE)
            .await;
        let _ = self.client.disconnect().await;
        // Give the event loop a moment to flush the goodbye.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    async fn on_incoming(&mut self, message: Incoming) {
        match message {
            Incoming::Oversized => self.clear_commands = true,
            Incoming::Connected => {
                if std::mem::take(&mut self.clear_commands) {
                    self.clear_retained_commands().await;
                }
                for filter in [
                    self.topics.command_filter(),
                    self.topics.ha_status(),
                    self.topics.camera_status_filter(),
                ] {
                    let _ = self.client.subscribe(filter, QoS::AtLeastOnce).await;
                }
                self.publish_all().await;
            }
            Incoming::Message {
                topic,
                payload,
                retained,
            } => {
                if topic == self.topics.ha_status() {
                    if payload == ONLINE.as_bytes() {
                        tracing::info!("Home Assistant came online: publishing discovery again");
                        self.publish_all().await;
                    }
                } else if let Some(camera) = self.topics.parse_camera_status(&topic) {
                    if retained && !payload.is_empty() && !self.is_known(camera) {
                        self.clear_ghost(camera.to_string()).await;
                    }
                } else {
                    self.on_command(&topic, &payload);
                }
            }
        }
    }

    fn is_known(&self, camera: &str) -> bool {
        self.cameras.iter().any(|c| c.handle.id == camera)
    }

    fn on_command(&self, topic: &str, payload: &[u8]) {
        let parsed = command::parse(&self.topics, |c| self.is_known(c), topic, payload);
        match parsed {
            Ok(addressed) => {
                let Some(index) = self
                    .cameras
                    .iter()
                    .position(|c| c.handle.id == addressed.camera)
                else {
                    return;
                };
                // One queue per camera, applied by one task: commands take effect in the order
                // they were published ("ON" then "OFF" leaves the camera off), and a slow stop
                // never holds up the bridge or the other cameras.
                if self.queues[index].try_send(addressed.command).is_err() {
                    tracing::warn!(
                        camera = %addressed.camera,
                        "commands arrive faster than they are applied; {:?} dropped",
                        addressed.command
                    );
                }
            }
            Err(e) => tracing::warn!(
                "ignored MQTT command on {}: {e}",
                command::shorten(topic, 120)
            ),
        }
    }

    /// A message too big for us, retained on a command topic, would come back at every
    /// subscribe and break every connection. Commands are never meant to be retained: clearing
    /// them before subscribing ends the loop.
    async fn clear_retained_commands(&mut self) {
        tracing::warn!(
            "a message over {} KiB is retained on one of our topics; clearing retained commands",
            MAX_INCOMING / 1024
        );
        for camera in &self.cameras {
            for entity in Entity::ALL {
                let topic = self.topics.entity(&camera.handle.id, entity, Leaf::Command);
                let _ = self
                    .client
                    .publish(topic, QoS::AtLeastOnce, true, Vec::<u8>::new())
                    .await;
            }
        }
    }

    /// Discovery, availability and every state, as if for the first time.
    async fn publish_all(&mut self) {
        self.published.clear();
        self.publish(self.topics.bridge_status(), ONLINE.into())
            .await;
        for index in 0..self.cameras.len() {
            self.publish_camera(index, true).await;
        }
    }

    async fn publish_camera(&mut self, index: usize, with_discovery: bool) {
        let camera = &self.cameras[index];
        let id = camera.handle.id.clone();
        let mut messages = Vec::new();
        if with_discovery {
            let features = discovery::Features {
                cry_detection: camera.cry.is_some(),
                configuration_url: &camera.links.configuration_url,
            };
            let document = discovery::device(&self.topics, &id, &camera.name, features);
            messages.push((
                self.topics.discovery(&id),
                serde_json::to_vec(&document)
                    .expect("discovery serializes")
                    .into(),
            ));
        }
        let state = camera.handle.state().borrow().clone();
        let cry = camera.cry.as_ref().map(|cry| cry.borrow().clone());
        messages.extend(
            camera_states(&self.topics, &id, &camera.links, &state, cry.as_ref())
                .into_iter()
                .chain(cry_states(&self.topics, &id, cry.as_ref()))
                .chain(events_states(
                    &self.topics,
                    &id,
                    &camera.links,
                    &camera.events.state().borrow(),
                ))
                .map(|(topic, payload)| (topic, payload.into())),
        );
        let snapshot = camera.snapshot.state().borrow().clone();
        messages.extend(snapshot_states(&self.topics, &id, &snapshot));
        for (topic, payload) in messages {
            self.publish(topic, payload).await;
        }
    }

    async fn publish(&mut self, topic: String, payload: Bytes) {
        if self.published.get(&topic) == Some(&payload) {
            return;
        }
        if let Err(e) = self
            .client
            .publish_bytes(topic.clone(), QoS::AtLeastOnce, true, payload.clone())
            .await
        {
            tracing::warn!("cannot publish {topic}: {e}");
            return;
        }
        self.published.insert(topic, payload);
    }

    /// Events are moments, not state: not retained.
    async fn publish_cry_event(&mut self, notice: &CryNotice) {
        let topic = self.topics.cry_event(&notice.camera);
        if let Err(e) = self
            .client
            .publish(topic.clone(), QoS::AtLeastOnce, false, cry_event(notice))
            .await
        {
            tracing::warn!("cannot publish {topic}: {e}");
        }
    }

    /// A camera that left the config: empty retained payloads remove it from the broker and HA.
    async fn clear_ghost(&mut self, camera: String) {
        tracing::info!("camera \"{camera}\" is no longer configured: removing its retained topics");
        for topic in self.topics.retained_for(&camera) {
            let _ = self
                .client
                .publish(topic, QoS::AtLeastOnce, true, Vec::new())
                .await;
        }
    }
}

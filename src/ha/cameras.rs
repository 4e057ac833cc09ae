//! A Generic camera entry in Home Assistant for each camera, so the live stream is a real camera
//! entity with no YAML to write: made through HA's config-flow REST API (via the Supervisor's
//! core proxy in the add-on), named through the entity registry, kept in step with the
//! configuration, and removed when the camera leaves it.
//!
//! Which entry belongs to which camera is kept in `<data_dir>/ha_cameras.json`, so restarts
//! never make duplicates and entries the user made by hand are never touched.

use crate::secret::Secret;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const STATE_FILE: &str = "ha_cameras.json";

/// What one camera's entry should hold.
#[derive(Debug, Clone)]
pub struct WantedCamera {
    pub id: String,
    pub name: String,
    pub stream_source: String,
    /// Carries the RTSP credentials, which stay in Home Assistant's own storage.
    pub stream_credentials: Option<(String, Secret)>,
    pub still_image_url: String,
    pub still_credentials: Option<(String, Secret)>,
}

impl WantedCamera {
    /// What the Generic flow should hold, by field name, wherever its form puts each field.
    pub fn flow_values(&self) -> serde_json::Map<String, Value> {
        let stream = match &self.stream_credentials {
            Some((user, password)) => {
                crate::secret::with_userinfo(&self.stream_source, user, password)
            }
            None => self.stream_source.clone(),
        };
        let mut values = json!({
            "still_image_url": self.still_image_url,
            "stream_source": stream,
            "rtsp_transport": "tcp",
            "authentication": "basic",
            "framerate": 2,
            "verify_ssl": false,
        });
        if let Some((user, password)) = &self.still_credentials {
            values["username"] = user.clone().into();
            values["password"] = password.expose().into();
        }
        match values {
            Value::Object(map) => map,
            _ => unreachable!("built as an object"),
        }
    }

    /// Changes when any field changes, without keeping a password on disk in the clear.
    fn fingerprint(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        Value::Object(self.flow_values())
            .to_string()
            .hash(&mut hasher);
        self.name.hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    fn entity_id(&self) -> String {
        format!("camera.{}_live", self.id)
    }
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
struct Made {
    entry_id: String,
    /// Of the fields the entry was last brought in step with; empty until then.
    fingerprint: String,
}

impl Made {
    fn unsynced(entry_id: &str) -> Made {
        Made {
            entry_id: entry_id.to_string(),
            fingerprint: String::new(),
        }
    }
}

/// Home Assistant's REST and WebSocket API.
pub struct CoreApi {
    base: String,
    token: Secret,
    http: reqwest::Client,
}

impl CoreApi {
    /// In the add-on: the Supervisor's proxy to Core, with the add-on's token.
    /// `HOMEASSISTANT_API` (e.g. `http://127.0.0.1:8123/api`) points it elsewhere.
    pub fn from_env() -> Option<Self> {
        let token = std::env::var("SUPERVISOR_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())?;
        let base = std::env::var("HOMEASSISTANT_API").unwrap_or_else(|_| {
            let supervisor = std::env::var("SUPERVISOR_URL")
                .unwrap_or_else(|_| super::supervisor::SUPERVISOR.into());
            format!("{}/core/api", supervisor.trim_end_matches('/'))
        });
        Some(Self {
            base: base.trim_end_matches('/').to_string(),
            token: Secret::new(token),
            http: reqwest::Client::new(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(self.token.expose())
            // The Generic flow probes the stream before it answers.
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = reply.status();
        let text = reply.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{method} {path}: HTTP {status}: {}", text.trim()));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Sends WebSocket commands after authenticating; returns each one's `result`.
    async fn ws(&self, commands: Vec<Value>) -> Result<Vec<Value>, String> {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        let url = match self.base.strip_suffix("/core/api") {
            Some(supervisor) => format!("{supervisor}/core/websocket"),
            None => format!("{}/websocket", self.base),
        }
        .replacen("http", "ws", 1);
        let (mut socket, _) = tokio_tungstenite::connect_async(&url)
            .await
            .map_err(|e| format!("WebSocket {url}: {e}"))?;
        let _required = next_json(&mut socket).await?;
        let auth = json!({"type": "auth", "access_token": self.token.expose()});
        socket
            .send(Message::Text(auth.to_string().into()))
            .await
            .map_err(|e| e.to_string())?;
        let ok = next_json(&mut socket).await?;
        if ok["type"] != "auth_ok" {
            return Err(format!("Home Assistant refused the token: {}", ok["type"]));
        }
        let mut results = Vec::new();
        for (id, mut command) in (1u64..).zip(commands) {
            command["id"] = id.into();
            socket
                .send(Message::Text(command.to_string().into()))
                .await
                .map_err(|e| e.to_string())?;
            let reply = loop {
                let reply = next_json(&mut socket).await?;
                if reply["id"] == id {
                    break reply;
                }
            };
            if reply["success"] != true {
                return Err(format!("{}: {}", command["type"], reply["error"]));
            }
            results.push(reply["result"].clone());
        }
        let _ = socket.close(None).await;
        Ok(results)
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message, as JSON.
async fn next_json(socket: &mut Socket) -> Result<Value, String> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text).map_err(|e| e.to_string());
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("Home Assistant closed the WebSocket".into()),
        }
    }
}

/// Ends the title of every entry ipcam-mqtt makes: the mark by which a reinstall (with `/data`
/// wiped) adopts its own entry instead of making a duplicate, and never takes a user's.
const MARK: &str = " (ipcam-mqtt)";

/// Brings Home Assistant's Generic camera entries in line with `wanted` (empty: remove ours).
pub async fn sync(api: &CoreApi, wanted: &[WantedCamera], data_dir: &Path) -> Result<(), String> {
    let state_path = data_dir.join(STATE_FILE);
    let mut made = load(&state_path);
    let entries: Vec<Value> = api
        .call(
            reqwest::Method::GET,
            "/config/config_entries/entry?domain=generic",
            None,
        )
        .await?
        .as_array()
        .cloned()
        .unwrap_or_default();
    let entry = |id: &str| entries.iter().find(|e| e["entry_id"] == id);
    made.retain(|_, m| entry(&m.entry_id).is_some());
    for (camera, made_entry) in made.clone() {
        if !wanted.iter().any(|w| w.id == camera) {
            remove(api, &made_entry.entry_id).await?;
            made.remove(&camera);
            save(&state_path, &made)?;
            tracing::info!(camera = %camera, "removed its Home Assistant camera (no longer configured)");
        }
    }
    let mut not_ours = Vec::new();
    if wanted.iter().any(|w| !made.contains_key(&w.id)) {
        let registry = entity_registry(api).await?;
        let unknown: Vec<&WantedCamera> = wanted
            .iter()
            .filter(|w| !made.contains_key(&w.id))
            .collect();
        for camera in unknown {
            let Some(owner) = registry
                .iter()
                .find(|e| e["entity_id"] == camera.entity_id().as_str())
                .and_then(|e| e["config_entry_id"].as_str())
            else {
                continue;
            };
            let title = entry(owner).and_then(|e| e["title"].as_str()).unwrap_or("");
            if title.ends_with(MARK) {
                made.insert(camera.id.clone(), Made::unsynced(owner));
                save(&state_path, &made)?;
                tracing::info!(camera = %camera.id, "adopted its Home Assistant camera \"{title}\", made by an earlier install");
            } else {
                tracing::warn!(
                    camera = %camera.id,
                    "{} belongs to a camera entry ipcam-mqtt did not make (\"{title}\"); it is left alone, and no camera entry is made for {}",
                    camera.entity_id(),
                    camera.id
                );
                not_ours.push(camera.id.as_str());
            }
        }
    }
    for camera in wanted.iter().filter(|w| !not_ours.contains(&w.id.as_str())) {
        let fingerprint = camera.fingerprint();
        let entry_id = match made.get(&camera.id) {
            Some(entry) if entry.fingerprint == fingerprint => continue,
            Some(entry) => {
                let entry_id = entry.entry_id.clone();
                update(api, &entry_id, camera).await?;
                entry_id
            }
            None => {
                let entry_id = create(api, camera).await?;
                // Recorded before anything else can fail, so a retry never makes another.
                made.insert(camera.id.clone(), Made::unsynced(&entry_id));
                save(&state_path, &made)?;
                entry_id
            }
        };
        name(api, &entry_id, camera).await?;
        if let Some(entry) = made.get_mut(&camera.id) {
            entry.fingerprint = fingerprint;
        }
        save(&state_path, &made)?;
        tracing::info!(
            camera = %camera.id,
            "Home Assistant camera {} in step (a Generic camera on {})",
            camera.entity_id(),
            crate::secret::redact_urls(&camera.stream_source)
        );
    }
    tracing::info!(
        "Home Assistant camera entries in step: {} made by ipcam-mqtt",
        made.len()
    );
    Ok(())
}

/// A new Generic camera entry; returns its id.
async fn create(api: &CoreApi, camera: &WantedCamera) -> Result<String, String> {
    let created = run_flow(
        api,
        "/config/config_entries/flow",
        json!({"handler": "generic"}),
        camera,
    )
    .await?;
    created["result"]["entry_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "the Generic flow made no entry".to_string())
}

/// Changes an entry in place through its options flow, as a user would: the entity, its id and
/// anything the user set on it in Home Assistant stay.
async fn update(api: &CoreApi, entry_id: &str, camera: &WantedCamera) -> Result<(), String> {
    run_flow(
        api,
        "/config/config_entries/options/flow",
        json!({"handler": entry_id}),
        camera,
    )
    .await
    .map(drop)
}

/// The Generic flow's two steps (the form, then the preview's confirmation), answered from the
/// form Home Assistant sends.
async fn run_flow(
    api: &CoreApi,
    flows: &str,
    start: Value,
    camera: &WantedCamera,
) -> Result<Value, String> {
    use reqwest::Method;
    let form = api.call(Method::POST, flows, Some(start)).await?;
    let flow = format!(
        "{flows}/{}",
        form["flow_id"]
            .as_str()
            .ok_or("the Generic flow gave no flow_id")?
    );
    let answer = match super::form::fill(&form["data_schema"], &camera.flow_values()) {
        Ok(answer) => answer,
        Err(e) => {
            let _ = api.call(Method::DELETE, &flow, None).await;
            return Err(e);
        }
    };
    let confirm = api.call(Method::POST, &flow, Some(answer)).await?;
    if confirm["step_id"] != "user_confirm" {
        let _ = api.call(Method::DELETE, &flow, None).await;
        return Err(format!(
            "Home Assistant's Generic camera refused the stream: {}",
            crate::secret::redact_urls(&confirm["errors"].to_string())
        ));
    }
    let done = api
        .call(Method::POST, &flow, Some(json!({"confirmed_ok": true})))
        .await?;
    if done["type"] != "create_entry" {
        return Err(format!("the Generic flow ended with {}", done["type"]));
    }
    Ok(done)
}

async fn entity_registry(api: &CoreApi) -> Result<Vec<Value>, String> {
    let mut results = api
        .ws(vec![json!({"type": "config/entity_registry/list"})])
        .await?;
    Ok(results
        .pop()
        .and_then(|r| r.as_array().cloned())
        .unwrap_or_default())
}

/// The entity's id and name, and the entry's title with our mark.
async fn name(api: &CoreApi, entry_id: &str, camera: &WantedCamera) -> Result<(), String> {
    let entity_id = entity_registry(api)
        .await?
        .iter()
        .find(|e| e["config_entry_id"] == entry_id)
        .and_then(|e| e["entity_id"].as_str())
        .ok_or("the Generic camera has no entity")?
        .to_string();
    let mut rename = json!({"type": "config/entity_registry/update", "entity_id": entity_id,
                            "name": format!("{} live", camera.name)});
    if entity_id != camera.entity_id() {
        rename["new_entity_id"] = camera.entity_id().into();
    }
    api.ws(vec![
        rename,
        json!({"type": "config_entries/update", "entry_id": entry_id,
               "title": format!("{}{MARK}", camera.name)}),
    ])
    .await
    .map(drop)
}

async fn remove(api: &CoreApi, entry_id: &str) -> Result<(), String> {
    api.call(
        reqwest::Method::DELETE,
        &format!("/config/config_entries/entry/{entry_id}"),
        None,
    )
    .await
    .map(|_| ())
}

/// What was made before; an unreadable file counts as nothing made (the adoption by title then
/// finds our entries again), and says so.
fn load(path: &Path) -> BTreeMap<String, Made> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(
                "{} is unreadable ({e}); finding our camera entries by their title instead",
                path.display()
            );
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    }
}

/// Written whole or not at all: a crash mid-write must not lose which entries are ours.
fn save(path: &Path, made: &BTreeMap<String, Made>) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(made).map_err(|e| e.to_string())?;
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Runs [`sync`] until it succeeds (Home Assistant may still be starting), then stops.
pub async fn keep_in_step(
    api: CoreApi,
    wanted: Vec<WantedCamera>,
    data_dir: PathBuf,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut wait = Duration::from_secs(5);
    loop {
        match sync(&api, &wanted, &data_dir).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(
                "Home Assistant camera entries not in step yet ({}); retrying in {} s",
                crate::secret::redact_urls(&e),
                wait.as_secs()
            ),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(300));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nursery() -> WantedCamera {
        WantedCamera {
            id: "nursery".into(),
            name: "Nursery".into(),
            stream_source: "rtsp://ipcam-mqtt:8554/nursery_live".into(),
            stream_credentials: Some(("homeassistant".into(), Secret::new("r/t@sp"))),
            still_image_url: "http://ipcam-mqtt:1984/api/frame.jpeg?src=nursery".into(),
            still_credentials: Some(("homeassistant".into(), Secret::new("http"))),
        }
    }

    #[test]
    fn the_flow_gets_the_stream_with_its_credentials_and_the_still_image_with_basic_auth() {
        assert_eq!(
            Value::Object(nursery().flow_values()),
            json!({
                "still_image_url": "http://ipcam-mqtt:1984/api/frame.jpeg?src=nursery",
                "stream_source": "rtsp://homeassistant:r%2Ft%40sp@ipcam-mqtt:8554/nursery_live",
                "rtsp_transport": "tcp",
                "authentication": "basic",
                "username": "homeassistant",
                "password": "http",
                "framerate": 2,
                "verify_ssl": false,
            })
        );
    }

    #[test]
    fn the_fingerprint_follows_every_field_and_hides_the_password() {
        let base = nursery();
        let mut moved = nursery();
        moved.still_image_url = "http://elsewhere:1984/api/frame.jpeg?src=nursery".into();
        let mut new_password = nursery();
        new_password.stream_credentials = Some(("homeassistant".into(), Secret::new("other")));
        assert_ne!(base.fingerprint(), moved.fingerprint());
        assert_ne!(base.fingerprint(), new_password.fingerprint());
        assert_eq!(base.fingerprint(), nursery().fingerprint());
        assert!(!base.fingerprint().contains("r/t@sp"));
    }
}

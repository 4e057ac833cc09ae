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
    /// The fields of the Generic flow's first step (HA 2025.4).
    pub fn flow_fields(&self) -> Value {
        let stream = match &self.stream_credentials {
            Some((user, password)) => {
                crate::secret::with_userinfo(&self.stream_source, user, password)
            }
            None => self.stream_source.clone(),
        };
        let mut fields = json!({
            "still_image_url": self.still_image_url,
            "stream_source": stream,
            "rtsp_transport": "tcp",
            "authentication": "basic",
            "framerate": 2,
            "verify_ssl": false,
        });
        if let Some((user, password)) = &self.still_credentials {
            fields["username"] = user.clone().into();
            fields["password"] = password.expose().into();
        }
        fields
    }

    /// Changes when any field changes, without keeping a password on disk in the clear.
    fn fingerprint(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        self.flow_fields().to_string().hash(&mut hasher);
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
    fingerprint: String,
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

/// Brings Home Assistant's Generic camera entries in line with `wanted` (empty: remove ours).
pub async fn sync(api: &CoreApi, wanted: &[WantedCamera], data_dir: &Path) -> Result<(), String> {
    let state_path = data_dir.join(STATE_FILE);
    let mut made: BTreeMap<String, Made> = std::fs::read(&state_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let existing: Vec<String> = api
        .call(
            reqwest::Method::GET,
            "/config/config_entries/entry?domain=generic",
            None,
        )
        .await?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["entry_id"].as_str().map(str::to_string))
        .collect();
    made.retain(|_, m| existing.contains(&m.entry_id));
    for (camera, entry) in made.clone() {
        if !wanted.iter().any(|w| w.id == camera) {
            remove(api, &entry.entry_id).await?;
            made.remove(&camera);
            save(&state_path, &made)?;
            tracing::info!(camera = %camera, "removed its Home Assistant camera (no longer configured)");
        }
    }
    for camera in wanted {
        let fingerprint = camera.fingerprint();
        match made.get(&camera.id) {
            Some(entry) if entry.fingerprint == fingerprint => continue,
            Some(entry) => {
                remove(api, &entry.entry_id).await?;
                made.remove(&camera.id);
                save(&state_path, &made)?;
            }
            None => {}
        }
        let entry_id = create(api, camera).await?;
        made.insert(
            camera.id.clone(),
            Made {
                entry_id,
                fingerprint,
            },
        );
        save(&state_path, &made)?;
        tracing::info!(
            camera = %camera.id,
            "Home Assistant camera {} made (a Generic camera on {})",
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

/// The three steps of the Generic flow, then the entity's id and name and the entry's title.
async fn create(api: &CoreApi, camera: &WantedCamera) -> Result<String, String> {
    use reqwest::Method;
    let form = api
        .call(
            Method::POST,
            "/config/config_entries/flow",
            Some(json!({"handler": "generic"})),
        )
        .await?;
    let flow = format!(
        "/config/config_entries/flow/{}",
        form["flow_id"]
            .as_str()
            .ok_or("the Generic flow gave no flow_id")?
    );
    let confirm = api
        .call(Method::POST, &flow, Some(camera.flow_fields()))
        .await?;
    if confirm["step_id"] != "user_confirm" {
        let _ = api.call(Method::DELETE, &flow, None).await;
        return Err(format!(
            "Home Assistant's Generic camera refused the stream: {}",
            crate::secret::redact_urls(&confirm["errors"].to_string())
        ));
    }
    let created = api
        .call(Method::POST, &flow, Some(json!({"confirmed_ok": true})))
        .await?;
    let entry_id = created["result"]["entry_id"]
        .as_str()
        .ok_or_else(|| format!("the Generic flow made no entry: {}", created["type"]))?
        .to_string();
    let entities = api
        .ws(vec![json!({"type": "config/entity_registry/list"})])
        .await?;
    let entity_id = entities[0]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["config_entry_id"] == entry_id.as_str())
        .and_then(|e| e["entity_id"].as_str())
        .ok_or("the new Generic camera has no entity")?
        .to_string();
    api.ws(vec![
        json!({"type": "config/entity_registry/update", "entity_id": entity_id,
               "new_entity_id": camera.entity_id(), "name": format!("{} live", camera.name)}),
        json!({"type": "config_entries/update", "entry_id": entry_id,
               "title": format!("{} (ipcam-mqtt)", camera.name)}),
    ])
    .await?;
    Ok(entry_id)
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

fn save(path: &Path, made: &BTreeMap<String, Made>) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(made).map_err(|e| e.to_string())?;
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
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
            nursery().flow_fields(),
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

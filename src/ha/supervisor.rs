//! The Supervisor's API, reached with the add-on's `SUPERVISOR_TOKEN`: where the MQTT broker is
//! when the user names none (`GET /services/mqtt`).

use crate::config::MqttConfig;
use crate::secret::Secret;
use std::time::Duration;

/// The Supervisor inside an add-on container; `SUPERVISOR_URL` overrides it (tests use a
/// stand-in server).
pub const SUPERVISOR: &str = "http://supervisor";

/// The broker the Supervisor's MQTT service describes.
#[derive(Debug, PartialEq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// Fills in the broker from the Supervisor when the configuration names none and we run as an
/// add-on; outside one, the default (localhost) stays.
pub async fn find_broker(mqtt: &mut MqttConfig) -> anyhow::Result<()> {
    if mqtt.host.is_some() {
        return Ok(());
    }
    let Some(token) = std::env::var("SUPERVISOR_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    else {
        return Ok(());
    };
    let base = std::env::var("SUPERVISOR_URL").unwrap_or_else(|_| SUPERVISOR.into());
    let url = format!("{}/services/mqtt", base.trim_end_matches('/'));
    let reply = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot ask the Supervisor for the MQTT broker ({url}): {e}")
        })?;
    let status = reply.status().as_u16();
    let body = reply.bytes().await.unwrap_or_default();
    let broker = parse_mqtt_service(status, &body).map_err(anyhow::Error::msg)?;
    tracing::info!(
        "MQTT broker from the Supervisor: {}:{}{}",
        broker.host,
        broker.port,
        if broker.username.is_some() {
            " (with its credentials)"
        } else {
            ""
        }
    );
    mqtt.host = Some(broker.host);
    mqtt.port = Some(broker.port);
    if mqtt.username.is_none() {
        mqtt.username = broker.username;
        mqtt.password = broker.password;
    }
    Ok(())
}

/// Reads the Supervisor's answer: `{"result":"ok","data":{"host":…,"port":…}}`, the port as a
/// number or a string; or `{"result":"error","message":…}`.
pub fn parse_mqtt_service(status: u16, body: &[u8]) -> Result<Broker, String> {
    let reply: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        format!("the Supervisor's MQTT service answered HTTP {status} without JSON")
    })?;
    if reply["result"] != "ok" {
        let message = reply["message"].as_str().unwrap_or("no message");
        let hint = if message.contains("not enabled") {
            ": no MQTT broker is set up in Home Assistant; install and start the Mosquitto broker \
             add-on, or set mqtt.host in this add-on's options"
        } else {
            ""
        };
        return Err(format!(
            "the Supervisor has no MQTT broker for us (HTTP {status}: {message}){hint}"
        ));
    }
    let data = &reply["data"];
    let host = data["host"]
        .as_str()
        .filter(|h| !h.is_empty())
        .ok_or("the Supervisor's MQTT service names no host")?;
    let port = match &data["port"] {
        serde_json::Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|p| *p > 0)
    .ok_or_else(|| format!("the Supervisor's MQTT port {} is not a port", data["port"]))?;
    let text = |key: &str| {
        data[key]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Ok(Broker {
        host: host.to_string(),
        port,
        username: text("username"),
        password: text("password").map(Secret::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_may_be_a_number_or_a_string() {
        for port in ["1883", "\"1883\""] {
            let body = format!(
                r#"{{"result":"ok","data":{{"host":"core-mosquitto","port":{port},"ssl":false,"protocol":"3.1.1","username":"addons","password":"s3cret"}}}}"#
            );
            let broker = parse_mqtt_service(200, body.as_bytes()).unwrap();
            assert_eq!(broker.host, "core-mosquitto");
            assert_eq!(broker.port, 1883);
            assert_eq!(broker.username.as_deref(), Some("addons"));
            assert_eq!(broker.password.unwrap().expose(), "s3cret");
        }
    }

    #[test]
    fn service_not_enabled_says_what_to_do() {
        let error = parse_mqtt_service(
            400,
            br#"{"result":"error","message":"Service not enabled","data":{}}"#,
        )
        .unwrap_err();
        assert!(error.contains("Service not enabled"), "{error}");
        assert!(error.contains("Mosquitto broker"), "{error}");
    }

    #[test]
    fn odd_answers_are_refused_clearly() {
        let error = parse_mqtt_service(502, b"<html>Bad gateway</html>").unwrap_err();
        assert!(error.contains("HTTP 502"), "{error}");
        let error = parse_mqtt_service(
            200,
            br#"{"result":"ok","data":{"host":"core-mosquitto","port":"x"}}"#,
        )
        .unwrap_err();
        assert!(error.contains("not a port"), "{error}");
    }
}

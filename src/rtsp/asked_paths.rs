//! The path each RTSP client last asked for.
//!
//! A client has a session only from SETUP, but the media it asked for is built at DESCRIBE,
//! and the stream switches already show it playing. Stopping a stream (MQTT `OFF`, a new event
//! selected) must also reach a client in between, or it sets up and plays after the stop.

use gstreamer_rtsp_server as gst_rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::lock;

#[derive(Default)]
pub struct AskedPaths {
    by_client: Mutex<HashMap<usize, String>>,
}

impl AskedPaths {
    /// Follows every client of `server` from its first DESCRIBE or SETUP until it closes.
    pub fn install(self: &Arc<Self>, server: &gst_rtsp_server::RTSPServer) {
        let asked = Arc::downgrade(self);
        server.connect_client_connected(move |_, client| {
            let key = client_key(client);
            let record = |asked: &std::sync::Weak<AskedPaths>| {
                let asked = asked.clone();
                move |_: &gst_rtsp_server::RTSPClient, ctx: &gst_rtsp_server::RTSPContext| {
                    if let (Some(asked), Some(path)) =
                        (asked.upgrade(), ctx.uri().and_then(mount_path))
                    {
                        lock(&asked.by_client).insert(key, path);
                    }
                    gstreamer_rtsp::RTSPStatusCode::Ok
                }
            };
            // "pre-" runs before the media is built, so no stop can fall between the two.
            client.connect_pre_describe_request(record(&asked));
            client.connect_pre_setup_request(record(&asked));
            let asked = asked.clone();
            client.connect_closed(move |_| {
                if let Some(asked) = asked.upgrade() {
                    lock(&asked.by_client).remove(&key);
                }
            });
        });
    }

    /// True when `client`'s last DESCRIBE or SETUP was for `path` (`/nursery_event`).
    pub fn asked_for(&self, client: &gst_rtsp_server::RTSPClient, path: &str) -> bool {
        lock(&self.by_client)
            .get(&client_key(client))
            .is_some_and(|p| p == path)
    }
}

fn client_key(client: &gst_rtsp_server::RTSPClient) -> usize {
    client.as_ptr() as usize
}

/// The mount a request is for: `/nursery_live` for `/nursery_live/stream=0`.
fn mount_path(url: &gstreamer_rtsp::RTSPUrl) -> Option<String> {
    url.decode_path_components()
        .into_iter()
        .find(|component| !component.is_empty())
        .map(|first| format!("/{first}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_is_the_first_path_component() {
        gstreamer::init().unwrap();
        let path = |url: &str| {
            let (_, parsed) = gstreamer_rtsp::RTSPUrl::parse(url);
            mount_path(&parsed.expect(url))
        };
        assert_eq!(
            path("rtsp://h:8554/nursery_live").as_deref(),
            Some("/nursery_live")
        );
        assert_eq!(
            path("rtsp://h:8554/nursery_event/stream=1").as_deref(),
            Some("/nursery_event")
        );
        assert_eq!(path("rtsp://h:8554/").as_deref(), None);
    }
}

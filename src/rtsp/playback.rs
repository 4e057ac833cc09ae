//! RTSP `/<camera>_event`: the selected clip, played once per client request in real time with
//! the live stream's codecs (H.264/H.265 + AAC), then the stream ends.
//!
//! The clip is pinned while it plays, so retention cannot delete it under a viewer. With no
//! clip the request fails (503) and the Event select's attributes say `no recording`.

use super::holds::ViewerHolds;
use crate::events::store::{ClipMeta, ClipStore, Pin};
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer::subclass::prelude::*;
use gstreamer_rtsp as gst_rtsp;
use gstreamer_rtsp_server as gst_rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_rtsp_server::subclass::prelude::*;
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;

/// What the event factory of one camera needs.
pub struct EventMount {
    pub camera: String,
    pub store: Arc<ClipStore>,
    /// The clip the Event select points at now.
    pub selected: Arc<dyn Fn() -> Option<ClipMeta> + Send + Sync>,
    /// How many clients are playing; the "Event stream" switch shows it.
    pub playing: watch::Sender<usize>,
}

/// `/nursery_event` for camera `nursery`.
pub fn event_path(camera: &str) -> String {
    format!("/{camera}_event")
}

/// The element name marks a camera's event media, for stopping its playback.
pub fn event_element_name(camera: &str) -> String {
    format!("ipcam-event-{camera}")
}

/// Held by a playing media: the clip's pin and the playing count.
struct Playing {
    _pin: Pin,
    playing: watch::Sender<usize>,
}

impl Drop for Playing {
    fn drop(&mut self) {
        self.playing.send_modify(|n| *n = n.saturating_sub(1));
    }
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct EventFactory {
        pub mount: OnceLock<EventMount>,
        holds: ViewerHolds<Playing>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for EventFactory {
        const NAME: &'static str = "IpcamEventFactory";
        type Type = super::EventFactory;
        type ParentType = gst_rtsp_server::RTSPMediaFactory;
    }

    impl ObjectImpl for EventFactory {}

    impl RTSPMediaFactoryImpl for EventFactory {
        fn create_element(&self, _url: &gst_rtsp::RTSPUrl) -> Option<gst::Element> {
            let mount = self.mount.get()?;
            let Some(clip) = (mount.selected)() else {
                tracing::info!(camera = %mount.camera, "event stream requested, but there is no recording");
                return None;
            };
            let path = mount.store.path(&clip.event_id);
            match clip_bin(&mount.camera, &clip, &path) {
                Ok(bin) => {
                    tracing::info!(camera = %mount.camera, "playing clip {} on the event stream", clip.event_id);
                    mount.playing.send_modify(|n| *n += 1);
                    let playing = Playing {
                        _pin: mount.store.pin(&clip.event_id),
                        playing: mount.playing.clone(),
                    };
                    let bin: gst::Element = bin.upcast();
                    self.holds.hold(&bin, playing);
                    Some(bin)
                }
                Err(e) => {
                    tracing::warn!(camera = %mount.camera, "cannot play clip {}: {e}", clip.event_id);
                    None
                }
            }
        }

        fn media_configure(&self, media: &gst_rtsp_server::RTSPMedia) {
            self.parent_media_configure(media);
            self.holds.release_on_unprepared(media);
        }
    }
}

glib::wrapper! {
    pub struct EventFactory(ObjectSubclass<imp::EventFactory>)
        @extends gst_rtsp_server::RTSPMediaFactory;
}

mod clip_media {
    use super::*;

    /// A clip's media. gst-rtsp-server writes the SDP's range from the position right after
    /// preparing, and until the first buffer has reached a payloader that position is unknown,
    /// which it reports as `now-<end>`: a live stream, so players showed no duration and no
    /// seeking for about one DESCRIBE in four. A clip that has not started is at its start.
    #[derive(Default)]
    pub struct ClipMedia;

    #[glib::object_subclass]
    impl ObjectSubclass for ClipMedia {
        const NAME: &'static str = "IpcamClipMedia";
        type Type = super::ClipMedia;
        type ParentType = gst_rtsp_server::RTSPMedia;
    }

    impl ObjectImpl for ClipMedia {}

    impl RTSPMediaImpl for ClipMedia {
        fn query_position(&self) -> Option<gst::ClockTime> {
            self.parent_query_position().or(Some(gst::ClockTime::ZERO))
        }
    }
}

glib::wrapper! {
    pub struct ClipMedia(ObjectSubclass<clip_media::ClipMedia>)
        @extends gst_rtsp_server::RTSPMedia;
}

impl EventFactory {
    pub fn new(mount: EventMount) -> Self {
        let factory: Self = glib::Object::new();
        // Each client plays the clip from its start.
        factory.set_shared(false);
        factory.set_media_gtype(ClipMedia::static_type());
        let _ = factory.imp().mount.set(mount);
        factory
    }
}

/// `filesrc ! qtdemux ! parse ! pay0 [qtdemux ! aacparse ! pay1]`.
fn clip_bin(camera: &str, clip: &ClipMeta, path: &std::path::Path) -> Result<gst::Bin, String> {
    if !path.is_file() {
        return Err(format!("{} is gone", path.display()));
    }
    let (parse, pay) = match clip.video.as_str() {
        "h265" => ("h265parse", "rtph265pay"),
        _ => ("h264parse", "rtph264pay"),
    };
    let audio = if clip.audio {
        "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97"
    } else {
        ""
    };
    let description = format!(
        "filesrc name=file ! qtdemux name=d d.video_0 ! queue ! {parse} ! {pay} name=pay0 pt=96 config-interval=-1 {audio}"
    );
    let bin = gst::parse::bin_from_description(&description, false)
        .map_err(|e| format!("cannot build the playback media: {e}"))?;
    bin.set_property("name", event_element_name(camera));
    bin.by_name("file")
        .expect("named in the description")
        .set_property("location", path.to_string_lossy().to_string());
    Ok(bin)
}

//! The media factory behind `/<camera>_live`: a thin `appsrc → pay` media per viewer, fed by the hub.
//!
//! A media per viewer (not a shared one) is what lets every viewer start from the cached GOP; a
//! late joiner of a shared media would wait for the camera's next keyframe. It costs only a
//! payloader: the camera connection and the audio encoder stay shared in the hub.

use super::holds::ViewerHolds;
use crate::camera::demand::{Demand, Lease, Purpose};
use crate::media::hub::{ConsumerLink, Hub, Layout};
use crate::media::pipeline::MediaClock;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer::subclass::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp as gst_rtsp;
use gstreamer_rtsp_server as gst_rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_rtsp_server::subclass::prelude::*;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// What a factory needs to know about its camera.
pub struct Mount {
    pub camera: String,
    pub hub: Arc<Hub>,
    pub demand: Demand,
    pub start_timeout: Duration,
    pub clock: MediaClock,
}

/// Everything one viewer holds: its lease on the camera and its place in the hub.
/// Dropped when the media is unprepared (the reliable "viewer gone" signal).
struct ViewerLink {
    _lease: Lease,
    _consumer: ConsumerLink,
}

/// The element name marks which camera a media belongs to, for disconnecting its viewers.
pub fn media_element_name(camera: &str) -> String {
    format!("ipcam-viewer-{camera}")
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct ViewerFactory {
        pub mount: OnceLock<Mount>,
        holds: ViewerHolds<ViewerLink>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for ViewerFactory {
        const NAME: &'static str = "IpcamViewerFactory";
        type Type = super::ViewerFactory;
        type ParentType = gst_rtsp_server::RTSPMediaFactory;
    }

    impl ObjectImpl for ViewerFactory {}

    impl RTSPMediaFactoryImpl for ViewerFactory {
        /// Runs on the client's own thread: holding DESCRIBE here while the camera warms up is fine.
        fn create_element(&self, _url: &gst_rtsp::RTSPUrl) -> Option<gst::Element> {
            let mount = self.mount.get()?;
            let lease = mount.demand.lease(Purpose::RtspViewer);
            let asked = std::time::Instant::now();
            let layout = match mount.hub.wait_ready(mount.start_timeout) {
                Ok(layout) => {
                    tracing::debug!(camera = %mount.camera, "viewer media ready after {:?}", asked.elapsed());
                    layout
                }
                Err(reason) => {
                    tracing::warn!(camera = %mount.camera, "refusing a viewer: {reason}");
                    return None;
                }
            };
            match viewer_bin(&mount.camera, &layout) {
                Ok((bin, video, audio)) => {
                    let link = ViewerLink {
                        _lease: lease,
                        _consumer: mount.hub.add_consumer(&video, audio.as_ref()),
                    };
                    let bin: gst::Element = bin.upcast();
                    self.holds.hold(&bin, link);
                    Some(bin)
                }
                Err(e) => {
                    tracing::error!(camera = %mount.camera, "cannot build a viewer media: {e}");
                    None
                }
            }
        }

        fn media_configure(&self, media: &gst_rtsp_server::RTSPMedia) {
            self.parent_media_configure(media);
            let Some(mount) = self.mount.get() else {
                return;
            };
            let element = media.element();
            if let Some(pipeline) = element.parent().and_downcast::<gst::Pipeline>() {
                mount.clock.apply(&pipeline);
                pipeline.connect_element_added(|_, element| {
                    if let Some(sink) = element.downcast_ref::<gst_app::AppSink>() {
                        send_unpaced(sink);
                    }
                });
            }
            self.holds.release_on_unprepared(media);
        }
    }
}

glib::wrapper! {
    pub struct ViewerFactory(ObjectSubclass<imp::ViewerFactory>)
        @extends gst_rtsp_server::RTSPMediaFactory;
}

impl ViewerFactory {
    pub fn new(mount: Mount) -> Self {
        let factory: Self = glib::Object::new();
        // A media per viewer: see the module docs.
        factory.set_shared(false);
        factory.set_eos_shutdown(false);
        let _ = factory.imp().mount.set(mount);
        factory
    }
}

/// Keeps one of gst-rtsp-server's sinks sending each packet as soon as it is paid out. Live
/// frames are paced by the camera already; a sink synced to the clock waits whenever a frame's
/// smoothed timestamp runs ahead of its arrival, which added 15-25 ms to most frames
/// (BENCHMARKS.md, goal 5). gst-rtsp-server turns sync back on at every PLAY (ONVIF rate
/// control), hence the watch. `RTSPMedia::set_rate_control(false)` is not used: it also strips
/// the timestamps from RTCP sender reports, which players need for lip sync.
fn send_unpaced(sink: &gst_app::AppSink) {
    sink.set_sync(false);
    sink.connect_notify(Some("sync"), |sink, _| {
        if sink.is_sync() {
            sink.set_sync(false);
        }
    });
}

/// `appsrc ! rtpXpay name=pay0 [appsrc ! rtpmp4gpay name=pay1]`: all a viewer costs.
fn viewer_bin(
    camera: &str,
    layout: &Layout,
) -> Result<(gst::Bin, gst_app::AppSrc, Option<gst_app::AppSrc>), glib::BoolError> {
    let bin = gst::Bin::with_name(&media_element_name(camera));
    let payloader = match layout.video.structure(0).map(|s| s.name().as_str()) {
        Some("video/x-h265") => "rtph265pay",
        _ => "rtph264pay",
    };
    let video = appsrc(&layout.video);
    let video_pay = gst::ElementFactory::make(payloader)
        .name("pay0")
        .property("pt", 96u32)
        // The ingest's parser already puts SPS/PPS in every keyframe; repeating them here would
        // send them as a separate access unit with the keyframe's timestamp.
        .build()?;
    bin.add_many([video.upcast_ref(), &video_pay])?;
    video.link(&video_pay)?;
    let audio = match &layout.audio {
        Some(caps) => {
            let audio = appsrc(caps);
            let audio_pay = gst::ElementFactory::make("rtpmp4gpay")
                .name("pay1")
                .property("pt", 97u32)
                .build()?;
            bin.add_many([audio.upcast_ref(), &audio_pay])?;
            audio.link(&audio_pay)?;
            Some(audio)
        }
        None => None,
    };
    Ok((bin, video, audio))
}

fn appsrc(caps: &gst::Caps) -> gst_app::AppSrc {
    gst_app::AppSrc::builder().caps(caps).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_sink_stays_unsynced_when_gst_rtsp_server_turns_sync_back_on() {
        gst::init().unwrap();
        let sink = gst_app::AppSink::builder().build();
        send_unpaced(&sink);
        assert!(!sink.is_sync());
        // What gst-rtsp-server does at every PLAY (rate control on).
        sink.set_property("sync", true);
        assert!(!sink.is_sync());
    }
}

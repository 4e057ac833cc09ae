//! Pipeline plumbing shared by every GStreamer pipeline we build.

use crate::error::{Error, ErrorKind};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// One clock setup for every pipeline, ingest and viewer media alike: the system clock, no
/// start time and one process-wide base time. Running times then agree everywhere and survive
/// an ingest restart, which is what lets a viewer keep playing across a camera reconnect.
#[derive(Debug, Clone)]
pub struct MediaClock {
    clock: gst::Clock,
    base_time: gst::ClockTime,
}

impl MediaClock {
    pub fn new() -> Self {
        let clock = gst::SystemClock::obtain();
        let base_time = clock.time();
        Self { clock, base_time }
    }

    pub fn apply(&self, pipeline: &gst::Pipeline) {
        pipeline.use_clock(Some(&self.clock));
        pipeline.set_start_time(gst::ClockTime::NONE);
        pipeline.set_base_time(self.base_time);
    }

    /// Now, as a running time every pipeline agrees on.
    pub fn running_time(&self) -> gst::ClockTime {
        self.clock.time().saturating_sub(self.base_time)
    }
}

impl Default for MediaClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Where each element we use comes from, so a missing one names its Debian package.
const PLUGIN_PACKAGES: &[(&str, &str)] = &[
    ("rtph264pay", "gstreamer1.0-plugins-good"),
    ("rtph265pay", "gstreamer1.0-plugins-good"),
    ("rtpmp4gpay", "gstreamer1.0-plugins-good"),
    ("rtpmp4gdepay", "gstreamer1.0-plugins-good"),
    ("rtpmp4adepay", "gstreamer1.0-plugins-good"),
    ("rtppcmadepay", "gstreamer1.0-plugins-good"),
    ("rtppcmudepay", "gstreamer1.0-plugins-good"),
    ("rtpopusdepay", "gstreamer1.0-plugins-good"),
    ("alawdec", "gstreamer1.0-plugins-good"),
    ("mulawdec", "gstreamer1.0-plugins-good"),
    ("h264parse", "gstreamer1.0-plugins-bad"),
    ("h265parse", "gstreamer1.0-plugins-bad"),
    ("aacparse", "gstreamer1.0-plugins-good"),
    ("opusdec", "gstreamer1.0-plugins-base"),
    ("audioconvert", "gstreamer1.0-plugins-base"),
    ("audioresample", "gstreamer1.0-plugins-base"),
    ("appsrc", "gstreamer1.0-plugins-base"),
    ("appsink", "gstreamer1.0-plugins-base"),
    ("voaacenc", "gstreamer1.0-plugins-bad"),
    ("avdec_h264", "gstreamer1.0-libav"),
    ("avdec_h265", "gstreamer1.0-libav"),
    ("jpegdec", "gstreamer1.0-plugins-good"),
    ("jpegenc", "gstreamer1.0-plugins-good"),
    ("videoconvert", "gstreamer1.0-plugins-base"),
    ("videoscale", "gstreamer1.0-plugins-base"),
    ("webrtcbin", "gstreamer1.0-plugins-bad"),
    ("nicesrc", "gstreamer1.0-nice"),
    ("opusenc", "gstreamer1.0-plugins-base"),
    ("rtpopuspay", "gstreamer1.0-plugins-good"),
    ("rtppcmapay", "gstreamer1.0-plugins-good"),
    ("rtppcmupay", "gstreamer1.0-plugins-good"),
    ("x264enc", "gstreamer1.0-plugins-ugly"),
    ("mp4mux", "gstreamer1.0-plugins-good"),
    ("qtdemux", "gstreamer1.0-plugins-good"),
];

/// Checks at start-up that every element we may need exists, naming the package of each missing one.
pub fn check_plugins() -> Result<(), String> {
    let missing: Vec<String> = PLUGIN_PACKAGES
        .iter()
        .filter(|(name, _)| gst::ElementFactory::find(name).is_none())
        .map(|(name, package)| format!("{name} (apt install {package})"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing GStreamer elements: {}",
            missing.join(", ")
        ))
    }
}

/// Builds `appsrc name=src ! … ! appsink name=sink`, the shape of every pipeline that works on
/// frames from the hub; `what` names it in the error.
pub fn app_pipeline(
    description: &str,
    what: &str,
) -> Result<(gst::Pipeline, gst_app::AppSrc, gst_app::AppSink), Error> {
    let internal = |message: String| Error::new(ErrorKind::Internal, message);
    let pipeline = gst::parse::launch(description)
        .map_err(|e| internal(format!("cannot build the {what}: {e}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| internal(format!("the {what} is not a pipeline")))?;
    let src = pipeline
        .by_name("src")
        .and_downcast::<gst_app::AppSrc>()
        .ok_or_else(|| internal(format!("the {what} has no appsrc named src")))?;
    let sink = pipeline
        .by_name("sink")
        .and_downcast::<gst_app::AppSink>()
        .ok_or_else(|| internal(format!("the {what} has no appsink named sink")))?;
    Ok((pipeline, src, sink))
}

/// Sets a pipeline to `Null` when dropped, so no error path leaks a running pipeline.
#[derive(Debug)]
pub struct PipelineGuard(gst::Pipeline);

impl PipelineGuard {
    pub fn new(pipeline: gst::Pipeline) -> Self {
        Self(pipeline)
    }

    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.0
    }
}

impl Drop for PipelineGuard {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

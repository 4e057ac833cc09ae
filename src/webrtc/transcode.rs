//! An H.265 camera as H.264, for browsers that cannot take H.265 over WebRTC.
//!
//! `camera hub (H.265) ! avdec_h265 ! x264enc ultrafast zerolatency ! hub of its own`: decoded and
//! encoded once per camera, shared by every viewer that needs it, and running only while one
//! does. Its output is a [`Hub`], so those viewers join from a cached GOP and drop frames on
//! their own, exactly as viewers of the camera's hub do.

use crate::error::{Error, ErrorKind};
use crate::media::hub::{ConsumerLink, Hub, SessionWriter};
use crate::media::pipeline::{MediaClock, PipelineGuard, app_pipeline};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::{Arc, Mutex};

/// The keyframe interval when the camera's is not known yet (two seconds at 25 fps).
const DEFAULT_GOP: usize = 50;
/// How far the transcoder's input may fall behind before the hub drops its frames. It starts
/// by decoding and encoding the cached GOP (up to 2 s of frames at once), which on a busy
/// machine takes longer than a viewer's 500 ms: with that allowance the hub dropped its input
/// GOP after GOP, and its viewers got 0–40 frames in 15 s.
const INPUT_QUEUE: gst::ClockTime = gst::ClockTime::from_seconds(4);

pub struct H264Feed {
    name: String,
    camera: Arc<Hub>,
    output: Arc<Hub>,
    clock: MediaClock,
    running: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    encoder: Option<Encoder>,
    seats: usize,
}

/// The running transcoder. Its fields drop in order: off the camera's hub, stopped, and its
/// output's session ended (the writer its sink holds is only a weak reference).
struct Encoder {
    _input: ConsumerLink,
    _pipeline: PipelineGuard,
    _output: Arc<SessionWriter>,
}

/// A viewer's claim on the transcoder; the last one to leave stops it.
pub struct TranscodeSeat(Arc<H264Feed>);

impl Drop for TranscodeSeat {
    fn drop(&mut self) {
        let stopped = {
            let mut running = self.0.lock();
            running.seats -= 1;
            if running.seats == 0 {
                running.encoder.take()
            } else {
                None
            }
        };
        if let Some(encoder) = stopped {
            drop(encoder);
            tracing::info!(camera = %self.0.name, "H.265 → H.264 transcoding stopped: no viewer needs it");
        }
    }
}

impl H264Feed {
    pub fn new(name: &str, camera: Arc<Hub>, clock: MediaClock) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            camera,
            output: Hub::new(),
            clock,
            running: Mutex::default(),
        })
    }

    /// The transcoded stream; viewers are consumers of this hub.
    pub fn output(&self) -> &Arc<Hub> {
        &self.output
    }

    /// Starts the transcoder for the first viewer; the seat keeps it running.
    pub fn join(self: &Arc<Self>) -> Result<TranscodeSeat, Error> {
        let mut running = self.lock();
        if running.encoder.is_none() {
            running.encoder = Some(self.start()?);
        }
        running.seats += 1;
        Ok(TranscodeSeat(self.clone()))
    }

    fn start(&self) -> Result<Encoder, Error> {
        // The camera's own keyframe interval: a joining viewer waits no longer than it would
        // for the camera, and the bitrate stays close to the camera's.
        let gop = self.camera.gop_frames().unwrap_or(DEFAULT_GOP).max(1);
        let (pipeline, src, sink) = app_pipeline(
            &format!(
                "appsrc name=src format=time is-live=true ! h265parse ! avdec_h265 thread-type=slice \
                 ! videoconvert ! x264enc speed-preset=ultrafast tune=zerolatency key-int-max={gop} \
                 ! video/x-h264,profile=constrained-baseline ! h264parse config-interval=-1 \
                 ! video/x-h264,stream-format=avc,alignment=au ! appsink name=sink sync=false"
            ),
            "H.265 → H.264 transcoder",
        )?;
        self.clock.apply(&pipeline);
        let writer = Arc::new(self.output.begin_session());
        writer.set_tracks(false, None);
        let output = Arc::downgrade(&writer);
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let output = output.upgrade().ok_or(gst::FlowError::Flushing)?;
                    output.push_video(in_running_time(sample));
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let guard = PipelineGuard::new(pipeline);
        if guard.pipeline().set_state(gst::State::Playing).is_err() {
            return Err(Error::new(
                ErrorKind::Internal,
                "cannot start the H.265 → H.264 transcoder (is gstreamer1.0-libav installed?)",
            ));
        }
        tracing::info!(camera = %self.name, "H.265 → H.264 transcoding started for WebRTC (keyframe every {gop} frames)");
        Ok(Encoder {
            _input: self.camera.add_consumer_with_queue(&src, None, INPUT_QUEUE),
            _pipeline: guard,
            _output: writer,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// x264enc shifts its output 1000 hours ahead (room for B-frames' earlier DTS) and its segment
/// with it. Viewers' appsrcs read timestamps as running time, as the camera's hub gives them, so
/// the frames are restamped to their running time.
fn in_running_time(sample: gst::Sample) -> gst::Sample {
    let (Some(buffer), Some(segment)) = (
        sample.buffer(),
        sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>()),
    ) else {
        return sample;
    };
    let running = |time: Option<gst::ClockTime>| time.and_then(|t| segment.to_running_time(t));
    let mut buffer = buffer.copy();
    {
        let buffer = buffer.make_mut();
        buffer.set_pts(running(buffer.pts()));
        buffer.set_dts(running(buffer.dts()));
    }
    // A plain time segment: running time is the timestamp, and appsrc measures its queue by it.
    let plain = gst::FormattedSegment::<gst::ClockTime>::new();
    let mut restamped = gst::Sample::builder().buffer(&buffer).segment(&plain);
    let caps = sample.caps_owned();
    if let Some(caps) = &caps {
        restamped = restamped.caps(caps);
    }
    restamped.build()
}

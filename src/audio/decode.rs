//! Any audio → 16 kHz mono f32, the way YAMNet wants it.
//!
//! Two inputs: a camera's audio frames pushed from the hub (its one AAC track), or a URI
//! (`file://`, `rtsp://`) for `ipcam-mqtt classify`. Both end in
//! `audioconvert ! audioresample ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! appsink`.

use super::SAMPLE_RATE;
use crate::media::pipeline::PipelineGuard;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::time::Duration;

/// `input` followed by the conversion to 16 kHz mono f32 and the appsink.
fn launch(input: &str) -> Result<gst::Pipeline, String> {
    gst::parse::launch(&format!(
        "{input} ! audioconvert ! audioresample ! audio/x-raw,format=F32LE,rate={SAMPLE_RATE},channels=1,layout=interleaved ! appsink name=sink sync=false max-buffers=64 drop=false"
    ))
    .map_err(|e| format!("cannot build the audio pipeline: {e}"))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "the audio pipeline is not a pipeline".to_string())
}

/// What [`Pcm::pull`] got.
#[derive(Debug)]
pub enum Pull {
    Samples(Vec<f32>),
    /// Nothing within the timeout (a live source that is quiet or down).
    Timeout,
    /// The input ended (end of a file).
    End,
    Failed(String),
}

/// A running decoder; stops when dropped.
pub struct Pcm {
    guard: PipelineGuard,
    sink: gst_app::AppSink,
    src: Option<gst_app::AppSrc>,
}

impl Pcm {
    /// Decodes the audio of a file or stream. Other tracks (video) are discarded.
    pub fn open_uri(uri: &str) -> Result<Self, String> {
        let pipeline = launch("uridecodebin name=decode caps=audio/x-raw")?;
        let decode = pipeline
            .by_name("decode")
            .expect("named in the description");
        decode.set_property("uri", uri);
        // Non-audio tracks go to a fakesink, so a video track never stalls the file's demuxer.
        let bin = pipeline.downgrade();
        decode.connect_pad_added(move |_, pad| {
            let is_audio = pad
                .current_caps()
                .and_then(|c| c.structure(0).map(|s| s.name().starts_with("audio/")))
                .unwrap_or(false);
            if is_audio || pad.is_linked() {
                return;
            }
            let (Some(bin), Ok(sink)) = (
                bin.upgrade(),
                gst::ElementFactory::make("fakesink")
                    .property("sync", false)
                    .build(),
            ) else {
                return;
            };
            if bin.add(&sink).is_ok() {
                let _ = sink.sync_state_with_parent();
                if let Some(target) = sink.static_pad("sink") {
                    let _ = pad.link(&target);
                }
            }
        });
        Self::start(pipeline, None)
    }

    /// Decodes audio frames given to [`Pcm::src`] (each carries its caps).
    pub fn for_frames() -> Result<Self, String> {
        // Live from the start: a source that turns live later leaves the pipeline waiting for
        // a preroll that never comes.
        let pipeline = launch("appsrc name=src format=time is-live=true ! decodebin")?;
        let src = pipeline
            .by_name("src")
            .and_downcast::<gst_app::AppSrc>()
            .expect("named in the description");
        Self::start(pipeline, Some(src))
    }

    fn start(pipeline: gst::Pipeline, src: Option<gst_app::AppSrc>) -> Result<Self, String> {
        let sink = pipeline
            .by_name("sink")
            .and_downcast::<gst_app::AppSink>()
            .expect("named in the description");
        let guard = PipelineGuard::new(pipeline);
        guard
            .pipeline()
            .set_state(gst::State::Playing)
            .map_err(|_| {
                self::error(&guard).unwrap_or_else(|| "cannot start the audio pipeline".into())
            })?;
        Ok(Self { guard, sink, src })
    }

    /// The appsrc that [`Pcm::for_frames`] reads from.
    pub fn src(&self) -> Option<&gst_app::AppSrc> {
        self.src.as_ref()
    }

    /// The next decoded chunk, blocking up to `timeout`.
    pub fn pull(&self, timeout: Duration) -> Pull {
        if let Some(error) = error(&self.guard) {
            return Pull::Failed(error);
        }
        match self
            .sink
            .try_pull_sample(gst::ClockTime::from_nseconds(timeout.as_nanos() as u64))
        {
            Some(sample) => {
                let Some(buffer) = sample.buffer() else {
                    return Pull::Samples(Vec::new());
                };
                let Ok(map) = buffer.map_readable() else {
                    return Pull::Samples(Vec::new());
                };
                Pull::Samples(
                    map.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                )
            }
            None if self.sink.is_eos() => Pull::End,
            None => match error(&self.guard) {
                Some(error) => Pull::Failed(error),
                None => Pull::Timeout,
            },
        }
    }
}

/// The pipeline's first error, if it posted one; URLs in it are redacted.
fn error(guard: &PipelineGuard) -> Option<String> {
    let bus = guard.pipeline().bus()?;
    let message = bus.pop_filtered(&[gst::MessageType::Error])?;
    let gst::MessageView::Error(error) = message.view() else {
        return None;
    };
    Some(crate::secret::redact_urls(&error.error().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AAC frames as the hub carries them: 16 kHz mono, a 440 Hz tone.
    fn aac_frames(count: u32) -> Vec<gst::Sample> {
        let pipeline = gst::parse::launch(&format!(
            "audiotestsrc num-buffers={count} samplesperbuffer=1024 freq=440 volume=0.5 ! audio/x-raw,rate=16000,channels=1 ! audioconvert ! avenc_aac ! aacparse ! appsink name=sink sync=false"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let sink = pipeline
            .by_name("sink")
            .and_downcast::<gst_app::AppSink>()
            .unwrap();
        let guard = PipelineGuard::new(pipeline);
        guard.pipeline().set_state(gst::State::Playing).unwrap();
        let mut frames = Vec::new();
        while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) {
            frames.push(sample);
        }
        frames
    }

    #[test]
    fn hub_aac_frames_decode_to_16_khz_mono_float() {
        gst::init().unwrap();
        let frames = aac_frames(40);
        assert!(frames.len() >= 30, "{} frames", frames.len());
        let pcm = Pcm::for_frames().unwrap();
        let src = pcm.src().unwrap();
        for frame in &frames {
            src.push_sample(frame).unwrap();
        }
        let mut samples = Vec::new();
        while samples.len() < 30_000 {
            match pcm.pull(Duration::from_secs(5)) {
                Pull::Samples(chunk) => samples.extend(chunk),
                other => panic!("after {} samples: {other:?}", samples.len()),
            }
        }
        let level = super::super::rms_dbfs(&samples[4_000..30_000]);
        // A sine at amplitude 0.5 is −9 dBFS RMS; AAC keeps it within a dB or two.
        assert!((-12.0..-7.0).contains(&level), "{level} dBFS");
    }
}

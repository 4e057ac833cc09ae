//! One still image → JPEG: a short GStreamer pipeline per snapshot.
//!
//! `appsrc ! decoder ! videoconvert ! videoscale ! jpegenc ! appsink`, fed a single H.264/H.265
//! keyframe from the hub (or a camera's own JPEG to resize). Building the pipeline costs a few
//! milliseconds, far less than decoding, and keeps nothing alive between snapshots.

use crate::media::pipeline::{PipelineGuard, app_pipeline};
use gstreamer as gst;
use gstreamer::prelude::*;
use std::time::Duration;

/// Generous: a 4K keyframe decodes in well under a second on a small machine.
const ENCODE_TIMEOUT: Duration = Duration::from_secs(5);

/// The size a client asked for; a missing side follows the picture's aspect ratio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Size {
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl Size {
    /// Never larger than the picture: a 7680-wide request of a 1080p camera gets 1920, and the
    /// other side keeps the proportion asked for. Upscaling costs memory and shows nothing more.
    pub fn within(self, source: Option<(u32, u32)>) -> Size {
        let Some((source_w, source_h)) = source.filter(|(w, h)| *w > 0 && *h > 0) else {
            return self;
        };
        let scale = [
            self.width.map(|w| f64::from(source_w) / f64::from(w)),
            self.height.map(|h| f64::from(source_h) / f64::from(h)),
        ]
        .into_iter()
        .flatten()
        .fold(1.0f64, f64::min);
        let shrink =
            |side: Option<u32>| side.map(|s| ((f64::from(s) * scale).round() as u32).max(16));
        Size {
            width: shrink(self.width),
            height: shrink(self.height),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Encoded {
    pub jpeg: bytes::Bytes,
    pub width: u32,
    pub height: u32,
}

/// Decodes `sample` (a keyframe or a JPEG) and encodes it as a JPEG of `size`. Blocking.
pub fn to_jpeg(sample: &gst::Sample, size: Size, quality: u8) -> Result<Encoded, String> {
    let caps = sample.caps().ok_or("the frame has no caps")?;
    let decoder = match caps.structure(0).map(|s| s.name().as_str()) {
        Some("video/x-h264") => "avdec_h264",
        Some("video/x-h265") => "avdec_h265",
        Some("image/jpeg") => "jpegdec",
        other => {
            return Err(format!(
                "cannot decode {}",
                other.unwrap_or("unknown media")
            ));
        }
    };
    let buffer = sample.buffer_owned().ok_or("the frame is empty")?;
    let source = caps.structure(0).and_then(|s| {
        let side = |name: &str| s.get::<i32>(name).ok().and_then(|v| u32::try_from(v).ok());
        Some((side("width")?, side("height")?))
    });
    let size = size.within(source);

    let mut scaled = String::from("video/x-raw,pixel-aspect-ratio=1/1");
    if let Some(width) = size.width {
        scaled.push_str(&format!(",width={width}"));
    }
    if let Some(height) = size.height {
        scaled.push_str(&format!(",height={height}"));
    }
    // Every element here is checked at start-up by `check_plugins`.
    let (pipeline, src, sink) = app_pipeline(
        &format!(
            "appsrc name=src format=time ! {decoder} ! videoconvert ! videoscale add-borders=false \
             ! {scaled} ! jpegenc quality={quality} ! appsink name=sink sync=false"
        ),
        "snapshot pipeline",
    )
    .map_err(|e| e.message().to_string())?;
    src.set_caps(Some(&caps.to_owned()));
    let guard = PipelineGuard::new(pipeline);
    guard
        .pipeline()
        .set_state(gst::State::Playing)
        .map_err(|_| "cannot start the snapshot pipeline".to_string())?;
    src.push_buffer(buffer)
        .map_err(|e| format!("the decoder refused the frame: {e:?}"))?;
    let _ = src.end_of_stream();

    match sink.try_pull_sample(gst::ClockTime::from_nseconds(
        ENCODE_TIMEOUT.as_nanos() as u64
    )) {
        Some(jpeg) => {
            let structure = jpeg
                .caps()
                .and_then(|c| c.structure(0).map(|s| s.to_owned()));
            let dimension = |name| {
                structure
                    .as_ref()
                    .and_then(|s| s.get::<i32>(name).ok())
                    .unwrap_or(0) as u32
            };
            let map = jpeg
                .buffer()
                .ok_or("the encoder gave an empty image")?
                .map_readable()
                .map_err(|_| "cannot read the encoded image")?;
            Ok(Encoded {
                jpeg: bytes::Bytes::copy_from_slice(&map),
                width: dimension("width"),
                height: dimension("height"),
            })
        }
        None => Err(pipeline_error(guard.pipeline())
            .unwrap_or_else(|| "the frame did not decode to a picture".into())),
    }
}

/// The first error the pipeline posted, for a one-line reason.
fn pipeline_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(message) = bus.pop() {
        if let gst::MessageView::Error(error) = message.view() {
            return Some(format!("decoding failed: {}", error.error()));
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn requests_larger_than_the_picture_get_the_picture() {
        let ask = |width, height| Size { width, height };
        let hd = Some((1920, 1080));
        assert_eq!(ask(Some(7680), None).within(hd), ask(Some(1920), None));
        assert_eq!(ask(Some(640), None).within(hd), ask(Some(640), None));
        assert_eq!(
            ask(Some(7680), Some(7680)).within(hd),
            ask(Some(1080), Some(1080)),
            "both sides shrink together, keeping the shape asked for"
        );
        assert_eq!(ask(None, None).within(hd), ask(None, None));
        assert_eq!(ask(Some(7680), None).within(None), ask(Some(7680), None));
    }

    /// One real H.264 keyframe, as the hub holds it (avc, with codec_data).
    pub(crate) fn keyframe(width: i32, height: i32) -> gst::Sample {
        gst::init().unwrap();
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc num-buffers=1 ! video/x-raw,width={width},height={height} ! x264enc ! h264parse ! video/x-h264,stream-format=avc,alignment=au ! appsink name=sink"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let sink = pipeline
            .by_name("sink")
            .unwrap()
            .downcast::<gstreamer_app::AppSink>()
            .unwrap();
        let guard = PipelineGuard::new(pipeline);
        guard.pipeline().set_state(gst::State::Playing).unwrap();
        sink.pull_sample().unwrap()
    }

    #[test]
    fn a_keyframe_becomes_a_jpeg_of_the_asked_width_with_the_same_aspect() {
        let encoded = to_jpeg(
            &keyframe(640, 360),
            Size {
                width: Some(320),
                height: None,
            },
            80,
        )
        .unwrap();
        assert_eq!((encoded.width, encoded.height), (320, 180));
        assert_eq!(&encoded.jpeg[..2], &[0xFF, 0xD8]);
    }

    #[test]
    fn a_broken_keyframe_is_an_error_not_a_crash() {
        let good = keyframe(320, 240);
        let garbage = gst::Buffer::from_slice(vec![0x17u8; 2000]);
        let broken = gst::Sample::builder()
            .buffer(&garbage)
            .caps(&good.caps().unwrap().to_owned())
            .build();
        assert!(to_jpeg(&broken, Size::default(), 80).is_err());
    }
}

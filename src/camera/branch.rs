//! The branch of each camera track, from rtspsrc's pad to the hub: depay and parse video (it is
//! passed through), and make audio the one AAC track every viewer gets (AAC passed through,
//! G.711 and Opus transcoded and retimed, see `retime`).

use super::retime::AudioRetimer;
use super::source::lock;
use crate::error::{Error, ErrorKind};
use crate::media::hub::SessionWriter;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// avenc_aac (FFmpeg's encoder) starts with 1024 samples of priming, 64 ms at 16 kHz.
const AAC_PRIMING: Duration = Duration::from_millis(64);

/// Transcoded audio always leaves as AAC-LC, 16 kHz mono: one consistent format, and caps known
/// before the encoder's first frame, which would add 128-256 ms of encoder delay to a cold start.
const AAC_ENCODE: &str = "audioconvert name=decoded ! audioresample ! audio/x-raw,rate=16000,channels=1 ! avenc_aac aac-coder=fast bitrate=32000 ! aacparse";

fn transcoded_aac_caps() -> gst::Caps {
    // AudioSpecificConfig: object type 2 (AAC-LC), frequency index 8 (16 kHz), 1 channel.
    gst::Caps::builder("audio/mpeg")
        .field("mpegversion", 4i32)
        .field("stream-format", "raw")
        .field("rate", 16000i32)
        .field("channels", 1i32)
        .field("codec_data", gst::Buffer::from_slice([0x14u8, 0x08]))
        .build()
}

/// One AAC-LC frame of silence in the transcoded format: a single channel element with no
/// spectral data, as avenc_aac writes it. A viewer that joins before the encoder's first frame
/// gets it, so its media starts at once with audio timing that matches the video. A constant,
/// so nothing is encoded (and libav not loaded) before a camera needs it.
pub(super) const SILENT_AAC_FRAME: [u8; 4] = [0x01, 0x18, 0x20, 0x07];

/// How a camera's audio becomes the one AAC track every viewer gets.
pub(super) struct AudioBranch {
    /// The camera's codec, for humans.
    pub name: &'static str,
    description: String,
    /// Set when we transcode: the caps are ours, known in advance.
    pub caps: Option<gst::Caps>,
    /// G.711 is also kept as it came, for WebRTC viewers whose browser takes it.
    pub g711: bool,
}

/// Where the untouched G.711 frames leave the audio branch.
const G711_SINK: &str = "g711";

pub(super) fn audio_branch(encoding: &str) -> Option<AudioBranch> {
    let transcode = |name, decode: &str| AudioBranch {
        name,
        description: format!("{decode} ! {AAC_ENCODE}"),
        caps: Some(transcoded_aac_caps()),
        g711: false,
    };
    let g711 = |name, depay: &str, decode: &str| AudioBranch {
        g711: true,
        ..transcode(
            name,
            &format!("{depay} ! tee name=t t. ! appsink name={G711_SINK} t. ! {decode}"),
        )
    };
    let passthrough = |depay: &str| AudioBranch {
        name: "AAC",
        description: format!("{depay} ! aacparse"),
        caps: None,
        g711: false,
    };
    Some(match encoding {
        "PCMA" => g711("PCMA", "rtppcmadepay", "alawdec"),
        "PCMU" => g711("PCMU", "rtppcmudepay", "mulawdec"),
        "OPUS" => transcode("Opus", "rtpopusdepay ! opusdec"),
        "MPEG4-GENERIC" => passthrough("rtpmp4gdepay"),
        "MP4A-LATM" => passthrough("rtpmp4adepay"),
        _ => return None,
    })
}

pub(super) fn video_branch(encoding: &str) -> Option<&'static str> {
    match encoding {
        "H264" => Some(
            "rtph264depay ! h264parse config-interval=-1 ! video/x-h264,stream-format=avc,alignment=au",
        ),
        "H265" => Some(
            "rtph265depay ! h265parse config-interval=-1 ! video/x-h265,stream-format=hvc1,alignment=au",
        ),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    Video,
    Audio,
}

pub(super) fn media_and_encoding(caps: &gst::CapsRef) -> (String, String) {
    let s = caps.structure(0);
    let field = |name| {
        s.and_then(|s| s.get::<&str>(name).ok())
            .unwrap_or("")
            .to_string()
    };
    (field("media"), field("encoding-name").to_ascii_uppercase())
}

/// Builds the branch for a selected track: depay, parse (and transcode audio), appsink into the hub.
pub(super) fn link_track(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    writer: &Weak<SessionWriter>,
) -> Result<(), Error> {
    let caps = pad
        .current_caps()
        .ok_or_else(|| Error::new(ErrorKind::Internal, "camera pad without caps"))?;
    let (media, encoding) = media_and_encoding(&caps);
    let (track, description, passthrough_audio, g711) = match media.as_str() {
        "video" => match video_branch(&encoding) {
            Some(branch) => (Track::Video, branch.to_string(), false, false),
            None => return sink_to_nowhere(pipeline, pad),
        },
        "audio" => match audio_branch(&encoding) {
            Some(branch) => (
                Track::Audio,
                branch.description,
                branch.caps.is_none(),
                branch.g711,
            ),
            None => return sink_to_nowhere(pipeline, pad),
        },
        _ => return sink_to_nowhere(pipeline, pad),
    };
    let bin = gst::parse::bin_from_description(&format!("{description} ! appsink name=sink"), true)
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot build the {media} branch: {e}"),
            )
        })?;
    let sink = branch_sink(&bin, "sink");
    if track == Track::Audio && !passthrough_audio {
        retime_transcoded(&bin, &sink);
    }
    if g711 {
        let writer = writer.clone();
        branch_sink(&bin, G711_SINK).set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(writer) = writer.upgrade() {
                        writer.received(sample.buffer().map_or(0, |b| b.size()));
                        writer.push_g711(sample);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    if passthrough_audio {
        // Passed-through AAC: its caps (from the SDP) come with the caps event, ahead of the first frame.
        let writer = writer.clone();
        let pad = sink.static_pad("sink").expect("appsink has a sink pad");
        pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let (Some(gst::EventView::Caps(caps)), Some(writer)) =
                (info.event().map(|e| e.view()), writer.upgrade())
            {
                writer.set_audio_caps(caps.caps_owned(), None);
            }
            gst::PadProbeReturn::Ok
        });
    }
    let writer = writer.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                // A session that ended takes nothing more.
                let Some(writer) = writer.upgrade() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                // G.711 was counted as it came, before it became AAC.
                if !g711 {
                    writer.received(sample.buffer().map_or(0, |b| b.size()));
                }
                match track {
                    Track::Video => writer.push_video(sample),
                    Track::Audio => writer.push_audio(sample),
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    add_and_link(pipeline, pad, bin.upcast())
}

/// Encoded frames get the times of the decoded audio they came from: see `retime`.
fn retime_transcoded(bin: &gst::Bin, sink: &gst_app::AppSink) {
    let retimer = Arc::new(Mutex::new(AudioRetimer::new(AAC_PRIMING)));
    let decoded = bin
        .by_name("decoded")
        .and_then(|e| e.static_pad("sink"))
        .expect("the transcoding branch names its first element after the decoder");
    {
        let retimer = retimer.clone();
        decoded.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let Some(buffer) = info.buffer() {
                let duration = buffer
                    .duration()
                    .map(gst::ClockTime::nseconds)
                    .unwrap_or_else(|| raw_duration(pad, buffer.size()));
                lock(&retimer).decoded(buffer.pts().map(gst::ClockTime::nseconds), duration);
            }
            gst::PadProbeReturn::Ok
        });
    }
    let encoded = sink.static_pad("sink").expect("appsink has a sink pad");
    encoded.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer_mut() else {
            return gst::PadProbeReturn::Ok;
        };
        let duration = buffer
            .duration()
            .map(gst::ClockTime::nseconds)
            .unwrap_or_else(|| aac_frame_duration(pad));
        if let Some(pts) = lock(&retimer).encoded(duration) {
            let buffer = buffer.make_mut();
            let pts = gst::ClockTime::from_nseconds(pts);
            buffer.set_pts(pts);
            if buffer.dts().is_some() {
                buffer.set_dts(pts);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// The length of `size` bytes of decoded 16-bit audio on `pad`.
fn raw_duration(pad: &gst::Pad, size: usize) -> u64 {
    let (rate, channels) = rate_and_channels(pad);
    size as u64 / (2 * channels) * 1_000_000_000 / rate
}

/// An AAC frame holds 1024 samples.
fn aac_frame_duration(pad: &gst::Pad) -> u64 {
    1024 * 1_000_000_000 / rate_and_channels(pad).0
}

fn rate_and_channels(pad: &gst::Pad) -> (u64, u64) {
    let caps = pad.current_caps();
    let field = |name, default: i32| {
        caps.as_ref()
            .and_then(|c| c.structure(0))
            .and_then(|s| s.get::<i32>(name).ok())
            .unwrap_or(default)
            .max(1) as u64
    };
    (field("rate", 16_000), field("channels", 1))
}

fn branch_sink(bin: &gst::Bin, name: &str) -> gst_app::AppSink {
    let sink = bin
        .by_name(name)
        .and_downcast::<gst_app::AppSink>()
        .expect("the branch names its appsinks");
    sink.set_sync(false);
    // Added to a running pipeline: an async sink would wait to preroll and hold its first sample.
    sink.set_async(false);
    sink.set_drop(false);
    sink
}

fn sink_to_nowhere(pipeline: &gst::Pipeline, pad: &gst::Pad) -> Result<(), Error> {
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    add_and_link(pipeline, pad, sink)
}

fn add_and_link(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    element: gst::Element,
) -> Result<(), Error> {
    let internal = |e: &dyn std::fmt::Display| Error::new(ErrorKind::Internal, e.to_string());
    pipeline.add(&element).map_err(|e| internal(&e))?;
    element.sync_state_with_parent().map_err(|e| internal(&e))?;
    let sink_pad = element
        .static_pad("sink")
        .ok_or_else(|| Error::new(ErrorKind::Internal, "branch without a sink pad"))?;
    pad.link(&sink_pad).map_err(|e| internal(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_silent_frame_decodes_to_1024_samples_of_silence() {
        use crate::audio::decode::{Pcm, Pull};
        gst::init().unwrap();
        let pcm = Pcm::for_frames().unwrap();
        let src = pcm.src().unwrap();
        let mut frame = gst::Buffer::from_slice(SILENT_AAC_FRAME);
        frame.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
        let caps = transcoded_aac_caps();
        src.push_sample(&gst::Sample::builder().buffer(&frame).caps(&caps).build())
            .unwrap();
        src.end_of_stream().unwrap();
        let mut samples = Vec::new();
        loop {
            // Generous: a cold plugin registry makes decodebin's first autoplugging slow.
            match pcm.pull(Duration::from_secs(30)) {
                Pull::Samples(chunk) => samples.extend(chunk),
                Pull::End => break,
                other => panic!("after {} samples: {other:?}", samples.len()),
            }
        }
        assert_eq!(samples.len(), 1024);
        assert!(samples.iter().all(|s| *s == 0.0), "not silent");
    }
}

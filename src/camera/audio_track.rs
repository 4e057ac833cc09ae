//! The camera's audio, from its RTP packets to the one AAC track every viewer gets: AAC passed
//! through, Opus transcoded by GStreamer and retimed (see `retime`), G.711 transcoded here (see
//! `g711_aac`) and also kept as it came.

use super::aac_lc;
use super::g711::Law;
use super::g711_aac::{AacFrame, G711ToAac};
use super::retime::AudioRetimer;
use super::source::lock;
use super::timeline::{SessionTimeline, TrackTimeline};
use super::tracks::Offered;
use crate::error::{Error, ErrorKind};
use crate::media::hub::SessionWriter;
use crate::media::pipeline::{MediaClock, PipelineGuard};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use retina::rtp::ReceivedPacket;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// voaacenc's output starts 1600 samples (100 ms at 16 kHz) before its input: measured by
/// decoding clicks it encoded (`the_encoder_priming_is_what_retiming_takes_off`).
const AAC_PRIMING: Duration = Duration::from_millis(100);

/// An AAC frame holds 1024 samples.
const AAC_FRAME_SAMPLES: u64 = aac_lc::FRAME as u64;

/// The rate every transcoded camera's AAC has, ours or voaacenc's.
const TRANSCODED_RATE: u32 = aac_lc::RATE;

/// Transcoded audio always leaves as AAC-LC, 16 kHz mono: one consistent format, and caps known
/// before the encoder's first frame, which would add 128-256 ms of encoder delay to a cold start.
/// The encoder is VisualOn's (voaacenc): about 30 KB per camera, where libav's avenc_aac took
/// 2 MB, for 0.06 % more of a core per camera (BENCHMARKS.md, "Smaller per stream").
/// It takes decoded audio in any layout (a decoder's); its raw AAC frames come with their caps, as
/// every consumer takes them, so no parser follows it.
const AAC_ENCODE: &str = "audioconvert name=decoded ! audioresample ! audio/x-raw,rate=16000,channels=1 ! voaacenc bitrate=32000";

fn transcoded_aac_caps() -> gst::Caps {
    // AudioSpecificConfig: object type 2 (AAC-LC), frequency index 8 (16 kHz), 1 channel.
    gst::Caps::builder("audio/mpeg")
        .field("mpegversion", 4i32)
        .field("stream-format", "raw")
        .field("rate", TRANSCODED_RATE as i32)
        .field("channels", 1i32)
        .field("codec_data", gst::Buffer::from_slice([0x14u8, 0x08]))
        .build()
}

/// One AAC-LC frame of silence in the transcoded format: a single channel element with no
/// spectral data, the shortest frame any AAC decoder takes. A viewer that joins before the encoder's first frame
/// gets it, so its media starts at once with audio timing that matches the video. A constant,
/// so nothing is encoded before a camera needs it.
pub(super) const SILENT_AAC_FRAME: [u8; 4] = [0x01, 0x18, 0x20, 0x07];

/// How a camera's audio becomes the one AAC track every viewer gets.
#[derive(Debug)]
pub(super) struct AudioBranch {
    /// The camera's codec, for humans.
    pub name: &'static str,
    conversion: Conversion,
    /// Set when we transcode: the caps are ours, known in advance.
    pub caps: Option<gst::Caps>,
}

/// How the camera's packets become AAC.
#[derive(Debug)]
enum Conversion {
    /// A GStreamer branch (depay, and decode and encode unless it is AAC).
    Branch(String),
    /// G.711 at 8 or 16 kHz, transcoded here (`g711_aac`).
    G711(Law),
}

impl AudioBranch {
    /// The camera's G.711 when we transcode it: it is also kept as it came, for WebRTC viewers
    /// whose browser takes it.
    pub fn g711(&self) -> Option<Law> {
        match self.conversion {
            Conversion::G711(law) => Some(law),
            Conversion::Branch(_) => None,
        }
    }
}

/// How audio of `encoding` at `clock_rate` Hz becomes AAC, if it can.
pub(super) fn audio_branch(encoding: &str, clock_rate: u32) -> Option<AudioBranch> {
    let transcode = |name, decode: &str| AudioBranch {
        name,
        conversion: Conversion::Branch(format!("{decode} ! {AAC_ENCODE}")),
        caps: Some(transcoded_aac_caps()),
    };
    let g711 = |name, law, decode| {
        if G711ToAac::takes(clock_rate) {
            AudioBranch {
                name,
                conversion: Conversion::G711(law),
                caps: Some(transcoded_aac_caps()),
            }
        } else {
            // Rare rates: GStreamer's decoder and resampler.
            transcode(name, decode)
        }
    };
    let passthrough = |depay: &str| AudioBranch {
        name: "AAC",
        conversion: Conversion::Branch(format!("{depay} ! aacparse")),
        caps: None,
    };
    Some(match encoding {
        "PCMA" => g711("PCMA", Law::A, "rtppcmadepay ! alawdec"),
        "PCMU" => g711("PCMU", Law::Mu, "rtppcmudepay ! mulawdec"),
        "OPUS" => transcode("Opus", "rtpopusdepay ! opusdec"),
        "MPEG4-GENERIC" => passthrough("rtpmp4gdepay"),
        "MP4A-LATM" => passthrough("rtpmp4adepay"),
        _ => return None,
    })
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

/// The camera's audio track: its RTP packets, timed on the session's timeline, become the AAC
/// the hub takes. G.711 is transcoded here; the other codecs go through a GStreamer branch
/// (depay, and decode and encode unless it is AAC). Either way the work is done in the task that
/// read the packets: an appsrc's thread would cost a hand-off per packet (a third of the
/// add-on's CPU samples with 8 cameras).
pub(super) struct AudioTrack {
    timeline: Option<TrackTimeline>,
    way: Way,
}

enum Way {
    Branch {
        src: gst::Pad,
        pipeline: PipelineGuard,
    },
    /// Boxed: the encoder's state is a few KB.
    G711(Box<G711Input>),
}

/// A G.711 track: its samples kept as they came for the hub, and transcoded to AAC.
struct G711Input {
    transcoder: G711ToAac,
    rate: u64,
    /// The untouched samples' caps, for the WebRTC viewers that take them.
    caps: gst::Caps,
    aac_caps: gst::Caps,
    writer: Weak<SessionWriter>,
}

impl AudioTrack {
    pub fn start(
        offered: &Offered,
        branch: &AudioBranch,
        writer: &Weak<SessionWriter>,
        clock: &MediaClock,
    ) -> Result<AudioTrack, Error> {
        let way = match &branch.conversion {
            Conversion::Branch(description) => {
                start_branch(offered, branch, description, writer, clock)?
            }
            Conversion::G711(law) => Way::G711(Box::new(G711Input {
                transcoder: G711ToAac::new(*law, offered.clock_rate).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Internal,
                        format!("no G.711 transcoder at {} Hz", offered.clock_rate),
                    )
                })?,
                rate: u64::from(offered.clock_rate.max(1)),
                caps: gst::Caps::builder(law.media_type())
                    .field("rate", offered.clock_rate as i32)
                    .field("channels", 1i32)
                    .build(),
                aac_caps: transcoded_aac_caps(),
                writer: writer.clone(),
            })),
        };
        Ok(AudioTrack {
            timeline: None,
            way,
        })
    }

    /// Takes one RTP packet. An error says the branch stopped (a decoder refused the camera's
    /// audio); its message comes from the branch.
    pub fn push(
        &mut self,
        packet: &ReceivedPacket,
        session: &mut SessionTimeline,
        arrival: u64,
    ) -> Result<(), String> {
        let pts = TrackTimeline::pts_of(&mut self.timeline, session, packet.timestamp(), arrival);
        let pts = gst::ClockTime::from_nseconds(pts);
        match &mut self.way {
            Way::G711(g711) => {
                g711.push(packet, pts);
                Ok(())
            }
            Way::Branch { src, pipeline } => {
                let mut buffer = gst::Buffer::from_slice(packet.raw().to_vec());
                buffer
                    .get_mut()
                    .expect("a new buffer is writable")
                    .set_pts(pts);
                feed(src, pipeline, buffer)
            }
        }
    }
}

/// A GStreamer branch from the camera's packets to the hub, fed on this thread.
fn start_branch(
    offered: &Offered,
    branch: &AudioBranch,
    description: &str,
    writer: &Weak<SessionWriter>,
    clock: &MediaClock,
) -> Result<Way, Error> {
    let internal = |message: String| Error::new(ErrorKind::Internal, message);
    let pipeline = gst::parse::launch(&format!("{description} ! appsink name=sink"))
        .map_err(|e| internal(format!("cannot build the camera's audio branch: {e}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| internal("the camera's audio branch is not a pipeline".into()))?;
    clock.apply(&pipeline);
    let bin = pipeline.upcast_ref::<gst::Bin>();
    let sink = branch_sink(bin, "sink");
    configure_sink(&sink);
    if branch.caps.is_some() {
        retime_transcoded(bin, &sink);
    }
    deliver_audio(&sink, writer, branch);
    let first = bin
        .find_unlinked_pad(gst::PadDirection::Sink)
        .ok_or_else(|| internal("the camera's audio branch has no input".into()))?;
    let src = gst::Pad::builder(gst::PadDirection::Src)
        .name("camera")
        .build();
    src.link(&first)
        .map_err(|e| internal(format!("cannot feed the camera's audio branch: {e:?}")))?;
    let pipeline = PipelineGuard::new(pipeline);
    pipeline
        .pipeline()
        .set_state(gst::State::Playing)
        .map_err(|_| internal("the camera's audio branch refused to start".into()))?;
    src.set_active(true)
        .map_err(|_| internal("cannot feed the camera's audio branch".into()))?;
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    for event in [
        gst::event::StreamStart::new("camera-audio"),
        gst::event::Caps::new(&offered.caps),
        gst::event::Segment::new(&segment),
    ] {
        src.push_event(event);
    }
    Ok(Way::Branch { src, pipeline })
}

/// Pushes one buffer through the branch, on this thread.
fn feed(src: &gst::Pad, pipeline: &PipelineGuard, buffer: gst::Buffer) -> Result<(), String> {
    src.push(buffer).map(drop).map_err(|flow| {
        let bus = pipeline.pipeline().bus();
        match bus.and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error])) {
            Some(message) => match message.view() {
                gst::MessageView::Error(error) => error.error().to_string(),
                _ => format!("{flow:?}"),
            },
            None => format!("{flow:?}"),
        }
    })
}

impl G711Input {
    /// Hands the packet's samples, as they came, to the hub, and the AAC frames they complete.
    fn push(&mut self, packet: &ReceivedPacket, pts: gst::ClockTime) {
        let payload = packet.payload();
        let Some(writer) = self.writer.upgrade() else {
            return;
        };
        if payload.is_empty() {
            return;
        }
        writer.received(payload.len());
        writer.push_g711(|| {
            let mut untouched = gst::Buffer::from_slice(payload.to_vec());
            let untouched_mut = untouched.get_mut().expect("a new buffer is writable");
            untouched_mut.set_pts(pts);
            untouched_mut.set_duration(gst::ClockTime::from_nseconds(
                payload.len() as u64 * 1_000_000_000 / self.rate,
            ));
            if packet.loss() > 0 {
                untouched_mut.set_flags(gst::BufferFlags::DISCONT);
            }
            gst::Sample::builder()
                .buffer(&untouched)
                .caps(&self.caps)
                .build()
        });
        for frame in self
            .transcoder
            .push(payload, pts.nseconds(), packet.loss() > 0)
        {
            writer.push_audio(aac_sample(frame, &self.aac_caps));
        }
    }
}

/// An encoded frame as the hub takes it: in memory of its own size, with its caps.
fn aac_sample(frame: AacFrame, caps: &gst::Caps) -> gst::Sample {
    let mut buffer = gst::Buffer::from_mut_slice(frame.data.into_boxed_slice());
    let buffer_mut = buffer.get_mut().expect("a new buffer is writable");
    buffer_mut.set_pts(gst::ClockTime::from_nseconds(frame.pts));
    buffer_mut.set_duration(gst::ClockTime::from_nseconds(frame.duration));
    if frame.discont {
        buffer_mut.set_flags(gst::BufferFlags::DISCONT);
    }
    gst::Sample::builder().buffer(&buffer).caps(caps).build()
}

/// The AAC every viewer gets goes into the hub.
fn deliver_audio(sink: &gst_app::AppSink, writer: &Weak<SessionWriter>, branch: &AudioBranch) {
    let passthrough = branch.caps.is_none();
    if passthrough {
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
                writer.received(sample.buffer().map_or(0, |b| b.size()));
                writer.push_audio(fitted(sample));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

/// The sample with its bytes in a block of their own size. voaacenc writes each 256-byte frame
/// into a block of 2 KB, and the pre-roll keeps 5-7 s of frames: about 190 KB a camera, for
/// nothing. The copy is a few hundred bytes, 16 times a second.
fn fitted(sample: gst::Sample) -> gst::Sample {
    let Some(buffer) = sample.buffer() else {
        return sample;
    };
    let held: usize = buffer.iter_memories().map(|memory| memory.maxsize()).sum();
    if held <= 2 * buffer.size() {
        return sample;
    }
    let Ok(copy) = buffer.copy_deep() else {
        return sample;
    };
    let caps = sample.caps_owned();
    let mut builder = gst::Sample::builder().buffer(&copy);
    if let Some(caps) = &caps {
        builder = builder.caps(caps);
    }
    if let Some(segment) = sample.segment() {
        builder = builder.segment(segment);
    }
    builder.build()
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

fn aac_frame_duration(pad: &gst::Pad) -> u64 {
    AAC_FRAME_SAMPLES * 1_000_000_000 / rate_and_channels(pad).0
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
    (field("rate", TRANSCODED_RATE as i32), field("channels", 1))
}

fn branch_sink(bin: &gst::Bin, name: &str) -> gst_app::AppSink {
    bin.by_name(name)
        .and_downcast::<gst_app::AppSink>()
        .expect("the branch names its appsinks")
}

fn configure_sink(sink: &gst_app::AppSink) {
    sink.set_sync(false);
    // A sink behind the tee waiting to preroll would hold the tee, and the other sink with it.
    sink.set_async(false);
    sink.set_drop(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clicks every 4000 samples go through the transcoding branch and back through a decoder
    /// that, as a player's, keeps what the encoder put before them: each comes out late by the
    /// priming, which retiming takes off. The encoder's own caps are the ones announced.
    #[test]
    fn the_encoder_priming_is_what_retiming_takes_off() {
        gst::init().unwrap();
        let pipeline = gst::parse::launch(&format!(
            "appsrc name=src format=time caps=audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved \
             ! {AAC_ENCODE} ! avdec_aac ! audioconvert ! audio/x-raw,format=S16LE,channels=1 \
             ! appsink name=sink sync=false"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let by_name = |name| pipeline.by_name(name).unwrap();
        let src = by_name("src").downcast::<gst_app::AppSrc>().unwrap();
        let sink = by_name("sink").downcast::<gst_app::AppSink>().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let mut input = vec![0i16; 32000];
        for click in [8000, 12000, 16000] {
            input[click..click + 8].fill(20000);
        }
        let bytes: Vec<u8> = input.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut buffer = gst::Buffer::from_slice(bytes);
        buffer.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
        src.push_buffer(buffer).unwrap();
        src.end_of_stream().unwrap();
        let mut output = Vec::new();
        while let Ok(sample) = sink.pull_sample() {
            let map = sample.buffer().unwrap().map_readable().unwrap();
            output.extend(
                map.chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            );
        }
        // The caps announced before the encoder's first frame are the ones it makes.
        let encoder = pipeline
            .iterate_elements()
            .into_iter()
            .flatten()
            .find(|e| e.factory().is_some_and(|f| f.name() == "voaacenc"))
            .unwrap();
        let made = encoder.static_pad("src").unwrap().current_caps().unwrap();
        let codec_data = |caps: &gst::Caps| {
            let buffer = caps.structure(0).unwrap().get::<gst::Buffer>("codec_data");
            buffer.unwrap().map_readable().unwrap().to_vec()
        };
        assert_eq!(codec_data(&made), codec_data(&transcoded_aac_caps()));
        pipeline.set_state(gst::State::Null).unwrap();
        let priming = (AAC_PRIMING.as_secs_f64() * 16000.0) as usize;
        for click in [8000, 12000, 16000] {
            let window = &output[click..click + 3000];
            let peak = (0..window.len())
                .max_by_key(|&i| window[i].unsigned_abs())
                .unwrap();
            // The click is 8 samples long: its peak comes out a few samples into it.
            assert!(
                (priming..priming + 12).contains(&peak),
                "the click at {click} came out {peak} samples late; the priming is {priming}"
            );
        }
    }

    /// What the encoder hands over, fitted, holds no more memory than its bytes need, with its times,
    /// flags and caps kept.
    #[test]
    fn an_encoded_frame_is_kept_in_memory_of_its_own_size() {
        gst::init().unwrap();
        let (pipeline, src, sink) = crate::media::pipeline::app_pipeline(
            &format!(
                "appsrc name=src format=time caps=audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved \
                 ! {AAC_ENCODE} ! appsink name=sink sync=false"
            ),
            "test encoder",
        )
        .unwrap();
        let pipeline = PipelineGuard::new(pipeline);
        pipeline.pipeline().set_state(gst::State::Playing).unwrap();
        // Noise, so the frames are as large as the bitrate allows.
        let mut seed = 1u32;
        let noise: Vec<u8> = (0..8 * AAC_FRAME_SAMPLES)
            .flat_map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((seed >> 16) as i16 / 4).to_le_bytes()
            })
            .collect();
        let mut buffer = gst::Buffer::from_slice(noise);
        buffer.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
        src.push_buffer(buffer).unwrap();
        src.end_of_stream().unwrap();
        let held = |buffer: &gst::BufferRef| -> usize {
            buffer.iter_memories().map(|memory| memory.maxsize()).sum()
        };
        let sample = sink.pull_sample().unwrap();
        let encoded = sample.buffer().unwrap();
        assert!(
            held(encoded) > 2 * encoded.size(),
            "the encoder's blocks fit already"
        );
        let fitted = fitted(sample.clone());
        let buffer = fitted.buffer().unwrap();
        // Room to align the block is all that is left over.
        assert!(
            held(buffer) < buffer.size() + 16,
            "{} bytes held for {}",
            held(buffer),
            buffer.size()
        );
        assert_eq!(
            buffer.map_readable().unwrap().as_slice(),
            encoded.map_readable().unwrap().as_slice()
        );
        assert_eq!(
            (buffer.pts(), buffer.duration()),
            (encoded.pts(), encoded.duration())
        );
        assert_eq!(buffer.flags(), encoded.flags());
        assert_eq!(fitted.caps(), sample.caps());
    }

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

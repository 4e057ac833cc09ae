//! The camera's video, from RTP packets to whole access units for the hub, in the thread that
//! read them: depacketized by retina, timed on the session's timeline, passed through untouched.

use super::frame_blocks::FrameBlocks;
use super::quirks;
use super::timeline::{SessionTimeline, TrackTimeline};
use super::tracks::Offered;
use crate::error::{Error, ErrorKind};
use gstreamer as gst;
use retina::codec::{CodecItem, Depacketizer, VideoFrame, VideoParameters};
use retina::rtp::ReceivedPacket;

pub(super) struct VideoTrack {
    offered: Offered,
    /// H.265 frames are checked for the keyframes retina does not flag (`holds_h265_irap`).
    h265: bool,
    depacketizer: Depacketizer,
    timeline: Option<TrackTimeline>,
    /// The caps of the current parameters, set on every frame.
    caps: Option<gst::Caps>,
    /// Set after a broken frame: nothing is delivered until the next keyframe.
    broken: bool,
    /// Broken frames so far; the first is logged as a warning, the rest quietly.
    broken_frames: u64,
    /// Where the frames are kept for the hub.
    blocks: FrameBlocks,
}

impl VideoTrack {
    pub fn new(offered: &Offered) -> Result<VideoTrack, Error> {
        Ok(VideoTrack {
            depacketizer: depacketizer(offered)?,
            h265: offered.encoding.eq_ignore_ascii_case("H265"),
            offered: offered.clone(),
            timeline: None,
            caps: None,
            broken: false,
            broken_frames: 0,
            blocks: FrameBlocks::default(),
        })
    }

    /// Takes one packet; returns the frame it completed, if any. A packet that cannot be
    /// depacketized (lost packets over UDP, a camera's bad packet) drops the frame it was in
    /// and video resumes at the next keyframe, so no decoder sees a broken picture.
    pub fn push(
        &mut self,
        packet: ReceivedPacket,
        session: &mut SessionTimeline,
        arrival: u64,
    ) -> Option<gst::Sample> {
        if let Err(error) = self.depacketizer.push(packet) {
            self.restart(&error);
            return None;
        }
        match self.depacketizer.pull()? {
            Ok(CodecItem::VideoFrame(frame)) => self.sample(frame, session, arrival),
            Ok(_) => None,
            Err(error) => {
                self.restart(&format!("{error:?}"));
                None
            }
        }
    }

    fn restart(&mut self, error: &str) {
        self.broken_frames += 1;
        if self.broken_frames == 1 {
            tracing::warn!(
                "the camera sent a video frame that cannot be read ({error}); it is dropped and video resumes at the next keyframe (later ones are logged at debug level)"
            );
        } else {
            tracing::debug!("camera video frame {} dropped: {error}", self.broken_frames);
        }
        self.broken = true;
        if let Ok(fresh) = depacketizer(&self.offered) {
            self.depacketizer = fresh;
        }
    }

    fn sample(
        &mut self,
        frame: VideoFrame,
        session: &mut SessionTimeline,
        arrival: u64,
    ) -> Option<gst::Sample> {
        let keyframe =
            frame.is_random_access_point() || (self.h265 && holds_h265_irap(frame.data()));
        if frame.has_new_parameters() || self.caps.is_none() {
            if let Some(retina::codec::ParametersRef::Video(parameters)) =
                self.depacketizer.parameters()
            {
                self.caps = Some(caps(&self.offered.encoding, parameters));
            }
        }
        if self.broken && !keyframe {
            return None;
        }
        self.broken = false;
        let caps = self.caps.as_ref()?;
        let pts = TrackTimeline::pts_of(&mut self.timeline, session, frame.timestamp(), arrival);
        let mut buffer = gst::Buffer::from_slice(self.blocks.keep(frame.into_data()));
        {
            let buffer = buffer.get_mut().expect("a new buffer is writable");
            // Decoding order is sending order: RTP carries no decode times, and the hub's joining
            // viewers get frames restamped with both, which a decoder must not see mixed with
            // frames that have none (the H.265 → H.264 transcoder fell to 3 frames a second).
            buffer.set_pts(gst::ClockTime::from_nseconds(pts));
            buffer.set_dts(gst::ClockTime::from_nseconds(pts));
            if !keyframe {
                buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        Some(gst::Sample::builder().buffer(&buffer).caps(caps).build())
    }
}

/// Whether an H.265 frame (length-prefixed NAL units) is a random access point: any IRAP
/// picture, types 16–23. retina 0.4.18 counts only IDR pictures (19, 20), but encoders with open
/// GOPs, x265's default among them, start each GOP with a CRA (21). Taken as delta frames, the
/// hub saw one keyframe per session: its GOP cache filled up after 600 frames and a viewer
/// joining after that waited for a keyframe that never came, while the pre-roll never trimmed.
fn holds_h265_irap(mut data: &[u8]) -> bool {
    while data.len() > 4 {
        let length = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let Some(nal) = data.get(4..4 + length) else {
            return false;
        };
        if nal
            .first()
            .is_some_and(|header| (16..=23).contains(&((header >> 1) & 0x3f)))
        {
            return true;
        }
        data = &data[4 + length..];
    }
    false
}

fn depacketizer(offered: &Offered) -> Result<Depacketizer, Error> {
    let mut depacketizer = Depacketizer::new(
        "video",
        &offered.encoding.to_ascii_lowercase(),
        offered.clock_rate,
        None,
        offered.fmtp.as_deref(),
    )
    .map_err(|e| {
        Error::new(
            ErrorKind::Unsupported,
            format!(
                "the camera's {} video cannot be read: {e}",
                offered.encoding
            ),
        )
    })?;
    depacketizer.set_frame_format(quirks::FRAME_FORMAT);
    Ok(depacketizer)
}

/// Caps as `h264parse`/`h265parse` gave them: length-prefixed access units with the
/// `avcC`/`hvcC` record as codec_data, the picture size and, when the camera says, the rate.
fn caps(encoding: &str, parameters: &VideoParameters) -> gst::Caps {
    let (name, format) = match encoding {
        "H265" => ("video/x-h265", "hvc1"),
        _ => ("video/x-h264", "avc"),
    };
    let (width, height) = parameters.pixel_dimensions();
    let mut caps = gst::Caps::builder(name)
        .field("stream-format", format)
        .field("alignment", "au")
        .field("width", width as i32)
        .field("height", height as i32)
        .field(
            "codec_data",
            gst::Buffer::from_slice(parameters.extra_data().to_vec()),
        );
    // Seconds per frame: (1, 25) is 25 frames a second.
    if let Some((num, den)) = parameters.frame_rate().filter(|(n, d)| *n > 0 && *d > 0) {
        caps = caps.field("framerate", gst::Fraction::new(den as i32, num as i32));
    }
    if let Some((h, v)) = parameters
        .pixel_aspect_ratio()
        .filter(|(h, v)| *h > 0 && *v > 0)
    {
        caps = caps.field("pixel-aspect-ratio", gst::Fraction::new(h as i32, v as i32));
    }
    caps.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use retina::rtp::ReceivedPacketBuilder;
    use std::num::NonZeroU32;

    /// Four frames of 64×48 H.264 (IDR, P, P, IDR; SPS and PPS before each IDR, an SEI before
    /// the first), made with `ffmpeg -f lavfi -i testsrc=size=64x48:rate=25 -frames:v 4 -c:v
    /// libx264 -preset ultrafast -g 3 -bf 0 -x264-params keyint=3:min-keyint=3:scenecut=0 -f h264`.
    const CLIP: &[u8] = include_bytes!("../../tests/fixtures/h264-64x48-4-frames.h264");

    /// The clip's NAL units, in order.
    fn nal_units() -> Vec<&'static [u8]> {
        let starts: Vec<usize> = CLIP
            .windows(3)
            .enumerate()
            .filter(|(_, w)| *w == [0, 0, 1])
            .map(|(i, _)| i + 3)
            .collect();
        starts
            .iter()
            .enumerate()
            .map(|(i, &start)| {
                let end = starts.get(i + 1).map_or(CLIP.len(), |next| next - 3);
                let nal = &CLIP[start..end];
                // A 4-byte start code leaves its first zero on the unit before it.
                let trailing = nal.iter().rev().take_while(|b| **b == 0).count();
                &nal[..nal.len() - trailing]
            })
            .collect()
    }

    /// Each NAL unit in a packet of its own; the last of a frame is marked.
    fn packets() -> Vec<(ReceivedPacket, bool)> {
        let mut frame = 0u32;
        let units = nal_units();
        units
            .iter()
            .enumerate()
            .map(|(seq, nal)| {
                let is_slice = matches!(nal[0] & 0x1f, 1 | 5);
                let packet = ReceivedPacketBuilder {
                    ctx: retina::PacketContext::dummy(),
                    stream_id: 0,
                    sequence_number: seq as u16,
                    timestamp: retina::Timestamp::new(
                        i64::from(frame * 3600),
                        NonZeroU32::new(90_000).unwrap(),
                        0,
                    )
                    .unwrap(),
                    payload_type: 96,
                    ssrc: 1,
                    mark: is_slice,
                    loss: 0,
                }
                .build(nal.iter().copied())
                .unwrap();
                if is_slice {
                    frame += 1;
                }
                (packet, is_slice)
            })
            .collect()
    }

    fn track() -> VideoTrack {
        VideoTrack::new(&Offered {
            index: 0,
            caps: gst::Caps::new_empty_simple("application/x-rtp"),
            media: "video".into(),
            encoding: "H264".into(),
            clock_rate: 90_000,
            fmtp: Some("packetization-mode=1".into()),
        })
        .unwrap()
    }

    #[test]
    fn whole_frames_come_out_with_parameter_sets_before_each_keyframe() {
        gst::init().unwrap();
        let mut track = track();
        let mut session = SessionTimeline::default();
        let samples: Vec<gst::Sample> = packets()
            .into_iter()
            .filter_map(|(packet, _)| {
                // Each packet arrives when its frame was captured, 5 s into the run.
                let arrival = 5_000_000_000 + packet.timestamp().elapsed() as u64 * 1_000_000 / 90;
                track.push(packet, &mut session, arrival)
            })
            .collect();
        assert_eq!(samples.len(), 4, "one sample per frame");
        let s = samples[0].caps().unwrap().structure(0).unwrap();
        assert_eq!(s.name(), "video/x-h264");
        assert_eq!(s.get::<&str>("stream-format").unwrap(), "avc");
        assert_eq!(
            (
                s.get::<i32>("width").unwrap(),
                s.get::<i32>("height").unwrap()
            ),
            (64, 48)
        );
        assert!(
            s.get::<gst::Buffer>("codec_data").is_ok(),
            "avcC for muxers and payloaders"
        );
        let keyframes: Vec<bool> = samples
            .iter()
            .map(|s| {
                !s.buffer()
                    .unwrap()
                    .flags()
                    .contains(gst::BufferFlags::DELTA_UNIT)
            })
            .collect();
        assert_eq!(keyframes, [true, false, false, true]);
        // Length-prefixed NAL units; each keyframe starts with its SPS (type 7) and PPS (8).
        for keyframe in [&samples[0], &samples[3]] {
            let map = keyframe.buffer().unwrap().map_readable().unwrap();
            let first_len = u32::from_be_bytes(map[..4].try_into().unwrap()) as usize;
            assert_eq!(map[4] & 0x1f, 7, "SPS first");
            assert_eq!(map[4 + first_len + 4] & 0x1f, 8, "then PPS");
        }
        let pts: Vec<u64> = samples
            .iter()
            .map(|s| s.buffer().unwrap().pts().unwrap().nseconds())
            .collect();
        assert_eq!(pts[1] - pts[0], 40_000_000, "the camera's spacing: 25 fps");
        assert_eq!(pts[3] - pts[2], 40_000_000);
    }

    #[test]
    fn a_broken_frame_is_dropped_and_video_resumes_at_the_next_keyframe() {
        gst::init().unwrap();
        let mut track = track();
        let mut session = SessionTimeline::default();
        let mut delivered = Vec::new();
        for (i, (packet, _)) in packets().into_iter().enumerate() {
            let broken = if i == 4 {
                // The first P-frame's slice, as a type-28 (FU-A) packet that is only a middle
                // fragment: the second P-frame refers to it and must not be decoded either.
                let raw = packet.payload();
                let mut fragment = vec![(raw[0] & 0xe0) | 28, raw[0] & 0x1f];
                fragment.extend_from_slice(&raw[1..]);
                Some(
                    ReceivedPacketBuilder {
                        ctx: retina::PacketContext::dummy(),
                        stream_id: 0,
                        sequence_number: packet.sequence_number(),
                        timestamp: packet.timestamp(),
                        payload_type: 96,
                        ssrc: 1,
                        mark: true,
                        loss: 0,
                    }
                    .build(fragment)
                    .unwrap(),
                )
            } else {
                None
            };
            let packet = broken.unwrap_or(packet);
            if let Some(sample) = track.push(packet, &mut session, 1_000_000 * i as u64) {
                delivered.push(
                    !sample
                        .buffer()
                        .unwrap()
                        .flags()
                        .contains(gst::BufferFlags::DELTA_UNIT),
                );
            }
        }
        assert_eq!(
            delivered,
            [true, true],
            "the keyframes, and nothing that refers to the broken frame"
        );
    }

    #[test]
    fn every_irap_picture_of_h265_is_a_keyframe_and_nothing_else() {
        // Length-prefixed NAL units; the header's first byte holds the type in bits 1-6.
        let frame = |types: &[u8]| -> Vec<u8> {
            types
                .iter()
                .flat_map(|t| [0, 0, 0, 3, t << 1, 1, 0xaa])
                .collect()
        };
        for (irap, name) in [
            (19, "IDR_W_RADL"),
            (20, "IDR_N_LP"),
            (21, "CRA"),
            (16, "BLA_W_LP"),
        ] {
            assert!(holds_h265_irap(&frame(&[32, 33, 34, irap])), "{name}");
        }
        for (other, name) in [
            (1, "TRAIL_R"),
            (0, "TRAIL_N"),
            (8, "RASL_N"),
            (39, "prefix SEI"),
        ] {
            assert!(!holds_h265_irap(&frame(&[39, other])), "{name}");
        }
        assert!(
            !holds_h265_irap(&[0, 0, 0, 9, 21 << 1]),
            "a truncated NAL unit"
        );
        assert!(!holds_h265_irap(&[]));
    }
}

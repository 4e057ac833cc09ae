//! The camera's video, from RTP packets to whole access units for the hub, in the thread that
//! read them: depacketized by retina, timed on the session's timeline, passed through untouched.

use super::quirks;
use super::timeline::{SessionTimeline, TrackTimeline};
use super::tracks::Offered;
use crate::error::{Error, ErrorKind};
use gstreamer as gst;
use retina::codec::{CodecItem, Depacketizer, VideoFrame, VideoParameters};
use retina::rtp::ReceivedPacket;

pub(super) struct VideoTrack {
    offered: Offered,
    depacketizer: Depacketizer,
    timeline: Option<TrackTimeline>,
    /// The caps of the current parameters, set on every frame.
    caps: Option<gst::Caps>,
    /// Set after a broken frame: nothing is delivered until the next keyframe.
    broken: bool,
}

impl VideoTrack {
    pub fn new(offered: &Offered) -> Result<VideoTrack, Error> {
        Ok(VideoTrack {
            depacketizer: depacketizer(offered)?,
            offered: offered.clone(),
            timeline: None,
            caps: None,
            broken: false,
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
        tracing::debug!("camera video packet dropped ({error}); waiting for the next keyframe");
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
        let keyframe = frame.is_random_access_point();
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
        let mut buffer = gst::Buffer::from_mut_slice(frame.into_data());
        {
            let buffer = buffer.get_mut().expect("a new buffer is writable");
            buffer.set_pts(gst::ClockTime::from_nseconds(pts));
            if !keyframe {
                buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        Some(gst::Sample::builder().buffer(&buffer).caps(caps).build())
    }
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

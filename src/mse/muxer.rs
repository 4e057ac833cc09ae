//! One camera's fragmented MP4 for one codec set, shared by every MSE viewer of it: the frames
//! are muxed once, and each viewer gets the same fragments (reference-counted bytes) through a
//! queue of its own that drops whole fragments when the viewer falls behind.

use super::fmp4::{self, Codec, Run, Sample, TrackInfo};
use super::timing::{AudioTiming, VideoTiming};
use crate::media::hub::{ConsumerLink, FrameQueue, Hub, Layout, Track};
use bytes::Bytes;
use gstreamer as gst;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;

/// The most media a viewer may have waiting before it drops fragments until the next keyframe:
/// more than the hub's 500 ms, as a tunnel's bursts are longer than a LAN's.
pub const MAX_VIEWER_QUEUE: gst::ClockTime = gst::ClockTime::from_seconds(2);

/// A joining viewer's burst: the cached GOP restamped this far apart, ending at the newest frame,
/// as the hub does for its own consumers.
const BURST_SPACING_MS: u64 = 2;

pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Where the muxer takes its frames: the camera's hub for both tracks, or a transcoder's output
/// for video with the camera's audio.
pub struct Sources {
    pub video: Arc<Hub>,
    pub audio: Option<Arc<Hub>>,
}

/// A video frame of the GOP so far, as muxed.
struct Cached {
    sample: gst::Sample,
    decode_time: u64,
    duration: u32,
    keyframe: bool,
}

struct State {
    gop: Vec<Cached>,
    viewers: Vec<Weak<ViewerQueue>>,
    sequence: u32,
    video: VideoTiming,
    audio: Option<AudioTiming>,
    /// Audio since the last fragment: it goes out with the next video frame.
    pending_audio: Vec<(gst::Sample, u64)>,
    /// The video caps last checked against the init segment (the same object frame after frame).
    checked_caps: Option<gst::Caps>,
    ended: bool,
}

pub struct Muxer {
    /// `video/mp4; codecs="…"`, as the browser's `addSourceBuffer` takes it.
    pub mime: String,
    init: Bytes,
    tracks: Vec<TrackInfo>,
    state: Mutex<State>,
}

/// The tracks of `layout` as fMP4 describes them; audio only when `audio`.
pub fn tracks(layout: &Layout, audio: bool) -> Result<Vec<TrackInfo>, String> {
    let video = layout.video.structure(0).ok_or("video without caps")?;
    let record = codec_data(video)?;
    let codec = match video.name().as_str() {
        "video/x-h264" => Codec::H264 { avcc: record },
        "video/x-h265" => Codec::H265 { hvcc: record },
        other => return Err(format!("{other} cannot go into MP4")),
    };
    let size = |field| video.get::<i32>(field).unwrap_or(0).clamp(0, 65535) as u16;
    let mut tracks = vec![TrackInfo {
        codec,
        timescale: VIDEO_TIMESCALE,
        width: size("width"),
        height: size("height"),
    }];
    if let (true, Some(caps)) = (audio, &layout.audio) {
        let s = caps.structure(0).ok_or("audio without caps")?;
        let config = codec_data(s)?;
        tracks.push(TrackInfo {
            codec: Codec::Aac {
                config,
                channels: s.get::<i32>("channels").unwrap_or(1).clamp(1, 8) as u16,
            },
            timescale: s
                .get::<i32>("rate")
                .map_err(|_| "AAC caps without rate")?
                .max(1) as u32,
            width: 0,
            height: 0,
        });
    }
    Ok(tracks)
}

/// The codec record (`avcC`, `hvcC`, AudioSpecificConfig) the caps carry.
fn codec_data(caps: &gst::StructureRef) -> Result<Vec<u8>, String> {
    let record = caps
        .get::<gst::Buffer>("codec_data")
        .map_err(|_| format!("{} caps without codec_data", caps.name()))?;
    let map = record.map_readable().map_err(|e| e.to_string())?;
    Ok(map.to_vec())
}

/// The MIME type with the tracks' codecs.
pub fn mime(tracks: &[TrackInfo]) -> Option<String> {
    let codecs: Option<Vec<String>> = tracks.iter().map(TrackInfo::codec_string).collect();
    Some(format!("video/mp4; codecs=\"{}\"", codecs?.join(",")))
}

impl Muxer {
    /// Starts muxing `tracks` from `sources`; it runs while a viewer holds it, until the
    /// camera's stream is ended (MQTT OFF), and then ends its viewers' streams.
    pub fn start(tracks: Vec<TrackInfo>, sources: Sources) -> Result<Arc<Muxer>, String> {
        let muxer = Arc::new(Muxer::new(tracks)?);
        let video_queue = Arc::new(FrameQueue::default());
        let with_audio = muxer.tracks.len() > 1;
        let mut links = Vec::new();
        let audio_queue = match (&sources.audio, with_audio) {
            (Some(camera), true) => {
                links.push(sources.video.add_queue_consumer(&video_queue, false));
                let queue = Arc::new(FrameQueue::default());
                links.push(camera.add_queue_consumer(&queue, true));
                Some(queue)
            }
            _ => {
                links.push(sources.video.add_queue_consumer(&video_queue, with_audio));
                None
            }
        };
        tokio::spawn(run(Arc::downgrade(&muxer), video_queue, audio_queue, links));
        Ok(muxer)
    }

    /// The muxer of `tracks`, fed by nothing yet.
    fn new(tracks: Vec<TrackInfo>) -> Result<Muxer, String> {
        let mime = mime(&tracks).ok_or("a codec record too short to name its codec")?;
        let audio = tracks.get(1).map(|t| AudioTiming::new(t.timescale));
        Ok(Muxer {
            mime,
            init: Bytes::from(fmp4::init_segment(&tracks)),
            tracks,
            state: Mutex::new(State {
                gop: Vec::new(),
                viewers: Vec::new(),
                sequence: 0,
                video: VideoTiming::new(VIDEO_TIMESCALE),
                audio,
                pending_audio: Vec::new(),
                checked_caps: None,
                ended: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new viewer: it gets the init segment, the GOP so far as one burst, then live fragments.
    pub fn join(&self) -> Arc<ViewerQueue> {
        let queue = Arc::new(ViewerQueue::default());
        let mut state = self.lock();
        queue.push(self.init.clone(), 0, true);
        if state.ended {
            queue.end();
            return queue;
        }
        if let Some(burst) = self.burst(&mut state) {
            queue.push(burst, 0, true);
        }
        state.viewers.push(Arc::downgrade(&queue));
        queue
    }

    /// The cached GOP as one fragment: every frame but the newest restamped a few ms apart just
    /// before it, so the viewer decodes them at once and plays on from live.
    fn burst(&self, state: &mut State) -> Option<Bytes> {
        let (newest, cached) = state.gop.split_last()?;
        let spacing = BURST_SPACING_MS * u64::from(VIDEO_TIMESCALE) / 1000;
        let first = newest
            .decode_time
            .checked_sub(spacing * cached.len() as u64)?;
        let maps: Vec<_> = state
            .gop
            .iter()
            .map(|c| c.sample.buffer().and_then(|b| b.map_readable().ok()))
            .collect::<Option<_>>()?;
        let samples = state
            .gop
            .iter()
            .zip(&maps)
            .enumerate()
            .map(|(i, (frame, map))| Sample {
                data: map.as_slice(),
                duration: if i + 1 == maps.len() {
                    frame.duration
                } else {
                    spacing as u32
                },
                sync: frame.keyframe,
            })
            .collect();
        state.sequence += 1;
        let run = Run {
            track_id: 1,
            decode_time: first,
            samples,
        };
        Some(Bytes::from(fmp4::fragment(state.sequence, &[run])))
    }

    /// Takes one frame from the sources; false when the camera's video no longer matches the
    /// init segment (it came back with other parameters), which ends this muxer.
    fn frame(&self, track: Track, sample: gst::Sample) -> bool {
        let mut state = self.lock();
        state.viewers.retain(|v| v.strong_count() > 0);
        let Some(pts) = sample.buffer().and_then(|b| b.pts()) else {
            return true;
        };
        match track {
            Track::Audio => {
                let State {
                    audio,
                    pending_audio,
                    ..
                } = &mut *state;
                if let Some(timing) = audio {
                    let decode_time = timing.place(pts.nseconds());
                    pending_audio.push((sample, decode_time));
                }
            }
            Track::Video => {
                if let Some(caps) = sample.caps()
                    && state
                        .checked_caps
                        .as_ref()
                        .is_none_or(|checked| checked.as_ptr() != caps.as_ptr())
                {
                    if !self.describes(caps) {
                        return false;
                    }
                    state.checked_caps = Some(caps.to_owned());
                }
                let keyframe = sample
                    .buffer()
                    .is_some_and(|b| !b.flags().contains(gst::BufferFlags::DELTA_UNIT));
                if state.gop.is_empty() && !keyframe {
                    return true;
                }
                let (decode_time, duration) = state.video.place(pts.nseconds());
                if keyframe {
                    state.gop.clear();
                }
                state.gop.push(Cached {
                    sample,
                    decode_time,
                    duration,
                    keyframe,
                });
                self.send_fragment(&mut state);
            }
        }
        true
    }

    /// Whether `caps` carry the codec record the init segment was made with.
    fn describes(&self, caps: &gst::CapsRef) -> bool {
        let record = caps
            .structure(0)
            .and_then(|s| s.get::<gst::Buffer>("codec_data").ok());
        let record = record.as_ref().and_then(|b| b.map_readable().ok());
        match (&self.tracks[0].codec, record) {
            (Codec::H264 { avcc: ours } | Codec::H265 { hvcc: ours }, Some(theirs)) => {
                ours.as_slice() == theirs.as_slice()
            }
            _ => false,
        }
    }

    /// The newest video frame, with the audio since the last one, to every viewer.
    fn send_fragment(&self, state: &mut State) {
        let Some(frame) = state.gop.last() else {
            return;
        };
        let Some(video) = frame.sample.buffer().and_then(|b| b.map_readable().ok()) else {
            return;
        };
        let audio: Vec<_> = state
            .pending_audio
            .drain(..)
            .filter_map(|(sample, time)| {
                let map = sample.buffer_owned()?.into_mapped_buffer_readable().ok()?;
                Some((map, time))
            })
            .collect();
        let mut runs = vec![Run {
            track_id: 1,
            decode_time: frame.decode_time,
            samples: vec![Sample {
                data: video.as_slice(),
                duration: frame.duration,
                sync: frame.keyframe,
            }],
        }];
        if let Some((_, first)) = audio.first() {
            runs.push(Run {
                track_id: 2,
                decode_time: *first,
                samples: audio
                    .iter()
                    .map(|(map, _)| Sample {
                        data: map.as_slice(),
                        duration: super::timing::AAC_FRAME,
                        sync: true,
                    })
                    .collect(),
            });
        }
        state.sequence += 1;
        let bytes = Bytes::from(fmp4::fragment(state.sequence, &runs));
        let duration = u64::from(frame.duration) * 1_000_000_000 / u64::from(VIDEO_TIMESCALE);
        let keyframe = frame.keyframe;
        for viewer in state.viewers.iter().filter_map(Weak::upgrade) {
            viewer.push(bytes.clone(), duration, keyframe);
        }
    }

    fn end(&self) {
        let mut state = self.lock();
        state.ended = true;
        for viewer in state.viewers.drain(..).filter_map(|v| v.upgrade()) {
            viewer.end();
        }
    }

    /// Its stream ended: a new viewer needs a new muxer.
    pub fn is_ended(&self) -> bool {
        self.lock().ended
    }

    /// Viewers watching now.
    pub fn viewers(&self) -> usize {
        self.lock()
            .viewers
            .iter()
            .filter(|v| v.strong_count() > 0)
            .count()
    }
}

/// The muxer's task: frames in, fragments out, until the last viewer lets go of the muxer or
/// the stream ends.
async fn run(
    muxer: Weak<Muxer>,
    video: Arc<FrameQueue>,
    audio: Option<Arc<FrameQueue>>,
    _links: Vec<ConsumerLink>,
) {
    loop {
        let more = match &audio {
            Some(audio) => tokio::select! {
                more = video.ready() => more,
                more = audio.ready() => more,
            },
            None => video.ready().await,
        };
        let Some(muxer) = muxer.upgrade() else {
            return;
        };
        if !more {
            muxer.end();
            return;
        }
        let from_audio_source = audio.as_ref().map(|a| a.take()).unwrap_or_default();
        let audio_frames = from_audio_source
            .into_iter()
            .filter(|(track, _)| *track == Track::Audio);
        let frames = video.take().into_iter().chain(audio_frames);
        for (track, sample) in frames {
            if !muxer.frame(track, sample) {
                tracing::info!(
                    "the camera's video changed: its MSE viewers start again with a new init segment"
                );
                muxer.end();
                return;
            }
        }
    }
}

/// One viewer's fragments, waiting to be sent.
#[derive(Default)]
pub struct ViewerQueue {
    queued: Mutex<Queued>,
    arrived: Notify,
}

#[derive(Default)]
struct Queued {
    fragments: VecDeque<(Bytes, u64)>,
    /// Nanoseconds of media waiting.
    waiting: u64,
    /// Fell behind: fragments are dropped until the next keyframe.
    skipping: bool,
    dropped: u64,
    ended: bool,
}

impl ViewerQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a fragment of `duration` ns; a viewer with more than [`MAX_VIEWER_QUEUE`] waiting
    /// drops it, and every fragment after it up to the next keyframe's.
    pub(super) fn push(&self, fragment: Bytes, duration: u64, keyframe: bool) {
        let mut queued = self.lock();
        if queued.ended {
            return;
        }
        if queued.waiting > MAX_VIEWER_QUEUE.nseconds() {
            queued.skipping = true;
        } else if keyframe {
            queued.skipping = false;
        }
        if queued.skipping {
            queued.dropped += 1;
            return;
        }
        queued.waiting += duration;
        queued.fragments.push_back((fragment, duration));
        drop(queued);
        self.arrived.notify_one();
    }

    fn end(&self) {
        self.lock().ended = true;
        self.arrived.notify_one();
    }

    /// The next fragment, or `None` once the stream ended (MQTT OFF, the camera's caps changed).
    pub async fn next(&self) -> Option<Bytes> {
        loop {
            let notified = self.arrived.notified();
            {
                let mut queued = self.lock();
                if let Some((fragment, duration)) = queued.fragments.pop_front() {
                    queued.waiting -= duration;
                    return Some(fragment);
                }
                if queued.ended {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Fragments dropped because the viewer fell behind.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u64 = 40_000_000;

    fn h264_caps(avcc: &[u8]) -> gst::Caps {
        gst::Caps::builder("video/x-h264")
            .field("codec_data", gst::Buffer::from_slice(avcc.to_vec()))
            .build()
    }

    #[test]
    fn a_camera_back_with_other_parameters_no_longer_matches_the_init_segment() {
        gst::init().unwrap();
        let layout = Layout {
            video: h264_caps(&[1, 0x64, 0, 0x29, 0xff]),
            audio: None,
        };
        let muxer = Muxer::new(tracks(&layout, false).unwrap()).unwrap();
        assert_eq!(muxer.mime, "video/mp4; codecs=\"avc1.640029\"");
        assert!(muxer.describes(&h264_caps(&[1, 0x64, 0, 0x29, 0xff])));
        assert!(!muxer.describes(&h264_caps(&[1, 0x4d, 0, 0x1f, 0xff])));
        assert!(!muxer.describes(&gst::Caps::builder("video/x-h264").build()));
    }

    #[tokio::test]
    async fn a_viewer_that_falls_behind_drops_whole_fragments_until_a_keyframe() {
        let queue = ViewerQueue::default();
        let fragment = |n: u8| Bytes::from(vec![n]);
        // 2 s of frames queue; the next is dropped, and so is every one up to a keyframe.
        for n in 0..=50 {
            queue.push(fragment(n), FRAME, n == 0);
        }
        queue.push(fragment(51), FRAME, false);
        queue.push(fragment(52), FRAME, false);
        assert_eq!(queue.dropped(), 2);
        // The viewer catches up, but a P-frame without its reference is no use: still dropped.
        for _ in 0..=50 {
            queue.next().await.unwrap();
        }
        queue.push(fragment(53), FRAME, false);
        assert_eq!(queue.dropped(), 3);
        queue.push(fragment(54), FRAME, true);
        queue.push(fragment(55), FRAME, false);
        assert_eq!(queue.next().await.unwrap()[0], 54);
        assert_eq!(queue.next().await.unwrap()[0], 55);
        // The stream's end reaches a waiting viewer.
        queue.end();
        assert!(queue.next().await.is_none());
    }
}

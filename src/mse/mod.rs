//! Live video as fragmented MP4, for Media Source Extensions (go2rtc's `{"type":"mse"}` on
//! `/api/ws`) and for `GET /api/stream.mp4`: the path that goes anywhere HTTP goes (HA's ingress,
//! a Cloudflare tunnel, a carrier NAT), where WebRTC finds no UDP path.
//!
//! - `fmp4`: the boxes (pure);
//! - `timing`: each frame's place on the MP4 timeline (pure);
//! - `muxer`: one camera's fragments for one codec set, shared by its viewers, each with a queue
//!   that drops whole fragments when it falls behind.

pub mod fmp4;
mod muxer;
mod timing;

pub use muxer::{MAX_VIEWER_QUEUE, ViewerQueue};

use crate::camera::demand::{Demand, Lease, Purpose};
use crate::error::{Error, ErrorKind};
use crate::media::hub::Hub;
use muxer::{Muxer, Sources};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// MSE viewers a camera takes at once: each costs a socket and its queue, not a muxer, but a
/// household never needs more and a runaway page must not take the add-on's memory.
pub const MAX_VIEWERS: usize = 16;

/// What a client can play: go2rtc's clients list codec strings (`avc1.640029,hvc1.1.6.L153.B0,
/// mp4a.40.2,…`); a client that lists nothing (a plain HTTP player) is taken to play H.264 and
/// AAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts {
    pub h265: bool,
    pub aac: bool,
}

impl Accepts {
    pub fn from_codecs(codecs: &str) -> Accepts {
        let listed: Vec<&str> = codecs
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        if listed.is_empty() {
            return Accepts {
                h265: false,
                aac: true,
            };
        }
        Accepts {
            h265: listed
                .iter()
                .any(|c| c.starts_with("hvc1") || c.starts_with("hev1")),
            aac: listed.iter().any(|c| c.starts_with("mp4a.40")),
        }
    }
}

/// The video a viewer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VideoForm {
    /// The camera's own H.264 or H.265.
    AsItCame,
    /// H.265 made H.264 by the transcoder WebRTC shares.
    H264FromH265,
}

#[cfg(feature = "webrtc")]
type Transcoder = Arc<crate::webrtc::transcode::H264Feed>;
#[cfg(feature = "webrtc")]
type TranscodeSeat = crate::webrtc::transcode::TranscodeSeat;
#[cfg(not(feature = "webrtc"))]
type Transcoder = std::convert::Infallible;
#[cfg(not(feature = "webrtc"))]
type TranscodeSeat = std::convert::Infallible;

/// What a muxer makes: its video, and whether it carries audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CodecSet {
    video: VideoForm,
    audio: bool,
}

type Muxers = Vec<(CodecSet, Weak<Muxer>)>;

/// One camera's MSE viewers and the muxers they share.
pub struct MseCamera {
    pub camera: String,
    hub: Arc<Hub>,
    demand: Demand,
    start_timeout: Duration,
    transcoder: Option<Transcoder>,
    muxers: Mutex<Muxers>,
}

/// A viewer's place: its fragments, and what keeps the camera and its muxer running.
pub struct MseViewer {
    /// `video/mp4; codecs="…"` for the client's `addSourceBuffer`.
    pub mime: String,
    pub fragments: Arc<ViewerQueue>,
    _muxer: Arc<Muxer>,
    _transcode: Option<TranscodeSeat>,
    _lease: Lease,
}

impl MseCamera {
    pub fn new(
        camera: &str,
        hub: Arc<Hub>,
        demand: Demand,
        start_timeout: Duration,
        transcoder: Option<Transcoder>,
    ) -> Arc<MseCamera> {
        Arc::new(MseCamera {
            camera: camera.to_string(),
            hub,
            demand,
            start_timeout,
            transcoder,
            muxers: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Muxers> {
        self.muxers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// MSE viewers watching now.
    pub fn viewers(&self) -> usize {
        self.lock()
            .iter()
            .filter_map(|(_, m)| m.upgrade())
            .map(|m| m.viewers())
            .sum()
    }

    /// A new viewer, once the camera delivers (waking it if idle). The error says why not: too
    /// many viewers, a camera that does not answer, H.265 the client cannot play.
    pub async fn join(self: &Arc<Self>, accepts: Accepts) -> Result<MseViewer, Error> {
        if self.viewers() >= MAX_VIEWERS {
            return Err(Error::new(
                ErrorKind::Transient,
                format!(
                    "this camera has {MAX_VIEWERS} MSE viewers, the most it takes; close one and try again"
                ),
            ));
        }
        let lease = self.demand.lease(Purpose::MseViewer);
        let layout = self.hub.ready(self.start_timeout).await?;
        let h265 = layout.video.structure(0).map(|s| s.name().as_str()) == Some("video/x-h265");
        let form = if h265 && !accepts.h265 {
            VideoForm::H264FromH265
        } else {
            VideoForm::AsItCame
        };
        let audio = accepts.aac && layout.audio.is_some();
        let (transcode, video_hub) = self.video_source(form)?;
        let video_layout = match form {
            VideoForm::AsItCame => layout.clone(),
            VideoForm::H264FromH265 => {
                let transcoded = video_hub.ready(self.start_timeout).await?;
                crate::media::hub::Layout {
                    video: transcoded.video,
                    audio: layout.audio.clone(),
                }
            }
        };
        let muxer = self.muxer(form, audio, &video_layout, video_hub)?;
        Ok(MseViewer {
            mime: muxer.mime.clone(),
            fragments: muxer.join(),
            _muxer: muxer,
            _transcode: transcode,
            _lease: lease,
        })
    }

    #[cfg_attr(not(feature = "webrtc"), allow(clippy::unnecessary_wraps))]
    fn video_source(&self, form: VideoForm) -> Result<(Option<TranscodeSeat>, Arc<Hub>), Error> {
        match (form, &self.transcoder) {
            (VideoForm::AsItCame, _) => Ok((None, self.hub.clone())),
            #[cfg(feature = "webrtc")]
            (VideoForm::H264FromH265, Some(transcoder)) => {
                Ok((Some(transcoder.join()?), transcoder.output().clone()))
            }
            _ => Err(Error::new(
                ErrorKind::Unsupported,
                "the camera sends H.265, which this client cannot play, and this build has no transcoder",
            )),
        }
    }

    /// The running muxer for this codec set, or a new one.
    fn muxer(
        &self,
        form: VideoForm,
        audio: bool,
        layout: &crate::media::hub::Layout,
        video_hub: Arc<Hub>,
    ) -> Result<Arc<Muxer>, Error> {
        let mut muxers = self.lock();
        muxers.retain(|(_, m)| m.strong_count() > 0);
        let key = CodecSet { video: form, audio };
        if let Some(muxer) = muxers
            .iter()
            .filter(|(k, _)| *k == key)
            .filter_map(|(_, m)| m.upgrade())
            .find(|m| !m.is_ended())
        {
            return Ok(muxer);
        }
        let invalid = |e: String| Error::new(ErrorKind::Unsupported, e);
        let tracks = muxer::tracks(layout, audio).map_err(invalid)?;
        let sources = Sources {
            audio: (form == VideoForm::H264FromH265).then(|| self.hub.clone()),
            video: video_hub,
        };
        let muxer = Muxer::start(tracks, sources).map_err(invalid)?;
        tracing::info!(camera = %self.camera, "MSE muxer started: {}", muxer.mime);
        muxers.push((key, Arc::downgrade(&muxer)));
        Ok(muxer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_plays_what_it_lists_and_a_plain_player_h264_and_aac() {
        let chrome = Accepts::from_codecs(
            "avc1.640029,avc1.64002A,avc1.640033,mp4a.40.2,mp4a.40.5,flac,opus",
        );
        assert_eq!(
            chrome,
            Accepts {
                h265: false,
                aac: true
            }
        );
        let safari = Accepts::from_codecs("avc1.640029,hvc1.1.6.L153.B0,mp4a.40.2");
        assert_eq!(
            safari,
            Accepts {
                h265: true,
                aac: true
            }
        );
        let video_only = Accepts::from_codecs("avc1.640029");
        assert_eq!(
            video_only,
            Accepts {
                h265: false,
                aac: false
            }
        );
        assert_eq!(
            Accepts::from_codecs(""),
            Accepts {
                h265: false,
                aac: true
            }
        );
    }
}

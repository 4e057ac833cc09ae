//! One WebRTC viewer: its own `appsrc ! pay ! webrtcbin` pipeline fed by the hub, so a slow
//! viewer never stalls the camera or the other viewers. Video is passed through (H.264, or H.265
//! to a browser that takes it) or comes from the camera's shared H.264 transcoder; audio is the
//! camera's G.711 passed through, or its shared Opus feed.
//!
//! Signalling is one round trip (WHEP and go2rtc's `/api/webrtc`): the browser's offer in, an
//! answer with every local candidate out. The session ends when the peer connection fails or
//! closes, or on `DELETE`.

use super::opus::{FeedSeat, OpusFeed};
use super::sdp::{AudioSend, CameraMedia, Plan, VideoSend, parse_offer};
use super::transcode::{H264Feed, TranscodeSeat};
use crate::camera::demand::{Demand, Lease, Purpose};
use crate::config::{H265ToH264, WebrtcConfig};
use crate::error::{Error, ErrorKind};
use crate::media::hub::{AudioForm, ConsumerLink, Hub};
use crate::media::pipeline::{MediaClock, PipelineGuard};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// A peer that sent no RTCP for this long is gone (a closed tab sends no BYE).
const PEER_SILENCE: Duration = Duration::from_secs(8);
/// Host candidates gather in milliseconds; STUN may take a moment.
const GATHER_WAIT: Duration = Duration::from_secs(3);
const SIGNAL_WAIT: Duration = Duration::from_secs(5);

/// A camera's WebRTC side: its viewers' sessions and its Opus feed.
pub struct WebrtcCamera {
    pub camera: String,
    hub: Arc<Hub>,
    demand: Demand,
    clock: MediaClock,
    start_timeout: Duration,
    config: WebrtcConfig,
    h265_to_h264: H265ToH264,
    opus: Arc<OpusFeed>,
    h264: Arc<H264Feed>,
    sessions: Mutex<HashMap<u64, Session>>,
}

/// A session's id is its `DELETE /api/webrtc/<id>` capability: unguessable, so one client cannot
/// end another's viewer. std's `RandomState` is keyed from the OS's randomness.
fn new_session_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// Everything one viewer holds; dropping it ends the viewer. Its fields drop in order: off the
/// hubs first, then the pipeline is stopped (on our own thread, never a streaming thread).
struct Session {
    webrtc: gst::Element,
    /// Its place in the camera's hub, or the transcoder's.
    _video: ConsumerLink,
    /// The camera's G.711, passed through.
    _g711: Option<ConsumerLink>,
    _pipeline: PipelineGuard,
    _opus: Option<FeedSeat>,
    _lease: Lease,
    _transcode: Option<TranscodeSeat>,
}

impl WebrtcCamera {
    pub fn new(
        camera: &str,
        hub: Arc<Hub>,
        demand: Demand,
        clock: MediaClock,
        start_timeout: Duration,
        config: WebrtcConfig,
        h265_to_h264: H265ToH264,
    ) -> Arc<Self> {
        Arc::new(Self {
            camera: camera.to_string(),
            opus: OpusFeed::new(hub.clone()),
            h264: H264Feed::new(camera, hub.clone(), clock.clone()),
            hub,
            demand,
            clock,
            start_timeout,
            config,
            h265_to_h264,
            sessions: Mutex::default(),
        })
    }

    pub fn viewers(&self) -> usize {
        self.lock().len()
    }

    /// The camera's H.265 → H.264 transcoder, which MSE viewers share with WebRTC's.
    pub fn transcoder(&self) -> &Arc<H264Feed> {
        &self.h264
    }

    /// Answers a browser's offer (blocking: run it off the async runtime). Returns the answer
    /// SDP and the session id; an error's kind says whose fault it is (the HTTP status).
    pub fn answer(self: &Arc<Self>, offer: &str) -> Result<(String, u64), Error> {
        let internal = |message: String| Error::new(ErrorKind::Internal, message);
        let (offer, choice) = parse_offer(offer)?;
        let lease = self.demand.lease(Purpose::WebrtcViewer);
        let layout = self.hub.wait_ready(self.start_timeout)?;
        let camera = CameraMedia {
            h265: layout.video.structure(0).map(|s| s.name().as_str()) == Some("video/x-h265"),
            has_audio: layout.audio.is_some(),
            g711: self.hub.g711(),
        };
        let plan = super::sdp::plan(&choice, camera, self.h265_to_h264)?;
        let (transcode, video_hub) = match plan.video.0 {
            VideoSend::H264FromH265 => {
                let seat = self.h264.join()?;
                let output = self.h264.output().clone();
                output.wait_ready(self.start_timeout)?;
                (Some(seat), output)
            }
            VideoSend::H264 | VideoSend::H265 => (None, self.hub.clone()),
        };
        let id = new_session_id();
        let (pipeline, webrtc, video, audio) = self.viewer_pipeline(&plan).map_err(internal)?;
        self.clock.apply(&pipeline);
        let guard = PipelineGuard::new(pipeline);
        guard
            .pipeline()
            .set_state(gst::State::Playing)
            .map_err(|_| internal("cannot start the WebRTC pipeline".into()))?;
        let answer =
            negotiate(guard.pipeline(), &webrtc, offer, &plan, &self.config).map_err(internal)?;
        let (mut opus, mut g711) = (None, None);
        if let (Some((send, _)), Some(audio)) = (plan.audio, &audio) {
            match send {
                AudioSend::Opus => opus = Some(self.opus.join(audio)?),
                AudioSend::Pcma | AudioSend::Pcmu => {
                    g711 = Some(self.hub.add_audio_tap(audio, AudioForm::G711))
                }
            }
        }
        let session = Session {
            webrtc: webrtc.clone(),
            _video: video_hub.add_consumer(&video, None),
            _g711: g711,
            _pipeline: guard,
            _opus: opus,
            _lease: lease,
            _transcode: transcode,
        };
        self.watch_connection(&webrtc, id);
        self.watch_peer(&webrtc, id);
        self.lock().insert(id, session);
        tracing::info!(
            camera = %self.camera,
            "WebRTC viewer {id} connected ({} now): {}",
            self.viewers(),
            describe(&plan)
        );
        Ok((answer, id))
    }

    /// A candidate the browser trickled after its offer (go2rtc's `webrtc/candidate`).
    pub fn add_candidate(&self, id: u64, candidate: &str) -> bool {
        let webrtc = self.lock().get(&id).map(|s| s.webrtc.clone());
        let Some(webrtc) = webrtc else {
            return false;
        };
        let candidate = candidate.trim().trim_start_matches("a=");
        if !candidate.is_empty() {
            webrtc.emit_by_name::<()>("add-ice-candidate", &[&0u32, &candidate]);
        }
        true
    }

    /// Ends a session (WHEP `DELETE`); false if there was none.
    pub fn close(&self, id: u64) -> bool {
        let session = self.lock().remove(&id);
        let found = session.is_some();
        drop(session);
        if found {
            tracing::info!(camera = %self.camera, "WebRTC viewer {id} left ({} now)", self.viewers());
        }
        found
    }

    fn watch_connection(self: &Arc<Self>, webrtc: &gst::Element, id: u64) {
        let camera: Weak<Self> = Arc::downgrade(self);
        webrtc.connect_notify(Some("connection-state"), move |webrtc, _| {
            let state =
                webrtc.property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state");
            if matches!(
                state,
                gst_webrtc::WebRTCPeerConnectionState::Failed
                    | gst_webrtc::WebRTCPeerConnectionState::Closed
                    | gst_webrtc::WebRTCPeerConnectionState::Disconnected
            ) {
                let camera = camera.clone();
                // Tearing down from webrtcbin's own thread would deadlock.
                std::thread::spawn(move || {
                    if let Some(camera) = camera.upgrade() {
                        camera.close(id);
                    }
                });
            }
        });
    }

    /// Ends the session when the peer stops sending RTCP receiver reports or says BYE.
    fn watch_peer(self: &Arc<Self>, webrtc: &gst::Element, id: u64) {
        let Some(rtpbin) = webrtc
            .downcast_ref::<gst::Bin>()
            .and_then(|bin| bin.by_name("rtpbin"))
        else {
            return;
        };
        let heard = Arc::new(Mutex::new(Some(std::time::Instant::now())));
        let on_report = heard.clone();
        rtpbin.connect("on-ssrc-active", false, move |_| {
            if let Ok(mut heard) = on_report.lock() {
                *heard = Some(std::time::Instant::now());
            }
            None
        });
        let on_bye = heard.clone();
        rtpbin.connect("on-bye-ssrc", false, move |_| {
            if let Ok(mut heard) = on_bye.lock() {
                *heard = None;
            }
            None
        });
        let camera: Weak<Self> = Arc::downgrade(self);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let Some(camera) = camera.upgrade() else {
                    return;
                };
                if !camera.lock().contains_key(&id) {
                    return;
                }
                let silent = heard
                    .lock()
                    .map(|h| h.is_none_or(|at| at.elapsed() > PEER_SILENCE))
                    .unwrap_or(true);
                if silent {
                    tracing::debug!(camera = %camera.camera, "WebRTC viewer {id} went silent");
                    camera.close(id);
                    return;
                }
            }
        });
    }

    #[allow(clippy::type_complexity)]
    fn viewer_pipeline(
        &self,
        plan: &Plan,
    ) -> Result<
        (
            gst::Pipeline,
            gst::Element,
            gst_app::AppSrc,
            Option<gst_app::AppSrc>,
        ),
        String,
    > {
        // The payloaders end in named capsfilters; they are linked to webrtcbin once the offer
        // has made its transceivers (see `negotiate`).
        let (video, at) = plan.video;
        let (pay, encoding) = match video {
            VideoSend::H264 | VideoSend::H264FromH265 => (
                "rtph264pay config-interval=-1 aggregate-mode=zero-latency",
                "H264",
            ),
            VideoSend::H265 => ("rtph265pay config-interval=-1", "H265"),
        };
        let mut description = format!(
            "webrtcbin name=w bundle-policy=max-bundle latency=0 \
             appsrc name=v format=time is-live=true ! {pay} pt={pt} \
             ! capsfilter name=vpay caps=application/x-rtp,media=video,encoding-name={encoding},payload={pt},clock-rate=90000",
            pt = at.payload
        );
        if let Some((audio, at)) = plan.audio {
            let (pay, encoding, rate) = match audio {
                AudioSend::Opus => ("rtpopuspay", "OPUS", 48000),
                AudioSend::Pcma => ("rtppcmapay", "PCMA", 8000),
                AudioSend::Pcmu => ("rtppcmupay", "PCMU", 8000),
            };
            description += &format!(
                " appsrc name=a format=time is-live=true ! {pay} pt={pt} \
                 ! capsfilter name=apay caps=application/x-rtp,media=audio,encoding-name={encoding},payload={pt},clock-rate={rate}",
                pt = at.payload
            );
        }
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| format!("cannot build the WebRTC pipeline: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "the WebRTC pipeline is not a pipeline".to_string())?;
        let webrtc = pipeline.by_name("w").expect("named in the description");
        if let Some(stun) = &self.config.stun_server {
            webrtc.set_property("stun-server", stun);
        }
        if let Some((min, max)) = self.config.udp_ports {
            let ice = webrtc.property::<gst::glib::Object>("ice-agent");
            ice.set_property("min-rtp-port", u32::from(min));
            ice.set_property("max-rtp-port", u32::from(max));
        }
        for turn in &self.config.turn_servers {
            let _: bool = webrtc.emit_by_name("add-turn-server", &[&turn.expose()]);
        }
        let appsrc = |name: &str| pipeline.by_name(name).and_downcast::<gst_app::AppSrc>();
        let video = appsrc("v").expect("named in the description");
        Ok((pipeline.clone(), webrtc, video, appsrc("a")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Offer in, answer out, with ICE gathering complete so the answer carries every candidate.
fn negotiate(
    pipeline: &gst::Pipeline,
    webrtc: &gst::Element,
    offer: gst_sdp::SDPMessage,
    plan: &Plan,
    config: &WebrtcConfig,
) -> Result<String, String> {
    let offer = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Offer, offer);
    wait(|promise| {
        webrtc.emit_by_name::<()>("set-remote-description", &[&offer, promise]);
    })
    .map_err(|e| format!("the offer was refused: {e}"))?;
    // The offer made one transceiver per m-line; ours send on the video and audio ones.
    for (name, mline) in [
        ("vpay", Some(plan.video.1.mline)),
        ("apay", plan.audio.map(|(_, at)| at.mline)),
    ] {
        let (Some(payloader), Some(mline)) = (pipeline.by_name(name), mline) else {
            continue;
        };
        let sink = webrtc
            .request_pad_simple(&format!("sink_{mline}"))
            .ok_or_else(|| format!("webrtcbin has no input for m-line {mline}"))?;
        payloader
            .static_pad("src")
            .expect("a capsfilter has a src pad")
            .link(&sink)
            .map_err(|e| format!("cannot feed m-line {mline}: {e:?}"))?;
    }
    let reply = wait(|promise| {
        webrtc.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, promise]);
    })
    .map_err(|e| format!("no answer: {e}"))?;
    let answer = reply
        .and_then(|s| {
            s.value("answer")
                .ok()
                .and_then(|v| v.get::<gst_webrtc::WebRTCSessionDescription>().ok())
        })
        .ok_or("webrtcbin made no answer (no codec in common?)")?;
    wait(|promise| {
        webrtc.emit_by_name::<()>("set-local-description", &[&answer, promise]);
    })
    .map_err(|e| format!("the answer was refused: {e}"))?;
    let deadline = std::time::Instant::now() + GATHER_WAIT;
    while webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
        != gst_webrtc::WebRTCICEGatheringState::Complete
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let local = webrtc
        .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
        .ok_or("no local description")?;
    let answer = local
        .sdp()
        .as_text()
        .map_err(|e| format!("cannot write the answer: {e}"))?;
    Ok(super::sdp::add_public_candidates(
        &answer,
        &public_addresses(&config.candidates),
    ))
}

/// The configured public candidates as IP addresses (host names are looked up now, so a
/// dynamic DNS name follows the router's address).
fn public_addresses(candidates: &[String]) -> Vec<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    candidates
        .iter()
        .flat_map(|host| match (host.as_str(), 0).to_socket_addrs() {
            Ok(addresses) => addresses.map(|a| a.ip()).collect(),
            Err(e) => {
                tracing::warn!("public WebRTC candidate {host} cannot be resolved: {e}");
                Vec::new()
            }
        })
        .collect()
}

/// One line for the log: what this viewer is sent.
fn describe(plan: &Plan) -> String {
    let video = match plan.video.0 {
        VideoSend::H264 => "H.264 passed through",
        VideoSend::H265 => "H.265 passed through",
        VideoSend::H264FromH265 => "H.264 transcoded from H.265",
    };
    let audio = match plan.audio.map(|(send, _)| send) {
        Some(AudioSend::Opus) => "Opus audio",
        Some(AudioSend::Pcma) => "PCMA audio passed through",
        Some(AudioSend::Pcmu) => "PCMU audio passed through",
        None => "no audio",
    };
    format!("{video}, {audio}")
}

/// Runs `emit` with a promise and waits for its reply.
fn wait(emit: impl FnOnce(&gst::Promise)) -> Result<Option<gst::Structure>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let promise = gst::Promise::with_change_func(move |reply| {
        let reply = match reply {
            Ok(reply) => Ok(reply.map(|s| s.to_owned())),
            Err(e) => Err(format!("{e:?}")),
        };
        let _ = tx.send(reply);
    });
    emit(&promise);
    let reply = rx
        .recv_timeout(SIGNAL_WAIT)
        .map_err(|_| "webrtcbin did not answer in time".to_string())??;
    if let Some(error) = reply
        .as_ref()
        .and_then(|s| s.get::<glib_error::Error>("error").ok())
    {
        return Err(error.to_string());
    }
    Ok(reply)
}

mod glib_error {
    pub use gstreamer::glib::Error;
}

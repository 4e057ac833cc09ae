//! Cry detection for one camera: hub audio → decoder → patches → YAMNet → detector → MQTT.
//!
//! Runs on its own thread (inference and decoding block), holds a `CryDetection` lease so the
//! camera stays up, and reports through a `watch` (sensor state) and an `mpsc` (cry events).
//! MQTT OFF wins over the lease: detection pauses until something turns the stream on again.

use super::decode::{Pcm, Pull};
use super::detector::{CryEvent, Detector, DetectorConfig, Patch};
use super::yamnet::Yamnet;
use super::{Windows, rms_dbfs};
use crate::camera::CameraState;
use crate::camera::demand::{Demand, Lease, Purpose};
use crate::camera::state::Status;
use crate::config::CryConfig;
use crate::events::task::{EventRequest, EventsHandle};
use crate::media::hub::{AudioForm, Hub};
use crate::settings::Settings;
use crate::snapshot::policy::Kind;
use crate::snapshot::{Request, SnapshotHandle};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How long the loop waits for audio before it looks at the camera again.
const POLL: Duration = Duration::from_millis(500);
/// Audio missing this long means the stream stopped: a cry in progress ends.
const AUDIO_GAP: Duration = Duration::from_secs(3);
/// The confidence sensor changes at most this often.
const CONFIDENCE_EVERY: Duration = Duration::from_secs(1);

/// What cry detection is doing, for the info and sensor attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryStatus {
    Starting,
    Listening,
    /// MQTT OFF stopped the stream; detection resumes when it is turned on again.
    Paused,
    NoAudio,
    /// Cannot run (missing model or runtime); the text says what to do.
    Failed(String),
}

impl CryStatus {
    pub fn describe(&self) -> String {
        match self {
            CryStatus::Starting => "starting".into(),
            CryStatus::Listening => "listening".into(),
            CryStatus::Paused => "paused: the live stream was turned off".into(),
            CryStatus::NoAudio => "off: the camera sends no audio".into(),
            CryStatus::Failed(reason) => format!("off: {reason}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CryState {
    pub status: CryStatus,
    pub crying: bool,
    /// The detector's own probability (the mean it decides on), the highest of the last second,
    /// in percent; `None` before any audio.
    pub confidence: Option<u8>,
    /// The "Cry sensitivity" in force, in percent.
    pub sensitivity: u8,
    pub last_started_at: Option<SystemTime>,
    pub last_ended_at: Option<SystemTime>,
}

/// A cry started (`ended_at` is `None`) or ended; the bridge publishes it on the event topic.
#[derive(Debug, Clone, PartialEq)]
pub struct CryNotice {
    pub camera: String,
    pub confidence: f32,
    pub started_at: SystemTime,
    pub ended_at: Option<SystemTime>,
}

pub struct CryTask {
    pub camera: String,
    pub config: CryConfig,
    pub model: PathBuf,
    pub hub: Arc<Hub>,
    pub demand: Demand,
    pub camera_state: watch::Receiver<CameraState>,
    pub snapshot: SnapshotHandle,
    pub notices: mpsc::Sender<CryNotice>,
    /// Each cry records a clip.
    pub events: EventsHandle,
    /// The "Cry sensitivity" entity's value; a change applies from the next patch and is kept
    /// in `settings` across restarts.
    pub sensitivity: watch::Receiver<u8>,
    pub settings: Arc<Settings>,
    pub cancel: CancellationToken,
}

/// Maps the audio clock to wall time, from the newest chunk.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    wall: SystemTime,
    audio: Duration,
}

impl Anchor {
    fn wall(&self, audio: Duration) -> SystemTime {
        match self.audio.checked_sub(audio) {
            Some(ago) => self.wall - ago,
            None => self.wall + (audio - self.audio),
        }
    }
}

impl CryTask {
    pub fn spawn(self) -> (watch::Receiver<CryState>, tokio::task::JoinHandle<()>) {
        let (state_tx, state_rx) = watch::channel(CryState {
            status: CryStatus::Starting,
            crying: false,
            confidence: None,
            sensitivity: *self.sensitivity.borrow(),
            last_started_at: None,
            last_ended_at: None,
        });
        let runtime = tokio::runtime::Handle::current();
        let span = crate::camera::span(&self.camera);
        let task = tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            self.run(&state_tx, &runtime);
        });
        (state_rx, task)
    }

    fn run(mut self, state: &watch::Sender<CryState>, runtime: &tokio::runtime::Handle) {
        let set_status = |status: CryStatus| set_status(state, status);
        let mut yamnet = match Yamnet::load(&self.model) {
            Ok(yamnet) => yamnet,
            Err(e) => {
                tracing::error!("cry detection is off: {e}");
                set_status(CryStatus::Failed(e.to_string()));
                return;
            }
        };
        let pcm = match Pcm::for_frames() {
            Ok(pcm) => pcm,
            Err(e) => {
                tracing::error!("cry detection is off: {e}");
                set_status(CryStatus::Failed(e));
                return;
            }
        };
        let src = pcm.src().expect("for_frames has an appsrc");
        let tap = self.hub.add_audio_tap(src, AudioForm::Aac);
        let mut hold = Hold::Held {
            _lease: self.demand.lease(Purpose::CryDetection),
        };
        let mut config = DetectorConfig::from(&self.config);
        config.sensitivity = f32::from(*self.sensitivity.borrow_and_update()) / 100.0;
        let mut run = Run {
            detector: Detector::new(config),
            windows: Windows::new(),
            audio_at: Duration::ZERO,
            anchor: None,
            last_audio: Instant::now(),
            pending_confidence: None,
            confidence_at: None,
        };
        tracing::info!(
            "cry detection listening (sensitivity {:.0} %, hold {} s)",
            config.sensitivity * 100.0,
            self.config.hold.as_secs_f64()
        );
        set_status(CryStatus::Listening);
        while !self.cancel.is_cancelled() {
            hold = self.next_hold(hold, &mut run, state);
            match pcm.pull(POLL) {
                Pull::Samples(samples) => {
                    run.audio_at += Duration::from_secs_f64(
                        samples.len() as f64 / f64::from(super::SAMPLE_RATE),
                    );
                    run.anchor = Some(Anchor {
                        wall: SystemTime::now(),
                        audio: run.audio_at,
                    });
                    run.last_audio = Instant::now();
                    run.windows.push(&samples);
                    self.follow_sensitivity(&mut run, state);
                    while let Some((patch, end)) = run.windows.next_patch() {
                        if let Err(e) =
                            self.analyse(&mut yamnet, &mut run, &patch, end, state, runtime)
                        {
                            tracing::warn!("cry detection: {e}");
                        }
                    }
                }
                Pull::Timeout | Pull::End => {
                    if run.last_audio.elapsed() > AUDIO_GAP {
                        self.end_cry(&mut run, state);
                        run.windows.clear();
                    }
                }
                Pull::Failed(e) => {
                    tracing::error!("cry detection stopped: the audio decoder failed: {e}");
                    set_status(CryStatus::Failed(format!("the audio decoder failed: {e}")));
                    break;
                }
            }
        }
        drop(tap);
        self.end_cry(&mut run, state);
        drop(hold);
    }

    /// Whether detection holds the camera, from what the camera and the leases say now.
    fn next_hold(&self, hold: Hold, run: &mut Run, state: &watch::Sender<CryState>) -> Hold {
        let camera = self.camera_state.borrow().clone();
        let active = camera.status == Status::Active;
        let has_audio = camera.info.audio_codec_out.is_some();
        let set_status = |status: CryStatus| set_status(state, status);
        match hold {
            // MQTT OFF voids every lease; ours must not restart the camera behind its back.
            Hold::Held { .. } if !self.demand.snapshot().cry_detection => {
                tracing::info!("cry detection paused: the live stream was turned off");
                set_status(CryStatus::Paused);
                self.end_cry(run, state);
                Hold::PausedByOff {
                    seen_stopped: !camera.live(),
                }
            }
            Hold::Held { .. } if active && !has_audio => {
                tracing::warn!("cry detection is off: the camera sends no audio");
                set_status(CryStatus::NoAudio);
                Hold::NoAudio
            }
            Hold::PausedByOff { seen_stopped } => {
                let seen_stopped = seen_stopped || !camera.live();
                if seen_stopped && camera.live() {
                    tracing::info!("cry detection resumed");
                    set_status(CryStatus::Listening);
                    Hold::Held {
                        _lease: self.demand.lease(Purpose::CryDetection),
                    }
                } else {
                    Hold::PausedByOff { seen_stopped }
                }
            }
            Hold::NoAudio if active && has_audio => {
                tracing::info!("the camera sends audio now: cry detection listening");
                set_status(CryStatus::Listening);
                Hold::Held {
                    _lease: self.demand.lease(Purpose::CryDetection),
                }
            }
            other => other,
        }
    }

    /// A parent moved the "Cry sensitivity" slider: use it from the next patch and keep it.
    fn follow_sensitivity(&mut self, run: &mut Run, state: &watch::Sender<CryState>) {
        if !self.sensitivity.has_changed().unwrap_or(false) {
            return;
        }
        let percent = *self.sensitivity.borrow_and_update();
        run.detector.set_sensitivity(f32::from(percent) / 100.0);
        tracing::info!("cry sensitivity set to {percent} %");
        if let Err(e) = self
            .settings
            .update(&self.camera, |s| s.cry_sensitivity = Some(percent))
        {
            tracing::error!("{e:#}; the change holds until restart");
        }
        state.send_if_modified(|s| {
            let changed = s.sensitivity != percent;
            s.sensitivity = percent;
            changed
        });
    }

    fn analyse(
        &self,
        yamnet: &mut Yamnet,
        run: &mut Run,
        patch: &[f32],
        end: Duration,
        state: &watch::Sender<CryState>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(), super::onnx::ModelError> {
        let rms = rms_dbfs(patch);
        // The gate saves the inference on silence, which is most of a night.
        let probability = if rms >= super::detector::GATE_DBFS {
            Some(yamnet.score(patch)?.cry)
        } else {
            None
        };
        let step = run.detector.step(Patch {
            end,
            rms_dbfs: rms,
            probability,
        });
        tracing::debug!(
            "patch ending {:.2} s: {rms:.0} dBFS, cry probability {:?}, mean {:?}, {}",
            end.as_secs_f64(),
            step.probability,
            step.mean,
            step.verdict.as_str()
        );
        let percent = step.mean.map_or(0, |m| (m * 100.0).round() as u8);
        run.pending_confidence = Some(run.pending_confidence.unwrap_or(0).max(percent));
        if run
            .confidence_at
            .is_none_or(|at: Instant| at.elapsed() >= CONFIDENCE_EVERY)
        {
            let confidence = run.pending_confidence.take();
            run.confidence_at = Some(Instant::now());
            state.send_if_modified(|s| {
                let changed = s.confidence != confidence;
                s.confidence = confidence;
                changed
            });
        }
        if let Some(event) = step.event {
            self.report(run, event, state);
            if matches!(event, CryEvent::Started { .. }) {
                let snapshot = self.snapshot.clone();
                runtime.spawn(async move {
                    let _ = snapshot.request(Request::Event(Kind::Cry)).await;
                });
            }
        }
        Ok(())
    }

    fn end_cry(&self, run: &mut Run, state: &watch::Sender<CryState>) {
        if let Some(event) = run.detector.finish() {
            self.report(run, event, state);
        }
    }

    fn report(&self, run: &Run, event: CryEvent, state: &watch::Sender<CryState>) {
        let anchor = run.anchor.unwrap_or(Anchor {
            wall: SystemTime::now(),
            audio: run.audio_at,
        });
        let (started_at, ended_at, confidence) = match event {
            CryEvent::Started { at, confidence } => (anchor.wall(at), None, confidence),
            CryEvent::Ended {
                started_at,
                ended_at,
                confidence,
            } => {
                // The end names the start its start event named: mapped again through a newer
                // anchor, it could land in the next second.
                let named = state
                    .borrow()
                    .last_started_at
                    .filter(|_| state.borrow().crying);
                (
                    named.unwrap_or_else(|| anchor.wall(started_at)),
                    Some(anchor.wall(ended_at)),
                    confidence,
                )
            }
        };
        self.events.try_request(match ended_at {
            None => EventRequest::CryStarted(started_at),
            Some(_) => EventRequest::CryEnded,
        });
        match ended_at {
            None => {
                tracing::info!("crying started (confidence {:.0} %)", confidence * 100.0);
                state.send_modify(|s| {
                    s.crying = true;
                    s.last_started_at = Some(started_at);
                });
            }
            Some(ended_at) => {
                let lasted = ended_at.duration_since(started_at).unwrap_or_default();
                tracing::info!("crying ended after {:.1} s", lasted.as_secs_f64());
                state.send_modify(|s| {
                    s.crying = false;
                    s.last_ended_at = Some(ended_at);
                });
            }
        }
        let notice = CryNotice {
            camera: self.camera.clone(),
            confidence,
            started_at,
            ended_at,
        };
        if self.notices.try_send(notice).is_err() {
            tracing::warn!("a cry event was not published: the MQTT bridge is behind");
        }
    }
}

/// Publishes a new status only when it changed.
fn set_status(state: &watch::Sender<CryState>, status: CryStatus) {
    state.send_if_modified(|s| {
        let changed = s.status != status;
        s.status = status;
        changed
    });
}

/// Whether detection keeps the camera up, or why not.
enum Hold {
    /// The lease keeps the camera up for as long as it lives.
    Held { _lease: Lease },
    /// MQTT OFF voided the lease; a new one is taken once the stream has stopped and started again.
    PausedByOff { seen_stopped: bool },
    /// The camera streams without audio: nothing to listen to, so no reason to keep it up.
    NoAudio,
}

struct Run {
    detector: Detector,
    windows: Windows,
    /// Seconds of audio decoded so far: the detector's clock.
    audio_at: Duration,
    anchor: Option<Anchor>,
    last_audio: Instant,
    pending_confidence: Option<u8>,
    confidence_at: Option<Instant>,
}

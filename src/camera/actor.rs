//! The camera actor: feeds inputs to the pure [`Machine`] and carries out its actions.

use super::demand::{Demand, Lease, Purpose};
use super::source::{Ingest, SourceFailure};
use super::state::{Action, Input, Machine, Status, Timer};
use super::{CameraHandle, CameraState, Command, ViewerControl};
use crate::config::CameraConfig;
use crate::error::{Error, ErrorKind};
use crate::media::hub::Hub;
use crate::media::pipeline::MediaClock;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// No video for this long while streaming means the camera stalled without disconnecting.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(3);
const TICK: Duration = Duration::from_secs(1);

/// What a camera actor is built from; `spawn` starts it.
pub struct CameraActor {
    pub config: CameraConfig,
    pub hub: Arc<Hub>,
    pub demand: Demand,
    pub clock: MediaClock,
    pub viewers: Arc<dyn ViewerControl>,
    pub cancel: CancellationToken,
}

impl CameraActor {
    pub fn spawn(self) -> (CameraHandle, tokio::task::JoinHandle<()>) {
        let (commands_tx, commands) = mpsc::channel(16);
        let (state_tx, state) = watch::channel(CameraState::default());
        let id = self.config.id.clone();
        let span = super::span(&id);
        let task = tokio::spawn(self.run(commands, state_tx).instrument(span));
        (
            CameraHandle {
                id,
                commands: commands_tx,
                state,
            },
            task,
        )
    }

    async fn run(
        self,
        mut commands: mpsc::Receiver<Command>,
        state_tx: watch::Sender<CameraState>,
    ) {
        let mut machine = Machine::new(self.config.close_after, self.config.start_timeout);
        let mut run = Running {
            actor: &self,
            ingest: None,
            hold: None,
            timers: Timers::default(),
            started_at: None,
            lost: false,
        };
        let (failures_tx, mut failures) = mpsc::unbounded_channel::<SourceFailure>();
        let mut demand_rx = self.demand.subscribe();
        let mut ready_rx = self.hub.status().subscribe_ready();
        let mut tick = tokio::time::interval(TICK);
        tracing::info!(
            "camera ready at {} (on demand)",
            crate::secret::redact_urls(self.config.url.as_str())
        );
        loop {
            let deadline = run.timers.next_deadline();
            let input = tokio::select! {
                _ = self.cancel.cancelled() => break,
                Some(command) = commands.recv() => match command {
                    Command::SetLive(on, reply) => {
                        let input = run.set_live(on);
                        let _ = reply.send(());
                        input
                    }
                },
                Ok(()) = demand_rx.changed() => Input::Demand(demand_rx.borrow_and_update().total()),
                Ok(()) = ready_rx.changed() => {
                    let generation = *ready_rx.borrow_and_update();
                    if run.ingest.as_ref().map(Ingest::generation) != Some(generation) {
                        continue;
                    }
                    Input::SourceReady
                }
                Some(failure) = failures.recv() => {
                    if run.ingest.as_ref().map(Ingest::generation) != Some(failure.generation) {
                        continue;
                    }
                    Input::SourceFailed(failure.error)
                }
                _ = sleep_until(deadline) => match run.timers.take_due() {
                    Some(timer) => Input::TimerFired(timer),
                    None => continue,
                },
                _ = tick.tick() => match run.stalled(&machine) {
                    Some(error) => Input::SourceFailed(error),
                    None => {
                        publish(&state_tx, &machine, &run);
                        continue;
                    }
                },
            };
            let mut inputs = VecDeque::from([input]);
            while let Some(input) = inputs.pop_front() {
                let before = machine.status();
                log_input(&input, &machine);
                for action in machine.step(input) {
                    if let Some(next) = run.execute(action, &failures_tx).await {
                        inputs.push_back(next);
                    }
                }
                run.after_step(before, &machine);
            }
            publish(&state_tx, &machine, &run);
        }
        if let Some(ingest) = run.ingest.take() {
            ingest.stop().await;
        }
        tracing::debug!("camera actor stopped");
    }
}

/// The actor's resources while it runs.
struct Running<'a> {
    actor: &'a CameraActor,
    ingest: Option<Ingest>,
    hold: Option<Lease>,
    timers: Timers,
    started_at: Option<SystemTime>,
    /// The connection was lost while the camera was still wanted: the next one is a reconnect.
    lost: bool,
}

impl Running<'_> {
    fn set_live(&mut self, on: bool) -> Input {
        if on {
            if self.hold.is_none() {
                tracing::info!("live stream switched ON over MQTT");
                self.hold = Some(self.actor.demand.lease(Purpose::MqttHold));
            }
            Input::On
        } else {
            tracing::info!(
                "live stream switched OFF over MQTT: stopping and disconnecting viewers"
            );
            self.hold = None;
            self.actor.demand.reset();
            Input::Off
        }
    }

    /// Carries out one action; a failure to start comes back as the next input.
    async fn execute(
        &mut self,
        action: Action,
        failures: &mpsc::UnboundedSender<SourceFailure>,
    ) -> Option<Input> {
        match action {
            Action::StartSource => {
                let actor = self.actor;
                match Ingest::start(
                    &actor.config,
                    actor.hub.clone(),
                    &actor.clock,
                    failures.clone(),
                ) {
                    Ok(ingest) => {
                        tracing::info!("connecting to the camera");
                        self.ingest = Some(ingest);
                    }
                    Err(error) => return Some(Input::SourceFailed(error)),
                }
            }
            Action::StopSource => {
                if let Some(ingest) = self.ingest.take() {
                    ingest.stop().await;
                }
                self.started_at = None;
            }
            Action::SetTimer(timer, delay) => self.timers.set(timer, delay),
            Action::KickViewers => {
                let ended = self.actor.hub.end_all_consumers();
                let kicked = self.actor.viewers.disconnect_viewers(&self.actor.config.id);
                if ended + kicked > 0 {
                    tracing::info!(
                        "ended {ended} viewer stream(s), disconnected {kicked} RTSP client(s)"
                    );
                }
            }
        }
        None
    }

    fn after_step(&mut self, before: Status, machine: &Machine) {
        let after = machine.status();
        if before == after {
            return;
        }
        let status = self.actor.hub.status();
        let counters = status.counters();
        match (before, after) {
            (_, Status::Inactive) => self.lost = false,
            (Status::Active, _) => self.lost = true,
            _ => {}
        }
        match after {
            Status::Active => {
                crate::metrics::count(&counters.connects, 1);
                if std::mem::take(&mut self.lost) {
                    crate::metrics::count(&counters.reconnects, 1);
                }
                self.started_at = Some(SystemTime::now());
                let info = status.info();
                tracing::info!(
                    "camera connected: {} {}x{} {} fps, audio {} → {}",
                    info.video_codec.as_deref().unwrap_or("?"),
                    info.width.unwrap_or(0),
                    info.height.unwrap_or(0),
                    info.fps.unwrap_or(0.0),
                    info.audio_codec_in.as_deref().unwrap_or("none"),
                    info.audio_codec_out.as_deref().unwrap_or("none"),
                );
            }
            Status::Inactive => tracing::info!("camera connection closed"),
            Status::Failed => {
                let reason = machine
                    .last_error()
                    .map(Error::message)
                    .unwrap_or("the camera did not deliver video in time; still retrying");
                tracing::error!("camera failed: {reason}");
                if let Some(error) = machine.last_error().filter(|e| !e.kind().is_retryable()) {
                    // Waiting viewers are told now rather than after their timeout.
                    self.actor.hub.fail(error);
                }
            }
            Status::Activating => {}
        }
    }

    /// The watchdog: a camera that keeps its connection but sends nothing is reconnected.
    fn stalled(&self, machine: &Machine) -> Option<Error> {
        if machine.status() != Status::Active {
            return None;
        }
        let last = self.actor.hub.status().last_video_at()?;
        (last.elapsed() > STALL_TIMEOUT).then(|| {
            Error::new(
                ErrorKind::Transient,
                format!(
                    "no video for {} s: the camera stalled",
                    STALL_TIMEOUT.as_secs()
                ),
            )
        })
    }
}

fn log_input(input: &Input, machine: &Machine) {
    match input {
        Input::SourceFailed(error) if error.kind().is_retryable() && machine.is_running() => {
            tracing::warn!("camera unreachable: {error}; retrying with backoff");
        }
        Input::Demand(n) => tracing::debug!("demand is now {n}"),
        Input::TimerFired(Timer::Close) => {
            tracing::debug!("grace period over")
        }
        _ => {}
    }
}

fn publish(state_tx: &watch::Sender<CameraState>, machine: &Machine, run: &Running<'_>) {
    let demand = run.actor.demand.snapshot();
    let status = run.actor.hub.status();
    let next = CameraState {
        status: machine.status(),
        available: machine.available(),
        error: machine.last_error().map(|e| e.message().to_string()),
        streaming_since: run.started_at,
        info: status.info(),
        rtsp_viewers: demand.rtsp_viewers,
        webrtc_viewers: demand.webrtc_viewers,
        mse_viewers: demand.mse_viewers,
        held: demand.mqtt_hold,
        held_by_cry_detection: demand.cry_detection,
        stuck: machine.is_stuck(),
        dropped_frames: status.dropped_frames(),
    };
    state_tx.send_if_modified(|current| {
        if *current == next {
            false
        } else {
            *current = next;
            true
        }
    });
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The machine's three timers as deadlines.
#[derive(Default)]
struct Timers {
    close: Option<tokio::time::Instant>,
    retry: Option<tokio::time::Instant>,
    start_timeout: Option<tokio::time::Instant>,
}

impl Timers {
    fn slot(&mut self, timer: Timer) -> &mut Option<tokio::time::Instant> {
        match timer {
            Timer::Close => &mut self.close,
            Timer::Retry => &mut self.retry,
            Timer::StartTimeout => &mut self.start_timeout,
        }
    }

    fn set(&mut self, timer: Timer, delay: Option<Duration>) {
        *self.slot(timer) = delay.map(|d| tokio::time::Instant::now() + d);
    }

    fn next_deadline(&self) -> Option<tokio::time::Instant> {
        [self.close, self.retry, self.start_timeout]
            .into_iter()
            .flatten()
            .min()
    }

    fn take_due(&mut self) -> Option<Timer> {
        let now = tokio::time::Instant::now();
        for timer in [Timer::Close, Timer::Retry, Timer::StartTimeout] {
            let slot = self.slot(timer);
            if slot.is_some_and(|d| d <= now) {
                *slot = None;
                return Some(timer);
            }
        }
        None
    }
}

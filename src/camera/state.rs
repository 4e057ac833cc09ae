//! The on-demand state machine of one camera, as a pure function of inputs.
//!
//! Shape borrowed from mediamtx's path (idle → starting → ready → closing, a close-after timer
//! cancelled by a returning reader), written as `step(input) -> actions` so it is tested without
//! cameras, sockets or clocks. The actor in `actor.rs` only carries the actions out.

use crate::error::Error;
use std::time::Duration;

/// What Home Assistant sees as "Stream status".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Inactive,
    Activating,
    Active,
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Inactive,
        Status::Activating,
        Status::Active,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Inactive => "inactive",
            Status::Activating => "activating",
            Status::Active => "active",
            Status::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The grace period after the last consumer left.
    Close,
    /// The next reconnect attempt.
    Retry,
    /// How long a start may take before we call it failed.
    StartTimeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The number of live leases (viewers, MQTT hold, ...) changed.
    Demand(usize),
    /// MQTT ON: also the way out of a sticky failure such as a wrong password.
    On,
    /// MQTT OFF: stop now and disconnect every viewer.
    Off,
    /// The camera delivered what viewers need (video caps and a keyframe).
    SourceReady,
    SourceFailed(Error),
    TimerFired(Timer),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    StartSource,
    StopSource,
    /// Arm (`Some`) or cancel (`None`) a timer.
    SetTimer(Timer, Option<Duration>),
    KickViewers,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Idle,
    Connecting,
    Streaming,
    /// The source failed and a reconnect is scheduled.
    Retrying,
    /// Retrying cannot help (wrong password, unsupported camera) until the user says ON again.
    Failed,
}

/// Reconnect delays: 1 s doubling to 30 s while connecting fails. A session that delivered video
/// starts the count again, so a camera that drops and comes straight back is reconnected within
/// a second each time, not at the cap (measured by the soak: 30 s before this rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_secs(1);
    pub const MAX: Duration = Duration::from_secs(30);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn take(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[derive(Debug, Clone)]
pub struct Machine {
    phase: Phase,
    demand: usize,
    close_armed: bool,
    start_failed: bool,
    last_error: Option<Error>,
    backoff: Backoff,
    close_after: Duration,
    start_timeout: Duration,
}

impl Machine {
    pub fn new(close_after: Duration, start_timeout: Duration) -> Self {
        Self {
            phase: Phase::Idle,
            demand: 0,
            close_armed: false,
            start_failed: false,
            last_error: None,
            backoff: Backoff::new(),
            close_after,
            start_timeout,
        }
    }

    pub fn status(&self) -> Status {
        match self.phase {
            Phase::Streaming => Status::Active,
            Phase::Failed => Status::Failed,
            // A start that timed out or was abandoned stays visible as failed.
            _ if self.start_failed => Status::Failed,
            Phase::Idle => Status::Inactive,
            Phase::Connecting | Phase::Retrying => Status::Activating,
        }
    }

    /// False while the last attempt found the camera unreachable. A camera that refuses our
    /// password is reachable: it stays available so its `failed` status and reason show in HA.
    pub fn available(&self) -> bool {
        !self
            .last_error
            .as_ref()
            .is_some_and(|e| e.kind().is_retryable())
    }

    pub fn last_error(&self) -> Option<&Error> {
        self.last_error.as_ref()
    }

    /// Failed in a way only MQTT ON clears: new demand does not restart it.
    pub fn is_stuck(&self) -> bool {
        self.phase == Phase::Failed
    }

    pub fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Connecting | Phase::Streaming)
    }

    pub fn step(&mut self, input: Input) -> Vec<Action> {
        let mut actions = Vec::new();
        match input {
            Input::Demand(n) => self.demand = n,
            Input::On => {
                if self.phase == Phase::Failed {
                    self.phase = Phase::Idle;
                    self.last_error = None;
                }
            }
            Input::Off => {
                if self.is_running() {
                    actions.push(Action::StopSource);
                }
                actions.push(Action::KickViewers);
                self.cancel_timers(&mut actions);
                self.phase = Phase::Idle;
                self.demand = 0;
                self.start_failed = false;
                return actions;
            }
            Input::SourceReady => {
                if self.phase == Phase::Connecting {
                    self.phase = Phase::Streaming;
                    self.last_error = None;
                    self.start_failed = false;
                    actions.push(Action::SetTimer(Timer::StartTimeout, None));
                }
            }
            Input::SourceFailed(error) => self.on_failure(error, &mut actions),
            Input::TimerFired(Timer::Close) => {
                self.close_armed = false;
                if self.demand == 0 && self.is_running() {
                    actions.push(Action::StopSource);
                    actions.push(Action::SetTimer(Timer::StartTimeout, None));
                    self.phase = Phase::Idle;
                    self.start_failed = false;
                }
            }
            Input::TimerFired(Timer::Retry) => {
                if self.phase == Phase::Retrying {
                    self.phase = Phase::Connecting;
                    actions.push(Action::StartSource);
                }
            }
            Input::TimerFired(Timer::StartTimeout) => {
                if matches!(self.phase, Phase::Connecting | Phase::Retrying) {
                    self.start_failed = true;
                }
            }
        }
        self.settle(&mut actions);
        actions
    }

    /// Brings the phase in line with the demand after any input.
    fn settle(&mut self, actions: &mut Vec<Action>) {
        match (&self.phase, self.demand) {
            (Phase::Idle, n) if n > 0 => {
                self.phase = Phase::Connecting;
                self.start_failed = false;
                actions.push(Action::StartSource);
                actions.push(Action::SetTimer(
                    Timer::StartTimeout,
                    Some(self.start_timeout),
                ));
            }
            (Phase::Connecting | Phase::Streaming, 0) if !self.close_armed => {
                self.close_armed = true;
                actions.push(Action::SetTimer(Timer::Close, Some(self.close_after)));
            }
            (Phase::Connecting | Phase::Streaming, n) if n > 0 && self.close_armed => {
                self.close_armed = false;
                actions.push(Action::SetTimer(Timer::Close, None));
            }
            (Phase::Retrying, 0) => {
                // Everyone gave up before the camera ever came up: that start failed.
                self.start_failed = true;
                self.phase = Phase::Idle;
                actions.push(Action::SetTimer(Timer::Retry, None));
                actions.push(Action::SetTimer(Timer::StartTimeout, None));
            }
            _ => {}
        }
    }

    fn on_failure(&mut self, error: Error, actions: &mut Vec<Action>) {
        if !self.is_running() {
            return;
        }
        if self.phase == Phase::Streaming {
            self.backoff.reset();
        }
        actions.push(Action::StopSource);
        let retryable = error.kind().is_retryable();
        self.last_error = Some(error);
        if !retryable {
            self.phase = Phase::Failed;
            self.cancel_timers(actions);
        } else if self.demand == 0 {
            self.phase = Phase::Idle;
            self.cancel_timers(actions);
        } else {
            self.phase = Phase::Retrying;
            actions.push(Action::SetTimer(Timer::Retry, Some(self.backoff.take())));
        }
    }

    fn cancel_timers(&mut self, actions: &mut Vec<Action>) {
        self.close_armed = false;
        for timer in [Timer::Close, Timer::Retry, Timer::StartTimeout] {
            actions.push(Action::SetTimer(timer, None));
        }
    }
}

impl Default for Machine {
    fn default() -> Self {
        Self::new(Duration::from_secs(10), Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    const GRACE: Duration = Duration::from_secs(10);

    fn machine() -> Machine {
        Machine::new(GRACE, Duration::from_secs(10))
    }

    fn transient() -> Error {
        Error::new(ErrorKind::Transient, "connection refused")
    }

    #[test]
    fn first_viewer_starts_the_camera() {
        let mut m = machine();
        let actions = m.step(Input::Demand(1));
        assert_eq!(actions[0], Action::StartSource);
        assert_eq!(m.status(), Status::Activating);
        m.step(Input::SourceReady);
        assert_eq!(m.status(), Status::Active);
    }

    #[test]
    fn last_viewer_leaving_arms_the_grace_period_and_a_returning_viewer_cancels_it() {
        let mut m = machine();
        m.step(Input::Demand(1));
        m.step(Input::SourceReady);
        assert_eq!(
            m.step(Input::Demand(0)),
            vec![Action::SetTimer(Timer::Close, Some(GRACE))]
        );
        assert_eq!(
            m.step(Input::Demand(1)),
            vec![Action::SetTimer(Timer::Close, None)]
        );
        assert_eq!(m.step(Input::TimerFired(Timer::Close)), vec![]);
        assert_eq!(m.status(), Status::Active);
    }

    #[test]
    fn grace_period_expiry_stops_the_camera() {
        let mut m = machine();
        m.step(Input::Demand(1));
        m.step(Input::SourceReady);
        m.step(Input::Demand(0));
        let actions = m.step(Input::TimerFired(Timer::Close));
        assert!(actions.contains(&Action::StopSource));
        assert_eq!(m.status(), Status::Inactive);
    }

    #[test]
    fn off_stops_at_once_and_kicks_viewers() {
        let mut m = machine();
        m.step(Input::Demand(3));
        m.step(Input::SourceReady);
        let actions = m.step(Input::Off);
        assert!(actions.contains(&Action::StopSource));
        assert!(actions.contains(&Action::KickViewers));
        assert_eq!(m.status(), Status::Inactive);
    }

    #[test]
    fn transient_failures_back_off_from_1s_doubling_to_30s() {
        let mut m = machine();
        m.step(Input::Demand(1));
        let mut delays = Vec::new();
        for _ in 0..7 {
            let actions = m.step(Input::SourceFailed(transient()));
            assert_eq!(m.status(), Status::Activating);
            assert!(!m.available());
            for a in actions {
                if let Action::SetTimer(Timer::Retry, Some(d)) = a {
                    delays.push(d.as_secs());
                }
            }
            assert_eq!(
                m.step(Input::TimerFired(Timer::Retry)),
                vec![Action::StartSource]
            );
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn backoff_starts_again_once_a_session_delivered_video() {
        let mut m = machine();
        m.step(Input::Demand(1));
        for _ in 0..3 {
            m.step(Input::SourceFailed(transient()));
            m.step(Input::TimerFired(Timer::Retry));
        }
        m.step(Input::SourceReady);
        let actions = m.step(Input::SourceFailed(transient()));
        assert!(actions.contains(&Action::SetTimer(
            Timer::Retry,
            Some(Duration::from_secs(1))
        )));
        // Failing to connect again still backs off.
        m.step(Input::TimerFired(Timer::Retry));
        let actions = m.step(Input::SourceFailed(transient()));
        assert!(actions.contains(&Action::SetTimer(
            Timer::Retry,
            Some(Duration::from_secs(2))
        )));
    }

    #[test]
    fn wrong_password_fails_for_good_until_on() {
        let mut m = machine();
        m.step(Input::Demand(1));
        let actions = m.step(Input::SourceFailed(Error::new(
            ErrorKind::Auth,
            "401 Unauthorized",
        )));
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::SetTimer(Timer::Retry, Some(_))))
        );
        assert_eq!(m.status(), Status::Failed);
        // More viewers do not hammer the camera.
        assert_eq!(m.step(Input::Demand(2)), vec![]);
        assert_eq!(m.status(), Status::Failed);
        // ON is the user's say-so to try again.
        assert!(m.step(Input::On).contains(&Action::StartSource));
    }

    #[test]
    fn start_timeout_shows_failed_while_retrying_continues() {
        let mut m = machine();
        m.step(Input::Demand(1));
        m.step(Input::TimerFired(Timer::StartTimeout));
        assert_eq!(m.status(), Status::Failed);
        m.step(Input::SourceReady);
        assert_eq!(m.status(), Status::Active);
    }

    #[test]
    fn a_timed_out_start_stays_failed_after_the_viewer_gives_up() {
        let mut m = machine();
        m.step(Input::Demand(1));
        m.step(Input::SourceFailed(transient()));
        m.step(Input::TimerFired(Timer::StartTimeout));
        m.step(Input::Demand(0));
        assert_eq!(m.status(), Status::Failed);
        assert!(!m.available());
        m.step(Input::Demand(1));
        assert_eq!(m.status(), Status::Activating);
    }

    #[test]
    fn demand_gone_while_retrying_stops_retrying_and_shows_failed() {
        let mut m = machine();
        m.step(Input::Demand(1));
        m.step(Input::SourceFailed(transient()));
        let actions = m.step(Input::Demand(0));
        assert!(actions.contains(&Action::SetTimer(Timer::Retry, None)));
        // Never came up for this viewer: shown as failed, and unavailable.
        assert_eq!(m.status(), Status::Failed);
        assert!(!m.available());
    }
}

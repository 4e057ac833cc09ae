//! The cry decision, pure: per-patch probabilities in, sensor changes and events out.
//!
//! The rule, in the order it is applied to each 0.975 s patch (every 0.48 s):
//! 1. **Loudness gate.** A patch quieter than [`GATE_DBFS`] is not scored; it counts as 0.
//! 2. **Probability.** The cry model's own probability that the patch is a baby crying: a
//!    logistic regression on YAMNet's 1024-d embedding, trained on camera audio (G.711) with and
//!    without a noise machine underneath, cats, laughter and speech weighted as hard negatives
//!    (`scripts/cry-train.py`, `models/yamnet/README.md`).
//! 3. **Smoothing.** The mean of the last [`SMOOTH`] probabilities (about 1.9 s of audio), so one
//!    confused patch, a cat's single call or a door creak, cannot start a cry on its own.
//! 4. **Start.** Crying starts when the mean reaches the threshold, `1 − sensitivity`, and has
//!    stayed there for `min_duration`.
//! 5. **Hold.** Crying ends `hold` after the last patch that still heard crying, a probability
//!    of at least [`RELEASE`] × threshold (hysteresis), so pauses for breath do not flap the
//!    sensor; the cry is reported to end with that patch.
//!
//! Time is the audio's own clock (seconds of audio since the analysis started), so the same
//! input always gives the same output.

use std::collections::VecDeque;
use std::time::Duration;

/// Patches quieter than this (RMS, dBFS) are treated as silence and not scored. A quiet room
/// through a camera microphone is about −60 to −50 dBFS; a crying baby across a nursery is
/// −35 dBFS or louder.
pub const GATE_DBFS: f32 = -50.0;
/// Patches averaged for the decision.
pub const SMOOTH: usize = 3;
/// A cry goes on while patches reach this share of the threshold.
pub const RELEASE: f32 = 0.6;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// How readily a sound counts as crying, 0.01 to 0.99; the threshold is `1 − sensitivity`.
    pub sensitivity: f32,
    pub min_duration: Duration,
    pub hold: Duration,
}

impl DetectorConfig {
    pub fn threshold(&self) -> f32 {
        1.0 - self.sensitivity
    }
}

impl From<&crate::config::CryConfig> for DetectorConfig {
    fn from(config: &crate::config::CryConfig) -> Self {
        Self {
            sensitivity: f32::from(config.sensitivity) / 100.0,
            min_duration: config.min_duration,
            hold: config.hold,
        }
    }
}

/// One analysed patch. `end` is where it ends on the audio clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Patch {
    pub end: Duration,
    pub rms_dbfs: f32,
    /// The model's cry probability; `None` when the gate kept the patch from being scored.
    pub probability: Option<f32>,
}

/// What the detector made of one patch, for the `classify` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Below the loudness gate: not scored.
    Gated,
    Quiet,
    /// The mean is at the threshold, but not yet for `min_duration`.
    Rising,
    /// A patch of an ongoing cry that still hears crying.
    Crying,
    /// A quieter patch within the hold: the sensor is still on.
    Holding,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Gated => "gated",
            Verdict::Quiet => "-",
            Verdict::Rising => "rising",
            Verdict::Crying => "CRYING",
            Verdict::Holding => "hold",
        }
    }
}

/// A cry that started or ended; times are on the audio clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CryEvent {
    Started {
        at: Duration,
        confidence: f32,
    },
    Ended {
        started_at: Duration,
        ended_at: Duration,
        /// The highest mean probability during the cry.
        confidence: f32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// This patch's probability (`None`: gated).
    pub probability: Option<f32>,
    /// The mean the decision reads, once [`SMOOTH`] patches are in: the detector's confidence.
    pub mean: Option<f32>,
    pub verdict: Verdict,
    pub event: Option<CryEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Idle {
        /// Where the current run of means at the threshold began.
        rising_since: Option<Duration>,
    },
    Crying {
        started_at: Duration,
        last_heard_end: Duration,
        peak: f32,
    },
}

#[derive(Debug, Clone)]
pub struct Detector {
    config: DetectorConfig,
    /// The last [`SMOOTH`] patches: where each began and its probability (0 when gated).
    recent: VecDeque<(Duration, f32)>,
    phase: Phase,
}

/// YAMNet's patch length.
pub const PATCH: Duration = Duration::from_millis(975);

impl Detector {
    pub fn new(config: DetectorConfig) -> Self {
        Self {
            config,
            recent: VecDeque::with_capacity(SMOOTH),
            phase: Phase::Idle { rising_since: None },
        }
    }

    /// A parent moved the sensitivity: it applies from the next patch, a cry in progress goes on.
    pub fn set_sensitivity(&mut self, sensitivity: f32) {
        self.config.sensitivity = sensitivity;
    }

    pub fn is_crying(&self) -> bool {
        matches!(self.phase, Phase::Crying { .. })
    }

    pub fn step(&mut self, patch: Patch) -> Step {
        let probability = patch.probability.filter(|_| patch.rms_dbfs >= GATE_DBFS);
        if self.recent.len() == SMOOTH {
            self.recent.pop_front();
        }
        let start = patch.end.saturating_sub(PATCH);
        self.recent.push_back((start, probability.unwrap_or(0.0)));
        let mean = (self.recent.len() == SMOOTH)
            .then(|| self.recent.iter().map(|(_, p)| p).sum::<f32>() / SMOOTH as f32);
        let threshold = self.config.threshold();
        let above = mean.is_some_and(|m| m >= threshold);
        let heard = probability.is_some_and(|p| p >= threshold * RELEASE);
        // A cry begins with the first patch of the window that heard it, not with the silence
        // before it.
        let window_start = self
            .recent
            .iter()
            .find(|(_, p)| *p >= threshold * RELEASE)
            .map_or(start, |(at, _)| *at);
        let mut event = None;
        let verdict = match &mut self.phase {
            Phase::Idle { rising_since } => {
                if !above {
                    *rising_since = None;
                }
                if above && rising_since.is_none() {
                    *rising_since = Some(window_start);
                }
                match *rising_since {
                    Some(since)
                        if patch.end.saturating_sub(since)
                            >= self.config.min_duration.max(PATCH) =>
                    {
                        let confidence = mean.unwrap_or_default();
                        self.phase = Phase::Crying {
                            started_at: since,
                            last_heard_end: patch.end,
                            peak: confidence,
                        };
                        event = Some(CryEvent::Started {
                            at: since,
                            confidence,
                        });
                        Verdict::Crying
                    }
                    Some(_) => Verdict::Rising,
                    None if probability.is_none() => Verdict::Gated,
                    None => Verdict::Quiet,
                }
            }
            Phase::Crying {
                started_at,
                last_heard_end,
                peak,
            } => {
                *peak = peak.max(mean.unwrap_or_default());
                if heard {
                    *last_heard_end = patch.end;
                    Verdict::Crying
                } else if patch.end.saturating_sub(*last_heard_end) >= self.config.hold {
                    event = Some(CryEvent::Ended {
                        started_at: *started_at,
                        ended_at: *last_heard_end,
                        confidence: *peak,
                    });
                    self.phase = Phase::Idle { rising_since: None };
                    Verdict::Quiet
                } else {
                    Verdict::Holding
                }
            }
        };
        Step {
            probability,
            mean,
            verdict,
            event,
        }
    }

    /// The audio stopped (camera gone, detection stopped): a cry in progress ends now, at its
    /// last crying patch, so the sensor never sticks on.
    pub fn finish(&mut self) -> Option<CryEvent> {
        self.recent.clear();
        match std::mem::replace(&mut self.phase, Phase::Idle { rising_since: None }) {
            Phase::Idle { .. } => None,
            Phase::Crying {
                started_at,
                last_heard_end,
                peak,
            } => Some(CryEvent::Ended {
                started_at,
                ended_at: last_heard_end,
                confidence: peak,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// YAMNet's hop between patches.
    const HOP: Duration = Duration::from_millis(480);

    fn config() -> DetectorConfig {
        DetectorConfig {
            sensitivity: 0.5,
            min_duration: Duration::ZERO,
            hold: Duration::from_secs(2),
        }
    }

    /// Feeds patches at the 0.48 s hop; returns each step.
    fn run(detector: &mut Detector, patches: &[(f32, Option<f32>)]) -> Vec<Step> {
        patches
            .iter()
            .enumerate()
            .map(|(i, (rms_dbfs, probability))| {
                detector.step(Patch {
                    end: PATCH + HOP * i as u32,
                    rms_dbfs: *rms_dbfs,
                    probability: *probability,
                })
            })
            .collect()
    }

    fn started(steps: &[Step]) -> Vec<usize> {
        steps
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.event, Some(CryEvent::Started { .. })))
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn one_confident_patch_is_not_a_cry_but_a_steady_mean_is() {
        let mut d = Detector::new(config());
        let steps = run(
            &mut d,
            &[(-20.0, Some(0.99)), (-20.0, Some(0.1)), (-20.0, Some(0.1))],
        );
        assert!(started(&steps).is_empty(), "a cat's single call");
        assert_eq!(steps[2].mean, Some((0.99 + 0.1 + 0.1) / 3.0));

        let mut d = Detector::new(config());
        let steps = run(
            &mut d,
            &[(-20.0, Some(0.9)), (-20.0, Some(0.3)), (-20.0, Some(0.6))],
        );
        assert_eq!(started(&steps), vec![2], "{steps:?}");
        let Some(CryEvent::Started { at, confidence }) = steps[2].event else {
            unreachable!()
        };
        assert_eq!(at, Duration::ZERO, "the cry starts where its window began");
        assert!((confidence - 0.6).abs() < 1e-6);
    }

    #[test]
    fn sensitivity_moves_the_threshold() {
        let patches = [(-20.0, Some(0.45)); 4];
        let mut d = Detector::new(config());
        assert!(started(&run(&mut d, &patches)).is_empty());
        let mut d = Detector::new(config());
        d.set_sensitivity(0.6);
        assert_eq!(started(&run(&mut d, &patches)), vec![2]);
    }

    #[test]
    fn patches_below_the_loudness_gate_count_as_nothing() {
        let mut d = Detector::new(config());
        let steps = run(&mut d, &[(-55.0, Some(0.99)); 4]);
        assert!(started(&steps).is_empty());
        assert!(steps.iter().all(|s| s.verdict == Verdict::Gated));
        assert!(steps.iter().all(|s| s.probability.is_none()));
    }

    #[test]
    fn the_sensor_holds_through_pauses_and_ends_after_the_hold() {
        let mut d = Detector::new(config());
        // Crying, a pause of three patches below the release level (0.3), crying again, quiet.
        let mut patches = vec![(-20.0, Some(0.9)); 3];
        patches.extend([(-20.0, Some(0.0)); 3]);
        patches.extend([(-20.0, Some(0.9)); 2]);
        patches.extend([(-60.0, None); 8]);
        let steps = run(&mut d, &patches);
        assert_eq!(started(&steps), vec![2]);
        assert_eq!(steps[5].verdict, Verdict::Holding, "a pause keeps it on");
        let ended: Vec<_> = steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.event {
                Some(CryEvent::Ended {
                    started_at,
                    ended_at,
                    confidence,
                }) => Some((i, started_at, ended_at, confidence)),
                _ => None,
            })
            .collect();
        assert_eq!(ended.len(), 1, "{steps:?}");
        let (index, started_at, ended_at, confidence) = ended[0];
        // The last crying patch is 7; 2 s after its end is patch 12 (5 × 0.48 s).
        assert_eq!(ended_at, PATCH + HOP * 7);
        assert_eq!(index, 12);
        assert_eq!(started_at, Duration::ZERO);
        assert!((confidence - 0.9).abs() < 1e-6);
        assert!(!d.is_crying());
    }

    #[test]
    fn min_duration_waits_for_a_longer_run() {
        let mut d = Detector::new(DetectorConfig {
            min_duration: Duration::from_secs(3),
            ..config()
        });
        let steps = run(&mut d, &[(-20.0, Some(0.9)); 8]);
        // The run starts at 0 s; patch i ends at 0.975 + 0.48 i, ≥ 3 s from i = 5.
        assert_eq!(started(&steps), vec![5]);
    }

    #[test]
    fn finish_ends_a_cry_in_progress_and_nothing_else() {
        let mut d = Detector::new(config());
        assert_eq!(d.finish(), None);
        run(&mut d, &[(-20.0, Some(0.9)); 3]);
        assert!(d.is_crying());
        assert!(matches!(
            d.finish(),
            Some(CryEvent::Ended { ended_at, .. }) if ended_at == PATCH + HOP * 2
        ));
        assert!(!d.is_crying());
    }
}

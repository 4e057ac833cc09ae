//! The cry decision, pure: per-patch scores in, sensor changes and events out.
//!
//! The rule, in the order it is applied to each 0.975 s patch:
//! 1. **Loudness gate.** A patch quieter than [`GATE_DBFS`] is not scored; it counts as "no cry".
//! 2. **Score.** YAMNet's class 20 "Baby cry, infant cry", lifted by the supporting classes 19
//!    "Crying, sobbing" and 21 "Whimper" only when class 20 is already up:
//!    `score = max(c20, √(c20 · max(c19, c21)))`. Supporting classes alone never make a cry
//!    (adult laughter scores 0.52 on class 19 and 0.75 on class 21 with class 20 at 0.02).
//! 3. **Vote.** A patch votes "cry" when its score reaches the threshold.
//! 4. **Start.** Crying starts when [`VOTES_NEEDED`] of the last [`VOTE_WINDOW`] patches vote
//!    (about 1.5 s of audio at the 0.48 s hop) and the run of votes has lasted `min_duration`.
//!    One loud cat call or a single confused patch cannot start it.
//! 5. **Hold.** Crying ends `hold` after the last voting patch, so pauses for breath do not
//!    flap the sensor.
//!
//! Time is the audio's own clock (seconds of audio since the analysis started), so the same
//! input always gives the same output.

use std::collections::VecDeque;
use std::time::Duration;

/// Patches quieter than this (RMS, dBFS) are treated as silence and not scored. A quiet room
/// through a camera microphone is about −60 to −50 dBFS; a crying baby across a nursery is
/// −35 dBFS or louder.
pub const GATE_DBFS: f32 = -50.0;
pub const VOTES_NEEDED: usize = 2;
pub const VOTE_WINDOW: usize = 3;

/// The YAMNet classes the rule reads.
pub const CLASS_CRYING_SOBBING: usize = 19;
pub const CLASS_BABY_CRY: usize = 20;
pub const CLASS_WHIMPER: usize = 21;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    pub threshold: f32,
    pub min_duration: Duration,
    pub hold: Duration,
}

impl From<&crate::config::CryConfig> for DetectorConfig {
    fn from(config: &crate::config::CryConfig) -> Self {
        Self {
            threshold: config.threshold,
            min_duration: config.min_duration,
            hold: config.hold,
        }
    }
}

/// The three class scores the rule uses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CryClasses {
    pub baby_cry: f32,
    pub crying_sobbing: f32,
    pub whimper: f32,
}

impl CryClasses {
    pub fn from_scores(scores: &[f32]) -> Self {
        let at = |i: usize| scores.get(i).copied().unwrap_or(0.0);
        Self {
            baby_cry: at(CLASS_BABY_CRY),
            crying_sobbing: at(CLASS_CRYING_SOBBING),
            whimper: at(CLASS_WHIMPER),
        }
    }

    /// Rule step 2.
    pub fn cry_score(&self) -> f32 {
        let support = self.crying_sobbing.max(self.whimper);
        self.baby_cry.max((self.baby_cry * support).sqrt())
    }
}

/// One analysed patch. `end` is where it ends on the audio clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Patch {
    pub end: Duration,
    pub rms_dbfs: f32,
    /// `None` when the gate kept it from being scored.
    pub classes: Option<CryClasses>,
}

/// What the detector made of one patch, for the `classify` table and the confidence sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Below the loudness gate: not scored.
    Gated,
    Quiet,
    /// Voted cry, but not (yet) enough votes to start.
    Vote,
    /// A crying patch of an ongoing cry.
    Crying,
    /// Not crying, but within the hold after the last crying patch: the sensor is still on.
    Holding,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Gated => "gated",
            Verdict::Quiet => "-",
            Verdict::Vote => "vote",
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
        /// The highest patch score during the cry.
        confidence: f32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub score: Option<f32>,
    pub verdict: Verdict,
    pub event: Option<CryEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Idle,
    Crying {
        started_at: Duration,
        last_vote_end: Duration,
        peak: f32,
    },
}

#[derive(Debug, Clone)]
pub struct Detector {
    config: DetectorConfig,
    /// The last [`VOTE_WINDOW`] votes, newest last, with each voter's start and score.
    votes: VecDeque<Option<(Duration, f32)>>,
    /// Where the current unbroken run of voting windows began.
    run_start: Option<Duration>,
    phase: Phase,
}

/// YAMNet's patch length.
pub const PATCH: Duration = Duration::from_millis(975);

impl Detector {
    pub fn new(config: DetectorConfig) -> Self {
        Self {
            config,
            votes: VecDeque::with_capacity(VOTE_WINDOW),
            run_start: None,
            phase: Phase::Idle,
        }
    }

    pub fn is_crying(&self) -> bool {
        matches!(self.phase, Phase::Crying { .. })
    }

    pub fn step(&mut self, patch: Patch) -> Step {
        let score = patch
            .classes
            .filter(|_| patch.rms_dbfs >= GATE_DBFS)
            .map(|c| c.cry_score());
        let start = patch.end.saturating_sub(PATCH);
        let vote = score
            .filter(|s| *s >= self.config.threshold)
            .map(|s| (start, s));
        if self.votes.len() == VOTE_WINDOW {
            self.votes.pop_front();
        }
        self.votes.push_back(vote);
        let voters: Vec<(Duration, f32)> = self.votes.iter().flatten().copied().collect();
        let voting = voters.len() >= VOTES_NEEDED;
        if voters.is_empty() {
            self.run_start = None;
        } else if self.run_start.is_none() {
            self.run_start = voters.first().map(|(start, _)| *start);
        }

        let mut event = None;
        match &mut self.phase {
            Phase::Idle => {
                let lasted = self
                    .run_start
                    .map(|run| patch.end.saturating_sub(run))
                    .unwrap_or_default();
                if voting && lasted >= self.config.min_duration.max(PATCH) {
                    let started_at = self.run_start.unwrap_or(start);
                    let confidence =
                        voters.iter().map(|(_, s)| *s).sum::<f32>() / voters.len() as f32;
                    self.phase = Phase::Crying {
                        started_at,
                        last_vote_end: patch.end,
                        peak: voters.iter().map(|(_, s)| *s).fold(0.0, f32::max),
                    };
                    event = Some(CryEvent::Started {
                        at: started_at,
                        confidence,
                    });
                }
            }
            Phase::Crying {
                started_at,
                last_vote_end,
                peak,
            } => {
                if let Some((_, s)) = vote {
                    *last_vote_end = patch.end;
                    *peak = peak.max(s);
                } else if patch.end.saturating_sub(*last_vote_end) >= self.config.hold {
                    event = Some(CryEvent::Ended {
                        started_at: *started_at,
                        ended_at: *last_vote_end,
                        confidence: *peak,
                    });
                    self.phase = Phase::Idle;
                }
            }
        }
        let verdict = match (self.is_crying(), vote.is_some(), score) {
            (true, true, _) => Verdict::Crying,
            (true, false, _) => Verdict::Holding,
            (false, true, _) => Verdict::Vote,
            (false, false, Some(_)) => Verdict::Quiet,
            (false, false, None) => Verdict::Gated,
        };
        Step {
            score,
            verdict,
            event,
        }
    }

    /// The audio stopped (camera gone, detection stopped): a cry in progress ends now, at its
    /// last crying patch, so the sensor never sticks on.
    pub fn finish(&mut self) -> Option<CryEvent> {
        self.votes.clear();
        self.run_start = None;
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Idle => None,
            Phase::Crying {
                started_at,
                last_vote_end,
                peak,
            } => Some(CryEvent::Ended {
                started_at,
                ended_at: last_vote_end,
                confidence: peak,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOP: Duration = Duration::from_millis(480);

    fn config() -> DetectorConfig {
        DetectorConfig {
            threshold: 0.5,
            min_duration: Duration::ZERO,
            hold: Duration::from_secs(2),
        }
    }

    fn cry(baby_cry: f32) -> Option<CryClasses> {
        Some(CryClasses {
            baby_cry,
            ..CryClasses::default()
        })
    }

    /// Feeds patches at the 0.48 s hop; returns each step.
    fn run(detector: &mut Detector, patches: &[(f32, Option<CryClasses>)]) -> Vec<Step> {
        patches
            .iter()
            .enumerate()
            .map(|(i, (rms_dbfs, classes))| {
                detector.step(Patch {
                    end: PATCH + HOP * i as u32,
                    rms_dbfs: *rms_dbfs,
                    classes: *classes,
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
    fn one_crying_patch_is_not_a_cry_but_two_of_three_are() {
        let mut d = Detector::new(config());
        let steps = run(
            &mut d,
            &[(-20.0, cry(0.9)), (-20.0, cry(0.1)), (-20.0, cry(0.1))],
        );
        assert!(started(&steps).is_empty());
        assert_eq!(steps[0].verdict, Verdict::Vote);

        let mut d = Detector::new(config());
        let steps = run(
            &mut d,
            &[(-20.0, cry(0.9)), (-20.0, cry(0.1)), (-20.0, cry(0.7))],
        );
        assert_eq!(started(&steps), vec![2]);
        let Some(CryEvent::Started { at, confidence }) = steps[2].event else {
            unreachable!()
        };
        assert_eq!(
            at,
            Duration::ZERO,
            "the cry starts where its first vote began"
        );
        assert!((confidence - 0.8).abs() < 1e-6);
    }

    #[test]
    fn votes_below_the_loudness_gate_do_not_count() {
        let mut d = Detector::new(config());
        let steps = run(&mut d, &[(-55.0, cry(0.99)), (-55.0, cry(0.99))]);
        assert!(started(&steps).is_empty());
        assert!(steps.iter().all(|s| s.verdict == Verdict::Gated));
        assert!(steps.iter().all(|s| s.score.is_none()));
    }

    #[test]
    fn supporting_classes_lift_a_borderline_cry_but_never_make_one() {
        let borderline = CryClasses {
            baby_cry: 0.42,
            crying_sobbing: 0.56,
            whimper: 0.55,
        };
        assert!((borderline.cry_score() - (0.42f32 * 0.56).sqrt()).abs() < 1e-6);
        let laughter = CryClasses {
            baby_cry: 0.02,
            crying_sobbing: 0.52,
            whimper: 0.75,
        };
        assert!(laughter.cry_score() < 0.15, "{}", laughter.cry_score());
        let strong = CryClasses {
            baby_cry: 0.9,
            crying_sobbing: 0.1,
            whimper: 0.0,
        };
        assert_eq!(strong.cry_score(), 0.9, "support never lowers the score");
    }

    #[test]
    fn the_sensor_holds_through_pauses_and_ends_after_the_hold() {
        let mut d = Detector::new(config());
        // Cry, a 1-patch pause (inside the 2 s hold), cry again, then quiet.
        let mut patches = vec![(-20.0, cry(0.9)); 3];
        patches.push((-20.0, cry(0.0)));
        patches.extend([(-20.0, cry(0.9)); 2]);
        patches.extend([(-60.0, None); 6]);
        let steps = run(&mut d, &patches);
        assert_eq!(started(&steps), vec![1]);
        assert_eq!(steps[3].verdict, Verdict::Holding, "a pause keeps it on");
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
        // Last vote ends at patch 5 (0.975 + 5×0.48 = 3.375 s); 2 s later is patch 10 (5.775 s).
        assert_eq!(ended.len(), 1, "{steps:?}");
        let (index, started_at, ended_at, confidence) = ended[0];
        assert_eq!(index, 10);
        assert_eq!(started_at, Duration::ZERO);
        assert_eq!(ended_at, PATCH + HOP * 5);
        assert!((confidence - 0.9).abs() < 1e-6);
        assert!(!d.is_crying());
    }

    #[test]
    fn min_duration_waits_for_a_longer_run() {
        let mut d = Detector::new(DetectorConfig {
            min_duration: Duration::from_secs(3),
            ..config()
        });
        let steps = run(&mut d, &[(-20.0, cry(0.9)); 6]);
        // The run starts at 0 s; patch i ends at 0.975 + 0.48 i, ≥ 3 s from i = 5.
        assert_eq!(started(&steps), vec![5]);
    }

    #[test]
    fn a_broken_run_restarts_min_duration() {
        let mut d = Detector::new(DetectorConfig {
            min_duration: Duration::from_secs(2),
            ..config()
        });
        let mut patches = vec![(-20.0, cry(0.9)); 2];
        patches.extend([(-20.0, cry(0.0)); 3]);
        patches.extend([(-20.0, cry(0.9)); 4]);
        let steps = run(&mut d, &patches);
        // The second run starts at patch 5 (2.4 s) and reaches 2 s at patch 8 (4.815 s).
        assert_eq!(started(&steps), vec![8]);
        let Some(CryEvent::Started { at, .. }) = steps[8].event else {
            unreachable!()
        };
        assert_eq!(at, HOP * 5);
    }

    #[test]
    fn finish_ends_a_cry_in_progress_and_nothing_else() {
        let mut d = Detector::new(config());
        assert_eq!(d.finish(), None);
        run(&mut d, &[(-20.0, cry(0.9)); 3]);
        assert!(d.is_crying());
        assert!(matches!(
            d.finish(),
            Some(CryEvent::Ended { ended_at, .. }) if ended_at == PATCH + HOP * 2
        ));
        assert!(!d.is_crying());
    }
}

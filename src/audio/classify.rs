//! `ipcam-mqtt classify <file|rtsp://…>`: the detector's view of some audio, patch by patch, so
//! a user can see what their nursery sounds like to the cry model and tune `cry_sensitivity`.
//! Each row is the decision path: level (and the gate), the model's cry probability, the mean
//! of the last three the decision reads, the verdict, and YAMNet's top classes for context.

use super::decode::{Pcm, Pull};
use super::detector::{CryEvent, Detector, DetectorConfig, Patch, RELEASE, SMOOTH};
use super::yamnet::Yamnet;
use super::{Windows, rms_dbfs};
use crate::config::{CryConfig, DEFAULT_CRY_HOLD, DEFAULT_CRY_SENSITIVITY};
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct ClassifyOptions {
    /// A WAV/MP4/MKV file, or an rtsp:// URL (runs until Ctrl+C).
    pub input: String,
    /// The YAMNet .onnx file; default: the config's `cry_model`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// How readily a sound counts as crying, in percent (1 to 99): the mean cry probability
    /// must reach 1 − sensitivity.
    #[arg(long, default_value_t = DEFAULT_CRY_SENSITIVITY)]
    pub sensitivity: u8,
    /// Seconds the votes must last before crying starts.
    #[arg(long, default_value_t = 0.0)]
    pub min_duration: f64,
    /// Seconds crying stays on after the last crying patch.
    #[arg(long, default_value_t = DEFAULT_CRY_HOLD.as_secs_f64())]
    pub hold: f64,
}

/// How often a live input that sends nothing is reported.
const LIVE_WAIT: Duration = Duration::from_secs(10);
/// Short waits, so a failing input (refused, wrong password) is reported at once.
const PULL: Duration = Duration::from_secs(1);

pub fn run(options: &ClassifyOptions, model: PathBuf) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=99).contains(&options.sensitivity),
        "--sensitivity {} is out of range; use 1 to 99 (percent)",
        options.sensitivity
    );
    let seconds = |value: f64, name: &str| {
        anyhow::ensure!(
            value.is_finite() && value >= 0.0,
            "--{name} must be 0 or more seconds"
        );
        Ok(Duration::from_secs_f64(value))
    };
    let config = DetectorConfig::from(&CryConfig {
        enabled: true,
        sensitivity: options.sensitivity,
        min_duration: seconds(options.min_duration, "min-duration")?,
        hold: seconds(options.hold, "hold")?,
    });
    let mut yamnet = Yamnet::load(&model)?;
    let uri = to_uri(&options.input)?;
    let pcm = Pcm::open_uri(&uri).map_err(anyhow::Error::msg)?;
    let mut detector = Detector::new(config);
    let mut windows = Windows::new();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "sensitivity {} %: crying starts when the mean cry probability of {SMOOTH} patches reaches {:.2}, \
         and ends {:.1} s after the last patch at {:.2} or more; min duration {:.1} s; patches under {} dBFS count as 0",
        options.sensitivity,
        config.threshold(),
        config.hold.as_secs_f64(),
        config.threshold() * RELEASE,
        config.min_duration.as_secs_f64(),
        super::detector::GATE_DBFS
    )?;
    writeln!(
        out,
        "{:>13}  {:>7}  {:>5}  {:>5}  {:<7}  YAMNet's top classes",
        "time s", "level", "cry p", "mean", "verdict"
    )?;
    let mut summary = Summary::default();
    let mut waited = Duration::ZERO;
    loop {
        match pcm.pull(PULL) {
            Pull::Samples(samples) => {
                waited = Duration::ZERO;
                windows.push(&samples);
            }
            Pull::Timeout => {
                waited += PULL;
                if waited.as_secs() % LIVE_WAIT.as_secs() == 0 {
                    eprintln!("no audio for {} s; still waiting", waited.as_secs());
                }
                continue;
            }
            Pull::End => break,
            Pull::Failed(error) => anyhow::bail!("cannot read {}: {error}", options.input),
        }
        while let Some((patch, end)) = windows.next_patch() {
            let row = analyse(&mut yamnet, &mut detector, &patch, end)?;
            summary.add(&row);
            writeln!(out, "{}", row.line)?;
        }
    }
    if let Some((patch, end)) = windows.finish() {
        let row = analyse(&mut yamnet, &mut detector, &patch, end)?;
        summary.add(&row);
        writeln!(out, "{}", row.line)?;
    }
    summary.event(detector.finish());
    writeln!(out, "{}", summary.text(options.sensitivity))?;
    Ok(())
}

fn to_uri(input: &str) -> anyhow::Result<String> {
    if input.contains("://") {
        return Ok(input.to_string());
    }
    let path = std::fs::canonicalize(input).with_context(|| format!("cannot open {input}"))?;
    Ok(gstreamer::glib::filename_to_uri(&path, None)
        .with_context(|| format!("{input} has no file URI"))?
        .to_string())
}

struct Row {
    line: String,
    event: Option<CryEvent>,
}

fn analyse(
    yamnet: &mut Yamnet,
    detector: &mut Detector,
    patch: &[f32],
    end: Duration,
) -> anyhow::Result<Row> {
    let rms = rms_dbfs(patch);
    let gated = rms < super::detector::GATE_DBFS;
    // classify scores gated patches too, so the table shows what the gate saved.
    let scores = yamnet.score(patch)?;
    let step = detector.step(Patch {
        end,
        rms_dbfs: rms,
        probability: Some(scores.cry),
    });
    let mut top: Vec<(usize, f32)> = scores.classes.iter().copied().enumerate().collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    let classes = top
        .iter()
        .take(3)
        .map(|(i, s)| format!("{} {s:.2}", yamnet.class_name(*i)))
        .collect::<Vec<_>>()
        .join(" · ");
    let start = end.saturating_sub(super::detector::PATCH);
    let number = |value: Option<f32>| value.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    let mut line = format!(
        "{:>6.2}–{:<6.2}  {:>4.0} dB  {:>5}  {:>5}  {:<7}  {classes}",
        start.as_secs_f64(),
        end.as_secs_f64(),
        rms.max(-99.0),
        if gated {
            format!("({:.2})", scores.cry)
        } else {
            number(step.probability)
        },
        number(step.mean),
        step.verdict.as_str()
    );
    if gated {
        line.push_str("  (below the gate: counts as 0, not scored live)");
    }
    Ok(Row {
        line,
        event: step.event,
    })
}

#[derive(Default)]
struct Summary {
    patches: usize,
    cries: Vec<(Duration, Option<Duration>)>,
}

impl Summary {
    fn add(&mut self, row: &Row) {
        self.patches += 1;
        self.event(row.event);
    }

    fn event(&mut self, event: Option<CryEvent>) {
        match event {
            Some(CryEvent::Started { at, .. }) => self.cries.push((at, None)),
            Some(CryEvent::Ended { ended_at, .. }) => {
                if let Some(last) = self.cries.last_mut() {
                    last.1 = Some(ended_at);
                }
            }
            None => {}
        }
    }

    fn text(&self, sensitivity: u8) -> String {
        let cries = self
            .cries
            .iter()
            .map(|(start, end)| {
                format!(
                    "{:.2}–{:.2} s",
                    start.as_secs_f64(),
                    end.unwrap_or_default().as_secs_f64()
                )
            })
            .collect::<Vec<_>>();
        format!(
            "{} patches; {} cr{}{}{} (sensitivity {sensitivity} %)",
            self.patches,
            cries.len(),
            if cries.len() == 1 { "y" } else { "ies" },
            if cries.is_empty() { "" } else { ": " },
            cries.join(", ")
        )
    }
}

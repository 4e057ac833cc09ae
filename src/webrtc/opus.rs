//! A camera's audio as Opus for WebRTC: transcoded once per camera and shared by every WebRTC
//! viewer. It runs only while at least one viewer is connected.
//!
//! `hub audio (AAC) ! decodebin ! audioconvert ! audioresample ! opusenc ! appsink`, whose
//! frames go to each viewer's appsrc without waiting (a slow viewer drops, the others do not).

use crate::error::{Error, ErrorKind};
use crate::media::hub::{AudioForm, ConsumerLink, Hub, MAX_QUEUE};
use crate::media::pipeline::{PipelineGuard, app_pipeline};
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::{Arc, Mutex};

pub struct OpusFeed {
    hub: Arc<Hub>,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    running: Option<(PipelineGuard, ConsumerLink)>,
    viewers: Vec<(u64, glib::WeakRef<gst_app::AppSrc>)>,
    next: u64,
}

/// A viewer's place in the feed; leaving stops the encoder after the last one.
pub struct FeedSeat {
    feed: Arc<OpusFeed>,
    id: u64,
}

impl Drop for FeedSeat {
    fn drop(&mut self) {
        let stopped = {
            let mut inner = lock(&self.feed.inner);
            inner.viewers.retain(|(id, _)| *id != self.id);
            if inner.viewers.is_empty() {
                inner.running.take()
            } else {
                None
            }
        };
        if let Some((guard, tap)) = stopped {
            drop(tap);
            drop(guard);
        }
    }
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

impl OpusFeed {
    pub fn new(hub: Arc<Hub>) -> Arc<Self> {
        Arc::new(Self {
            hub,
            inner: Arc::default(),
        })
    }

    /// Starts feeding `src` (and the encoder, for the first viewer).
    pub fn join(self: &Arc<Self>, src: &gst_app::AppSrc) -> Result<FeedSeat, Error> {
        let mut inner = lock(&self.inner);
        if inner.running.is_none() {
            inner.running = Some(self.start()?);
        }
        inner.next += 1;
        let id = inner.next;
        inner.viewers.push((id, src.downgrade()));
        Ok(FeedSeat {
            feed: self.clone(),
            id,
        })
    }

    fn start(&self) -> Result<(PipelineGuard, ConsumerLink), Error> {
        let (pipeline, src, sink) = app_pipeline(
            "appsrc name=src format=time is-live=true ! decodebin ! audioconvert ! audioresample \
             ! audio/x-raw,rate=48000,channels=2 ! opusenc frame-size=20 bitrate=48000 \
             ! appsink name=sink sync=false",
            "Opus encoder",
        )?;
        let inner = Arc::downgrade(&self.inner);
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(inner) = inner.upgrade() else {
                        return Err(gst::FlowError::Flushing);
                    };
                    for src in lock(&inner).viewers.iter().filter_map(|(_, w)| w.upgrade()) {
                        if src.current_level_time() <= MAX_QUEUE {
                            let _ = src.push_sample(&sample);
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let tap = self.hub.add_audio_tap(&src, AudioForm::Aac);
        let guard = PipelineGuard::new(pipeline);
        if guard.pipeline().set_state(gst::State::Playing).is_err() {
            return Err(Error::new(
                ErrorKind::Internal,
                "cannot start the Opus encoder",
            ));
        }
        Ok((guard, tap))
    }
}

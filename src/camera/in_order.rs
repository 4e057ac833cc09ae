//! What rtpbin gets instead of rtpjitterbuffer for a camera reached over TCP.
//!
//! TCP delivers every packet, in order, so there is nothing to wait for or reorder; the
//! jitterbuffer's only use there is timestamping, and it costs a thread hand-off per packet (a
//! futex wake-up and a context switch, 37 % of the add-on's CPU samples with 8 cameras). This
//! element timestamps each packet ([`TrackTimeline`]) and pushes it on in the thread that read
//! it. The elements of one camera session share a [`SessionTimeline`], so its tracks agree.
//!
//! It speaks rtpbin's jitterbuffer protocol for lip sync: the camera's RTCP arrives on a
//! `sink_rtcp` request pad, each sender report is placed on our timeline and handed to rtpbin
//! (`handle-sync`), and rtpbin answers with the delay that lines this track up with the camera's
//! other tracks (`ts-offset`).

use super::timeline::{SessionTimeline, TrackTimeline};
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer::subclass::prelude::*;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

glib::wrapper! {
    pub struct InOrderTimestamper(ObjectSubclass<imp::InOrderTimestamper>)
        @extends gst::Element, gst::Object;
}

/// The timeline the tracks of one camera session share.
pub type SharedTimeline = Arc<Mutex<SessionTimeline>>;

impl InOrderTimestamper {
    pub fn new(session: SharedTimeline) -> InOrderTimestamper {
        let element: InOrderTimestamper = glib::Object::new();
        let _ = element.imp().session.set(session);
        element
    }
}

/// The RTP timestamp of a packet, or `None` if it is not RTP version 2.
fn rtp_timestamp(packet: &[u8]) -> Option<u32> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    Some(u32::from_be_bytes([
        packet[4], packet[5], packet[6], packet[7],
    ]))
}

/// The RTP time of a sender report, when it leads a compound RTCP packet (as RFC 3550 says).
fn sender_report_rtp_time(packet: &[u8]) -> Option<u32> {
    const SENDER_REPORT: u8 = 200;
    if packet.len() < 28 || packet[0] >> 6 != 2 || packet[1] != SENDER_REPORT {
        return None;
    }
    Some(u32::from_be_bytes([
        packet[16], packet[17], packet[18], packet[19],
    ]))
}

mod imp {
    use super::*;

    #[derive(Default)]
    struct State {
        track: Option<TrackTimeline>,
        /// rtpbin's lip-sync delay, kept across a new track timeline.
        ts_offset: i64,
    }

    pub struct InOrderTimestamper {
        sinkpad: gst::Pad,
        srcpad: gst::Pad,
        state: Mutex<State>,
        pub(super) session: OnceLock<SharedTimeline>,
        /// rtpbin sets it on every jitterbuffer; nothing here waits, so it is only kept.
        latency: Mutex<u32>,
    }

    impl InOrderTimestamper {
        fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }

        fn session(&self) -> std::sync::MutexGuard<'_, SessionTimeline> {
            self.session
                .get_or_init(SharedTimeline::default)
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        }

        fn chain(&self, mut buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
            let arrival = self.obj().current_running_time();
            let rtp_time = buffer.map_readable().ok().and_then(|m| rtp_timestamp(&m));
            if let (Some(arrival), Some(rtp_time)) = (arrival, rtp_time) {
                let mut state = self.state();
                if let Some(track) = state.track.as_mut() {
                    let pts = track.pts(&mut self.session(), rtp_time, arrival.nseconds());
                    let buffer = buffer.make_mut();
                    buffer.set_pts(gst::ClockTime::from_nseconds(pts));
                    buffer.set_dts(gst::ClockTime::NONE);
                }
            }
            self.srcpad.push(buffer)
        }

        /// A sender report goes to rtpbin, placed on our timeline; nothing else of RTCP is ours.
        fn rtcp_chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
            let Some(rtp_time) = buffer
                .map_readable()
                .ok()
                .and_then(|m| sender_report_rtp_time(&m))
            else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let sync = {
                let state = self.state();
                state.track.as_ref().and_then(|track| {
                    let point = track.sync_point(&self.session(), rtp_time)?;
                    Some(
                        gst::Structure::builder("application/x-rtp-sync")
                            .field("base-rtptime", point.extended_rtp)
                            .field("base-time", point.time)
                            .field("clock-rate", track.clock_rate())
                            .field("clock-base", track.clock_base())
                            .field("sr-ext-rtptime", point.extended_rtp)
                            .field("sr-buffer", &buffer)
                            .build(),
                    )
                })
            };
            // Not under our lock: rtpbin's handler sets ts-offset on us.
            if let Some(sync) = sync {
                self.obj().emit_by_name::<()>("handle-sync", &[&sync]);
            }
            Ok(gst::FlowSuccess::Ok)
        }

        fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
            if let gst::EventView::Caps(caps) = event.view() {
                let s = caps.caps().structure(0);
                let rate = s
                    .and_then(|s| s.get::<i32>("clock-rate").ok())
                    .and_then(|rate| u32::try_from(rate).ok());
                let clock_base = s.and_then(|s| s.get::<u32>("clock-base").ok());
                let mut state = self.state();
                // Without a clock rate, packets keep the times rtspsrc gave them.
                if state.track.as_ref().map(TrackTimeline::clock_rate) != rate {
                    let ts_offset = state.ts_offset;
                    state.track = rate.map(|rate| {
                        let mut track = TrackTimeline::new(rate, clock_base);
                        track.set_sync_offset(ts_offset);
                        track
                    });
                }
            }
            gst::Pad::event_default(pad, Some(&*self.obj()), event)
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for InOrderTimestamper {
        const NAME: &'static str = "IpcamInOrderTimestamper";
        type Type = super::InOrderTimestamper;
        type ParentType = gst::Element;

        fn with_class(klass: &Self::Class) -> Self {
            let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
                .chain_function(|_, parent, buffer| {
                    InOrderTimestamper::catch_panic_pad_function(
                        parent,
                        || Err(gst::FlowError::Error),
                        |this| this.chain(buffer),
                    )
                })
                .event_function(|pad, parent, event| {
                    InOrderTimestamper::catch_panic_pad_function(
                        parent,
                        || false,
                        |this| this.sink_event(pad, event),
                    )
                })
                .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
                .build();
            let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap())
                .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
                .build();
            InOrderTimestamper {
                sinkpad,
                srcpad,
                state: Mutex::new(State::default()),
                session: OnceLock::new(),
                latency: Mutex::new(0),
            }
        }
    }

    impl ObjectImpl for InOrderTimestamper {
        fn properties() -> &'static [glib::ParamSpec] {
            static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
                vec![
                    glib::ParamSpecUInt::builder("latency")
                        .nick("Latency")
                        .blurb("Kept for rtpbin; nothing is held back")
                        .build(),
                    glib::ParamSpecInt64::builder("ts-offset")
                        .nick("Timestamp offset")
                        .blurb("The lip-sync delay rtpbin computed, in ns")
                        .build(),
                ]
            });
            PROPERTIES.as_ref()
        }

        fn signals() -> &'static [glib::subclass::Signal] {
            static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
                vec![
                    glib::subclass::Signal::builder("handle-sync")
                        .param_types([gst::Structure::static_type()])
                        .build(),
                ]
            });
            SIGNALS.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            match pspec.name() {
                "latency" => {
                    *self.latency.lock().unwrap_or_else(|e| e.into_inner()) =
                        value.get().unwrap_or(0);
                }
                "ts-offset" => {
                    let ts_offset = value.get().unwrap_or(0);
                    tracing::debug!(
                        "lip-sync delay from the camera's sender reports: {ts_offset} ns"
                    );
                    let mut state = self.state();
                    state.ts_offset = ts_offset;
                    if let Some(track) = state.track.as_mut() {
                        track.set_sync_offset(ts_offset);
                    }
                }
                _ => unreachable!("only the properties declared above"),
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            match pspec.name() {
                "latency" => self
                    .latency
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .to_value(),
                "ts-offset" => self.state().ts_offset.to_value(),
                _ => unreachable!("only the properties declared above"),
            }
        }

        fn constructed(&self) {
            self.parent_constructed();
            let element = self.obj();
            element
                .add_pad(&self.sinkpad)
                .expect("a new element takes its pads");
            element
                .add_pad(&self.srcpad)
                .expect("a new element takes its pads");
        }
    }

    impl GstObjectImpl for InOrderTimestamper {}

    impl ElementImpl for InOrderTimestamper {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "In-order RTP timestamper",
                    "Filter/Network/RTP",
                    "Timestamps RTP packets that arrive in order, without a thread of its own",
                    "ipcam-mqtt",
                )
            });
            Some(&*METADATA)
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                let rtp = gst::Caps::new_empty_simple("application/x-rtp");
                let template = |name, direction, presence, caps: &gst::Caps| {
                    gst::PadTemplate::new(name, direction, presence, caps)
                        .expect("a valid template")
                };
                vec![
                    template(
                        "sink",
                        gst::PadDirection::Sink,
                        gst::PadPresence::Always,
                        &rtp,
                    ),
                    template(
                        "src",
                        gst::PadDirection::Src,
                        gst::PadPresence::Always,
                        &rtp,
                    ),
                    template(
                        "sink_rtcp",
                        gst::PadDirection::Sink,
                        gst::PadPresence::Request,
                        &gst::Caps::new_empty_simple("application/x-rtcp"),
                    ),
                ]
            });
            TEMPLATES.as_ref()
        }

        fn request_new_pad(
            &self,
            template: &gst::PadTemplate,
            _name: Option<&str>,
            _caps: Option<&gst::Caps>,
        ) -> Option<gst::Pad> {
            let pad = gst::Pad::builder_from_template(template)
                .name("sink_rtcp")
                .chain_function(|_, parent, buffer| {
                    InOrderTimestamper::catch_panic_pad_function(
                        parent,
                        || Err(gst::FlowError::Error),
                        |this| this.rtcp_chain(buffer),
                    )
                })
                // RTCP's own events (its caps, EOS) are not the media's: they end here.
                .event_function(|_, _, _| true)
                .build();
            pad.set_active(true).ok()?;
            self.obj().add_pad(&pad).ok()?;
            Some(pad)
        }

        fn release_pad(&self, pad: &gst::Pad) {
            let _ = pad.set_active(false);
            let _ = self.obj().remove_pad(pad);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rtp_timestamp() {
        let packet = [0x80, 96, 0, 1, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 1, 0xAA];
        assert_eq!(rtp_timestamp(&packet), Some(0x1234_5678));
        assert_eq!(rtp_timestamp(&packet[..11]), None, "too short");
        assert_eq!(rtp_timestamp(&[0x40; 12]), None, "version 1");
    }

    #[test]
    fn reads_a_sender_reports_rtp_time() {
        let mut report = [0u8; 28];
        report[0] = 0x80;
        report[1] = 200;
        report[16..20].copy_from_slice(&0xDEAD_BEEFu32.to_be_bytes());
        assert_eq!(sender_report_rtp_time(&report), Some(0xDEAD_BEEF));
        let mut receiver_report = report;
        receiver_report[1] = 201;
        assert_eq!(sender_report_rtp_time(&receiver_report), None);
        assert_eq!(sender_report_rtp_time(&report[..27]), None, "too short");
    }
}

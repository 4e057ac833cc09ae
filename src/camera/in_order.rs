//! What rtpbin gets instead of rtpjitterbuffer for a camera reached over TCP.
//!
//! TCP delivers every packet, in order, so there is nothing to wait for or reorder; the
//! jitterbuffer's only use there is timestamping, and it costs a thread hand-off per packet (a
//! futex wake-up and a context switch, 37 % of the add-on's CPU samples with 8 cameras). This
//! element timestamps each packet ([`Timeline`]) and pushes it on in the thread that read it.

use super::timeline::Timeline;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer::subclass::prelude::*;
use std::sync::{LazyLock, Mutex};

glib::wrapper! {
    pub struct InOrderTimestamper(ObjectSubclass<imp::InOrderTimestamper>)
        @extends gst::Element, gst::Object;
}

impl InOrderTimestamper {
    pub fn new() -> InOrderTimestamper {
        glib::Object::new()
    }
}

impl Default for InOrderTimestamper {
    fn default() -> Self {
        Self::new()
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

mod imp {
    use super::*;

    pub struct InOrderTimestamper {
        sinkpad: gst::Pad,
        srcpad: gst::Pad,
        timeline: Mutex<Option<Timeline>>,
        /// rtpbin sets it on every jitterbuffer; nothing here waits, so it is only kept.
        latency: Mutex<u32>,
    }

    impl InOrderTimestamper {
        fn chain(&self, mut buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
            let arrival = self.obj().current_running_time();
            let rtp_time = buffer.map_readable().ok().and_then(|m| rtp_timestamp(&m));
            if let (Some(arrival), Some(rtp_time)) = (arrival, rtp_time) {
                let mut timeline = self.timeline.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(timeline) = timeline.as_mut() {
                    let pts = timeline.pts(rtp_time, arrival.nseconds());
                    let buffer = buffer.make_mut();
                    buffer.set_pts(gst::ClockTime::from_nseconds(pts));
                    buffer.set_dts(gst::ClockTime::NONE);
                }
            }
            self.srcpad.push(buffer)
        }

        fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
            if let gst::EventView::Caps(caps) = event.view() {
                let rate = caps
                    .caps()
                    .structure(0)
                    .and_then(|s| s.get::<i32>("clock-rate").ok())
                    .and_then(|rate| u32::try_from(rate).ok());
                // Without a clock rate, packets keep the times rtspsrc gave them.
                *self.timeline.lock().unwrap_or_else(|e| e.into_inner()) = rate.map(Timeline::new);
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
                timeline: Mutex::new(None),
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
                ]
            });
            PROPERTIES.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            if pspec.name() == "latency" {
                *self.latency.lock().unwrap_or_else(|e| e.into_inner()) = value.get().unwrap_or(0);
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            match pspec.name() {
                "latency" => self
                    .latency
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .to_value(),
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
                let caps = gst::Caps::new_empty_simple("application/x-rtp");
                vec![
                    gst::PadTemplate::new(
                        "sink",
                        gst::PadDirection::Sink,
                        gst::PadPresence::Always,
                        &caps,
                    )
                    .expect("a valid template"),
                    gst::PadTemplate::new(
                        "src",
                        gst::PadDirection::Src,
                        gst::PadPresence::Always,
                        &caps,
                    )
                    .expect("a valid template"),
                ]
            });
            TEMPLATES.as_ref()
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
}

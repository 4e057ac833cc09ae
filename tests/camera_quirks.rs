//! Cameras that bend RTSP, each quirk of `src/camera/quirks.rs` played by a scripted camera
//! (`common::scripted_camera`): the add-on must still relay H.264 and AAC from it.
mod common;
use common::*;

fn relays(quirks: Quirks) {
    let camera = ScriptedCamera::start(quirks);
    let broker = Mosquitto::start();
    let addon = AddOn::start(&config(
        broker.port,
        free_port(),
        &[("quirky", &camera.url(), "")],
    ));
    let codecs = ffprobe_codecs(&addon.live_url("quirky"), "tcp")
        .unwrap_or_else(|e| panic!("ffprobe: {e}\n{}", addon.logs()));
    assert_eq!(codecs, ["h264", "aac"], "{quirks:?}\n{}", addon.logs());
}

#[test]
fn a_camera_that_bends_nothing_is_relayed() {
    relays(Quirks::default());
}

/// What gst-rtsp-server does when a client joins a shared stream under load: its first packets
/// precede the `seq` it named. Over TCP, retina would end the session at the first packet.
#[test]
fn a_camera_whose_rtp_info_names_a_later_seq_is_relayed() {
    relays(Quirks {
        rtp_info_seq_ahead: 3,
        ..Quirks::default()
    });
}

#[test]
fn a_camera_without_rtptime_in_rtp_info_is_relayed() {
    relays(Quirks {
        rtp_info_without_rtptime: true,
        ..Quirks::default()
    });
}

#[test]
fn a_camera_with_a_new_session_id_on_each_setup_is_relayed() {
    relays(Quirks {
        new_session_id_per_setup: true,
        ..Quirks::default()
    });
}

//! Every way a camera bends RTSP that we allow for, as a named policy, in one place.
//!
//! The connection (`source`) asks here for its RTSP options and nowhere else, so a newly met
//! camera quirk is one more named policy in this file, with the camera it came from.

use retina::client::{
    Credentials, InitialSequenceNumberPolicy, InitialTimestampPolicy, PlayOptions, SessionIdPolicy,
    SessionOptions, TeardownPolicy, Transport,
};
use retina::codec::{FrameFormat, ParameterSetInsertion};

/// Some cameras give `rtptime` in RTP-Info for one track and not the other, or for none.
/// `Require` would refuse them; with this the tracks start at their first packets then, and
/// lip sync is as good as the camera's first packets are together.
const RTP_INFO: InitialTimestampPolicy = InitialTimestampPolicy::Permissive;

/// The first packet's sequence number is taken as it comes, not as RTP-Info says. Servers built
/// on gst-rtsp-server (our stand-in camera among them) that share one stream between clients
/// name a `seq` in RTP-Info that packets already in flight precede when a client joins under
/// load; with 32 cameras joining at once, a third of the sessions failed with "Out-of-order
/// packet or large loss". Retina also lists cameras that always send `seq=0` or `seq=1`
/// (Hikvision DS-2CD2032-I, Tapo C320WS).
const RTP_INFO_SEQ: InitialSequenceNumberPolicy = InitialSequenceNumberPolicy::Ignore;

/// Some cameras answer each SETUP with a new session id (retina calls them "broken cameras");
/// the first one is the session's.
const SESSION_ID: SessionIdPolicy = SessionIdPolicy::UseFirst;

/// One TEARDOWN on the connection, then it is closed: a camera that allows one client per
/// stream (many do) is free again at once, and a dead camera cannot hold a stop up.
const TEARDOWN: TeardownPolicy = TeardownPolicy::Auto;

/// Parameter sets (SPS/PPS, and VPS for H.265) go in front of every keyframe, as
/// `h264parse config-interval=-1` put them: a viewer, recorder or decoder that starts at any
/// keyframe can decode it, and a camera that changes resolution mid-stream is followed. NAL units
/// are length-prefixed (`avc`/`hvc1`), what every consumer of the hub takes.
pub const FRAME_FORMAT: FrameFormat = FrameFormat {
    parameter_set_insertion: ParameterSetInsertion::EachKeyFrame,
    ..FrameFormat::MP4
};

/// How we introduce ourselves; cameras log it.
fn user_agent() -> String {
    format!("ipcam-mqtt/{}", env!("CARGO_PKG_VERSION"))
}

pub fn session_options(credentials: Option<Credentials>) -> SessionOptions {
    SessionOptions::default()
        .creds(credentials)
        .user_agent(user_agent())
        .session_id(SESSION_ID)
        .teardown(TEARDOWN)
}

pub fn play_options() -> PlayOptions {
    PlayOptions::default()
        .initial_timestamp(RTP_INFO)
        .initial_seq(RTP_INFO_SEQ)
}

pub fn transport(transport: crate::config::Transport) -> Transport {
    match transport {
        crate::config::Transport::Tcp => Transport::Tcp(Default::default()),
        crate::config::Transport::Udp => Transport::Udp(Default::default()),
    }
}

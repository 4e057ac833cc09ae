//! A synthetic RTSP camera: a GStreamer test source served by gst-rtsp-server.
//!
//! It stands in for a real camera in the demo, the tests and the benchmarks: a moving ball with a
//! clock and a tone, H.264 or H.265 with G.711, AAC or Opus audio, an adjustable GOP and optional
//! credentials. Like a real camera, all clients share one encoder pipeline.

use clap::{Args, ValueEnum};
use gstreamer::glib;
use gstreamer_rtsp_server as gst_rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VideoCodec {
    H264,
    H265,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AudioCodec {
    None,
    Pcma,
    Pcmu,
    Aac,
    /// AAC in LATM framing (MP4A-LATM), as some cameras send it.
    AacLatm,
    Opus,
}

#[derive(Debug, Clone, Args)]
pub struct TestCameraOptions {
    /// Port to serve on (0 picks a free one).
    #[arg(long, default_value_t = 8555)]
    pub port: u16,
    /// Path of the stream.
    #[arg(long, default_value = "/stream")]
    pub path: String,
    #[arg(long, value_enum, default_value_t = VideoCodec::H264)]
    pub video: VideoCodec,
    #[arg(long, value_enum, default_value_t = AudioCodec::Pcma)]
    pub audio: AudioCodec,
    #[arg(long, default_value_t = 640)]
    pub width: u32,
    #[arg(long, default_value_t = 360)]
    pub height: u32,
    #[arg(long, default_value_t = 25)]
    pub fps: u32,
    /// Frames between keyframes (1 makes every frame a keyframe).
    #[arg(long, default_value_t = 50)]
    pub gop: u32,
    /// videotestsrc pattern: `ball` moves; `snow` is noise, for a high real bitrate.
    #[arg(long, default_value = "ball")]
    pub pattern: String,
    /// Video bitrate in kbit/s.
    #[arg(long, default_value_t = 1000)]
    pub bitrate: u32,
    /// Require these credentials (Basic auth).
    #[arg(long)]
    pub username: Option<String>,
    #[arg(long)]
    pub password: Option<String>,
    /// Play this file in real time instead of the test pattern. An H.264 MKV/MP4 plays once per
    /// client, from the start, and `--audio` names its audio codec: pcma, pcmu, aac or none. An
    /// Annex-B `.h264` or `.h265` stream at `--fps` loops for ever, shared by every client like
    /// a camera, with the test tone as `--audio` (the benchmarks' cameras: no encoder to pay for).
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    /// Stamp each frame with the wall clock as 32 black/white 16×16 blocks along its top edge
    /// (milliseconds since the epoch, low 32 bits, most significant first), for measuring
    /// glass-to-glass latency. Needs a width of at least 512.
    #[arg(long)]
    pub timecode: bool,
}

impl Default for TestCameraOptions {
    fn default() -> Self {
        Self {
            port: 0,
            path: "/stream".into(),
            video: VideoCodec::H264,
            audio: AudioCodec::Pcma,
            width: 640,
            height: 360,
            fps: 25,
            gop: 50,
            pattern: "ball".into(),
            bitrate: 1000,
            username: None,
            password: None,
            file: None,
            timecode: false,
        }
    }
}

impl TestCameraOptions {
    /// The gst-launch description of the camera's media.
    pub fn launch(&self) -> String {
        if let Some(file) = &self.file {
            return self.file_launch(file);
        }
        let Self {
            width,
            height,
            fps,
            gop,
            bitrate,
            pattern,
            ..
        } = self;
        // The wall clock on the picture, where the pango plugin is installed (the add-on's image
        // leaves it out: it pulls in X11 and fonts for a demo nicety).
        let clock = if gstreamer::ElementFactory::find("clockoverlay").is_some() {
            "clockoverlay shaded-background=true font-desc=\"Sans 24\" !"
        } else {
            ""
        };
        let raw = format!(
            "videotestsrc is-live=true pattern={pattern} ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 ! {clock} identity name=stamp"
        );
        let video = match self.video {
            VideoCodec::H264 => format!(
                "{raw} ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate={bitrate} ! rtph264pay name=pay0 pt=96"
            ),
            VideoCodec::H265 => format!(
                "{raw} ! x265enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate={bitrate} ! rtph265pay name=pay0 pt=96"
            ),
        };
        format!("( {video} {} )", self.tone())
    }

    /// The test tone in the `--audio` codec.
    fn tone(&self) -> String {
        let tone = "audiotestsrc is-live=true wave=sine freq=440 volume=0.3";
        match self.audio {
            AudioCodec::None => String::new(),
            AudioCodec::Pcma => format!(
                "{tone} ! audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name=pay1 pt=8 max-ptime=20000000"
            ),
            AudioCodec::Pcmu => format!(
                "{tone} ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay1 pt=0 max-ptime=20000000"
            ),
            AudioCodec::Aac => format!(
                "{tone} ! audio/x-raw,rate=16000,channels=1 ! audioconvert ! avenc_aac ! rtpmp4gpay name=pay1 pt=97"
            ),
            AudioCodec::AacLatm => format!(
                "{tone} ! audio/x-raw,rate=16000,channels=1 ! audioconvert ! avenc_aac ! rtpmp4apay name=pay1 pt=97"
            ),
            AudioCodec::Opus => format!(
                "{tone} ! audio/x-raw,rate=48000,channels=1 ! opusenc ! rtpopuspay name=pay1 pt=98"
            ),
        }
    }

    /// Whether every client shares one pipeline, as with a real camera.
    fn shared(&self) -> bool {
        self.file.as_deref().is_none_or(is_elementary_stream)
    }
}

/// An Annex-B `.h264`/`.h265` file, which loops.
fn is_elementary_stream(file: &std::path::Path) -> bool {
    matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("h264" | "h265")
    )
}

impl TestCameraOptions {
    fn file_launch(&self, file: &std::path::Path) -> String {
        if is_elementary_stream(file) {
            let codec = if file.extension().is_some_and(|e| e == "h265") {
                "h265"
            } else {
                "h264"
            };
            // The parser stamps DTS from the frame rate across loops; clocksync paces them.
            return format!(
                "( multifilesrc location=\"{}\" loop=true caps=\"video/x-{codec},stream-format=byte-stream,framerate={}/1\" ! {codec}parse ! identity name=restamp ! clocksync ! rtp{codec}pay name=pay0 pt=96 config-interval=-1 {} )",
                file.display(),
                self.fps,
                self.tone()
            );
        }
        let demux = match file.extension().and_then(|e| e.to_str()) {
            Some("mkv") | Some("webm") => "matroskademux",
            _ => "qtdemux",
        };
        let audio = match self.audio {
            AudioCodec::Pcma => "d.audio_0 ! queue ! rtppcmapay name=pay1 pt=8",
            AudioCodec::Pcmu => "d.audio_0 ! queue ! rtppcmupay name=pay1 pt=0",
            AudioCodec::Aac => "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97",
            _ => "",
        };
        format!(
            "( filesrc location=\"{}\" ! {demux} name=d d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 {audio} )",
            file.display()
        )
    }
}

/// A running test camera; dropping it stops serving.
pub struct TestCamera {
    _server: gst_rtsp_server::RTSPServer,
    source: Option<glib::SourceId>,
    port: u16,
    path: String,
    connections: Arc<AtomicUsize>,
}

impl TestCamera {
    /// Serves on the default main context; a GLib main loop (or [`run_test_camera`]) must run it.
    pub fn start(options: &TestCameraOptions) -> anyhow::Result<TestCamera> {
        let server = gst_rtsp_server::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&options.port.to_string());
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        factory.set_launch(&options.launch());
        factory.set_shared(options.shared());
        if options.file.as_deref().is_some_and(is_elementary_stream) {
            factory.connect_media_configure(|_, media| restamp_presentation(media));
        }
        if options.timecode {
            let width = options.width as usize;
            factory.connect_media_configure(move |_, media| {
                let stamp = media
                    .element()
                    .downcast_ref::<gstreamer::Bin>()
                    .and_then(|bin| bin.by_name_recurse_up("stamp"));
                if let Some(pad) = stamp.and_then(|s| s.static_pad("src")) {
                    pad.add_probe(gstreamer::PadProbeType::BUFFER, move |_, info| {
                        if let Some(buffer) = info.buffer_mut() {
                            stamp_time(buffer.make_mut(), width);
                        }
                        gstreamer::PadProbeReturn::Ok
                    });
                }
            });
        }
        if let (Some(user), Some(pass)) = (&options.username, &options.password) {
            let auth = gst_rtsp_server::RTSPAuth::new();
            let token = gst_rtsp_server::RTSPToken::builder()
                .field(gst_rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
                .build();
            auth.add_basic(&gst_rtsp_server::RTSPAuth::make_basic(user, pass), &token);
            server.set_auth(Some(&auth));
            factory.add_role_from_structure(
                &gstreamer::Structure::builder("user")
                    .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                    .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                    .build(),
            );
        }
        server
            .mount_points()
            .ok_or_else(|| anyhow::anyhow!("no mount points"))?
            .add_factory(&options.path, factory);
        let connections = Arc::new(AtomicUsize::new(0));
        {
            let connections = connections.clone();
            server.connect_client_connected(move |_, client| {
                // Like a well-behaved camera: no Nagle delay on the frames it sends.
                crate::rtsp::server::send_without_delay(client);
                let total = connections.fetch_add(1, Ordering::SeqCst) + 1;
                println!("test-camera: client connected (total {total})");
            });
        }
        let source = server
            .attach(None)
            .map_err(|e| anyhow::anyhow!("cannot serve the test camera: {e}"))?;
        let port = server.bound_port() as u16;
        Ok(TestCamera {
            _server: server,
            source: Some(source),
            port,
            path: options.path.clone(),
            connections,
        })
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}{}", self.port, self.path)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TestCamera {
    fn drop(&mut self) {
        if let Some(source) = self.source.take() {
            source.remove();
        }
    }
}

/// The parser leaves a looped stream's PTS unset; without B-frames PTS is DTS, and the
/// payloader takes the RTP timestamp from the PTS.
fn restamp_presentation(media: &gst_rtsp_server::RTSPMedia) {
    let restamp = media
        .element()
        .downcast_ref::<gstreamer::Bin>()
        .and_then(|bin| bin.by_name_recurse_up("restamp"));
    if let Some(pad) = restamp.and_then(|r| r.static_pad("src")) {
        pad.add_probe(gstreamer::PadProbeType::BUFFER, |_, info| {
            if let Some(buffer) = info.buffer_mut()
                && buffer.pts().is_none()
            {
                let dts = buffer.dts();
                buffer.make_mut().set_pts(dts);
            }
            gstreamer::PadProbeReturn::Ok
        });
    }
}

/// Writes the wall clock's milliseconds into the luma of an I420 frame (see `--timecode`).
fn stamp_time(buffer: &mut gstreamer::BufferRef, width: usize) {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u32);
    let Ok(mut map) = buffer.map_writable() else {
        return;
    };
    let stride = width.next_multiple_of(4);
    for bit in 0..32usize {
        let level = if millis >> (31 - bit) & 1 == 1 {
            235
        } else {
            16
        };
        for y in 0..16 {
            let row = y * stride + bit * 16;
            if let Some(block) = map.get_mut(row..row + 16) {
                block.fill(level);
            }
        }
    }
}

/// `ipcam-mqtt test-camera`: serves until killed.
pub fn run_test_camera(options: &TestCameraOptions) -> anyhow::Result<()> {
    let camera = TestCamera::start(options)?;
    println!("test-camera: serving {}", camera.url());
    glib::MainLoop::new(None, false).run();
    Ok(())
}

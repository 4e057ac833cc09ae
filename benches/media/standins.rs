//! The benchmark's camera stand-ins: realistic streams encoded once by ffmpeg into
//! `target/bench-media/` and looped in real time by `ipcam-mqtt test-camera --file`, with a
//! G.711 A-law tone (Tapo's audio, which the add-on transcodes) or an AAC one (Reolink's, passed
//! through). Looping a file costs the stand-in no encoder, so the machine's CPU goes to
//! what is measured.

use crate::common::Camera;
use std::path::PathBuf;
use std::process::Command;

pub struct StandIn {
    /// How tables name it.
    pub label: &'static str,
    file: &'static str,
    size: &'static str,
    hevc: bool,
    bitrate: &'static str,
    /// Frames from one keyframe to the next, at 25 fps.
    gop: u32,
    /// The tone's codec, as `test-camera --audio` names it.
    audio: &'static str,
}

/// 1080p25 H.264 at 4 Mbit/s with a 2 s GOP: a typical camera main stream.
pub const H264_1080P_GOP2: StandIn = StandIn {
    label: "1080p H.264 4 Mbit/s, 2 s GOP",
    file: "1080p-gop2s.h264",
    size: "1920x1080",
    hevc: false,
    bitrate: "4M",
    gop: 50,
    audio: "pcma",
};

/// The same with AAC audio, which the add-on passes through as it came.
pub const H264_1080P_GOP2_AAC: StandIn = StandIn {
    label: "1080p H.264 4 Mbit/s, 2 s GOP, AAC audio",
    audio: "aac",
    ..H264_1080P_GOP2
};

/// The same with a 4 s GOP, as Reolink and Tapo cameras often send.
pub const H264_1080P_GOP4: StandIn = StandIn {
    label: "1080p H.264 4 Mbit/s, 4 s GOP",
    file: "1080p-gop4s.h264",
    gop: 100,
    ..H264_1080P_GOP2
};

/// Every frame a keyframe: the floor for a client's first frame.
pub const H264_1080P_INTRA: StandIn = StandIn {
    label: "1080p H.264 all-intra 8 Mbit/s",
    file: "1080p-intra.h264",
    bitrate: "8M",
    gop: 1,
    ..H264_1080P_GOP2
};

/// 4K25 H.265 at 8 Mbit/s with a 2 s GOP.
pub const H265_4K: StandIn = StandIn {
    label: "4K H.265 8 Mbit/s, 2 s GOP",
    file: "2160p-gop2s.h265",
    size: "3840x2160",
    hevc: true,
    bitrate: "8M",
    gop: 50,
    audio: "pcma",
};

impl StandIn {
    /// Serves the stream, encoding it first if `target/bench-media/` does not have it yet.
    pub fn start(&self) -> Camera {
        let path = self.media();
        Camera::start(&["--file", path.to_str().unwrap(), "--audio", self.audio])
    }

    fn media(&self) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-media");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(self.file);
        if path.exists() {
            return path;
        }
        eprintln!(
            "bench: encoding {} once into {}",
            self.label,
            path.display()
        );
        let partial = path.with_extension("partial");
        // 8 s: whole GOPs, so the loop joins at a keyframe; no B-frames, no scene cuts.
        let gop = self.gop.to_string();
        let encoder = if self.hevc {
            let params =
                format!("keyint={gop}:min-keyint={gop}:bframes=0:scenecut=0:log-level=error");
            ["-c:v", "libx265", "-x265-params", &params, "-f", "hevc"]
                .map(String::from)
                .to_vec()
        } else {
            [
                "-c:v",
                "libx264",
                "-g",
                &gop,
                "-sc_threshold",
                "0",
                "-f",
                "h264",
            ]
            .map(String::from)
            .to_vec()
        };
        let status = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=1920x1080:rate=25,noise=alls=12:allf=t")
            .args([
                "-t",
                "8",
                "-bf",
                "0",
                "-preset",
                "ultrafast",
                "-s",
                self.size,
            ])
            .args([
                "-b:v",
                self.bitrate,
                "-maxrate",
                self.bitrate,
                "-bufsize",
                self.bitrate,
            ])
            .args(encoder)
            .arg(&partial)
            .status()
            .expect("ffmpeg");
        assert!(status.success(), "ffmpeg could not encode {}", self.label);
        std::fs::rename(&partial, &path).unwrap();
        path
    }
}

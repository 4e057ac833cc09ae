//! The hub's behaviour, driven through its faces with real appsrcs.

use super::*;
use gstreamer::prelude::*;

fn frame(pts_ms: u64, keyframe: bool) -> gst::Sample {
    let mut buffer = gst::Buffer::from_slice(vec![if keyframe { 0x65u8 } else { 0x41 }; 64]);
    {
        let buffer = buffer.get_mut().unwrap();
        buffer.set_pts(gst::ClockTime::from_mseconds(pts_ms));
        if !keyframe {
            buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
    }
    let caps = gst::Caps::builder("video/x-h264")
        .field("stream-format", "avc")
        .field("alignment", "au")
        .build();
    camera_sample(&buffer, &caps)
}

/// Camera samples carry their time segment; appsrc measures its queue with it.
fn camera_sample(buffer: &gst::Buffer, caps: &gst::Caps) -> gst::Sample {
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    gst::Sample::builder()
        .buffer(buffer)
        .caps(caps)
        .segment(&segment)
        .build()
}

/// `appsrc ! queue ! appsink`: a consumer whose output the test reads, or never reads.
fn consumer_pipeline() -> (gst::Pipeline, gst_app::AppSrc, gst_app::AppSink) {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(
        "appsrc name=src ! queue max-size-buffers=1 ! appsink name=sink sync=false max-buffers=1",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .and_downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .and_downcast::<gst_app::AppSink>()
        .unwrap();
    (pipeline, src, sink)
}

fn pull_pts(sink: &gst_app::AppSink) -> (u64, bool) {
    let sample = sink
        .try_pull_sample(gst::ClockTime::from_seconds(2))
        .expect("a frame reaches the consumer");
    let buffer = sample.buffer().unwrap();
    (
        buffer.pts().unwrap().mseconds(),
        !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
    )
}

fn running_hub() -> (Arc<Hub>, SessionWriter) {
    gst::init().unwrap();
    let hub = Hub::new();
    let writer = hub.begin_session();
    writer.set_tracks(false, None);
    (hub, writer)
}

#[test]
fn a_joining_consumer_gets_the_gop_restamped_just_before_the_newest_frame() {
    let (hub, writer) = running_hub();
    for (pts, key) in [(1000, true), (1040, false), (1080, false)] {
        writer.push_video(frame(pts, key));
    }
    let (pipeline, src, sink) = consumer_pipeline();
    let _link = hub.add_consumer(&src, None);
    // Its media starts now: the GOP arrives without waiting for a live frame.
    pipeline.set_state(gst::State::Playing).unwrap();
    assert_eq!(pull_pts(&sink), (1076, true));
    assert_eq!(pull_pts(&sink), (1078, false));
    assert_eq!(pull_pts(&sink), (1080, false));
    writer.push_video(frame(1120, false));
    assert_eq!(pull_pts(&sink), (1120, false));
    pipeline.set_state(gst::State::Null).unwrap();
}

fn audio_frame(pts_ms: u64) -> gst::Sample {
    let mut buffer = gst::Buffer::from_slice(vec![0u8; 16]);
    buffer
        .get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_mseconds(pts_ms));
    let caps = gst::Caps::builder("audio/mpeg")
        .field("mpegversion", 4i32)
        .build();
    camera_sample(&buffer, &caps)
}

/// Encoded audio comes out after the video of the same instant. A viewer joining between
/// them got its first audio stamped at the video's time, and the next live frame went back
/// in time (players dropped it: "non monotonically increasing dts").
#[test]
fn a_joining_consumers_audio_never_goes_back_in_time() {
    let (hub, writer) = running_hub();
    writer.push_video(frame(1000, true));
    writer.push_audio(audio_frame(936));
    writer.push_video(frame(1040, false));
    let (video_pipeline, video, _video_sink) = consumer_pipeline();
    let (audio_pipeline, audio, audio_sink) = consumer_pipeline();
    let _link = hub.add_consumer(&video, Some(&audio));
    audio_pipeline.set_state(gst::State::Playing).unwrap();
    video_pipeline.set_state(gst::State::Playing).unwrap();
    assert_eq!(
        pull_pts(&audio_sink).0,
        936,
        "the newest audio, at its own time"
    );
    writer.push_audio(audio_frame(1000));
    assert_eq!(pull_pts(&audio_sink).0, 1000);
    video_pipeline.set_state(gst::State::Null).unwrap();
    audio_pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_consumer_that_stops_reading_drops_whole_frames_until_a_keyframe_and_they_are_counted() {
    let (hub, writer) = running_hub();
    writer.push_video(frame(0, true));
    let (pipeline, src, sink) = consumer_pipeline();
    let _link = hub.add_consumer(&src, None);
    pipeline.set_state(gst::State::Playing).unwrap();
    // 2 s of 25 fps delta frames pile up behind the stalled sink.
    for i in 1..=50u64 {
        writer.push_video(frame(i * 40, false));
    }
    let dropped = hub.status().dropped_frames();
    assert!(dropped > 20, "only {dropped} dropped");
    assert!(src.current_level_time() <= MAX_QUEUE + gst::ClockTime::from_mseconds(80));
    // The viewer catches up; it still gets no delta frame it cannot decode...
    while sink
        .try_pull_sample(gst::ClockTime::from_mseconds(200))
        .is_some()
    {}
    writer.push_video(frame(51 * 40, false));
    assert_eq!(hub.status().dropped_frames(), dropped + 1);
    // ...and resumes at the next keyframe.
    writer.push_video(frame(52 * 40, true));
    assert_eq!(hub.status().dropped_frames(), dropped + 1);
    assert_eq!(pull_pts(&sink), (52 * 40, true));
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_viewer_waiting_for_a_camera_that_refuses_it_is_told_at_once() {
    let hub = Hub::new();
    let _writer = hub.begin_session();
    hub.fail(&crate::error::Error::new(
        crate::error::ErrorKind::Auth,
        "401 Unauthorized",
    ));
    let started = Instant::now();
    let refused = hub.wait_ready(Duration::from_secs(5)).unwrap_err();
    assert_eq!(
        (refused.kind(), refused.message()),
        (crate::error::ErrorKind::Auth, "401 Unauthorized")
    );
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[test]
fn a_dropped_link_gets_nothing_more() {
    let (hub, writer) = running_hub();
    writer.push_video(frame(0, true));
    let (pipeline, src, sink) = consumer_pipeline();
    let link = hub.add_consumer(&src, None);
    pipeline.set_state(gst::State::Playing).unwrap();
    assert_eq!(pull_pts(&sink), (0, true));
    drop(link);
    writer.push_video(frame(40, false));
    assert!(
        sink.try_pull_sample(gst::ClockTime::from_mseconds(300))
            .is_none()
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn dropping_the_writer_ends_its_session_and_a_replaced_writer_writes_nothing() {
    let (hub, old) = running_hub();
    old.push_video(frame(0, true));
    let keyframes = hub.status().subscribe_keyframes();
    assert!(keyframes.borrow().is_some());
    let new = hub.begin_session();
    new.set_tracks(false, None);
    old.push_video(frame(40, true));
    assert!(keyframes.borrow().is_none(), "the old session wrote");
    new.push_video(frame(80, true));
    drop(old);
    assert!(
        keyframes.borrow().is_some(),
        "the old writer ended the new session"
    );
    drop(new);
    assert!(
        keyframes.borrow().is_none(),
        "the session outlived its writer"
    );
    assert_eq!(
        hub.wait_ready(Duration::from_millis(10))
            .unwrap_err()
            .message(),
        "the camera did not deliver video within 0 s"
    );
}

/// A consumer on a [`FrameQueue`] (the RTSP sender) gets the GOP the moment it registers,
/// drops whole frames once 500 ms wait in its queue, and sees the end at MQTT OFF.
#[test]
fn a_queue_consumer_starts_at_once_drops_when_behind_and_sees_the_end() {
    let (hub, writer) = running_hub();
    for (pts, key) in [(1000, true), (1040, false)] {
        writer.push_video(frame(pts, key));
    }
    let queue = Arc::new(FrameQueue::default());
    let _link = hub.add_queue_consumer(&queue, false);
    let times = |frames: Vec<(Track, gst::Sample)>| -> Vec<u64> {
        frames
            .iter()
            .map(|(_, s)| s.buffer().unwrap().pts().unwrap().mseconds())
            .collect()
    };
    assert_eq!(
        times(queue.take()),
        [1038, 1040],
        "the burst, before any live frame"
    );
    // Nobody takes from the queue for a second of 25 fps.
    for i in 1..=25u64 {
        writer.push_video(frame(1040 + i * 40, false));
    }
    let queued = times(queue.take());
    assert!(
        queued.last().unwrap() - queued[0] <= 540,
        "the queue grew past its bound: {queued:?}"
    );
    assert!(hub.status().dropped_frames() >= 10);
    writer.push_video(frame(2100, false));
    assert!(queue.take().is_empty(), "a delta frame after drops");
    writer.push_video(frame(2140, true));
    assert_eq!(times(queue.take()), [2140], "resumed at the keyframe");
    assert_eq!(hub.end_all_consumers(), 1);
    let ended = futures_util::FutureExt::now_or_never(queue.ready());
    assert_eq!(ended, Some(false), "the taker sees the end at once");
}

/// The async wait ends at the camera's first keyframe, at a failure (each pushed from the
/// runtime's one thread while the viewer waits), or at its timeout.
#[tokio::test(flavor = "current_thread")]
async fn an_async_viewer_waits_for_the_first_keyframe_or_the_failure() {
    let (hub, writer) = running_hub();
    let waiting = tokio::spawn({
        let hub = hub.clone();
        async move { hub.ready(Duration::from_secs(5)).await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "ready before any video");
    writer.push_video(frame(0, true));
    let layout = waiting.await.unwrap().unwrap();
    assert!(layout.audio.is_none());

    let hub = Hub::new();
    let _writer = hub.begin_session();
    let waiting = tokio::spawn({
        let hub = hub.clone();
        async move { hub.ready(Duration::from_secs(5)).await }
    });
    tokio::task::yield_now().await;
    hub.fail(&crate::error::Error::new(
        crate::error::ErrorKind::Auth,
        "401 Unauthorized",
    ));
    let refused = waiting.await.unwrap().unwrap_err();
    assert_eq!(refused.message(), "401 Unauthorized");

    let timed_out = Hub::new().ready(Duration::from_millis(20)).await;
    assert_eq!(
        timed_out.unwrap_err().message(),
        "the camera did not deliver video within 0 s"
    );
}

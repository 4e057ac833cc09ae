//! Camera-controlled timestamps: any sequence of RTP times and arrivals on two tracks of one
//! session gives presentation times, never a panic or an overflow.
#![no_main]
use ipcam_mqtt::camera::timeline::{SessionTimeline, TrackTimeline};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, ops)) = data.split_first_chunk::<9>() else {
        return;
    };
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    // Clock rates and clock-bases are the camera's to choose too (0 included).
    let base = (head[0] & 1 == 1).then(|| word(&head[1..5]));
    let mut tracks = [
        TrackTimeline::new(word(&head[5..9]), base),
        TrackTimeline::new(8000, None),
    ];
    let mut session = SessionTimeline::default();
    let mut arrival: u64 = 0;
    for op in ops.chunks_exact(9) {
        let track = &mut tracks[usize::from(op[0] & 1)];
        let (a, b) = (word(&op[1..5]), word(&op[5..9]));
        match op[0] >> 1 & 1 {
            0 => {
                arrival = arrival.saturating_add(u64::from(b));
                track.pts(&mut session, a, arrival);
            }
            _ => {
                // A clock that jumps far ahead (a camera restarted, or lying).
                arrival = arrival.saturating_add(u64::from(a) * u64::from(b));
                track.pts(&mut session, b, arrival);
            }
        }
    }
});

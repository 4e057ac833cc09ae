//! Where a camera's video frames live while the GOP cache and the pre-roll hold them: copied, in
//! the order they came, into blocks of 256 KB, each given back whole once its last frame is
//! dropped. Frames leave in the order they came, so the blocks do too.
//!
//! Each frame in an allocation of its own (retina's) lived 5-7 s among everything else the heap
//! holds, and the holes the pre-roll left as it moved on cost 0.4-0.5 MB per 1080p camera
//! (BENCHMARKS.md, "Frames in blocks"). The copy is one `memcpy` of the frame.

use bytes::{Bytes, BytesMut};

/// At glibc's mmap threshold (256 KB, set in `main.rs`), so each block is a mapping of its
/// own and goes back to the system when its last frame is dropped. Its pages count only once
/// frames are written to them.
const BLOCK: usize = 256 * 1024;

/// Frames over this keep the allocation they came in: a block holds at least four.
const OWN_ALLOCATION_OVER: usize = BLOCK / 4;

#[derive(Debug, Default)]
pub(super) struct FrameBlocks {
    /// The rest of the current block, after the frames already handed out.
    rest: BytesMut,
}

impl FrameBlocks {
    /// The frame's bytes, in the current block or, when it has no room, a new one.
    pub fn keep(&mut self, frame: Vec<u8>) -> Bytes {
        if frame.len() > OWN_ALLOCATION_OVER {
            return Bytes::from(frame);
        }
        if self.rest.capacity() < frame.len() {
            self.rest = BytesMut::with_capacity(BLOCK);
        }
        self.rest.extend_from_slice(&frame);
        self.rest.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(byte: u8, len: usize) -> Vec<u8> {
        vec![byte; len]
    }

    #[test]
    fn frames_follow_each_other_in_one_block_until_it_is_full() {
        let mut blocks = FrameBlocks::default();
        let per_block = BLOCK / 20_000;
        let kept: Vec<Bytes> = (0..per_block + 1)
            .map(|i| blocks.keep(frame(i as u8, 20_000)))
            .collect();
        for pair in kept[..per_block].windows(2) {
            assert_eq!(pair[1].as_ptr(), pair[0].as_ptr().wrapping_add(20_000));
        }
        let block_start = kept[0].as_ptr() as usize;
        let next = kept[per_block].as_ptr() as usize;
        assert!(
            !(block_start..block_start + BLOCK).contains(&next),
            "the frame that did not fit went into the full block"
        );
        for (i, bytes) in kept.iter().enumerate() {
            assert_eq!(bytes.as_ref(), frame(i as u8, 20_000).as_slice());
        }
    }

    #[test]
    fn a_frame_over_a_quarter_block_keeps_its_own_allocation() {
        let mut blocks = FrameBlocks::default();
        let small = blocks.keep(frame(1, 1000));
        let large = frame(2, OWN_ALLOCATION_OVER + 1);
        let at = large.as_ptr();
        let kept = blocks.keep(large);
        assert_eq!(kept.as_ptr(), at);
        let after = blocks.keep(frame(3, 1000));
        assert_eq!(after.as_ptr(), small.as_ptr().wrapping_add(1000));
    }

    #[test]
    fn frames_outlive_the_packer_and_each_other() {
        let mut blocks = FrameBlocks::default();
        let first = blocks.keep(frame(7, 5000));
        let second = blocks.keep(frame(8, 5000));
        drop(blocks);
        drop(first);
        assert_eq!(second.as_ref(), frame(8, 5000).as_slice());
    }
}

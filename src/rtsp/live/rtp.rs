//! Frames to RTP packets (RFC 6184 H.264, RFC 7798 H.265, RFC 3640 AAC-hbr) and RTCP sender
//! reports (RFC 3550). Pure: frames in, packets handed to a callback as their parts (the RTP
//! header, any fragmentation header, a slice of the frame), so a TCP viewer's packets are copied
//! once, straight into its write.

use super::sdp::Codec;
use gstreamer as gst;

/// The most payload in one packet: an RTP packet with its IP/UDP headers stays under a
/// 1500-byte MTU, with room for a VPN or PPPoE on the way.
pub const MAX_PAYLOAD: usize = 1400;
const HEADER: usize = 12;

/// Seconds from 1900 (NTP's epoch) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// One RTP stream of one viewer: its sequence numbers, timestamps and counts.
pub struct RtpStream {
    payload_type: u8,
    pub ssrc: u32,
    seq: u16,
    timestamp_base: u32,
    clock_rate: u32,
    packets: u32,
    octets: u32,
}

impl RtpStream {
    /// `seq` and `timestamp_base` random, as RFC 3550 asks.
    pub fn new(
        payload_type: u8,
        clock_rate: u32,
        ssrc: u32,
        seq: u16,
        timestamp_base: u32,
    ) -> Self {
        RtpStream {
            payload_type,
            ssrc,
            seq,
            timestamp_base,
            clock_rate,
            packets: 0,
            octets: 0,
        }
    }

    /// The sequence number the next packet gets (RTP-Info's `seq`).
    pub fn next_seq(&self) -> u16 {
        self.seq
    }

    /// The RTP time of a media time.
    pub fn timestamp(&self, pts: gst::ClockTime) -> u32 {
        let ticks = pts.nseconds() as u128 * self.clock_rate as u128 / 1_000_000_000;
        self.timestamp_base.wrapping_add(ticks as u32)
    }

    /// One packet of `payload` (one or two parts) behind its RTP header.
    fn packet(
        &mut self,
        marker: bool,
        timestamp: u32,
        payload: &[&[u8]],
        out: &mut dyn FnMut(&[&[u8]]),
    ) {
        let mut header = [0u8; HEADER];
        header[0] = 0x80;
        header[1] = self.payload_type | if marker { 0x80 } else { 0 };
        header[2..4].copy_from_slice(&self.seq.to_be_bytes());
        header[4..8].copy_from_slice(&timestamp.to_be_bytes());
        header[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let size: usize = payload.iter().map(|part| part.len()).sum();
        self.seq = self.seq.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(size as u32);
        let mut parts: [&[u8]; 3] = [&header, &[], &[]];
        for (slot, part) in parts[1..].iter_mut().zip(payload) {
            *slot = part;
        }
        out(&parts[..=payload.len().min(2)]);
    }

    /// A video access unit (NAL units each behind a `nal_length`-byte length): one packet per
    /// small NAL unit, fragmentation units for large ones, the marker on the frame's last packet.
    pub fn video_frame(
        &mut self,
        codec: Codec,
        nal_length: usize,
        frame: &[u8],
        pts: gst::ClockTime,
        out: &mut dyn FnMut(&[&[u8]]),
    ) {
        let timestamp = self.timestamp(pts);
        let units = nal_units(frame, nal_length);
        let count = units.len();
        for (i, unit) in units.into_iter().enumerate() {
            let last_unit = i + 1 == count;
            if unit.len() <= MAX_PAYLOAD {
                self.packet(last_unit, timestamp, &[unit], out);
                continue;
            }
            // The fragmentation unit's own header in place of the NAL header: (its bytes, how
            // many, how long the NAL header it replaces is).
            let (indicator, indicator_len, header_len) = match codec {
                Codec::H264 => ([(unit[0] & 0xe0) | 28, unit[0] & 0x1f, 0], 2, 1),
                Codec::H265 => (
                    [(unit[0] & 0x81) | (49 << 1), unit[1], (unit[0] >> 1) & 0x3f],
                    3,
                    2,
                ),
            };
            let body = &unit[header_len..];
            let room = MAX_PAYLOAD - indicator_len;
            let pieces = body.len().div_ceil(room);
            for (j, piece) in body.chunks(room).enumerate() {
                let mut header = indicator;
                let fu = &mut header[indicator_len - 1];
                if j == 0 {
                    *fu |= 0x80;
                }
                let last_piece = j + 1 == pieces;
                if last_piece {
                    *fu |= 0x40;
                }
                let parts: [&[u8]; 2] = [&header[..indicator_len], piece];
                self.packet(last_unit && last_piece, timestamp, &parts, out);
            }
        }
    }

    /// One AAC frame: a 16-bit AU-headers-length, one AU header (13-bit size, 3-bit index).
    pub fn aac_frame(&mut self, frame: &[u8], pts: gst::ClockTime, out: &mut dyn FnMut(&[&[u8]])) {
        let size = frame.len().min(0x1fff) as u16;
        let au_header = [0x00, 0x10, (size >> 5) as u8, ((size & 0x1f) << 3) as u8];
        let timestamp = self.timestamp(pts);
        self.packet(true, timestamp, &[&au_header, frame], out);
    }

    /// A compound RTCP packet: a sender report saying that `rtp_time` is `wallclock`, and the
    /// CNAME that ties this viewer's streams together.
    pub fn sender_report(
        &self,
        wallclock: std::time::SystemTime,
        rtp_time: u32,
        cname: &str,
    ) -> Vec<u8> {
        let since_unix = wallclock
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let seconds = since_unix.as_secs() + NTP_UNIX_OFFSET;
        let fraction = ((since_unix.subsec_nanos() as u64) << 32) / 1_000_000_000;
        let mut report = vec![0x80, 200, 0, 6];
        report.extend_from_slice(&self.ssrc.to_be_bytes());
        report.extend_from_slice(&(seconds as u32).to_be_bytes());
        report.extend_from_slice(&(fraction as u32).to_be_bytes());
        report.extend_from_slice(&rtp_time.to_be_bytes());
        report.extend_from_slice(&self.packets.to_be_bytes());
        report.extend_from_slice(&self.octets.to_be_bytes());
        let cname = &cname.as_bytes()[..cname.len().min(255)];
        // SDES: one chunk (SSRC, CNAME item, end), padded to 32 bits.
        let chunk = 4 + 2 + cname.len() + 1;
        let padded = chunk.div_ceil(4) * 4;
        report.extend_from_slice(&[0x81, 202]);
        report.extend_from_slice(&((padded / 4) as u16).to_be_bytes());
        report.extend_from_slice(&self.ssrc.to_be_bytes());
        report.extend_from_slice(&[1, cname.len() as u8]);
        report.extend_from_slice(cname);
        report.resize(report.len() + padded - chunk + 1, 0);
        report
    }
}

/// The NAL units of a length-prefixed access unit; a length that runs past the end ends it.
fn nal_units(frame: &[u8], nal_length: usize) -> Vec<&[u8]> {
    let mut units = Vec::new();
    let mut rest = frame;
    while rest.len() > nal_length {
        let length = rest[..nal_length]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        let Some(unit) = rest.get(nal_length..nal_length + length) else {
            break;
        };
        if !unit.is_empty() {
            units.push(unit);
        }
        rest = &rest[nal_length + length..];
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets_of(f: impl FnOnce(&mut dyn FnMut(&[&[u8]]))) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        f(&mut |parts: &[&[u8]]| packets.push(parts.concat()));
        packets
    }

    fn length_prefixed(units: &[Vec<u8>]) -> Vec<u8> {
        units
            .iter()
            .flat_map(|u| {
                (u.len() as u32)
                    .to_be_bytes()
                    .into_iter()
                    .chain(u.iter().copied())
            })
            .collect()
    }

    /// The packets of a frame holding `unit` alone.
    fn packets_of_one_unit(codec: Codec, unit: &[u8]) -> Vec<Vec<u8>> {
        let mut stream = RtpStream::new(96, 90_000, 1, 0, 0);
        let frame = length_prefixed(&[unit.to_vec()]);
        packets_of(|out| stream.video_frame(codec, 4, &frame, gst::ClockTime::ZERO, out))
    }

    #[test]
    fn small_nal_units_go_one_per_packet_with_the_marker_on_the_last() {
        let mut stream = RtpStream::new(96, 90_000, 0x11223344, 65535, 1000);
        let frame = length_prefixed(&[vec![0x67, 1, 2], vec![0x68, 3], vec![0x65, 4, 5, 6]]);
        let packets = packets_of(|out| {
            stream.video_frame(Codec::H264, 4, &frame, gst::ClockTime::from_seconds(1), out)
        });
        assert_eq!(packets.len(), 3);
        assert_eq!(&packets[0][..2], &[0x80, 96]);
        assert_eq!(
            &packets[2][..2],
            &[0x80, 96 | 0x80],
            "marker on the frame's last packet"
        );
        assert_eq!(u16::from_be_bytes([packets[0][2], packets[0][3]]), 65535);
        assert_eq!(
            u16::from_be_bytes([packets[1][2], packets[1][3]]),
            0,
            "wraps"
        );
        assert_eq!(
            u32::from_be_bytes(packets[0][4..8].try_into().unwrap()),
            1000 + 90_000
        );
        assert_eq!(&packets[2][12..], &[0x65, 4, 5, 6]);
    }

    #[test]
    fn a_large_h264_nal_unit_is_cut_into_fu_a_that_join_back_to_it() {
        let unit: Vec<u8> = std::iter::once(0x65)
            .chain((0..5000u32).map(|i| i as u8))
            .collect();
        let packets = packets_of_one_unit(Codec::H264, &unit);
        assert_eq!(packets.len(), 4);
        assert!(packets.iter().all(|p| p.len() <= HEADER + MAX_PAYLOAD));
        assert_eq!(packets[0][12], 0x60 | 28, "NRI kept, type FU-A");
        assert_eq!(packets[0][13], 0x80 | 5, "start bit and the NAL type");
        assert_eq!(packets[3][13], 0x40 | 5, "end bit");
        assert_eq!(packets[3][1], 96 | 0x80);
        let mut joined = vec![(packets[0][12] & 0xe0) | (packets[0][13] & 0x1f)];
        for p in &packets {
            joined.extend_from_slice(&p[14..]);
        }
        assert_eq!(joined, unit);
    }

    #[test]
    fn a_large_h265_nal_unit_is_cut_into_fragmentation_units_that_join_back_to_it() {
        // A CRA picture's slice: type 21, layer 0, temporal id 1.
        let unit: Vec<u8> = [21 << 1, 1]
            .into_iter()
            .chain((0..3000u32).map(|i| i as u8))
            .collect();
        let packets = packets_of_one_unit(Codec::H265, &unit);
        assert_eq!(packets.len(), 3);
        assert_eq!(packets[0][12..15], [49 << 1, 1, 0x80 | 21]);
        assert_eq!(packets[2][14], 0x40 | 21);
        let mut joined = vec![
            (packets[0][12] & 0x81) | (packets[0][14] & 0x3f) << 1,
            packets[0][13],
        ];
        for p in &packets {
            joined.extend_from_slice(&p[15..]);
        }
        assert_eq!(joined, unit);
    }

    #[test]
    fn a_length_past_the_end_of_the_frame_ends_it_without_a_panic() {
        assert_eq!(nal_units(&[0, 0, 0, 9, 0x65, 1], 4), Vec::<&[u8]>::new());
        assert_eq!(
            nal_units(&[0, 0, 0, 1, 0x65, 0, 0, 0, 9], 4),
            vec![&[0x65u8][..]]
        );
    }

    #[test]
    fn an_aac_frame_has_one_au_header_with_its_size() {
        let mut stream = RtpStream::new(97, 16_000, 1, 0, 0);
        let frame = vec![0xaa; 300];
        let packets =
            packets_of(|out| stream.aac_frame(&frame, gst::ClockTime::from_mseconds(64), out));
        assert_eq!(packets.len(), 1);
        assert_eq!(
            &packets[0][12..16],
            &[0x00, 0x10, (300 >> 5) as u8, ((300 & 0x1f) << 3) as u8]
        );
        assert_eq!(
            u32::from_be_bytes(packets[0][4..8].try_into().unwrap()),
            1024
        );
    }

    #[test]
    fn a_sender_report_maps_the_wallclock_to_rtp_time_and_counts_what_was_sent() {
        let mut stream = RtpStream::new(97, 16_000, 0xabcd, 0, 0);
        let _ = packets_of(|out| stream.aac_frame(&[1, 2, 3], gst::ClockTime::ZERO, out));
        let wallclock = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_500);
        let report = stream.sender_report(wallclock, 4242, "viewer@ipcam-mqtt");
        assert_eq!(&report[..4], &[0x80, 200, 0, 6]);
        assert_eq!(
            u32::from_be_bytes(report[8..12].try_into().unwrap()),
            (NTP_UNIX_OFFSET + 1) as u32
        );
        assert_eq!(
            u32::from_be_bytes(report[12..16].try_into().unwrap()),
            1 << 31,
            "half a second"
        );
        assert_eq!(u32::from_be_bytes(report[16..20].try_into().unwrap()), 4242);
        assert_eq!(
            u32::from_be_bytes(report[20..24].try_into().unwrap()),
            1,
            "packets"
        );
        assert_eq!(
            u32::from_be_bytes(report[24..28].try_into().unwrap()),
            7,
            "payload octets"
        );
        assert_eq!(report.len() % 4, 0);
        let sdes_words = u16::from_be_bytes([report[30], report[31]]) as usize;
        assert_eq!(report.len(), 28 + 4 + sdes_words * 4);
    }
}

//! The `Transport` header of SETUP: which of the client's choices we take. Pure.

/// Where one track's packets go, as the client asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// Interleaved in the RTSP connection on these channels.
    Tcp { rtp: u8, rtcp: u8 },
    /// Unicast UDP to these ports of the client's address.
    Udp { rtp: u16, rtcp: u16 },
}

/// The first transport in the header that we serve (unicast UDP or interleaved TCP; no
/// multicast). `track` picks the channels when a TCP client leaves them to us.
pub fn choose(header: &str, track: usize) -> Option<Asked> {
    header.split(',').find_map(|spec| {
        let mut parts = spec.trim().split(';');
        let profile = parts.next()?.trim();
        let params: Vec<(&str, &str)> = parts
            .map(|p| p.trim().split_once('=').unwrap_or((p.trim(), "")))
            .collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        };
        if params
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("multicast"))
        {
            return None;
        }
        match profile.to_ascii_uppercase().as_str() {
            "RTP/AVP/TCP" => {
                let (rtp, rtcp) = match param("interleaved") {
                    Some(range) => pair(range, |a: u8| a.checked_add(1))?,
                    None => {
                        let rtp = u8::try_from(track * 2).ok()?;
                        (rtp, rtp + 1)
                    }
                };
                Some(Asked::Tcp { rtp, rtcp })
            }
            "RTP/AVP" | "RTP/AVP/UDP" => {
                let (rtp, rtcp) = pair(param("client_port")?, |a: u16| a.checked_add(1))?;
                (rtp != 0).then_some(Asked::Udp { rtp, rtcp })
            }
            _ => None,
        }
    })
}

/// `a-b`, or `a` alone meaning `a-(a+1)`.
fn pair<T: std::str::FromStr + Copy>(range: &str, next: impl Fn(T) -> Option<T>) -> Option<(T, T)> {
    match range.split_once('-') {
        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        None => {
            let a = range.trim().parse().ok()?;
            Some((a, next(a)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_and_udp_are_taken_as_asked() {
        assert_eq!(
            choose("RTP/AVP/TCP;unicast;interleaved=2-3", 1),
            Some(Asked::Tcp { rtp: 2, rtcp: 3 })
        );
        assert_eq!(
            choose("RTP/AVP/TCP;unicast", 1),
            Some(Asked::Tcp { rtp: 2, rtcp: 3 })
        );
        assert_eq!(
            choose("RTP/AVP;unicast;client_port=5000-5001", 0),
            Some(Asked::Udp {
                rtp: 5000,
                rtcp: 5001
            })
        );
        assert_eq!(
            choose("RTP/AVP/UDP;unicast;client_port=5000", 0),
            Some(Asked::Udp {
                rtp: 5000,
                rtcp: 5001
            })
        );
    }

    #[test]
    fn the_first_transport_we_serve_wins_and_multicast_is_passed_over() {
        assert_eq!(
            choose(
                "RTP/AVP;multicast;port=5000-5001,RTP/AVP/TCP;interleaved=0-1",
                0
            ),
            Some(Asked::Tcp { rtp: 0, rtcp: 1 })
        );
        assert_eq!(choose("RTP/AVP;multicast", 0), None);
        assert_eq!(choose("RAW/RAW/UDP;unicast;client_port=5000-5001", 0), None);
        assert_eq!(
            choose("RTP/AVP;unicast", 0),
            None,
            "UDP needs the client's ports"
        );
        assert_eq!(choose("RTP/AVP/TCP;interleaved=255", 0), None);
        assert_eq!(choose("", 0), None);
    }
}

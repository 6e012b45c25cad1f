//! kubelet's WebSocket channel framing, shared by exec/attach and port-forward: every
//! message starts with the channel it belongs to, as a byte in a binary message, or (the
//! `base64.` protocols, for clients that can only send text) as an ASCII digit followed
//! by the payload in base64 in a text message.

use base64::Engine;
use tokio_tungstenite::tungstenite::Message;

/// `data` on `channel`, in the binary or the base64 form.
pub fn encode(base64: bool, channel: u8, data: &[u8]) -> Message {
    if base64 {
        let text = base64::engine::general_purpose::STANDARD.encode(data);
        return Message::text(format!(
            "{}{text}",
            char::from(b'0'.saturating_add(channel))
        ));
    }
    let mut b = Vec::with_capacity(data.len() + 1);
    b.push(channel);
    b.extend_from_slice(data);
    Message::binary(b)
}

/// A client message as (channel, payload); `None` for one that is not data in the
/// protocol's form (control messages, the other form, bad base64, an empty message).
pub fn decode(msg: Message, base64: bool) -> Option<(u8, Vec<u8>)> {
    match msg {
        Message::Binary(b) if !base64 => {
            let (ch, rest) = b.split_first()?;
            Some((*ch, rest.to_vec()))
        }
        Message::Text(t) if base64 => {
            let (ch, rest) = t.as_str().split_at_checked(1)?;
            let ch = ch.as_bytes()[0].checked_sub(b'0')?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            Some((ch, data))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip_in_either_form() {
        for base64 in [false, true] {
            let m = encode(base64, 2, b"hi\x00\xff");
            assert_eq!(decode(m, base64), Some((2, b"hi\x00\xff".to_vec())));
            let empty = encode(base64, 3, b"");
            assert_eq!(decode(empty, base64), Some((3, Vec::new())));
        }
        assert_eq!(encode(false, 1, b"x"), Message::binary(b"\x01x".to_vec()));
        assert_eq!(encode(true, 1, b"hi"), Message::text("1aGk="));
    }

    #[test]
    fn anything_else_is_not_data() {
        assert_eq!(decode(Message::binary(Vec::new()), false), None);
        assert_eq!(decode(Message::text("2!!"), true), None, "not base64");
        assert_eq!(decode(Message::text(""), true), None);
        assert_eq!(
            decode(Message::text("0aGk="), false),
            None,
            "text in binary"
        );
        assert_eq!(decode(Message::binary(b"\x00x".to_vec()), true), None);
        assert_eq!(decode(Message::Ping(Vec::new().into()), false), None);
    }
}

use futures_lite::future::block_on;
use futures_lite::io::Cursor;

use super::*;
use crate::{ClientFrame, ClientRequest, Command, PeerEnvelope, PeerMessage, PollRequest};

fn sample_command() -> ClientFrame {
    ClientFrame {
        request_id: 7,
        request: ClientRequest::Command {
            session: 4,
            sequence: 42356,
            command: Command::Add {
                id: 24425,
                tag: "comm_weakness".into(),
                payload: vec![0xab; 100],
            },
        },
    }
}

#[test]
fn frame_roundtrip() {
    let mut buf = Vec::new();
    encode_frame(&sample_command(), &mut buf).unwrap();
    let (decoded, used): (ClientFrame, usize) =
        decode_frame(&buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
    assert_eq!(decoded, sample_command());
    assert_eq!(used, buf.len());
}

#[test]
fn partial_frame_needs_more_bytes() {
    let mut buf = Vec::new();
    encode_frame(&sample_command(), &mut buf).unwrap();
    for cut in 0..buf.len() {
        let result: Option<(ClientFrame, usize)> =
            decode_frame(&buf[..cut], DEFAULT_MAX_FRAME).unwrap();
        assert!(result.is_none(), "cut at {cut} decoded a frame");
    }
}

#[test]
fn oversized_frame_rejected_before_body() {
    let mut buf = Vec::new();
    encode_frame(&sample_command(), &mut buf).unwrap();
    let err = decode_frame::<ClientFrame>(&buf[..4], 16).unwrap_err();
    assert!(
        matches!(err, CodecError::FrameTooLarge { max: 16, .. }),
        "{err}"
    );
}

#[test]
fn garbage_body_is_malformed() {
    let mut buf = 5u32.to_be_bytes().to_vec();
    buf.extend_from_slice(&[0xff; 5]);
    let err = decode_frame::<PeerEnvelope>(&buf, DEFAULT_MAX_FRAME).unwrap_err();
    assert!(matches!(err, CodecError::Malformed(_)), "{err}");
}

#[test]
fn trailing_bytes_are_malformed() {
    let mut buf = Vec::new();
    encode_frame(&1u8, &mut buf).unwrap();
    buf[3] += 1;
    buf.push(0);
    let err = decode_frame::<u8>(&buf, DEFAULT_MAX_FRAME).unwrap_err();
    assert!(matches!(err, CodecError::Malformed(_)), "{err}");
}

#[test]
fn reader_yields_frames_then_clean_end() {
    let envelope = PeerEnvelope {
        from: 1,
        to: 2,
        message: PeerMessage::PollRequest(PollRequest {
            term: 2,
            last_log_index: 129248,
            last_log_term: 1,
        }),
    };
    let mut bytes = Vec::new();
    for _ in 0..3 {
        encode_frame(&envelope, &mut bytes).unwrap();
    }
    let mut reader = FrameReader::new(Cursor::new(bytes), DEFAULT_MAX_FRAME);
    block_on(async {
        for _ in 0..3 {
            let got: PeerEnvelope = reader.next().await.unwrap().unwrap();
            assert_eq!(got, envelope);
        }
        assert!(reader.next::<PeerEnvelope>().await.unwrap().is_none());
    });
}

#[test]
fn reader_reports_truncated_frame() {
    let mut bytes = Vec::new();
    encode_frame(&sample_command(), &mut bytes).unwrap();
    bytes.truncate(bytes.len() - 3);
    let mut reader = FrameReader::new(Cursor::new(bytes), DEFAULT_MAX_FRAME);
    let err = block_on(reader.next::<ClientFrame>()).unwrap_err();
    assert!(matches!(err, CodecError::Truncated { .. }), "{err}");
}

#[test]
fn handshake_roundtrip() {
    let hello = Hello {
        cluster_id: "test".into(),
        dialer: Dialer::Node(3),
    };
    let mut bytes = Vec::new();
    encode_handshake(&hello, &mut bytes).unwrap();
    let mut reader = FrameReader::new(Cursor::new(bytes), DEFAULT_MAX_FRAME);
    let got: Hello = block_on(reader.next_handshake()).unwrap().unwrap();
    assert_eq!(got, hello);
}

#[test]
fn handshake_other_version_rejected() {
    let mut bytes = Vec::new();
    encode_handshake(&HelloReply::Accepted { node: 1 }, &mut bytes).unwrap();
    bytes[8..10].copy_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
    let mut reader = FrameReader::new(Cursor::new(bytes), DEFAULT_MAX_FRAME);
    let err = block_on(reader.next_handshake::<HelloReply>()).unwrap_err();
    assert!(
        matches!(err, CodecError::VersionMismatch { found } if found == PROTOCOL_VERSION + 1),
        "{err}"
    );
}

#[test]
fn handshake_bad_magic_rejected() {
    let mut bytes = Vec::new();
    encode_handshake(&HelloReply::Accepted { node: 1 }, &mut bytes).unwrap();
    bytes[4] = b'X';
    let mut reader = FrameReader::new(Cursor::new(bytes), DEFAULT_MAX_FRAME);
    let err = block_on(reader.next_handshake::<HelloReply>()).unwrap_err();
    assert!(matches!(err, CodecError::BadMagic { .. }), "{err}");
}

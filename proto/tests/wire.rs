//! Byte-level tests of the BEP framing against Syncthing's encodings, round
//! trips of every message, and a seeded fuzz loop over hostile input.

use bytes::{Bytes, BytesMut};
use ferrosync_proto::frame::{self, FrameError, MAX_MESSAGE_LEN};
use ferrosync_proto::message::*;
use ferrosync_proto::version::Counter;
use ferrosync_proto::{DeviceId, Message, Name, ShortId, Vector};
use rand::{Rng, RngCore, SeedableRng};

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn decode_all(bytes: &[u8]) -> Vec<Message> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(m) = frame::decode_message(&mut buf).expect("valid frames") {
        out.push(m);
    }
    assert!(buf.is_empty(), "trailing bytes: {}", hex(&buf));
    out
}

#[test]
fn golden_frames() {
    let cc = frame::encode_message(
        &Message::ClusterConfig(ClusterConfig::default()),
        Compression::Metadata,
    );
    assert_eq!(hex(&cc), "00 00 00 00 00 00");
    let ping = frame::encode_message(&Message::Ping, Compression::Metadata);
    assert_eq!(hex(&ping), "00 02 08 06 00 00 00 00");
    let close = frame::encode_message(
        &Message::Close(Close { reason: "x".into() }),
        Compression::Metadata,
    );
    assert_eq!(hex(&close), "00 02 08 07 00 00 00 03 0a 01 78");
    let hello = frame::encode_hello(&Hello {
        device_name: "a".into(),
        client_name: "b".into(),
        client_version: "c".into(),
        ..Hello::default()
    });
    assert_eq!(hex(&hello), "2e a7 d9 0b 00 09 0a 01 61 12 01 62 1a 01 63");
}

#[test]
fn golden_frames_decode() {
    let mut buf = BytesMut::from(
        &[
            0x2e, 0xa7, 0xd9, 0x0b, 0, 9, 0x0a, 1, 0x61, 0x12, 1, 0x62, 0x1a, 1, 0x63,
        ][..],
    );
    let hello = frame::decode_hello(&mut buf).expect("ok").expect("whole");
    assert_eq!(
        (hello.device_name.as_str(), hello.client_name.as_str()),
        ("a", "b")
    );
    assert!(buf.is_empty());
    let msgs = decode_all(&[0, 0, 0, 0, 0, 0, 0, 2, 8, 6, 0, 0, 0, 0]);
    assert_eq!(
        msgs,
        [
            Message::ClusterConfig(ClusterConfig::default()),
            Message::Ping
        ]
    );
}

fn device(n: u8) -> DeviceId {
    DeviceId::from_bytes([n; 32])
}

fn vector() -> Vector {
    Vector::from_counters(vec![
        Counter {
            id: ShortId(1),
            value: 1_790_000_000,
        },
        Counter {
            id: ShortId(u64::MAX),
            value: 3,
        },
    ])
}

fn file(name: &str, size: u64) -> FileInfo {
    let mut f = FileInfo::new(Name::parse(name).expect("name"), FileKind::File);
    f.size = size;
    f.permissions = 0o644;
    f.modified_s = 1_700_000_000;
    f.modified_ns = 123_456_789;
    f.modified_by = ShortId(42);
    f.version = vector();
    f.sequence = 7;
    let mut off = 0;
    while off < size || f.blocks.is_empty() {
        let len = (size - off).min(u64::from(f.block_size)) as u32;
        f.blocks.push(BlockInfo {
            offset: off,
            size: len,
            hash: [off as u8; 32],
            weak_hash: 9,
        });
        off += u64::from(len);
    }
    f.blocks_hash = vec![0xab; 32];
    f
}

fn every_message() -> Vec<Message> {
    let mut dir = FileInfo::new(Name::parse("dir/sub").expect("name"), FileKind::Directory);
    dir.permissions = 0o755;
    let mut link = FileInfo::new(Name::parse("dir/link").expect("name"), FileKind::Symlink);
    link.symlink_target = b"../target\xff".to_vec();
    link.no_permissions = true;
    let mut gone = FileInfo::new(Name::parse("gone").expect("name"), FileKind::File);
    gone.deleted = true;
    gone.version = vector();
    let mut folder_device = FolderDevice::new(device(2));
    folder_device.name = "laptop".into();
    folder_device.addresses = vec!["dynamic".into(), "tcp://10.0.0.1:22000".into()];
    folder_device.compression = Compression::Always;
    folder_device.max_sequence = 1234;
    folder_device.index_id = 0xdead_beef_cafe;
    folder_device.introducer = true;
    vec![
        Message::ClusterConfig(ClusterConfig {
            folders: vec![Folder {
                id: "default".into(),
                label: "Default Folder".into(),
                read_only: true,
                paused: false,
                devices: vec![FolderDevice::new(device(1)), folder_device],
                ..Folder::default()
            }],
            secondary: false,
        }),
        Message::Index(Index {
            folder: "default".into(),
            files: vec![file("a.txt", 0), file("b/c.bin", 300_000), dir, link, gone],
            last_sequence: 7,
            prev_sequence: 0,
        }),
        Message::IndexUpdate(Index {
            folder: "default".into(),
            files: vec![file("é.txt", 5)],
            last_sequence: 8,
            prev_sequence: 7,
        }),
        Message::Request(Request {
            id: 5,
            folder: "default".into(),
            name: Name::parse("b/c.bin").expect("name"),
            offset: 131072,
            size: 131072,
            hash: Some([3; 32]),
            from_temporary: true,
            weak_hash: 77,
            block_no: 1,
        }),
        Message::Response(Response {
            id: 5,
            data: Bytes::from(vec![7u8; 1000]),
            code: ErrorCode::NoError,
        }),
        Message::Response(Response {
            id: 6,
            data: Bytes::new(),
            code: ErrorCode::NoSuchFile,
        }),
        Message::DownloadProgress(DownloadProgress {
            folder: "default".into(),
            updates: vec![FileDownloadProgressUpdate {
                update_type: ProgressUpdateType::Append,
                name: Name::parse("b/c.bin").expect("name"),
                version: vector(),
                block_indexes: vec![0, 2, 5],
                block_size: 131072,
            }],
        }),
        Message::Ping,
        Message::Close(Close {
            reason: "bye".into(),
        }),
    ]
}

#[test]
fn every_message_round_trips_with_each_compression() {
    for pref in [
        Compression::Metadata,
        Compression::Never,
        Compression::Always,
    ] {
        let mut stream = Vec::new();
        for m in every_message() {
            frame::encode_message_into(&m, pref, &mut stream);
        }
        assert_eq!(decode_all(&stream), every_message(), "{pref:?}");
    }
}

#[test]
fn messages_decode_when_fed_one_byte_at_a_time() {
    let mut stream = Vec::new();
    for m in every_message() {
        frame::encode_message_into(&m, Compression::Metadata, &mut stream);
    }
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in stream {
        buf.extend_from_slice(&[b]);
        while let Some(m) = frame::decode_message(&mut buf).expect("valid") {
            got.push(m);
        }
    }
    assert_eq!(got, every_message());
}

#[test]
fn compression_rule() {
    let big_index = Message::Index(Index {
        folder: "f".into(),
        files: (0..50)
            .map(|i| file(&format!("dir/file-{i}.txt"), 10))
            .collect(),
        ..Index::default()
    });
    let lz4 = [0x08, 0x01, 0x10, 0x01]; // Header{type INDEX, compression LZ4}
    let bytes = frame::encode_message(&big_index, Compression::Metadata);
    assert_eq!(&bytes[..2], &[0, 4]);
    assert_eq!(&bytes[2..6], &lz4, "metadata is compressed");
    let plain = frame::encode_message(&big_index, Compression::Never);
    assert!(
        plain.len() > bytes.len() * 2,
        "compression pays: {} vs {}",
        plain.len(),
        bytes.len()
    );
    assert_eq!(&plain[..4], &[0, 2, 0x08, 0x01], "never means never");
    // The uncompressed length leads the LZ4 block, big-endian.
    let body_len = plain.len() - 8;
    assert_eq!(&bytes[10..14], &(body_len as u32).to_be_bytes());

    // Block data is not compressed under the default preference.
    let resp = Message::Response(Response {
        id: 1,
        data: Bytes::from(vec![0u8; 4096]),
        code: ErrorCode::NoError,
    });
    let r = frame::encode_message(&resp, Compression::Metadata);
    assert_eq!(&r[..4], &[0, 2, 0x08, 0x04]);
    let r = frame::encode_message(&resp, Compression::Always);
    assert_eq!(&r[..6], &[0, 4, 0x08, 0x04, 0x10, 0x01]);
    // Small messages and incompressible ones go out plain.
    let small = Message::Close(Close {
        reason: "a".repeat(100),
    });
    assert_eq!(
        frame::encode_message(&small, Compression::Always)[..4],
        [0, 2, 0x08, 0x07]
    );
    let mut noise = vec![0u8; 4096];
    rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut noise);
    let resp = Message::Response(Response {
        id: 1,
        data: noise.into(),
        code: ErrorCode::NoError,
    });
    assert_eq!(
        frame::encode_message(&resp, Compression::Always)[..4],
        [0, 2, 0x08, 0x04]
    );
}

#[test]
fn hand_built_lz4_frame_decodes() {
    // A Close whose body was compressed by a plain LZ4 block encoder, framed
    // the way Syncthing frames it: header {CLOSE, LZ4}, BE uncompressed size.
    let reason = "closing ".repeat(40);
    let body = prost::Message::encode_to_vec(&ferrosync_proto::wire::Close {
        reason: reason.clone(),
    });
    let block = lz4_flex::block::compress(&body);
    let mut frame = vec![0, 4, 0x08, 0x07, 0x10, 0x01];
    frame.extend_from_slice(&((4 + block.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&block);
    assert_eq!(decode_all(&frame), [Message::Close(Close { reason })]);
}

fn decode_err(bytes: &[u8]) -> FrameError {
    frame::decode_message(&mut BytesMut::from(bytes)).expect_err("must fail")
}

#[test]
fn hostile_frames_are_errors() {
    // Message length above 500 MB: refused before allocating.
    let e = decode_err(&[0, 0, 0x7f, 0xff, 0xff, 0xff]);
    assert!(matches!(e, FrameError::MessageTooLong(_)), "{e}");
    let e = decode_err(&[0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(e, FrameError::MessageTooLong(-1)), "{e}");
    assert!(matches!(
        decode_err(&[0xff, 0xff]),
        FrameError::NegativeHeaderLength(-1)
    ));
    // LZ4 claiming a 4 GB output.
    let e = decode_err(&[
        0, 4, 0x08, 0x06, 0x10, 0x01, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0,
    ]);
    assert!(matches!(e, FrameError::MessageTooLong(_)), "{e}");
    // Unknown compression.
    assert!(matches!(
        decode_err(&[0, 4, 0x08, 0x06, 0x10, 0x07, 0, 0, 0, 0]),
        FrameError::UnknownCompression(7)
    ));
    // LZ4 garbage.
    let e = decode_err(&[
        0, 4, 0x08, 0x06, 0x10, 0x01, 0, 0, 0, 6, 0, 0, 0, 9, 0xf0, 0xff,
    ]);
    assert!(matches!(e, FrameError::Lz4(_)), "{e}");
    // Old and unknown magics.
    for (bytes, old) in [
        ([0x00, 0x01, 0x00, 0x01], true),
        ([0x9f, 0x79, 0xbc, 0x40], true),
        ([1, 2, 3, 4], false),
    ] {
        let e = frame::decode_hello(&mut BytesMut::from(&bytes[..])).expect_err("bad magic");
        assert_eq!(matches!(e, FrameError::OldProtocol(_)), old, "{e}");
    }
    let e = frame::decode_hello(&mut BytesMut::from(
        &[0x2e, 0xa7, 0xd9, 0x0b, 0x80, 0x00][..],
    ))
    .expect_err("long");
    assert!(matches!(e, FrameError::HelloTooLong(32768)));
}

fn index_with(name: &str) -> Vec<u8> {
    let w = ferrosync_proto::wire::Index {
        folder: "f".into(),
        files: vec![ferrosync_proto::wire::FileInfo {
            name: name.into(),
            deleted: true,
            ..Default::default()
        }],
        ..Default::default()
    };
    let body = prost::Message::encode_to_vec(&w);
    let mut frame = vec![0, 2, 0x08, 0x01];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

#[test]
fn escaping_names_are_refused() {
    for name in ["../escape", "/etc/passwd", "a//b", "a/../../b", "", "."] {
        let e = decode_err(&index_with(name));
        assert!(e.to_string().contains("invalid FileInfo"), "{name:?}: {e}");
    }
    assert_eq!(decode_all(&index_with("ok/name")).len(), 1);
}

#[test]
fn file_entries_are_checked() {
    use ferrosync_proto::wire;
    let good_block = wire::BlockInfo {
        offset: 0,
        size: 10,
        hash: vec![1; 32],
        weak_hash: 0,
    };
    let big_block = wire::BlockInfo {
        size: 128 * 1024,
        ..good_block.clone()
    };
    let cases: Vec<(&str, wire::FileInfo)> = vec![
        (
            "file with empty block list",
            wire::FileInfo {
                name: "a".into(),
                size: 10,
                ..Default::default()
            },
        ),
        (
            "has blocks",
            wire::FileInfo {
                name: "a".into(),
                r#type: 1,
                blocks: vec![good_block.clone()],
                ..Default::default()
            },
        ),
        (
            "has blocks",
            wire::FileInfo {
                name: "a".into(),
                deleted: true,
                blocks: vec![good_block.clone()],
                ..Default::default()
            },
        ),
        (
            "version vector of more than 4096 counters",
            wire::FileInfo {
                name: "a".into(),
                size: 10,
                blocks: vec![good_block.clone()],
                version: Some(wire::Vector {
                    counters: (0..4097).map(|id| wire::Counter { id, value: 1 }).collect(),
                }),
                ..Default::default()
            },
        ),
        (
            "hash of 3 bytes",
            wire::FileInfo {
                name: "a".into(),
                size: 10,
                blocks: vec![wire::BlockInfo {
                    hash: vec![1; 3],
                    ..good_block.clone()
                }],
                ..Default::default()
            },
        ),
        (
            "cover 10 bytes of 11",
            wire::FileInfo {
                name: "a".into(),
                size: 11,
                blocks: vec![good_block.clone()],
                ..Default::default()
            },
        ),
        (
            // A short block before the last: refused (BEP's rule), so a
            // block list is bounded by the file size and stays aligned.
            "block 0 of 2 has size 10",
            wire::FileInfo {
                name: "a".into(),
                size: 20,
                blocks: vec![good_block.clone(), good_block.clone()],
                ..Default::default()
            },
        ),
        (
            "expected 131072",
            wire::FileInfo {
                name: "a".into(),
                size: 2 * 128 * 1024,
                blocks: vec![big_block.clone(), big_block.clone()],
                ..Default::default()
            },
        ),
        (
            "block 1 of 2 has size 262144",
            wire::FileInfo {
                name: "a".into(),
                size: 128 * 1024 + 256 * 1024,
                blocks: vec![
                    big_block.clone(),
                    wire::BlockInfo {
                        offset: 128 * 1024,
                        size: 256 * 1024,
                        ..big_block.clone()
                    },
                ],
                ..Default::default()
            },
        ),
        (
            "not a valid one",
            wire::FileInfo {
                name: "a".into(),
                size: 10,
                block_size: 200_000,
                blocks: vec![good_block.clone()],
                ..Default::default()
            },
        ),
        (
            "negative size",
            wire::FileInfo {
                name: "a".into(),
                size: -1,
                deleted: true,
                ..Default::default()
            },
        ),
        (
            "unknown type",
            wire::FileInfo {
                name: "a".into(),
                r#type: 9,
                deleted: true,
                ..Default::default()
            },
        ),
        (
            "block size",
            wire::FileInfo {
                name: "a".into(),
                block_size: -5,
                deleted: true,
                ..Default::default()
            },
        ),
    ];
    for (want, fi) in cases {
        let err = FileInfo::try_from(fi).expect_err(want).to_string();
        assert!(err.contains(want), "want {want:?}, got {err}");
    }
    // An invalid (ignored) file may come without blocks.
    let fi = wire::FileInfo {
        name: "a".into(),
        invalid: true,
        size: 5,
        ..Default::default()
    };
    assert!(FileInfo::try_from(fi).is_ok());
    // Full blocks, a short last one, and an empty file's one empty block.
    for (size, sizes) in [(300_000, vec![131_072, 131_072, 37_856]), (0, vec![0])] {
        let mut offset = 0;
        let blocks = sizes
            .iter()
            .map(|&s| {
                let b = wire::BlockInfo {
                    offset,
                    size: s,
                    ..good_block.clone()
                };
                offset += i64::from(s);
                b
            })
            .collect();
        let fi = wire::FileInfo {
            name: "a".into(),
            size,
            blocks,
            ..Default::default()
        };
        assert!(FileInfo::try_from(fi).is_ok(), "{sizes:?}");
    }
    // Legacy symlink types map to Symlink.
    let fi = wire::FileInfo {
        name: "l".into(),
        r#type: 3,
        symlink_target: b"x".to_vec(),
        ..Default::default()
    };
    assert_eq!(FileInfo::try_from(fi).expect("ok").kind, FileKind::Symlink);
}

#[test]
fn random_and_mutated_input_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut valid = Vec::new();
    for m in every_message() {
        frame::encode_message_into(&m, Compression::Metadata, &mut valid);
    }
    for round in 0..20_000 {
        let input: Vec<u8> = match round % 3 {
            0 => {
                let n = rng.random_range(0..64);
                (0..n).map(|_| rng.random()).collect()
            }
            1 => valid[..rng.random_range(0..valid.len())].to_vec(),
            _ => {
                let mut v = valid.clone();
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..v.len());
                    v[i] ^= 1 << rng.random_range(0..8);
                }
                v
            }
        };
        let mut buf = BytesMut::from(&input[..]);
        // Decode until an error or until more bytes are needed; either is fine.
        while let Ok(Some(_)) = frame::decode_message(&mut buf) {}
        let mut buf = BytesMut::from(&input[..]);
        let _ = frame::decode_hello(&mut buf);
        assert!(buf.capacity() <= MAX_MESSAGE_LEN);
    }
}

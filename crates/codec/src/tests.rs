use proptest::prelude::*;

use super::*;

/// One field of a format, with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    Flag(bool),
    Array([u8; 4]),
    Raw(Vec<u8>),
    Bytes8(Vec<u8>),
    Bytes16(Vec<u8>),
    Bytes32(Vec<u8>),
    Count8(u8),
    Count16(u16),
    Count32(u32),
}

/// The largest length or count the reads of the tests allow.
const MAX: usize = 300;

fn write(fields: &[Field]) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::new();
    for f in fields {
        match f {
            Field::U8(v) => w.u8(*v),
            Field::U16(v) => w.u16(*v),
            Field::U32(v) => w.u32(*v),
            Field::U64(v) => w.u64(*v),
            Field::Flag(v) => w.flag(*v),
            Field::Array(v) => w.raw(v),
            Field::Raw(v) => w.raw(v),
            Field::Bytes8(v) => w.bytes8(v),
            Field::Bytes16(v) => w.bytes16(v),
            Field::Bytes32(v) => w.bytes32(v),
            Field::Count8(v) => w.count8(usize::from(*v)),
            Field::Count16(v) => w.count16(usize::from(*v)),
            Field::Count32(v) => w.count32(*v as usize),
        }
    }
    w.finish()
}

/// Reads back the fields `script` names (their values ignored, `Raw` giving the length).
fn read(bytes: &[u8], script: &[Field]) -> Result<Vec<Field>, DecodeError> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    for f in script {
        let before = r.offset();
        out.push(match f {
            Field::U8(_) => Field::U8(r.u8()?),
            Field::U16(_) => Field::U16(r.u16()?),
            Field::U32(_) => Field::U32(r.u32()?),
            Field::U64(_) => Field::U64(r.u64()?),
            Field::Flag(_) => Field::Flag(r.flag()?),
            Field::Array(_) => Field::Array(r.array()?),
            Field::Raw(v) => Field::Raw(r.raw(v.len())?.to_vec()),
            Field::Bytes8(_) => Field::Bytes8(r.bytes8(MAX, "b8")?.to_vec()),
            Field::Bytes16(_) => Field::Bytes16(r.bytes16(MAX, "b16")?.to_vec()),
            Field::Bytes32(_) => Field::Bytes32(r.bytes32(MAX, "b32")?.to_vec()),
            Field::Count8(_) => Field::Count8(r.count8(MAX, "c8")? as u8),
            Field::Count16(_) => Field::Count16(r.count16(MAX, "c16")? as u16),
            Field::Count32(_) => Field::Count32(r.count32(MAX, "c32")? as u32),
        });
        assert!(r.offset() > before || matches!(f, Field::Raw(v) if v.is_empty()));
        assert_eq!(r.offset() + r.remaining(), bytes.len());
    }
    r.finish()?;
    Ok(out)
}

fn field() -> impl Strategy<Value = Field> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        any::<u8>().prop_map(Field::U8),
        any::<u16>().prop_map(Field::U16),
        any::<u32>().prop_map(Field::U32),
        any::<u64>().prop_map(Field::U64),
        any::<bool>().prop_map(Field::Flag),
        any::<[u8; 4]>().prop_map(Field::Array),
        bytes().prop_map(Field::Raw),
        bytes().prop_map(Field::Bytes8),
        bytes().prop_map(Field::Bytes16),
        bytes().prop_map(Field::Bytes32),
        (0..=MAX as u8).prop_map(Field::Count8),
        (0..=MAX as u16).prop_map(Field::Count16),
        (0..=MAX as u32).prop_map(Field::Count32),
    ]
}

proptest! {
    #[test]
    fn encode_then_decode_gives_the_fields_back(fields in proptest::collection::vec(field(), 0..20)) {
        let bytes = write(&fields).unwrap();
        prop_assert_eq!(read(&bytes, &fields), Ok(fields.clone()));
        // Every cut is refused, and so is one more byte.
        for n in 0..bytes.len() {
            prop_assert!(read(&bytes[..n], &fields).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert_eq!(
            read(&longer, &fields),
            Err(DecodeError::TrailingBytes { offset: bytes.len(), count: 1 })
        );
    }

    #[test]
    fn any_bytes_read_by_any_script_never_panic_and_round_trip(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        script in proptest::collection::vec(field(), 0..12),
    ) {
        // Whatever decodes re-encodes to the same bytes: one encoding per value.
        if let Ok(fields) = read(&bytes, &script) {
            prop_assert_eq!(write(&fields).unwrap(), bytes.clone());
        }
        let r = Reader::new(&bytes);
        let _ = r.clone().finish();
        let _ = r.finish_zero_padded();
    }
}

#[test]
fn fixed_width_integers_are_big_endian() {
    let mut w = Writer::new();
    w.u8(1);
    w.u16(0x0203);
    w.u32(0x0405_0607);
    w.u64(0x0809_0a0b_0c0d_0e0f);
    w.flag(true);
    w.bytes8(b"a");
    w.bytes16(b"b");
    w.bytes32(b"c");
    w.count16(2);
    let b = w.finish().unwrap();
    assert_eq!(
        b,
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 1, 1, b'a', 0, 1, b'b', 0, 0, 0, 1, b'c', 0, 2]
    );
}

#[test]
fn truncation_says_where_and_how_much() {
    let mut r = Reader::new(&[1, 2, 3]);
    assert_eq!(r.u8(), Ok(1));
    let e = r.u32().unwrap_err();
    assert_eq!(e, DecodeError::Truncated { offset: 1, needed: 4, remaining: 2 });
    assert_eq!(e.to_string(), "truncated: 4 bytes expected at byte 1, 2 left");
    assert_eq!(e.reason(), "truncated");
    // A failed read consumes nothing.
    assert_eq!(r.offset(), 1);
    assert_eq!(r.u16(), Ok(0x0203));
    assert_eq!(r.finish(), Ok(()));
}

#[test]
fn a_length_over_its_limit_is_refused_before_the_field_is_read() {
    // The prefix says 5; only 1 byte follows: the limit is checked first.
    let b = [0, 5, 9];
    let e = Reader::new(&b).bytes16(4, "name").unwrap_err();
    assert_eq!(e, DecodeError::TooLong { what: "name", len: 5, max: 4 });
    assert_eq!(e.to_string(), "name is 5 long, more than its limit of 4");
    assert_eq!(e.reason(), "name");
    assert_eq!(Reader::new(&b).bytes16(5, "name").unwrap_err().reason(), "truncated");
    let huge = [0xff; 4];
    assert_eq!(
        Reader::new(&huge).bytes32(1 << 20, "blob"),
        Err(DecodeError::TooLong { what: "blob", len: u64::from(u32::MAX), max: 1 << 20 })
    );
    assert_eq!(
        Reader::new(&[0, 9]).count16(8, "list"),
        Err(DecodeError::TooLong { what: "list", len: 9, max: 8 })
    );
    assert_eq!(Reader::new(&[7]).count8(7, "list"), Ok(7));
    assert_eq!(Reader::new(&[0, 0, 0, 7]).count32(7, "list"), Ok(7));
}

#[test]
fn flags_are_zero_or_one() {
    assert_eq!(Reader::new(&[0]).flag(), Ok(false));
    assert_eq!(Reader::new(&[1]).flag(), Ok(true));
    let mut r = Reader::new(&[1, 2]);
    r.u8().unwrap();
    assert_eq!(r.flag(), Err(DecodeError::Invalid { what: "flag (0 or 1)", offset: 1 }));
}

#[test]
fn trailing_bytes_and_padding() {
    let mut r = Reader::new(&[1, 0, 0]);
    r.u8().unwrap();
    let e = r.clone().finish().unwrap_err();
    assert_eq!(e, DecodeError::TrailingBytes { offset: 1, count: 2 });
    assert_eq!(e.reason(), "trailing bytes");
    assert_eq!(r.finish_zero_padded(), Ok(()));
    let mut r = Reader::new(&[1, 0, 3]);
    r.u8().unwrap();
    assert_eq!(r.finish_zero_padded(), Err(DecodeError::Invalid { what: "padding (zeros)", offset: 2 }));
    assert_eq!(Reader::new(&[]).finish(), Ok(()));
}

#[test]
fn rest_takes_everything_left() {
    let mut r = Reader::new(&[1, 2, 3]);
    r.u8().unwrap();
    assert_eq!(r.rest(), [2, 3]);
    assert_eq!(r.offset(), 3);
    assert_eq!(r.rest(), [0u8; 0]);
    assert_eq!(r.finish(), Ok(()));
}

#[test]
fn a_forged_count_does_not_size_an_allocation() {
    let b = [0u8; 10];
    let r = Reader::new(&b);
    assert_eq!(r.capacity_for(1 << 30, 8), 1);
    assert_eq!(r.capacity_for(1, 8), 1);
    assert_eq!(r.capacity_for(100, 0), 10);
}

#[test]
fn a_field_too_long_for_its_prefix_fails_the_whole_encoding() {
    let mut w = Writer::new();
    w.u8(1);
    w.bytes8(&[0; 256]);
    w.bytes16(&[0; 3]);
    // Nothing of the long field is written; the first error is the one reported.
    assert_eq!(w.len(), 1 + 2 + 3);
    let e = w.finish().unwrap_err();
    assert_eq!(e, EncodeError::TooLong { len: 256, width: 1, max: 255 });
    assert!(e.to_string().contains("1-byte prefix"));

    let mut w = Writer::new();
    w.bytes16(&[0; 65_536]);
    w.count8(256);
    assert_eq!(w.finish(), Err(EncodeError::TooLong { len: 65_536, width: 2, max: 65_535 }));

    let mut w = Writer::new();
    w.u8(9);
    w.bytes8(&[0; 300]);
    assert_eq!(w.into_parts(), (vec![9], Some(EncodeError::TooLong { len: 300, width: 1, max: 255 })));

    let mut w = Writer::new();
    w.count16(65_535);
    w.bytes8(&[7; 255]);
    assert_eq!(w.finish().unwrap().len(), 2 + 1 + 255);
}

#[cfg(target_pointer_width = "64")]
#[test]
fn a_count_too_large_for_four_bytes_is_refused() {
    let mut w = Writer::new();
    w.count32(1 << 32);
    assert_eq!(w.finish(), Err(EncodeError::TooLong { len: 1 << 32, width: 4, max: u64::from(u32::MAX) }));
}

#[test]
fn with_capacity_does_not_move_an_exact_buffer() {
    let mut w = Writer::with_capacity(11);
    let before = w.as_slice().as_ptr();
    w.u8(1);
    w.u16(2);
    w.u64(3);
    assert_eq!(w.as_slice().as_ptr(), before);
    assert!(!w.is_empty());
    assert_eq!(w.finish().unwrap().len(), 11);
}

//! Byte-exact checks of the COPY encoding.

use crate::copy_binary::*;

fn field(f: impl FnOnce(&mut Tuple<'_>)) -> Vec<u8> {
    let mut buf = Vec::new();
    f(&mut Tuple::begin(&mut buf, 1));
    assert_eq!(&buf[..2], &[0, 1], "field count");
    buf[2..].to_vec()
}

#[test]
fn header_and_trailer() {
    let mut buf = Vec::new();
    write_header(&mut buf);
    write_trailer(&mut buf);
    assert_eq!(buf, b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\xff\xff");
}

#[test]
fn scalars() {
    assert_eq!(
        field(|t| {
            t.int8(-2);
        }),
        [0, 0, 0, 8, 255, 255, 255, 255, 255, 255, 255, 254]
    );
    assert_eq!(
        field(|t| {
            t.int4(7);
        }),
        [0, 0, 0, 4, 0, 0, 0, 7]
    );
    assert_eq!(
        field(|t| {
            t.float8(1.5);
        }),
        [0, 0, 0, 8, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        field(|t| {
            t.bool(true);
        }),
        [0, 0, 0, 1, 1]
    );
    assert_eq!(
        field(|t| {
            t.null();
        }),
        [255, 255, 255, 255]
    );
    assert_eq!(
        field(|t| {
            t.text("hé");
        }),
        [0, 0, 0, 3, b'h', 0xc3, 0xa9]
    );
    assert_eq!(
        field(|t| {
            t.jsonb(b"{}");
        }),
        [0, 0, 0, 3, 1, b'{', b'}']
    );
}

#[test]
fn timestamptz_is_micros_since_2000() {
    // 2000-01-01T00:00:01Z = 946_684_801 s after the Unix epoch.
    let ns = 946_684_801_000_000_000;
    assert_eq!(
        field(|t| {
            t.timestamptz_ns(ns);
        }),
        [0, 0, 0, 8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40]
    );
    assert_eq!(
        ns_to_pg_micros(ns + 999),
        1_000_000,
        "sub-microsecond part is dropped"
    );
    assert_eq!(
        ns_to_pg_micros(-1),
        -946_684_800_000_001,
        "floor, not truncation"
    );
    assert_eq!(
        field(|t| {
            t.timestamptz_ns_or_null(0);
        }),
        [255; 4]
    );
}

fn be(words: &[i32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

#[test]
fn float8_array_layout() {
    let got = field(|t| {
        t.float8_array([1.5].into_iter());
    });
    let mut want = be(&[32, 1, 0, 701, 1, 1, 8]);
    want.extend_from_slice(&1.5f64.to_be_bytes());
    assert_eq!(got, want);
}

#[test]
fn int8_array_layout() {
    let got = field(|t| {
        t.int8_array(&[3, 4]);
    });
    let mut want = be(&[44, 1, 0, 20, 2, 1, 8]);
    want.extend_from_slice(&3i64.to_be_bytes());
    want.extend_from_slice(&be(&[8]));
    want.extend_from_slice(&4i64.to_be_bytes());
    assert_eq!(got, want);
}

#[test]
fn timestamptz_array_with_null_element() {
    let got = field(|t| {
        t.timestamptz_array_ns(&[946_684_801_000_000_000, 0]);
    });
    let mut want = be(&[36, 1, 1, 1184, 2, 1, 8]);
    want.extend_from_slice(&1_000_000i64.to_be_bytes());
    want.extend_from_slice(&be(&[-1]));
    assert_eq!(got, want);
}

#[test]
fn empty_array_has_no_dimensions() {
    assert_eq!(
        field(|t| {
            t.float8_array([].into_iter());
        }),
        be(&[12, 0, 0, 701])
    );
}

#[test]
fn int4_array_layout() {
    let got = field(|t| {
        t.int4_array(&[3, -1]);
    });
    let mut want = be(&[36, 1, 0, 23, 2, 1, 4, 3, 4]);
    want.extend_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(got, want);
}

//! Reads binary COPY streams back, for assertions.

use crate::copy_binary::SIGNATURE;

/// One field: `None` for NULL.
pub type Field = Option<Vec<u8>>;

/// The tuples of a complete binary COPY stream (checks header and trailer).
pub fn tuples(stream: &[u8]) -> Vec<Vec<Field>> {
    if stream.is_empty() {
        return Vec::new();
    }
    assert_eq!(&stream[..11], SIGNATURE);
    assert_eq!(&stream[11..19], &[0; 8]);
    let mut pos = 19;
    let mut out = Vec::new();
    loop {
        let n = i16::from_be_bytes(stream[pos..pos + 2].try_into().unwrap());
        pos += 2;
        if n == -1 {
            assert_eq!(pos, stream.len(), "bytes after the trailer");
            return out;
        }
        let mut row = Vec::new();
        for _ in 0..n {
            let len = i32::from_be_bytes(stream[pos..pos + 4].try_into().unwrap());
            pos += 4;
            if len < 0 {
                row.push(None);
            } else {
                row.push(Some(stream[pos..pos + len as usize].to_vec()));
                pos += len as usize;
            }
        }
        out.push(row);
    }
}

pub fn int8(f: &Field) -> i64 {
    i64::from_be_bytes(f.as_ref().unwrap()[..].try_into().unwrap())
}

pub fn int4(f: &Field) -> i32 {
    i32::from_be_bytes(f.as_ref().unwrap()[..].try_into().unwrap())
}

pub fn float8(f: &Field) -> f64 {
    f64::from_be_bytes(f.as_ref().unwrap()[..].try_into().unwrap())
}

pub fn text(f: &Field) -> String {
    String::from_utf8(f.clone().unwrap()).unwrap()
}

pub fn jsonb(f: &Field) -> serde_json::Value {
    let b = f.as_ref().unwrap();
    assert_eq!(b[0], 1, "jsonb version byte");
    serde_json::from_slice(&b[1..]).unwrap()
}

/// Elements of a 1-D array of 8-byte elements, with its element type oid.
pub fn array8(f: &Field) -> (u32, Vec<Option<[u8; 8]>>) {
    let b = f.as_ref().unwrap();
    let word = |i: usize| i32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    let oid = word(8) as u32;
    if word(0) == 0 {
        return (oid, Vec::new());
    }
    assert_eq!(word(0), 1, "ndim");
    assert_eq!(word(16), 1, "lower bound");
    let n = word(12) as usize;
    let mut pos = 20;
    let mut out = Vec::new();
    for _ in 0..n {
        let len = word(pos);
        pos += 4;
        if len < 0 {
            out.push(None);
        } else {
            out.push(Some(b[pos..pos + 8].try_into().unwrap()));
            pos += 8;
        }
    }
    assert_eq!(pos, b.len());
    (oid, out)
}

pub fn float8_array(f: &Field) -> Vec<f64> {
    array8(f)
        .1
        .into_iter()
        .map(|e| f64::from_be_bytes(e.unwrap()))
        .collect()
}

/// Elements of a 1-D `integer[]` without NULLs.
pub fn int4_array(f: &Field) -> Vec<i32> {
    let b = f.as_ref().unwrap();
    let word = |i: usize| i32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    assert_eq!(word(8) as u32, 23, "element oid");
    if word(0) == 0 {
        return Vec::new();
    }
    let n = word(12) as usize;
    assert_eq!(b.len(), 20 + 8 * n);
    (0..n)
        .map(|i| {
            assert_eq!(word(20 + 8 * i), 4, "element length");
            word(24 + 8 * i)
        })
        .collect()
}

pub fn int8_array(f: &Field) -> Vec<Option<i64>> {
    array8(f)
        .1
        .into_iter()
        .map(|e| e.map(i64::from_be_bytes))
        .collect()
}

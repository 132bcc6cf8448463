//! PostgreSQL binary COPY encoding: stream header and trailer, and one tuple's fields.
//!
//! Format reference: PostgreSQL docs, "COPY ... Binary Format"; array layout from `array_recv`.
//! Every integer is big-endian.

/// The 11-byte signature that opens every binary COPY stream.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Type oid of `int8`, used as the element type of `bigint[]`.
pub const OID_INT8: u32 = 20;
/// Type oid of `int4`, used as the element type of `integer[]`.
pub const OID_INT4: u32 = 23;
/// Type oid of `float8`, used as the element type of `double precision[]`.
pub const OID_FLOAT8: u32 = 701;
/// Type oid of `timestamptz`, used as the element type of `timestamptz[]`.
pub const OID_TIMESTAMPTZ: u32 = 1184;

/// Microseconds between 1970-01-01 (Unix epoch) and 2000-01-01 (PostgreSQL epoch).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// Converts Unix nanoseconds to a PostgreSQL `timestamptz` value (microseconds since
/// 2000-01-01 UTC). Floor division: sub-microsecond precision is dropped, since PostgreSQL
/// stores microseconds.
pub fn ns_to_pg_micros(ns: i64) -> i64 {
    ns.div_euclid(1000) - PG_EPOCH_OFFSET_US
}

/// Appends the stream header: signature, flags (0) and header-extension length (0).
pub fn write_header(buf: &mut Vec<u8>) {
    buf.extend_from_slice(SIGNATURE);
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes());
}

/// Appends the stream trailer (a field count of -1).
pub fn write_trailer(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&(-1i16).to_be_bytes());
}

/// Writes the fields of one tuple, in column order, into a COPY buffer.
pub struct Tuple<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Tuple<'a> {
    /// Starts a tuple of `columns` fields; the caller must then write exactly that many.
    pub fn begin(buf: &'a mut Vec<u8>, columns: i16) -> Self {
        buf.extend_from_slice(&columns.to_be_bytes());
        Tuple { buf }
    }

    fn len(&mut self, len: usize) {
        let len = i32::try_from(len).expect("COPY field larger than 2 GiB");
        self.buf.extend_from_slice(&len.to_be_bytes());
    }

    fn fixed<const N: usize>(&mut self, bytes: [u8; N]) -> &mut Self {
        self.len(N);
        self.buf.extend_from_slice(&bytes);
        self
    }

    /// A NULL field.
    pub fn null(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    /// An `int8` (`bigint`) field.
    pub fn int8(&mut self, v: i64) -> &mut Self {
        self.fixed(v.to_be_bytes())
    }

    /// An `int4` (`integer`) field.
    pub fn int4(&mut self, v: i32) -> &mut Self {
        self.fixed(v.to_be_bytes())
    }

    /// A `float8` (`double precision`) field.
    pub fn float8(&mut self, v: f64) -> &mut Self {
        self.fixed(v.to_be_bytes())
    }

    /// A `float8` field, NULL when `None`.
    pub fn opt_float8(&mut self, v: Option<f64>) -> &mut Self {
        match v {
            Some(v) => self.float8(v),
            None => self.null(),
        }
    }

    /// A `bool` field.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.fixed([u8::from(v)])
    }

    /// A `bool` field, NULL when `None`.
    pub fn opt_bool(&mut self, v: Option<bool>) -> &mut Self {
        match v {
            Some(v) => self.bool(v),
            None => self.null(),
        }
    }

    /// A `text` field (the bytes must be UTF-8 without NUL; prost and validation ensure it).
    pub fn text(&mut self, v: &str) -> &mut Self {
        self.len(v.len());
        self.buf.extend_from_slice(v.as_bytes());
        self
    }

    /// A `text` field, NULL when `None`.
    pub fn opt_text(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    /// A `bytea` field.
    pub fn bytea(&mut self, v: &[u8]) -> &mut Self {
        self.len(v.len());
        self.buf.extend_from_slice(v);
        self
    }

    /// A `jsonb` field from JSON text: the binary form is version byte 1 then the text.
    pub fn jsonb(&mut self, json: &[u8]) -> &mut Self {
        self.len(json.len() + 1);
        self.buf.push(1);
        self.buf.extend_from_slice(json);
        self
    }

    /// A `timestamptz` field from Unix nanoseconds (see [`ns_to_pg_micros`]).
    pub fn timestamptz_ns(&mut self, ns: i64) -> &mut Self {
        self.int8(ns_to_pg_micros(ns))
    }

    /// A `timestamptz` field from Unix nanoseconds, NULL when 0 (OTLP's "unset").
    pub fn timestamptz_ns_or_null(&mut self, ns: i64) -> &mut Self {
        if ns == 0 {
            self.null()
        } else {
            self.timestamptz_ns(ns)
        }
    }

    /// Writes the length and header of a 1-D array of `len` 8-byte elements, `nulls` of them
    /// NULL. An empty array uses ndim 0, as PostgreSQL itself sends `'{}'`.
    fn array8_header(&mut self, oid: u32, len: usize, nulls: usize) {
        self.array_header(oid, 8, len, nulls);
    }

    /// Writes the length and header of a 1-D array of `len` elements of `width` bytes,
    /// `nulls` of them NULL (each element carries a 4-byte length; a NULL has no bytes).
    fn array_header(&mut self, oid: u32, width: usize, len: usize, nulls: usize) {
        if len == 0 {
            self.len(12);
            self.buf.extend_from_slice(&0i32.to_be_bytes());
            self.buf.extend_from_slice(&0i32.to_be_bytes());
            self.buf.extend_from_slice(&oid.to_be_bytes());
            return;
        }
        self.len(20 + len * (4 + width) - nulls * width);
        self.buf.extend_from_slice(&1i32.to_be_bytes());
        self.buf
            .extend_from_slice(&i32::from(nulls > 0).to_be_bytes());
        self.buf.extend_from_slice(&oid.to_be_bytes());
        let dim = i32::try_from(len).expect("array longer than i32::MAX");
        self.buf.extend_from_slice(&dim.to_be_bytes());
        self.buf.extend_from_slice(&1i32.to_be_bytes());
    }

    fn element8(&mut self, bytes: [u8; 8]) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&bytes);
    }

    /// A `double precision[]` field.
    pub fn float8_array(&mut self, values: impl ExactSizeIterator<Item = f64>) -> &mut Self {
        self.array8_header(OID_FLOAT8, values.len(), 0);
        values.for_each(|v| self.element8(v.to_be_bytes()));
        self
    }

    /// A `double precision[]` field whose `None` elements are NULL elements.
    pub fn opt_float8_array(&mut self, values: &[Option<f64>]) -> &mut Self {
        let nulls = values.iter().filter(|v| v.is_none()).count();
        self.array8_header(OID_FLOAT8, values.len(), nulls);
        for v in values {
            match v {
                Some(v) => self.element8(v.to_be_bytes()),
                None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        self
    }

    /// A `bigint[]` field from OTLP's unsigned counts (reinterpreted as i64: counts past
    /// i64::MAX do not occur in practice).
    pub fn int8_array(&mut self, values: &[u64]) -> &mut Self {
        self.array8_header(OID_INT8, values.len(), 0);
        values
            .iter()
            .for_each(|&v| self.element8((v as i64).to_be_bytes()));
        self
    }

    /// An `integer[]` field.
    pub fn int4_array(&mut self, values: &[i32]) -> &mut Self {
        self.array_header(OID_INT4, 4, values.len(), 0);
        for v in values {
            self.buf.extend_from_slice(&4i32.to_be_bytes());
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
        self
    }

    /// A `timestamptz[]` field from Unix nanoseconds; an element of 0 becomes a NULL element.
    pub fn timestamptz_array_ns(&mut self, values: &[i64]) -> &mut Self {
        let nulls = values.iter().filter(|&&v| v == 0).count();
        self.array8_header(OID_TIMESTAMPTZ, values.len(), nulls);
        for &v in values {
            if v == 0 {
                self.buf.extend_from_slice(&(-1i32).to_be_bytes());
            } else {
                self.element8(ns_to_pg_micros(v).to_be_bytes());
            }
        }
        self
    }
}

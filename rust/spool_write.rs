//! Writing a group of spool records, as the `tidegate.spool` package docstring lays them
//! out, in one buffer and one write, then `fdatasync`: all of it without the GIL (the
//! binding is `SpoolGroupWriter` in `python_spool.rs`; Python reads the records back).
//!
//! Why here and not in Python: the spool's writer thread took the GIL back after every step
//! of a group (the CRC of each request, the write, the fsync), and under load each of those
//! waits for the event loop to let go of it. One call for the whole group takes it back once.

use std::fs::File;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};

pub const RECORD_MAGIC: u32 = 0x5447_5231;
pub const PAD_MAGIC: u32 = 0x5447_5030;
/// magic, body length, CRC-32 of the body.
const HEAD: usize = 12;
/// seq, now_ns, flags, tenant length, request hash.
const BODY_HEAD: usize = 8 + 8 + 1 + 2 + 16;
/// A buffer up to twice this size is kept whatever the group (groups are up to 4 MiB and
/// one request).
const KEEP_BUFFER: usize = 8 << 20;

/// One record to write, borrowed from its Python objects.
pub struct RecordRef<'a> {
    pub seq: u64,
    pub now_ns: i64,
    pub flags: u8,
    pub tenant: &'a [u8],
    pub request_hash: &'a [u8; 16],
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    fn body_len(&self) -> usize {
        BODY_HEAD + self.tenant.len() + self.payload.len()
    }

    /// Whether the record fits the format: a u16 tenant length and a u32 body length.
    pub fn check(&self) -> Result<(), String> {
        if self.tenant.len() > usize::from(u16::MAX) {
            return Err(format!(
                "tenant of {} bytes is over 65535",
                self.tenant.len()
            ));
        }
        if u32::try_from(self.body_len()).is_err() {
            return Err(format!(
                "payload of {} bytes does not fit in a record",
                self.payload.len()
            ));
        }
        Ok(())
    }
}

/// Lays groups out in a buffer whose start is a multiple of `align`, each ending with a
/// padding record up to the next multiple of `align` (none when `align` is 1), and writes
/// them. The buffer is kept from group to group.
pub struct GroupWriter {
    align: usize,
    buffer: Vec<u8>,
}

impl GroupWriter {
    /// `align` is 1 (records back to back, for the page cache) or a power of two from 16
    /// (for `O_DIRECT`, whose writes must start and end on such a boundary in memory and on
    /// disk; a gap too small for a padding record's head then fits in one more block).
    pub fn new(align: usize) -> Result<Self, String> {
        if align != 1 && (!align.is_power_of_two() || !(16..=1 << 20).contains(&align)) {
            return Err(format!(
                "align must be 1 or a power of two from 16 to 1 MiB, not {align}"
            ));
        }
        Ok(Self {
            align,
            buffer: Vec::new(),
        })
    }

    pub fn align(&self) -> usize {
        self.align
    }

    /// The group's bytes: `prefix` (a segment's file header, or nothing), the records, and
    /// the padding that makes the whole a multiple of `align`.
    pub fn encode(&mut self, prefix: &[u8], records: &[RecordRef<'_>]) -> &[u8] {
        let records_len: usize = records.iter().map(|r| HEAD + r.body_len()).sum();
        let length = prefix.len() + records_len;
        let mut gap = length.wrapping_neg() & (self.align - 1);
        if gap != 0 && gap < HEAD {
            gap += self.align;
        }
        let total = length + gap;
        // Room for the whole group after the first `align` boundary of the allocation; a
        // buffer grown for an unusually large group is let go.
        if self.buffer.capacity() > 2 * (total + self.align).max(KEEP_BUFFER) {
            self.buffer = Vec::new();
        }
        self.buffer.clear();
        self.buffer.reserve(total + self.align);
        let start = self.buffer.as_ptr().align_offset(self.align);
        self.buffer.resize(start, 0);
        self.buffer.extend_from_slice(prefix);
        for record in records {
            let mut crc = crc32fast::Hasher::new();
            let body_head_at = self.buffer.len() + HEAD;
            self.buffer.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
            self.buffer
                .extend_from_slice(&(record.body_len() as u32).to_le_bytes());
            self.buffer.extend_from_slice(&[0; 4]); // the CRC, once known
            self.buffer.extend_from_slice(&record.seq.to_le_bytes());
            self.buffer.extend_from_slice(&record.now_ns.to_le_bytes());
            self.buffer.push(record.flags);
            self.buffer
                .extend_from_slice(&(record.tenant.len() as u16).to_le_bytes());
            self.buffer.extend_from_slice(record.request_hash);
            self.buffer.extend_from_slice(record.tenant);
            crc.update(&self.buffer[body_head_at..]);
            crc.update(record.payload);
            self.buffer.extend_from_slice(record.payload);
            let crc_at = body_head_at - 4;
            self.buffer[crc_at..body_head_at].copy_from_slice(&crc.finalize().to_le_bytes());
        }
        if gap != 0 {
            let body_len = gap - HEAD;
            let body_at = self.buffer.len() + HEAD;
            self.buffer.extend_from_slice(&PAD_MAGIC.to_le_bytes());
            self.buffer
                .extend_from_slice(&(body_len as u32).to_le_bytes());
            self.buffer.extend_from_slice(&[0; 4]);
            self.buffer.resize(body_at + body_len, 0);
            let crc = crc32fast::hash(&self.buffer[body_at..]);
            self.buffer[body_at - 4..body_at].copy_from_slice(&crc.to_le_bytes());
        }
        debug_assert_eq!(self.buffer.len() - start, total);
        &self.buffer[start..]
    }

    /// Encodes the group and writes it to `fd` (the whole of it, or an error), then
    /// `fdatasync`s when `sync`; returns the bytes written.
    pub fn write(
        &mut self,
        fd: RawFd,
        prefix: &[u8],
        records: &[RecordRef<'_>],
        sync: bool,
    ) -> io::Result<usize> {
        // SAFETY: the caller owns `fd` and keeps it open for the call; ManuallyDrop leaves it
        // open afterwards.
        let mut file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
        let bytes = self.encode(prefix, records);
        file.write_all(bytes)?;
        if sync {
            file.sync_data()?;
        }
        Ok(bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(seq: u64, tenant: &'a [u8], payload: &'a [u8]) -> RecordRef<'a> {
        RecordRef {
            seq,
            now_ns: -7,
            flags: 3,
            tenant,
            request_hash: &[9; 16],
            payload,
        }
    }

    #[test]
    fn a_record_is_laid_out_as_documented() {
        let mut writer = GroupWriter::new(1).unwrap();
        let bytes = writer.encode(b"", &[record(5, b"t", b"xyz")]).to_vec();
        let body_len = BODY_HEAD + 1 + 3;
        assert_eq!(bytes.len(), HEAD + body_len);
        assert_eq!(&bytes[0..4], &RECORD_MAGIC.to_le_bytes());
        assert_eq!(&bytes[4..8], &(body_len as u32).to_le_bytes());
        assert_eq!(
            &bytes[8..12],
            &crc32fast::hash(&bytes[HEAD..]).to_le_bytes()
        );
        assert_eq!(&bytes[12..20], &5u64.to_le_bytes());
        assert_eq!(&bytes[20..28], &(-7i64).to_le_bytes());
        assert_eq!(bytes[28], 3);
        assert_eq!(&bytes[29..31], &1u16.to_le_bytes());
        assert_eq!(&bytes[31..47], &[9; 16]);
        assert_eq!(&bytes[47..], b"txyz");
    }

    #[test]
    fn padding_takes_the_group_to_the_boundary_or_the_one_after() {
        let mut writer = GroupWriter::new(4096).unwrap();
        for payload_len in [
            0,
            100,
            4096 - HEAD - BODY_HEAD - 8,
            4096 - HEAD - BODY_HEAD - 12,
        ] {
            let payload = vec![1u8; payload_len];
            let group = writer.encode(b"TGSPOOL1", &[record(1, b"", &payload)]);
            assert_eq!(group.as_ptr() as usize % 4096, 0);
            assert_eq!(group.len() % 4096, 0);
            let records_end = 8 + HEAD + BODY_HEAD + payload_len;
            let gap = group.len() - records_end;
            if gap != 0 {
                let pad = &group[records_end..];
                assert!(gap >= HEAD, "{payload_len}: a gap of {gap}");
                assert_eq!(&pad[0..4], &PAD_MAGIC.to_le_bytes());
                assert_eq!(&pad[4..8], &((gap - HEAD) as u32).to_le_bytes());
                assert_eq!(&pad[8..12], &crc32fast::hash(&pad[HEAD..]).to_le_bytes());
                assert!(pad[HEAD..].iter().all(|&b| b == 0));
            }
        }
        // A group that ends exactly on the boundary has no padding.
        let payload = vec![2u8; 4096 - 8 - HEAD - BODY_HEAD];
        assert_eq!(
            writer
                .encode(b"TGSPOOL1", &[record(1, b"", &payload)])
                .len(),
            4096
        );
    }

    #[test]
    fn a_group_is_written_whole_and_errors_keep_their_errno() {
        use std::os::fd::AsRawFd;
        let name = format!("tidegate-spool-write-{}", std::process::id());
        let path = std::env::temp_dir().join(name);
        let file = File::create(&path).unwrap();
        let mut writer = GroupWriter::new(1).unwrap();
        let records = [record(1, b"a", b"first"), record(2, b"", b"second")];
        let written = writer
            .write(file.as_raw_fd(), b"TGSPOOL1", &records, true)
            .unwrap();
        let expected = writer.encode(b"TGSPOOL1", &records).to_vec();
        assert_eq!(written, expected.len());
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        std::fs::remove_file(&path).unwrap();
        // A read-only fd: the write fails with the kernel's EBADF, and the fd stays open.
        let read_only = File::open("/dev/null").unwrap();
        let error = writer
            .write(read_only.as_raw_fd(), b"", &records, false)
            .unwrap_err();
        assert_eq!(error.raw_os_error(), Some(9));
        assert!(read_only.metadata().is_ok());
    }

    #[test]
    fn alignment_and_record_limits_are_checked() {
        assert!(GroupWriter::new(0).is_err());
        assert!(GroupWriter::new(3000).is_err());
        assert!(GroupWriter::new(8).is_err());
        assert!(GroupWriter::new(1).is_ok());
        assert!(GroupWriter::new(16).is_ok());
        let tenant = vec![b'a'; 65536];
        assert!(record(1, &tenant, b"").check().is_err());
        assert!(record(1, &tenant[..65535], b"").check().is_ok());
    }
}

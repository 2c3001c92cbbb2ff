//! Reads one member of a zip archive (a Python wheel): the central directory, then the member's
//! local header and data, stored or deflated, checked against its CRC-32.

use std::io::Read;

/// Why a member could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipError(pub String);

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
}

const END_OF_DIRECTORY: &[u8] = b"PK\x05\x06";
const DIRECTORY_ENTRY: &[u8] = b"PK\x01\x02";
const LOCAL_HEADER: &[u8] = b"PK\x03\x04";

/// The bytes of member `name` of the zip archive `zip`.
pub fn read_member(zip: &[u8], name: &str) -> Result<Vec<u8>, ZipError> {
    let fail = |m: &str| ZipError(m.to_string());
    // The end-of-directory record sits in the last 64 KiB + 22 bytes.
    let from = zip.len().saturating_sub(22 + 65_535);
    let end = zip[from..]
        .windows(4)
        .rposition(|w| w == END_OF_DIRECTORY)
        .map(|p| from + p)
        .ok_or_else(|| fail("not a zip archive: no end-of-directory record"))?;
    let count = u16_at(zip, end + 10).ok_or_else(|| fail("truncated end-of-directory record"))?;
    let mut at = u32_at(zip, end + 16).ok_or_else(|| fail("truncated end-of-directory record"))?;
    let mut names = Vec::new();
    for _ in 0..count {
        let entry = zip
            .get(at..at + 46)
            .filter(|h| &h[..4] == DIRECTORY_ENTRY)
            .ok_or_else(|| fail("a central-directory entry is malformed"))?;
        let field = |o: usize| u16_at(entry, o).expect("46-byte header");
        let (method, crc, packed, size) = (
            field(10),
            u32_at(entry, 16).expect("46-byte header") as u32,
            u32_at(entry, 20).expect("46-byte header"),
            u32_at(entry, 24).expect("46-byte header"),
        );
        let (name_len, extra_len, comment_len) = (field(28), field(30), field(32));
        let local = u32_at(entry, 42).expect("46-byte header");
        let entry_name = zip
            .get(at + 46..at + 46 + name_len)
            .map(String::from_utf8_lossy)
            .ok_or_else(|| fail("a central-directory name is cut short"))?;
        at += 46 + name_len + extra_len + comment_len;
        if entry_name != name {
            names.push(entry_name.into_owned());
            continue;
        }
        let header = zip
            .get(local..local + 30)
            .filter(|h| &h[..4] == LOCAL_HEADER)
            .ok_or_else(|| fail("the member's local header is malformed"))?;
        let data_at = local
            + 30
            + u16_at(header, 26).expect("30 bytes")
            + u16_at(header, 28).expect("30 bytes");
        let raw = zip
            .get(data_at..data_at + packed)
            .ok_or_else(|| fail("the member's data is cut short"))?;
        let data = match method {
            0 => raw.to_vec(),
            8 => {
                let mut out = Vec::with_capacity(size);
                flate2::read::DeflateDecoder::new(raw)
                    .read_to_end(&mut out)
                    .map_err(|e| ZipError(format!("{name}: deflate stream is corrupt: {e}")))?;
                out
            }
            m => {
                return Err(ZipError(format!(
                    "{name}: compression method {m} is not supported"
                )));
            }
        };
        if data.len() != size || crc32fast::hash(&data) != crc {
            return Err(ZipError(format!(
                "{name}: size or CRC-32 does not match the directory (the archive is corrupt)"
            )));
        }
        return Ok(data);
    }
    Err(ZipError(format!(
        "member {name} is not in the archive (it holds: {})",
        names.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    //! Hand-made archives (unit tests of a pure function); the real wheel is read in tests/fetch.rs.
    use super::*;
    use std::io::Write;

    /// A zip with one member, written by hand from the format (method 0 or 8).
    fn one_member(name: &str, data: &[u8], deflate: bool) -> Vec<u8> {
        let packed = if deflate {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        } else {
            data.to_vec()
        };
        let method: u16 = if deflate { 8 } else { 0 };
        let crc = crc32fast::hash(data);
        let mut z = Vec::new();
        z.extend(LOCAL_HEADER);
        z.extend([20, 0, 0, 0]);
        z.extend(method.to_le_bytes());
        z.extend([0; 4]);
        z.extend(crc.to_le_bytes());
        z.extend((packed.len() as u32).to_le_bytes());
        z.extend((data.len() as u32).to_le_bytes());
        z.extend((name.len() as u16).to_le_bytes());
        z.extend([0, 0]);
        z.extend(name.as_bytes());
        z.extend(&packed);
        let dir_at = z.len() as u32;
        z.extend(DIRECTORY_ENTRY);
        z.extend([20, 0, 20, 0, 0, 0]);
        z.extend(method.to_le_bytes());
        z.extend([0; 4]);
        z.extend(crc.to_le_bytes());
        z.extend((packed.len() as u32).to_le_bytes());
        z.extend((data.len() as u32).to_le_bytes());
        z.extend((name.len() as u16).to_le_bytes());
        z.extend([0; 12]);
        z.extend(0u32.to_le_bytes());
        z.extend(name.as_bytes());
        let dir_len = z.len() as u32 - dir_at;
        z.extend(END_OF_DIRECTORY);
        z.extend([0, 0, 0, 0, 1, 0, 1, 0]);
        z.extend(dir_len.to_le_bytes());
        z.extend(dir_at.to_le_bytes());
        z.extend([0, 0]);
        z
    }

    #[test]
    fn reads_stored_and_deflated_members() {
        let data = b"hello hello hello hello";
        for deflate in [false, true] {
            let z = one_member("a/b.pth", data, deflate);
            assert_eq!(read_member(&z, "a/b.pth").unwrap(), data);
            let e = read_member(&z, "c.pth").unwrap_err();
            assert!(
                e.0.contains("c.pth is not in the archive (it holds: a/b.pth)"),
                "{e:?}"
            );
        }
    }

    #[test]
    fn a_flipped_byte_fails_the_crc() {
        let mut z = one_member("x", b"0123456789", false);
        z[30 + 1 + 3] ^= 1;
        let e = read_member(&z, "x").unwrap_err();
        assert!(e.0.contains("CRC-32"), "{e:?}");
        assert!(
            read_member(b"not a zip", "x")
                .unwrap_err()
                .0
                .contains("not a zip")
        );
    }
}

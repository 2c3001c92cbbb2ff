//! Minimal NumPy `.npy` reader/writer for 2-D, C-order, little-endian arrays of
//! `f32` (`'<f4'`) and `u64` (`'<u8'`).
//!
//! Writing always produces format version 1.0 with the header padded (spaces
//! plus a final newline) so that the data starts at a multiple of 64 bytes, as
//! NumPy itself does. Reading accepts versions 1.0, 2.0 and 3.0 (they differ
//! only in the header-length field and header encoding). Anything else — other
//! dtypes, big-endian data, Fortran order, arrays that are not 2-D, truncated
//! or over-long data — is rejected with an [`NpyError`] saying what was
//! expected.

use std::io::{self, Write};

/// The six magic bytes that start every `.npy` file.
const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// NumPy aligns the start of the array data to this many bytes.
const ALIGN: usize = 64;

/// Errors from parsing a `.npy` byte buffer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NpyError {
    /// The buffer does not start with `\x93NUMPY`.
    #[error("not a .npy file: missing magic bytes \\x93NUMPY")]
    BadMagic,
    /// A format version other than 1.0, 2.0 or 3.0.
    #[error("unsupported .npy format version {major}.{minor} (expected 1.0, 2.0 or 3.0)")]
    UnsupportedVersion {
        /// Major version byte found.
        major: u8,
        /// Minor version byte found.
        minor: u8,
    },
    /// The file ends before the header or the data does.
    #[error("truncated .npy {what}: expected {expected} bytes, got {got}")]
    Truncated {
        /// Which part was cut short (`"preamble"`, `"header"` or `"data"`).
        what: &'static str,
        /// Bytes required.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// The data section is longer than the shape requires.
    #[error("trailing bytes in .npy data: shape needs {expected} bytes, file has {got}")]
    TrailingData {
        /// Bytes required by the shape.
        expected: usize,
        /// Bytes present after the header.
        got: usize,
    },
    /// The header dictionary could not be parsed.
    #[error("malformed .npy header: {0}")]
    BadHeader(String),
    /// The array has another element type.
    #[error("wrong .npy dtype: expected '{expected}', got '{got}'")]
    WrongDtype {
        /// The dtype descriptor required.
        expected: &'static str,
        /// The dtype descriptor found.
        got: String,
    },
    /// The array is not 2-D.
    #[error("wrong .npy dimensionality: expected a 2-D array, got {ndim}-D shape {shape:?}")]
    WrongNdim {
        /// Number of dimensions found.
        ndim: usize,
        /// Shape found.
        shape: Vec<usize>,
    },
    /// The array is stored in Fortran (column-major) order.
    #[error("unsupported .npy layout: expected fortran_order False (C order), got True")]
    FortranOrder,
}

/// Writes a 2-D `'<f4'` array of shape `(rows, cols)` in `.npy` v1.0 format.
///
/// `data` is row-major and must hold exactly `rows * cols` values.
pub fn write_f32<W: Write>(w: W, rows: usize, cols: usize, data: &[f32]) -> io::Result<()> {
    write_array(w, "<f4", rows, cols, data, |x| x.to_le_bytes())
}

/// Writes a 2-D `'<u8'` (unsigned 64-bit) array of shape `(rows, cols)` in
/// `.npy` v1.0 format.
///
/// `data` is row-major and must hold exactly `rows * cols` values.
pub fn write_u64<W: Write>(w: W, rows: usize, cols: usize, data: &[u64]) -> io::Result<()> {
    write_array(w, "<u8", rows, cols, data, |x| x.to_le_bytes())
}

/// Parses a `.npy` buffer holding a 2-D `'<f4'` array; returns
/// `(rows, cols, row-major data)`.
pub fn read_f32(bytes: &[u8]) -> Result<(usize, usize, Vec<f32>), NpyError> {
    read_array(bytes, "<f4", f32::from_le_bytes)
}

/// Parses a `.npy` buffer holding a 2-D `'<u8'` array; returns
/// `(rows, cols, row-major data)`.
pub fn read_u64(bytes: &[u8]) -> Result<(usize, usize, Vec<u64>), NpyError> {
    read_array(bytes, "<u8", u64::from_le_bytes)
}

/// Builds the padded v1.0 header (everything before the data).
fn header_bytes(descr: &str, rows: usize, cols: usize) -> io::Result<Vec<u8>> {
    let dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // preamble (magic 6 + version 2 + length 2) + dict + padding + '\n'
    let unpadded = MAGIC.len() + 4 + dict.len() + 1;
    let total = unpadded.div_ceil(ALIGN) * ALIGN;
    let header_len = total - MAGIC.len() - 4;
    let header_len_u16 = u16::try_from(header_len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "npy header too long"))?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len_u16.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    Ok(out)
}

fn write_array<W: Write, T: Copy, const N: usize>(
    mut w: W,
    descr: &str,
    rows: usize,
    cols: usize,
    data: &[T],
    to_le: impl Fn(T) -> [u8; N],
) -> io::Result<()> {
    let expected = rows
        .checked_mul(cols)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "npy shape overflows usize"))?;
    if data.len() != expected {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "npy data has {} values but shape ({rows}, {cols}) needs {expected}",
                data.len()
            ),
        ));
    }
    w.write_all(&header_bytes(descr, rows, cols)?)?;
    let mut buf = Vec::with_capacity(64 * 1024);
    for chunk in data.chunks(64 * 1024 / N) {
        buf.clear();
        for &x in chunk {
            buf.extend_from_slice(&to_le(x));
        }
        w.write_all(&buf)?;
    }
    w.flush()
}

fn read_array<T, const N: usize>(
    bytes: &[u8],
    descr: &'static str,
    from_le: impl Fn([u8; N]) -> T,
) -> Result<(usize, usize, Vec<T>), NpyError> {
    let header = parse_header(bytes)?;
    if header.descr != descr {
        return Err(NpyError::WrongDtype {
            expected: descr,
            got: header.descr,
        });
    }
    if header.fortran_order {
        return Err(NpyError::FortranOrder);
    }
    if header.shape.len() != 2 {
        return Err(NpyError::WrongNdim {
            ndim: header.shape.len(),
            shape: header.shape,
        });
    }
    let (rows, cols) = (header.shape[0], header.shape[1]);
    let expected = rows
        .checked_mul(cols)
        .and_then(|c| c.checked_mul(N))
        .ok_or_else(|| NpyError::BadHeader(format!("shape ({rows}, {cols}) overflows")))?;
    let data = &bytes[header.data_offset..];
    if data.len() < expected {
        return Err(NpyError::Truncated {
            what: "data",
            expected,
            got: data.len(),
        });
    }
    if data.len() > expected {
        return Err(NpyError::TrailingData {
            expected,
            got: data.len(),
        });
    }
    let values = data
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            from_le(a)
        })
        .collect();
    Ok((rows, cols, values))
}

/// The fields of a parsed header.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
    data_offset: usize,
}

fn parse_header(bytes: &[u8]) -> Result<Header, NpyError> {
    if bytes.len() < MAGIC.len() {
        if MAGIC.starts_with(bytes) {
            return Err(NpyError::Truncated {
                what: "preamble",
                expected: MAGIC.len() + 4,
                got: bytes.len(),
            });
        }
        return Err(NpyError::BadMagic);
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(NpyError::BadMagic);
    }
    if bytes.len() < MAGIC.len() + 2 {
        return Err(NpyError::Truncated {
            what: "preamble",
            expected: MAGIC.len() + 4,
            got: bytes.len(),
        });
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => return Err(NpyError::UnsupportedVersion { major, minor }),
    };
    let pre = 8 + len_bytes;
    if bytes.len() < pre {
        return Err(NpyError::Truncated {
            what: "preamble",
            expected: pre,
            got: bytes.len(),
        });
    }
    let header_len = if len_bytes == 2 {
        usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))
    } else {
        let v = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        usize::try_from(v).map_err(|_| NpyError::BadHeader("header length overflows".into()))?
    };
    let end = pre
        .checked_add(header_len)
        .ok_or_else(|| NpyError::BadHeader("header length overflows".into()))?;
    if bytes.len() < end {
        return Err(NpyError::Truncated {
            what: "header",
            expected: end,
            got: bytes.len(),
        });
    }
    let text = std::str::from_utf8(&bytes[pre..end])
        .map_err(|_| NpyError::BadHeader("header is not valid text".into()))?;
    let mut p = DictParser {
        s: text.as_bytes(),
        i: 0,
    };
    let (descr, fortran_order, shape) = p.parse()?;
    Ok(Header {
        descr,
        fortran_order,
        shape,
        data_offset: end,
    })
}

/// A value in the header dictionary.
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// Recursive-descent parser for the Python dict literal of a `.npy` header.
struct DictParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl DictParser<'_> {
    fn err<T>(&self, what: &str) -> Result<T, NpyError> {
        Err(NpyError::BadHeader(format!("{what} at byte {}", self.i)))
    }

    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn parse(&mut self) -> Result<(String, bool, Vec<usize>), NpyError> {
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        if !self.eat(b'{') {
            return self.err("expected '{'");
        }
        loop {
            if self.eat(b'}') {
                break;
            }
            let key = self.string()?;
            if !self.eat(b':') {
                return self.err("expected ':'");
            }
            let value = self.value()?;
            match (key.as_str(), value) {
                ("descr", Value::Str(s)) => descr = Some(s),
                ("fortran_order", Value::Bool(b)) => fortran = Some(b),
                ("shape", Value::Tuple(t)) => shape = Some(t),
                ("descr" | "fortran_order" | "shape", _) => {
                    return Err(NpyError::BadHeader(format!("bad value type for '{key}'")));
                }
                _ => {}
            }
            if !self.eat(b',') {
                if self.eat(b'}') {
                    break;
                }
                return self.err("expected ',' or '}'");
            }
        }
        match (descr, fortran, shape) {
            (Some(d), Some(f), Some(s)) => Ok((d, f, s)),
            _ => Err(NpyError::BadHeader(
                "header must contain 'descr', 'fortran_order' and 'shape'".into(),
            )),
        }
    }

    fn string(&mut self) -> Result<String, NpyError> {
        self.skip_ws();
        let Some(&q) = self.s.get(self.i) else {
            return self.err("expected a string");
        };
        if q != b'\'' && q != b'"' {
            return self.err("expected a quoted string");
        }
        let start = self.i + 1;
        let Some(len) = self.s[start..].iter().position(|&c| c == q) else {
            return self.err("unterminated string");
        };
        self.i = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn value(&mut self) -> Result<Value, NpyError> {
        self.skip_ws();
        let rest = &self.s[self.i..];
        if rest.starts_with(b"True") {
            self.i += 4;
            Ok(Value::Bool(true))
        } else if rest.starts_with(b"False") {
            self.i += 5;
            Ok(Value::Bool(false))
        } else if rest.first() == Some(&b'(') {
            self.i += 1;
            let mut dims = Vec::new();
            loop {
                if self.eat(b')') {
                    break;
                }
                dims.push(self.integer()?);
                if !self.eat(b',') {
                    if self.eat(b')') {
                        break;
                    }
                    return self.err("expected ',' or ')' in shape");
                }
            }
            Ok(Value::Tuple(dims))
        } else if matches!(rest.first(), Some(b'\'' | b'"')) {
            Ok(Value::Str(self.string()?))
        } else {
            self.err("unsupported header value")
        }
    }

    fn integer(&mut self) -> Result<usize, NpyError> {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        // Python 2 era files may write `3L`.
        let digits = &self.s[start..self.i];
        if self.s.get(self.i) == Some(&b'L') {
            self.i += 1;
        }
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .map_or_else(|| self.err("expected a non-negative integer"), Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_file(rows: usize, cols: usize) -> (Vec<f32>, Vec<u8>) {
        let data: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
        let mut buf = Vec::new();
        write_f32(&mut buf, rows, cols, &data).unwrap();
        (data, buf)
    }

    #[test]
    fn round_trip_f32_and_u64() {
        for (rows, cols) in [(0, 3), (1, 1), (3, 4), (17, 100)] {
            let (data, buf) = f32_file(rows, cols);
            assert_eq!(read_f32(&buf).unwrap(), (rows, cols, data));
        }
        let codes: Vec<u64> = (0..12).map(|i| u64::MAX - i * 977).collect();
        let mut buf = Vec::new();
        write_u64(&mut buf, 6, 2, &codes).unwrap();
        assert_eq!(read_u64(&buf).unwrap(), (6, 2, codes));
    }

    #[test]
    fn header_is_64_byte_aligned_and_numpy_like() {
        let (_, buf) = f32_file(3, 4);
        let header_len = usize::from(u16::from_le_bytes([buf[8], buf[9]]));
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(buf.len(), 10 + header_len + 48);
        let text = std::str::from_utf8(&buf[10..10 + header_len]).unwrap();
        assert!(text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn truncated_files_report_byte_counts() {
        let (_, buf) = f32_file(3, 4);
        let cut = &buf[..buf.len() - 5];
        assert_eq!(
            read_f32(cut),
            Err(NpyError::Truncated {
                what: "data",
                expected: 48,
                got: 43
            })
        );
        assert!(matches!(
            read_f32(&buf[..20]),
            Err(NpyError::Truncated { what: "header", .. })
        ));
        assert!(matches!(
            read_f32(&buf[..4]),
            Err(NpyError::Truncated {
                what: "preamble",
                ..
            })
        ));
        let mut long = buf.clone();
        long.push(0);
        assert!(matches!(
            read_f32(&long),
            Err(NpyError::TrailingData { .. })
        ));
    }

    #[test]
    fn wrong_dtype_ndim_order_magic_version() {
        let (_, buf) = f32_file(2, 2);
        let err = read_u64(&buf).unwrap_err();
        assert_eq!(
            err,
            NpyError::WrongDtype {
                expected: "<u8",
                got: "<f4".into()
            }
        );
        assert!(err.to_string().contains("expected '<u8'"));

        let one_d =
            b"\x93NUMPY\x01\x00\x1e\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
        let mut v = one_d.to_vec();
        v.extend_from_slice(&[0; 8]);
        // fix the header length to the actual dict length
        let hl = (v.len() - 8 - 10) as u16;
        v[8..10].copy_from_slice(&hl.to_le_bytes());
        assert!(matches!(
            read_f32(&v),
            Err(NpyError::WrongNdim { ndim: 1, .. })
        ));

        let mut fortran = buf.clone();
        let pos = fortran.windows(5).position(|w| w == b"False").unwrap();
        fortran[pos..pos + 5].copy_from_slice(b"True ");
        assert_eq!(read_f32(&fortran), Err(NpyError::FortranOrder));
        let big_endian: Vec<u8> = {
            let mut b = buf.clone();
            let pos = b.windows(3).position(|w| w == b"<f4").unwrap();
            b[pos] = b'>';
            b
        };
        assert!(matches!(
            read_f32(&big_endian),
            Err(NpyError::WrongDtype { .. })
        ));
        let mut bad_magic = buf.clone();
        bad_magic[1] = b'X';
        assert_eq!(read_f32(&bad_magic), Err(NpyError::BadMagic));
        let mut v9 = buf.clone();
        v9[6] = 9;
        assert!(matches!(
            read_f32(&v9),
            Err(NpyError::UnsupportedVersion { major: 9, .. })
        ));
    }

    #[test]
    fn writer_rejects_wrong_length() {
        let mut buf = Vec::new();
        assert!(write_f32(&mut buf, 2, 2, &[1.0; 3]).is_err());
    }
}

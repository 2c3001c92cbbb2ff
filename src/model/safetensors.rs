//! A reader for safetensors files (8-byte little-endian header length, JSON header with
//! `dtype` / `shape` / `data_offsets`, raw little-endian data) whose every failure names the
//! file, the tensor and the shapes involved. The pretrained encoders load through it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ModelError;
use burn::module::Param;
use burn::prelude::*;

/// Location and type of one tensor inside a safetensors file.
#[derive(Debug, Clone)]
struct TensorEntry {
    dtype: String,
    shape: Vec<usize>,
    /// Byte range relative to the start of the data section.
    start: usize,
    end: usize,
}

/// A safetensors file read fully into memory, with a validated header.
#[derive(Debug)]
pub(crate) struct SafeTensors {
    path: PathBuf,
    bytes: Vec<u8>,
    data_start: usize,
    entries: HashMap<String, TensorEntry>,
}

/// Size in bytes of one element of a safetensors dtype, if known.
fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

impl SafeTensors {
    pub(crate) fn read(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ModelError::WeightsNotFound {
                    path: path.to_path_buf(),
                }
            } else {
                ModelError::WeightsUnreadable {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Self::parse(path.to_path_buf(), bytes)
    }

    pub(crate) fn parse(path: PathBuf, bytes: Vec<u8>) -> Result<Self, ModelError> {
        let corrupt = |what: String| ModelError::CorruptWeights {
            path: path.clone(),
            what,
        };
        let Some((len_bytes, rest)) = bytes.split_first_chunk::<8>() else {
            return Err(corrupt(format!(
                "file is {} bytes long, too short for the 8-byte header length (truncated)",
                bytes.len()
            )));
        };
        let header_len = u64::from_le_bytes(*len_bytes);
        let header_len = usize::try_from(header_len)
            .ok()
            .filter(|&n| n <= rest.len())
            .ok_or_else(|| {
                corrupt(format!(
                    "header length {header_len} exceeds the {} bytes after it (truncated)",
                    rest.len()
                ))
            })?;
        let (header, data) = rest.split_at(header_len);
        let header: serde_json::Value = serde_json::from_slice(header)
            .map_err(|e| corrupt(format!("header is not valid JSON: {e}")))?;
        let serde_json::Value::Object(header) = header else {
            return Err(corrupt("header is not a JSON object".to_owned()));
        };

        let mut entries = HashMap::with_capacity(header.len());
        for (name, info) in header {
            if name == "__metadata__" {
                continue;
            }
            let bad = |what: &str| corrupt(format!("tensor `{name}`: {what}"));
            let dtype = info
                .get("dtype")
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad("missing or non-string `dtype`"))?
                .to_owned();
            let shape = info
                .get("shape")
                .and_then(|v| v.as_array())
                .ok_or_else(|| bad("missing or non-array `shape`"))?
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| bad("`shape` has a non-integer dimension"))?;
            let [start, end] = info
                .get("data_offsets")
                .and_then(offset_pair)
                .ok_or_else(|| bad("`data_offsets` is not a pair of integers"))?;
            if start > end {
                return Err(bad(&format!("data_offsets [{start}, {end}] are reversed")));
            }
            if end > data.len() {
                return Err(bad(&format!(
                    "data_offsets [{start}, {end}] run past the end of the {}-byte data \
                     section (truncated)",
                    data.len()
                )));
            }
            if let Some(size) = dtype_size(&dtype) {
                let numel: usize = shape.iter().product();
                if numel.checked_mul(size) != Some(end - start) {
                    return Err(bad(&format!(
                        "{} bytes of data for {dtype} shape {shape:?}",
                        end - start
                    )));
                }
            }
            entries.insert(
                name,
                TensorEntry {
                    dtype,
                    shape,
                    start,
                    end,
                },
            );
        }
        // Tensors may not share bytes: a crafted header could otherwise alias one tensor's data
        // as another's.
        let mut spans: Vec<(usize, usize, &str)> = entries
            .iter()
            .filter(|(_, e)| e.start < e.end)
            .map(|(n, e)| (e.start, e.end, n.as_str()))
            .collect();
        spans.sort_unstable();
        if let Some(w) = spans.windows(2).find(|w| w[1].0 < w[0].1) {
            return Err(corrupt(format!(
                "tensors `{}` [{}, {}] and `{}` [{}, {}] overlap",
                w[0].2, w[0].0, w[0].1, w[1].2, w[1].0, w[1].1
            )));
        }
        let data_start = 8 + header_len;
        Ok(Self {
            path,
            bytes,
            data_start,
            entries,
        })
    }

    /// The tensor `name` as `f32` values, checking that its shape is `expected`.
    pub(crate) fn f32_tensor(
        &self,
        name: &str,
        expected: &[usize],
    ) -> Result<Vec<f32>, ModelError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_owned(),
            })?;
        if entry.dtype != "F32" {
            return Err(ModelError::UnsupportedDtype {
                name: name.to_owned(),
                dtype: entry.dtype.clone(),
            });
        }
        if entry.shape != expected {
            return Err(ModelError::WrongShape {
                name: name.to_owned(),
                expected: expected.to_vec(),
                found: entry.shape.clone(),
            });
        }
        let raw = self
            .bytes
            .get(self.data_start + entry.start..self.data_start + entry.end)
            .ok_or_else(|| ModelError::CorruptWeights {
                path: self.path.clone(),
                what: format!("tensor `{name}` lies outside the file"),
            })?;
        let values: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(ModelError::CorruptWeights {
                path: self.path.clone(),
                what: format!("tensor `{name}`: value {i} is {v}; weights must be finite"),
            });
        }
        Ok(values)
    }
}

impl SafeTensors {
    /// The F32 tensor `name` of shape `shape` on `device`.
    pub(crate) fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>, ModelError> {
        let values = self.f32_tensor(name, &shape)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }

    /// The F32 tensor `name` of shape `shape` as a trainable parameter on `device`.
    pub(crate) fn param<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Param<Tensor<D>>, ModelError> {
        let values = self.f32_tensor(name, &shape)?;
        Ok(Param::from_data(TensorData::new(values, shape), device))
    }
}

/// Parses a safetensors `data_offsets` value, `[start, end]`.
fn offset_pair(value: &serde_json::Value) -> Option<[usize; 2]> {
    match value.as_array()?.as_slice() {
        [start, end] => Some([
            usize::try_from(start.as_u64()?).ok()?,
            usize::try_from(end.as_u64()?).ok()?,
        ]),
        _ => None,
    }
}

/// Writes F32 tensors `(name, shape, values)` as a safetensors file (for tests that need a
/// weights file in a known layout).
#[cfg(test)]
pub(crate) fn write_f32(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> std::io::Result<()> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": "F32", "shape": shape, "data_offsets": [start, data.len()] }),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made safetensors file (unit tests of the parser only): the header text as given,
    /// with `header_len` as its declared length unless overridden.
    fn file(header: &str, data: &[u8], header_len: Option<u64>) -> Vec<u8> {
        let mut bytes = header_len
            .unwrap_or(header.len() as u64)
            .to_le_bytes()
            .to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    fn parse(bytes: Vec<u8>) -> Result<SafeTensors, ModelError> {
        SafeTensors::parse(PathBuf::from("w.safetensors"), bytes)
    }

    fn corrupt_message(bytes: Vec<u8>) -> String {
        match parse(bytes) {
            Err(e @ ModelError::CorruptWeights { .. }) => e.to_string(),
            other => panic!("expected CorruptWeights, got {other:?}"),
        }
    }

    fn floats(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    const ONE: &str = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;

    #[test]
    fn a_well_formed_file_reads_back() {
        let t = parse(file(ONE, &floats(&[1.5, -2.0]), None)).unwrap();
        assert_eq!(t.f32_tensor("w", &[2]).unwrap(), [1.5, -2.0]);
    }

    #[test]
    fn non_finite_weights_are_rejected_with_the_tensor_and_index() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let t = parse(file(ONE, &floats(&[0.0, bad]), None)).unwrap();
            let err = t.f32_tensor("w", &[2]).unwrap_err().to_string();
            assert!(
                err.contains("w.safetensors") && err.contains("tensor `w`: value 1"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_wrong_dtype_or_shape_is_named() {
        let f16 = r#"{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
        let t = parse(file(f16, &[0; 4], None)).unwrap();
        let err = t.f32_tensor("w", &[2]).unwrap_err();
        assert!(matches!(err, ModelError::UnsupportedDtype { .. }), "{err}");
        let t = parse(file(ONE, &floats(&[0.0, 0.0]), None)).unwrap();
        let err = t.f32_tensor("w", &[1, 2]).unwrap_err();
        assert!(matches!(err, ModelError::WrongShape { .. }), "{err}");
        let err = t.f32_tensor("bias", &[2]).unwrap_err();
        assert!(matches!(err, ModelError::MissingTensor { .. }), "{err}");
    }

    #[test]
    fn bad_offsets_are_rejected() {
        let overlap = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                          "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
        let err = corrupt_message(file(overlap, &[0; 12], None));
        assert!(err.contains("overlap") && err.contains("`a`"), "{err}");
        let past_end = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let err = corrupt_message(file(past_end, &[0; 4], None));
        assert!(err.contains("run past the end"), "{err}");
        let reversed = r#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#;
        let err = corrupt_message(file(reversed, &[0; 8], None));
        assert!(err.contains("reversed"), "{err}");
        let size = r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
        let err = corrupt_message(file(size, &[0; 8], None));
        assert!(err.contains("8 bytes of data for F32 shape [3]"), "{err}");
        let not_pair = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#;
        let err = corrupt_message(file(not_pair, &[0; 8], None));
        assert!(err.contains("data_offsets"), "{err}");
    }

    #[test]
    fn bad_headers_are_rejected() {
        let err = corrupt_message(file(ONE, &[0; 8], Some(1 << 40)));
        assert!(err.contains("exceeds"), "{err}");
        let err = corrupt_message(file("{not json", &[], None));
        assert!(err.contains("not valid JSON"), "{err}");
        let err = corrupt_message(file("[1, 2]", &[], None));
        assert!(err.contains("not a JSON object"), "{err}");
        let err = corrupt_message(vec![1, 2, 3]);
        assert!(err.contains("too short"), "{err}");
        let no_dtype = r#"{"w":{"shape":[2],"data_offsets":[0,8]}}"#;
        let err = corrupt_message(file(no_dtype, &[0; 8], None));
        assert!(err.contains("dtype"), "{err}");
        let bad_shape = r#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#;
        let err = corrupt_message(file(bad_shape, &[0; 8], None));
        assert!(err.contains("non-integer dimension"), "{err}");
    }
}

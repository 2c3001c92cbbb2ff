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
        Ok(raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
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

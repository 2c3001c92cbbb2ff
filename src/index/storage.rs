//! The arrays an index searches ([`Array`]): owned in memory, or borrowed from a memory-mapped
//! index file ([`super::persist::load_mapped`]) so that a database larger than memory can be
//! searched. The mapped pages are the page cache's: the kernel reads them on first touch and may
//! drop them again under memory pressure, so they do not count against the process's
//! anonymous memory.

use std::marker::PhantomData;
use std::sync::Arc;

use super::IndexError;

/// Element types that may be read straight from a mapped little-endian file: every bit pattern
/// is a valid value.
pub(crate) trait Plain: Copy + Send + Sync + 'static {}
impl Plain for f32 {}
impl Plain for u64 {}
impl Plain for i8 {}

/// An array of `T`, owned or borrowed from a mapping.
#[derive(Clone)]
pub(crate) enum Array<T: Plain> {
    /// In memory.
    Owned(Vec<T>),
    /// `len` values at byte `offset` of a mapped file.
    Mapped {
        map: Arc<memmap2::Mmap>,
        offset: usize,
        len: usize,
        _t: PhantomData<T>,
    },
}

impl<T: Plain> Array<T> {
    /// `len` values at byte `offset` of `map`: in bounds and aligned for `T`, or an error.
    pub(crate) fn mapped(
        map: &Arc<memmap2::Mmap>,
        offset: usize,
        len: usize,
    ) -> Result<Self, IndexError> {
        let size = std::mem::size_of::<T>();
        len.checked_mul(size)
            .and_then(|b| b.checked_add(offset))
            .filter(|&end| end <= map.len())
            .ok_or_else(|| {
                IndexError::Corrupt(format!(
                    "a section of {len} values at byte {offset} runs past the end ({} bytes)",
                    map.len()
                ))
            })?;
        if !(map.as_ptr() as usize + offset).is_multiple_of(std::mem::align_of::<T>()) {
            return Err(IndexError::Corrupt(format!(
                "section at byte {offset} is not aligned to {size} bytes"
            )));
        }
        Ok(Self::Mapped {
            map: map.clone(),
            offset,
            len,
            _t: PhantomData,
        })
    }

    /// True when the values live in a mapped file.
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self, Self::Mapped { .. })
    }
}

impl<T: Plain> std::ops::Deref for Array<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Self::Owned(v) => v,
            // SAFETY: `mapped` checked that the range is inside the mapping and aligned for
            // `T`, every bit pattern is a valid `T` (`Plain`), and the mapping is read-only and
            // kept alive by the `Arc` for as long as this borrow.
            Self::Mapped {
                map, offset, len, ..
            } => unsafe { std::slice::from_raw_parts(map.as_ptr().add(*offset).cast::<T>(), *len) },
        }
    }
}

impl<T: Plain> From<Vec<T>> for Array<T> {
    fn from(v: Vec<T>) -> Self {
        Self::Owned(v)
    }
}

impl<T: Plain + PartialEq> PartialEq for Array<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Plain + Eq> Eq for Array<T> {}

impl<T: Plain> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.is_mapped() { "mapped" } else { "owned" };
        write!(f, "Array({} values, {how})", self.len())
    }
}

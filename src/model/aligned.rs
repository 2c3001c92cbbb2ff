//! Buffers whose first value sits on a 64-byte boundary: a cache line, an AVX-512 vector and
//! a row of an AMX tile.
//!
//! A `Vec<f32>` of more than a few pages comes from `mmap` through the allocator's header and
//! starts 16 bytes past a page, so every 64-byte row of it straddles two cache lines. The
//! kernels load whole rows: measured on the Xeon's AMX tiles, misaligned operands halved the
//! rate of the bf16 products (a 64 x 1152 x 192 product ran at 358 instead of 751 G
//! multiply-adds/s), and the `f32` kernels split every vector load in two. The frozen
//! network's weights and activation buffers are held here instead.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

/// One cache line of zero-initialised storage.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

const LINE: usize = std::mem::size_of::<Line>();

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u16 {}
}

/// The value types an [`Aligned`] holds: plain numbers for which every bit pattern, zero
/// included, is a valid value, and whose alignment divides 64.
pub trait Plain: Copy + sealed::Sealed {}
impl Plain for f32 {}
impl Plain for u16 {}

/// A growable buffer of `T` whose first value is 64-byte aligned; it dereferences to `[T]`.
/// New values are zero.
#[derive(Clone)]
pub struct Aligned<T: Plain> {
    lines: Vec<Line>,
    len: usize,
    values: PhantomData<T>,
}

impl<T: Plain> Default for Aligned<T> {
    fn default() -> Self {
        Self {
            lines: Vec::new(),
            len: 0,
            values: PhantomData,
        }
    }
}

impl<T: Plain> std::fmt::Debug for Aligned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aligned").field("len", &self.len).finish()
    }
}

impl<T: Plain> Aligned<T> {
    /// `len` zeros.
    #[must_use]
    pub fn zeroed(len: usize) -> Self {
        let mut buf = Self::default();
        buf.prefix(len);
        buf
    }

    /// The first `len` values, growing the buffer with zeros where it is shorter (a longer
    /// buffer keeps its length, and every value keeps its place).
    pub fn prefix(&mut self, len: usize) -> &mut [T] {
        if len > self.len {
            let lines = (len * std::mem::size_of::<T>()).div_ceil(LINE);
            if lines > self.lines.len() {
                self.lines.resize(lines, Line([0; LINE]));
            }
            self.len = len;
        }
        &mut self[..len]
    }
}

impl<T: Plain> Deref for Aligned<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: the lines hold at least `len` values of `T` (`prefix` sizes them so), are
        // initialised (zeros or values written since), every bit pattern is a `T` (`Plain`),
        // and a line's alignment of 64 is a multiple of `T`'s.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Plain> DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, through the unique borrow of the lines.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Plain> FromIterator<T> for Aligned<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let values: Vec<T> = iter.into_iter().collect();
        let mut buf = Self::default();
        buf.prefix(values.len()).copy_from_slice(&values);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_start_on_a_line_and_keep_their_places_as_the_buffer_grows() {
        let mut buf = Aligned::<u16>::zeroed(3);
        assert_eq!(&buf[..], &[0, 0, 0]);
        buf.copy_from_slice(&[1, 2, 3]);
        for len in [33, 100, 4096, 70_000] {
            let grown = buf.prefix(len);
            assert_eq!(grown.len(), len);
            assert_eq!(&grown[..3], &[1, 2, 3]);
            assert!(grown[3..].iter().all(|&v| v == 0), "new values are zero");
            assert_eq!(grown.as_ptr() as usize % 64, 0, "aligned at {len}");
        }
        // A shorter prefix leaves the length alone.
        assert_eq!(buf.prefix(2), &[1, 2]);
        assert_eq!(buf.len(), 70_000);
        let floats: Aligned<f32> = (0..20).map(|i| i as f32).collect();
        assert_eq!(floats.len(), 20);
        assert_eq!(floats[19], 19.0);
        assert_eq!(floats.as_ptr() as usize % 64, 0);
    }
}

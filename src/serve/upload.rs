//! Images a user uploads to search with: limits checked before any pixel is decoded, then the
//! image brought to CIFAR-100's geometry.
//!
//! The network only ever saw 32x32 CIFAR images (upsampled to the run's input size by the
//! features stage or the preprocessing). An upload of any size and aspect ratio is therefore
//! reduced to 32x32 first, with the ImageNet evaluation geometry of
//! [`resize_shorter_center_crop`]: an antialiased (Pillow `BILINEAR`) resize of the shorter side
//! to 32, rounded to 8 bits, then the centre 32x32. A 32x32 image passes through unchanged, so a
//! CIFAR image saved as PNG embeds exactly as the dataset's own copy. From there it takes the
//! run's path: [`crate::embed::Embedder`].

use crate::data::cifar::IMAGE_BYTES;
use crate::model::resize::resize_shorter_center_crop;
use image::{ImageFormat, ImageReader, Limits};
use std::io::Cursor;

/// Largest upload accepted, in bytes (10 MiB).
pub const MAX_BYTES: usize = 10 * 1024 * 1024;
/// Largest width or height accepted, read from the header before decoding.
pub const MAX_SIDE: u32 = 12_000;
/// Largest pixel count accepted (40 megapixels), read from the header before decoding: a
/// decompression bomb (a small file that decodes to gigabytes) is refused unread.
pub const MAX_PIXELS: u64 = 40_000_000;
/// Memory the decoder may allocate (a 40-megapixel RGBA image, with room to spare).
const MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// Why an upload was refused. Every case is the client's: the API answers 400 with the message.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// A zero-size body.
    #[error("the request body is empty; send the bytes of a PNG or JPEG image")]
    Empty,
    /// More than [`MAX_BYTES`].
    #[error("the upload is larger than the {} MiB limit ({what})", MAX_BYTES >> 20)]
    TooLarge {
        /// Its size, as known.
        what: String,
    },
    /// Neither PNG nor JPEG by its signature.
    #[error("not a PNG or JPEG image: {found}")]
    NotAnImage {
        /// What the first bytes look like.
        found: String,
    },
    /// Dimensions above [`MAX_SIDE`] or [`MAX_PIXELS`].
    #[error(
        "the image is {width} x {height} pixels; the limit is {MAX_SIDE} per side and \
         {MAX_PIXELS} in all (refused before decoding)"
    )]
    TooManyPixels {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
    },
    /// The header or the data are damaged.
    #[error("the {format} image cannot be decoded: {source}")]
    Corrupt {
        /// PNG or JPEG.
        format: &'static str,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
}

/// An upload brought to CIFAR-100's geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Planar RGB, `[3, 32, 32]`.
    pub pixels: Vec<u8>,
    /// The uploaded width and height.
    pub size: (u32, u32),
    /// PNG or JPEG.
    pub format: &'static str,
}

/// Checks and decodes `bytes` (PNG or JPEG of any size and aspect ratio; alpha is dropped),
/// then reduces the image to 32x32 as the module docs describe.
pub fn decode(bytes: &[u8]) -> Result<Decoded, UploadError> {
    if bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    if bytes.len() > MAX_BYTES {
        return Err(UploadError::TooLarge {
            what: format!("{} bytes", bytes.len()),
        });
    }
    let (format, name) = match image::guess_format(bytes) {
        Ok(ImageFormat::Png) => (ImageFormat::Png, "PNG"),
        Ok(ImageFormat::Jpeg) => (ImageFormat::Jpeg, "JPEG"),
        Ok(other) => {
            return Err(UploadError::NotAnImage {
                found: format!("a {other:?} image (only PNG and JPEG are read)"),
            });
        }
        Err(_) => {
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            return Err(UploadError::NotAnImage {
                found: format!("the first bytes are {}", head.join(" ")),
            });
        }
    };
    let corrupt = |source| UploadError::Corrupt {
        format: name,
        source,
    };
    let reader = || ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = reader().into_dimensions().map_err(corrupt)?;
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(UploadError::TooManyPixels { width, height });
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    let mut reader = reader();
    reader.limits(limits);
    let rgb = reader.decode().map_err(corrupt)?.into_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let plane = w * h;
    let mut planar = vec![0u8; 3 * plane];
    for (p, px) in rgb.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            planar[c * plane + p] = px[c];
        }
    }
    let pixels = if (w, h) == (32, 32) {
        planar
    } else {
        resize_shorter_center_crop(&planar, h, w, 32, 32)
            .expect("a non-empty image checked above resizes to 32 px")
            .into_iter()
            // Whole numbers in 0..=255 already (rounded after each pass).
            .map(|v| v as u8)
            .collect()
    };
    debug_assert_eq!(pixels.len(), IMAGE_BYTES);
    Ok(Decoded {
        pixels,
        size: (width, height),
        format: name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG of `rgb` (hand-made pixels, for pure-function unit tests).
    fn png(rgb: &[u8], w: u32, h: u32) -> Vec<u8> {
        crate::report::figures::encode_png(rgb, (w, h)).unwrap()
    }

    #[test]
    fn a_32_pixel_png_passes_through_unchanged() {
        // hand-made gradient image for a pure-function unit test
        let rgb: Vec<u8> = (0..32 * 32 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let d = decode(&png(&rgb, 32, 32)).unwrap();
        assert_eq!(d.size, (32, 32));
        assert_eq!(d.format, "PNG");
        for p in 0..1024 {
            for c in 0..3 {
                assert_eq!(d.pixels[c * 1024 + p], rgb[p * 3 + c]);
            }
        }
    }

    #[test]
    fn a_wide_image_is_centre_cropped_to_a_square() {
        // hand-made 96x32 image: left third red, middle green, right blue.
        let mut rgb = vec![0u8; 96 * 32 * 3];
        for y in 0..32 {
            for x in 0..96 {
                rgb[(y * 96 + x) * 3 + x / 32] = 255;
            }
        }
        let d = decode(&png(&rgb, 96, 32)).unwrap();
        assert_eq!(d.size, (96, 32));
        // The centre square is the green third: a 1:1 resize keeps it exactly.
        assert!(d.pixels[1024..2048].iter().all(|&v| v == 255));
        assert!(
            d.pixels[..1024]
                .iter()
                .chain(&d.pixels[2048..])
                .all(|&v| v == 0)
        );
    }

    #[test]
    fn a_large_image_is_averaged_down() {
        // hand-made 64x64 checkerboard of single pixels: averages to mid grey at 32x32.
        let rgb: Vec<u8> = (0..64 * 64)
            .flat_map(|i| {
                let v = if (i % 64 + i / 64) % 2 == 0 { 255 } else { 0 };
                [v, v, v]
            })
            .collect();
        let d = decode(&png(&rgb, 64, 64)).unwrap();
        // (Border pixels see a clipped filter, so they land a little off the middle.)
        assert!(
            d.pixels.iter().all(|&v| (120..=135).contains(&v)),
            "{:?}",
            &d.pixels[..8]
        );
    }

    #[test]
    fn bad_uploads_are_refused_with_their_reason() {
        assert!(matches!(decode(&[]), Err(UploadError::Empty)));
        assert!(matches!(
            decode(&vec![0u8; MAX_BYTES + 1]),
            Err(UploadError::TooLarge { .. })
        ));
        let e = decode(b"hello, not an image").unwrap_err();
        assert!(e.to_string().contains("68 65 6c 6c"), "{e}");
        // A GIF signature: an image, but not one we read.
        let e = decode(b"GIF89a\x01\x00\x01\x00").unwrap_err();
        assert!(e.to_string().contains("Gif"), "{e}");
        // A PNG cut after its signature and part of the header.
        let whole = png(&[0u8; 3 * 4], 2, 2);
        let e = decode(&whole[..20]).unwrap_err();
        assert!(
            matches!(e, UploadError::Corrupt { format: "PNG", .. }),
            "{e}"
        );
    }

    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        // A small PNG whose header claims 50,000 x 50,000 pixels: the dimensions alone refuse it.
        let mut bytes = png(&[0u8; 3 * 4], 2, 2);
        bytes[16..24].copy_from_slice(&[0, 0, 0xc3, 0x50, 0, 0, 0xc3, 0x50]);
        let crc = crc32fast::hash(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        let e = decode(&bytes).unwrap_err();
        assert!(
            matches!(
                e,
                UploadError::TooManyPixels {
                    width: 50_000,
                    height: 50_000
                }
            ),
            "{e}"
        );
    }
}

//! Decoded pictures (I420, GStreamer's default layout) to the packed BGR that detection and
//! snapshots read, for the frames handed on only. Doing this here instead of with
//! `videoconvert` saves that element's pool of BGR buffers on every camera (≈ 0.7 MB each at
//! 640×360) and costs one pass over the pixels, which the copy handed on made anyway.

/// Byte layout of an I420 picture as GStreamer lays it out without a video meta.
pub fn i420_layout(w: usize, h: usize) -> ([usize; 3], [usize; 3], usize) {
    let up4 = |v: usize| (v + 3) & !3;
    let (hh, cw) = (h.div_ceil(2), w.div_ceil(2));
    let stride = [up4(w), up4(cw), up4(cw)];
    let offset = [0, stride[0] * h.next_multiple_of(2), stride[0] * h.next_multiple_of(2) + stride[1] * hh];
    (stride, offset, offset[2] + stride[2] * hh)
}

/// I420 (BT.601, limited range, as H.264 cameras send) to packed BGR; `None` if `data` is
/// shorter than the layout needs.
pub fn i420_to_bgr(data: &[u8], w: usize, h: usize) -> Option<Vec<u8>> {
    let (stride, offset, size) = i420_layout(w, h);
    if data.len() < size {
        return None;
    }
    let mut out = vec![0u8; w * h * 3];
    let clamp = |v: i32| (v >> 8).clamp(0, 255) as u8;
    for y in 0..h {
        let yrow = &data[offset[0] + y * stride[0]..][..w];
        let urow = &data[offset[1] + (y / 2) * stride[1]..][..w.div_ceil(2)];
        let vrow = &data[offset[2] + (y / 2) * stride[2]..][..w.div_ceil(2)];
        let orow = &mut out[y * w * 3..][..w * 3];
        for (x, px) in orow.chunks_exact_mut(3).enumerate() {
            let c = (yrow[x] as i32 - 16) * 298 + 128;
            let d = urow[x / 2] as i32 - 128;
            let e = vrow[x / 2] as i32 - 128;
            px[0] = clamp(c + 516 * d);
            px[1] = clamp(c - 100 * d - 208 * e);
            px[2] = clamp(c + 409 * e);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4×2 picture of one colour.
    fn solid(y: u8, u: u8, v: u8) -> Vec<u8> {
        let (stride, offset, size) = i420_layout(4, 2);
        let mut d = vec![0u8; size];
        for row in 0..2 {
            d[offset[0] + row * stride[0]..][..4].fill(y);
        }
        d[offset[1]..][..2].fill(u);
        d[offset[2]..][..2].fill(v);
        d
    }

    #[test]
    fn colours_convert_as_bt601_limited_range() {
        let close = |got: &[u8], want: [u8; 3]| got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 2);
        for (yuv, bgr) in [
            ((235, 128, 128), [255, 255, 255]),
            ((16, 128, 128), [0, 0, 0]),
            ((81, 90, 240), [0, 0, 255]),
            ((145, 54, 34), [0, 255, 0]),
            ((41, 240, 110), [255, 0, 0]),
        ] {
            let out = i420_to_bgr(&solid(yuv.0, yuv.1, yuv.2), 4, 2).unwrap();
            assert_eq!(out.len(), 4 * 2 * 3);
            assert!(out.chunks(3).all(|p| close(p, bgr)), "{yuv:?} → {:?}, want {bgr:?}", &out[..3]);
        }
        assert!(i420_to_bgr(&[0; 5], 4, 2).is_none());
    }

    #[test]
    fn layout_matches_gstreamer_for_odd_widths() {
        // 6×4: Y stride 8, chroma 3 wide → stride 4; offsets 32 and 32 + 8.
        assert_eq!(i420_layout(6, 4), ([8, 4, 4], [0, 32, 40], 48));
        assert_eq!(i420_layout(640, 360).2, 640 * 360 * 3 / 2);
    }
}

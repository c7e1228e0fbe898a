//! Frame → input tensor, as each family expects: resize keeping the aspect ratio, image at
//! the top-left, the rest padded; BGR channel order, values 0–255, NCHW f32. The tensor is
//! filled straight from the frame buffer (bilinear sampling), no intermediate image.

/// A packed BGR image (3 bytes per pixel, `stride` bytes per row).
#[derive(Clone, Copy)]
pub struct ImageView<'a> {
    pub data: &'a [u8],
    pub width: u32,
    pub height: u32,
    pub stride: usize,
}

impl<'a> ImageView<'a> {
    pub fn packed(data: &'a [u8], width: u32, height: u32) -> Self {
        Self { data, width, height, stride: width as usize * 3 }
    }
}

/// How a frame was placed into a model input: `input = frame · scale`, at the origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub scale: f32,
    pub input_w: u32,
    pub input_h: u32,
}

impl Letterbox {
    /// Scale that fits `(w, h)` inside `(in_w, in_h)`.
    pub fn fit(w: u32, h: u32, in_w: u32, in_h: u32) -> Self {
        let scale = (in_w as f32 / w as f32).min(in_h as f32 / h as f32);
        Self { scale, input_w: in_w, input_h: in_h }
    }

    /// Input-space box back to frame pixels, clamped to the frame.
    pub fn to_frame(&self, b: [f32; 4], w: u32, h: u32) -> [f32; 4] {
        let s = self.scale;
        [
            (b[0] / s).clamp(0.0, w as f32),
            (b[1] / s).clamp(0.0, h as f32),
            (b[2] / s).clamp(0.0, w as f32),
            (b[3] / s).clamp(0.0, h as f32),
        ]
    }
}

/// For dynamic models: the smallest input (multiples of 32) holding the frame scaled to fit
/// inside `limit`. A 640×272 frame in a 640×384 limit needs only 640×288.
pub fn dynamic_input(w: u32, h: u32, limit: (u32, u32)) -> (u32, u32) {
    let lb = Letterbox::fit(w, h, limit.0, limit.1);
    let up = |v: f32, max: u32| (((v.round() as u32).max(1)).div_ceil(32) * 32).min(max);
    (up(w as f32 * lb.scale, limit.0), up(h as f32 * lb.scale, limit.1))
}

/// Fills `out` (3 × in_h × in_w, NCHW) with the image scaled by `lb.scale` at the top-left
/// and `pad` elsewhere.
pub fn fill_tensor(img: &ImageView, lb: &Letterbox, pad: f32, out: &mut [f32]) {
    let (iw, ih) = (lb.input_w as usize, lb.input_h as usize);
    let plane = iw * ih;
    assert!(out.len() >= 3 * plane, "tensor too small");
    let out = &mut out[..3 * plane];
    let (fw, fh) = (img.width as usize, img.height as usize);
    let sw = ((fw as f32 * lb.scale).round() as usize).min(iw);
    let sh = ((fh as f32 * lb.scale).round() as usize).min(ih);
    out.fill(pad);
    if sw == 0 || sh == 0 {
        return;
    }
    let inv = 1.0 / lb.scale;
    if sw == fw && sh == fh {
        // Same size: a straight copy (the usual case: ingest already scaled the frame).
        let (b, rest) = out.split_at_mut(plane);
        let (g, r) = rest.split_at_mut(plane);
        for y in 0..sh {
            let row = &img.data[y * img.stride..y * img.stride + fw * 3];
            let o = y * iw;
            for (((px, bo), go), ro) in
                row.chunks_exact(3).zip(&mut b[o..o + sw]).zip(&mut g[o..o + sw]).zip(&mut r[o..o + sw])
            {
                *bo = px[0] as f32;
                *go = px[1] as f32;
                *ro = px[2] as f32;
            }
        }
        return;
    }
    // Bilinear, sampling at pixel centres; per-column weights computed once.
    let cols: Vec<(usize, usize, f32)> = (0..sw)
        .map(|x| {
            let sx = ((x as f32 + 0.5) * inv - 0.5).clamp(0.0, (fw - 1) as f32);
            let x0 = sx.floor() as usize;
            (x0, (x0 + 1).min(fw - 1), sx - x0 as f32)
        })
        .collect();
    for y in 0..sh {
        let sy = ((y as f32 + 0.5) * inv - 0.5).clamp(0.0, (fh - 1) as f32);
        let y0 = sy.floor() as usize;
        let y1 = (y0 + 1).min(fh - 1);
        let wy = sy - y0 as f32;
        let r0 = &img.data[y0 * img.stride..];
        let r1 = &img.data[y1 * img.stride..];
        for (x, &(x0, x1, wx)) in cols.iter().enumerate() {
            let o = y * iw + x;
            for c in 0..3 {
                let a = r0[x0 * 3 + c] as f32 * (1.0 - wx) + r0[x1 * 3 + c] as f32 * wx;
                let b = r1[x0 * 3 + c] as f32 * (1.0 - wx) + r1[x1 * 3 + c] as f32 * wx;
                out[c * plane + o] = a * (1.0 - wy) + b * wy;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_and_map_back() {
        let lb = Letterbox::fit(800, 564, 416, 416);
        assert!((lb.scale - 0.52).abs() < 1e-6);
        assert_eq!(lb.to_frame([52.0, 26.0, 104.0, 500.0], 800, 564), [100.0, 50.0, 200.0, 564.0]);
    }

    #[test]
    fn dynamic_inputs_hug_the_frame() {
        assert_eq!(dynamic_input(640, 272, (640, 384)), (640, 288));
        assert_eq!(dynamic_input(1920, 1080, (640, 384)), (640, 384));
        assert_eq!(dynamic_input(800, 564, (640, 640)), (640, 480));
    }

    #[test]
    fn copies_pads_and_orders_channels() {
        // 2x1 BGR image: pixel 0 = (1,2,3), pixel 1 = (4,5,6), into a 3x2 input.
        let data = [1u8, 2, 3, 4, 5, 6];
        let img = ImageView::packed(&data, 2, 1);
        let lb = Letterbox { scale: 1.0, input_w: 3, input_h: 2 };
        let mut out = vec![0.0; 18];
        fill_tensor(&img, &lb, 114.0, &mut out);
        // Channel 0 (B) plane: row 0 = 1, 4, pad; row 1 = pad.
        assert_eq!(&out[0..6], &[1.0, 4.0, 114.0, 114.0, 114.0, 114.0]);
        assert_eq!(&out[6..9], &[2.0, 5.0, 114.0]);
        assert_eq!(&out[12..15], &[3.0, 6.0, 114.0]);
    }

    #[test]
    fn halves_by_averaging() {
        // 4x2 grey ramp scaled by 0.5 → 2x1; bilinear at centres averages 2x2 blocks.
        let px = |v: u8| [v, v, v];
        let data: Vec<u8> = [0u8, 20, 40, 60, 0, 20, 40, 60].iter().flat_map(|v| px(*v)).collect();
        let img = ImageView::packed(&data, 4, 2);
        let lb = Letterbox { scale: 0.5, input_w: 2, input_h: 2 };
        let mut out = vec![0.0; 12];
        fill_tensor(&img, &lb, 0.0, &mut out);
        assert_eq!(&out[0..4], &[10.0, 50.0, 0.0, 0.0]);
    }
}

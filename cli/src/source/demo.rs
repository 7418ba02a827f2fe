//! The built-in demo source: a moving, photo-like scene rendered as an f32 `[1,H,W,3]` tensor.
//!
//! The scene is a sky gradient over a dim ground with a soft sun glow, three shaded spheres that
//! drift and bounce, a rotating square with a lit gradient, an analog clock showing the time the
//! frame was rendered, and a little film grain. It exists so that `pngcast serve` runs the whole
//! pipeline (conversion, PNG encoding, fan-out) on content that compresses like a photograph.
//!
//! Cost: one pass over the image, rows in parallel on rayon. Each row paints the background and
//! then only the shapes whose bounding box crosses that row, clipped to their columns, so the
//! per-pixel work is the gradient, the glow and one hash for the grain. The pixel buffer is
//! allocated once in [`Demo::new`] and reused for every frame.
#![forbid(unsafe_code)]

use std::f32::consts::{PI, TAU};

use pngcast_core::tensor::TensorView;
use rayon::prelude::*;

/// The largest demo frame we agree to render: 2^26 pixels (8192 x 8192, 768 MiB of f32).
pub const MAX_PIXELS: usize = 1 << 26;

/// What went wrong building a demo source.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DemoError {
    /// Width or height is zero.
    #[error("demo size {0}x{1}: width and height must be at least 1")]
    Empty(usize, usize),
    /// The frame would exceed [`MAX_PIXELS`].
    #[error("demo size {0}x{1} is larger than the demo's limit of {MAX_PIXELS} pixels")]
    TooLarge(usize, usize),
}

/// When a frame is rendered: `elapsed` drives the motion, `clock` the hands of the clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameTime {
    /// Seconds since the source started.
    pub elapsed: f64,
    /// Seconds since midnight (UTC) shown by the clock.
    pub clock: f64,
    /// Frame counter, seeds the grain so it changes every frame.
    pub frame: u64,
}

/// Renders the demo scene into a buffer it owns and reuses.
#[derive(Debug)]
pub struct Demo {
    width: usize,
    height: usize,
    pixels: Vec<f32>,
    parallel: bool,
}

/// Shapes for one frame, in pixel units, computed once per frame and shared by all rows.
struct Scene {
    horizon: f32,
    sun: [f32; 2],
    sun_k: f32,
    spheres: [Sphere; 3],
    square: Square,
    clock: Clock,
    frame: u32,
}

struct Sphere {
    c: [f32; 2],
    r: f32,
    color: [f32; 3],
}

struct Square {
    c: [f32; 2],
    half: f32,
    cos: f32,
    sin: f32,
    reach: f32,
}

struct Clock {
    c: [f32; 2],
    r: f32,
    /// Hands as (unit direction, length, half thickness): hour, minute, second.
    hands: [([f32; 2], f32, f32); 3],
}

impl Demo {
    /// A demo source of `width` x `height` pixels. Allocates the frame buffer (12 bytes a pixel).
    pub fn new(width: usize, height: usize) -> Result<Self, DemoError> {
        if width == 0 || height == 0 {
            return Err(DemoError::Empty(width, height));
        }
        match width.checked_mul(height) {
            Some(n) if n <= MAX_PIXELS => {}
            _ => return Err(DemoError::TooLarge(width, height)),
        }
        Ok(Self {
            width,
            height,
            pixels: vec![0.0; width * height * 3],
            parallel: true,
        })
    }

    /// Renders rows on the calling thread only (for tests that count allocations per thread).
    #[cfg(test)]
    pub fn sequential(mut self) -> Self {
        self.parallel = false;
        self
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Renders the frame for `t` into the reused buffer and returns it as a `[1,H,W,3]` tensor.
    pub fn render(&mut self, t: FrameTime) -> TensorView<'_> {
        let scene = Scene::at(self.width, self.height, t);
        let row_len = self.width * 3;
        let draw = |(y, row): (usize, &mut [f32])| scene.row(y, row);
        if self.parallel {
            self.pixels
                .par_chunks_mut(row_len)
                .enumerate()
                .for_each(draw);
        } else {
            self.pixels.chunks_mut(row_len).enumerate().for_each(draw);
        }
        self.tensor()
    }

    /// The last rendered frame as a `[1,H,W,3]` tensor.
    pub fn tensor(&self) -> TensorView<'_> {
        TensorView::bhwc(&self.pixels[..], [1, self.height, self.width, 3])
            .expect("demo sizes are validated in Demo::new")
    }
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// A cheap integer hash (lowbias32-style) for the grain: one per pixel, no RNG state.
#[inline]
fn hash(x: u32, y: u32, f: u32) -> u32 {
    let mut h =
        x.wrapping_mul(0x9E37_79B1) ^ y.wrapping_mul(0x85EB_CA77) ^ f.wrapping_mul(0xC2B2_AE3D);
    h ^= h >> 16;
    h = h.wrapping_mul(0x7FEB_352D);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846C_A68B);
    h ^ (h >> 16)
}

/// Distance from `p` to the segment from the origin along unit `d` for length `len`.
#[inline]
fn segment_distance(p: [f32; 2], d: [f32; 2], len: f32) -> f32 {
    let t = (p[0] * d[0] + p[1] * d[1]).clamp(0.0, len);
    let q = [p[0] - d[0] * t, p[1] - d[1] * t];
    (q[0] * q[0] + q[1] * q[1]).sqrt()
}

/// Blends `c` over `px` with coverage `a`.
#[inline]
fn over(px: &mut [f32], c: [f32; 3], a: f32) {
    px[0] += (c[0] - px[0]) * a;
    px[1] += (c[1] - px[1]) * a;
    px[2] += (c[2] - px[2]) * a;
}

/// Columns `[x0, x1)` of a shape centred at `cx` reaching `reach` pixels, clipped to the row.
#[inline]
fn span(cx: f32, reach: f32, width: usize) -> (usize, usize) {
    let x0 = (cx - reach - 1.0).floor().max(0.0) as usize;
    let x1 = ((cx + reach + 2.0).ceil().max(0.0) as usize).min(width);
    (x0.min(width), x1)
}

/// A bouncing coordinate: moves at `speed` (units per second) between `lo` and `hi`.
fn bounce(phase: f64, speed: f64, lo: f32, hi: f32) -> f32 {
    let span = f64::from(hi - lo).max(1e-6);
    let p = (phase * speed).rem_euclid(2.0 * span);
    let p = if p > span { 2.0 * span - p } else { p };
    lo + p as f32
}

impl Scene {
    fn at(width: usize, height: usize, t: FrameTime) -> Self {
        let (w, h) = (width as f32, height as f32);
        let s = w.min(h);
        let e = t.elapsed;
        let horizon = h * 0.72;

        let sun = [
            w * (0.25 + 0.5 * (0.5 + 0.5 * (e * 0.05).sin() as f32)),
            horizon - s * 0.12,
        ];

        let radii = [0.11 * s, 0.075 * s, 0.05 * s];
        let colors = [[0.85, 0.22, 0.18], [0.20, 0.55, 0.90], [0.95, 0.78, 0.25]];
        let speeds = [0.21, 0.33, 0.47];
        let spheres = std::array::from_fn(|i| {
            let r = radii[i];
            let sp = speeds[i] * f64::from(s);
            Sphere {
                c: [
                    bounce(e + i as f64 * 3.1, sp, r, w - r),
                    bounce(e + i as f64 * 1.7, sp * 0.63, r, horizon.max(r) + r * 0.3),
                ],
                r,
                color: colors[i],
            }
        });

        let angle = (e * 0.6) as f32;
        let half = 0.09 * s;
        let square = Square {
            c: [w * 0.5 + (e * 0.4).cos() as f32 * w * 0.2, h * 0.45],
            half,
            cos: angle.cos(),
            sin: angle.sin(),
            reach: half * std::f32::consts::SQRT_2,
        };

        let r = 0.14 * s;
        let secs = t.clock.rem_euclid(86_400.0);
        let hand = |turns: f64, len: f32, thick: f32| {
            let a = (turns.fract() as f32) * TAU - PI / 2.0;
            ([a.cos(), a.sin()], len * r, thick * r)
        };
        let clock = Clock {
            c: [w - r - 0.04 * s, r + 0.04 * s],
            r,
            hands: [
                hand(secs / 43_200.0, 0.5, 0.045),
                hand(secs / 3_600.0, 0.75, 0.03),
                hand(secs / 60.0, 0.85, 0.012),
            ],
        };

        Scene {
            horizon,
            sun,
            sun_k: 1.0 / (0.02 * s * s).max(1.0),
            spheres,
            square,
            clock,
            frame: t.frame as u32,
        }
    }

    /// Paints row `y` (`3 * width` floats).
    fn row(&self, y: usize, row: &mut [f32]) {
        let width = row.len() / 3;
        let py = y as f32 + 0.5;
        self.background(y, py, row);
        for s in &self.spheres {
            self.sphere(s, py, row, width);
        }
        self.square_row(py, row, width);
        self.clock_row(py, row, width);
        self.grain(y as u32, row);
    }

    fn background(&self, _y: usize, py: f32, row: &mut [f32]) {
        const ZENITH: [f32; 3] = [0.08, 0.16, 0.38];
        const HAZE: [f32; 3] = [0.93, 0.62, 0.42];
        const GROUND_NEAR: [f32; 3] = [0.10, 0.12, 0.10];
        const GROUND_FAR: [f32; 3] = [0.26, 0.25, 0.20];
        let base = if py < self.horizon {
            mix(ZENITH, HAZE, smoothstep(0.0, self.horizon, py).powf(1.6))
        } else {
            let depth = (py - self.horizon) / (row.len() as f32 / 3.0).max(1.0);
            mix(GROUND_FAR, GROUND_NEAR, (depth * 3.0).min(1.0))
        };
        let dy = py - self.sun[1];
        let glow_scale = if py < self.horizon { 1.0 } else { 0.35 };
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let dx = x as f32 + 0.5 - self.sun[0];
            // A rational falloff looks like a soft glow and costs one division.
            let g = glow_scale / (1.0 + (dx * dx + dy * dy) * self.sun_k);
            px[0] = base[0] + 1.0 * g;
            px[1] = base[1] + 0.85 * g;
            px[2] = base[2] + 0.55 * g;
        }
    }

    fn sphere(&self, s: &Sphere, py: f32, row: &mut [f32], width: usize) {
        let dy = py - s.c[1];
        if dy.abs() > s.r + 1.0 {
            return;
        }
        // Light from the upper left, with a Blinn-Phong highlight.
        const L: [f32; 3] = [-0.48, -0.6, 0.64];
        const H: [f32; 3] = [-0.26, -0.33, 0.91];
        let (x0, x1) = span(s.c[0], s.r, width);
        let inv_r = 1.0 / s.r;
        for x in x0..x1 {
            let dx = x as f32 + 0.5 - s.c[0];
            let d = (dx * dx + dy * dy).sqrt();
            let cover = (s.r - d + 0.5).clamp(0.0, 1.0);
            if cover <= 0.0 {
                continue;
            }
            let n = [
                dx * inv_r,
                dy * inv_r,
                (1.0 - (d * inv_r).min(1.0).powi(2)).sqrt(),
            ];
            let diff = (n[0] * L[0] + n[1] * L[1] + n[2] * L[2]).max(0.0);
            let spec = (n[0] * H[0] + n[1] * H[1] + n[2] * H[2]).max(0.0).powi(32);
            let k = 0.18 + 0.82 * diff;
            let c = [
                s.color[0] * k + 0.7 * spec,
                s.color[1] * k + 0.7 * spec,
                s.color[2] * k + 0.7 * spec,
            ];
            over(&mut row[x * 3..x * 3 + 3], c, cover);
        }
    }

    fn square_row(&self, py: f32, row: &mut [f32], width: usize) {
        let q = &self.square;
        let dy = py - q.c[1];
        if dy.abs() > q.reach + 1.0 {
            return;
        }
        let (x0, x1) = span(q.c[0], q.reach, width);
        for x in x0..x1 {
            let dx = x as f32 + 0.5 - q.c[0];
            // Rotate into the square's frame, then a box signed distance.
            let u = dx * q.cos + dy * q.sin;
            let v = -dx * q.sin + dy * q.cos;
            let ox = u.abs() - q.half;
            let oy = v.abs() - q.half;
            let outside = (ox.max(0.0).powi(2) + oy.max(0.0).powi(2)).sqrt();
            let sdf = outside + ox.max(oy).min(0.0);
            let cover = (0.5 - sdf).clamp(0.0, 1.0);
            if cover <= 0.0 {
                continue;
            }
            let gu = (u / q.half) * 0.5 + 0.5;
            let gv = (v / q.half) * 0.5 + 0.5;
            let edge = smoothstep(0.0, q.half * 0.12, -sdf);
            let c = [
                (0.25 + 0.55 * gu) * (0.55 + 0.45 * edge),
                (0.70 - 0.30 * gv) * (0.55 + 0.45 * edge),
                (0.35 + 0.45 * gv) * (0.55 + 0.45 * edge),
            ];
            over(&mut row[x * 3..x * 3 + 3], c, cover);
        }
    }

    fn clock_row(&self, py: f32, row: &mut [f32], width: usize) {
        let c = &self.clock;
        let dy = py - c.c[1];
        if dy.abs() > c.r + 1.0 {
            return;
        }
        let (x0, x1) = span(c.c[0], c.r, width);
        let rim = (c.r * 0.05).max(0.75);
        let tick_len = c.r * 0.12;
        let tick_half = (c.r * 0.018).max(0.5);
        for x in x0..x1 {
            let dx = x as f32 + 0.5 - c.c[0];
            let d = (dx * dx + dy * dy).sqrt();
            let cover = (c.r - d + 0.5).clamp(0.0, 1.0);
            if cover <= 0.0 {
                continue;
            }
            // Face: off-white with a faint radial shade, then the dark rim.
            let shade = 0.96 - 0.10 * (d / c.r);
            let mut col = [shade, shade * 0.98, shade * 0.94];
            let rim_a = (d - (c.r - rim) + 0.5).clamp(0.0, 1.0);
            col = mix(col, [0.12, 0.12, 0.14], rim_a);
            // Twelve hour ticks: distance to the nearest tick by angle.
            let inner = c.r - rim - tick_len;
            if d > inner - 1.0 && d < c.r - rim + 1.0 {
                let a = dy.atan2(dx);
                let sector = TAU / 12.0;
                let na = (a / sector).round() * sector;
                let (ts, tc) = na.sin_cos();
                // Perpendicular distance from the tick's ray, radially clipped.
                let along = dx * tc + dy * ts;
                let perp = (-dx * ts + dy * tc).abs();
                let radial = (inner - along).max(along - (c.r - rim)).max(0.0);
                let td = (perp - tick_half).max(0.0).max(radial);
                col = mix(col, [0.15, 0.15, 0.17], (1.0 - td).clamp(0.0, 1.0));
            }
            // Hands: hour and minute dark, seconds red.
            let p = [dx, dy];
            for (i, &(dir, len, half)) in c.hands.iter().enumerate() {
                let hd = segment_distance(p, dir, len) - half;
                let a = (0.5 - hd).clamp(0.0, 1.0);
                if a > 0.0 {
                    let hc = if i == 2 {
                        [0.80, 0.12, 0.10]
                    } else {
                        [0.10, 0.10, 0.12]
                    };
                    col = mix(col, hc, a);
                }
            }
            let hub = (c.r * 0.04 + 0.5 - d).clamp(0.0, 1.0);
            col = mix(col, [0.10, 0.10, 0.12], hub);
            over(&mut row[x * 3..x * 3 + 3], col, cover);
        }
    }

    /// Film grain: one hash per pixel, three signed 8-bit values, about +-1% of full scale.
    fn grain(&self, y: u32, row: &mut [f32]) {
        const AMP: f32 = 0.010 / 128.0;
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let h = hash(x as u32, y, self.frame);
            let luma = ((h & 0xFF) as f32 - 127.5) * AMP;
            let chroma = ((h >> 8 & 0xFF) as f32 - 127.5) * (AMP * 0.3);
            px[0] = (px[0] + luma + chroma).clamp(0.0, 1.0);
            px[1] = (px[1] + luma).clamp(0.0, 1.0);
            px[2] = (px[2] + luma - chroma).clamp(0.0, 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pngcast_core::tensor::TensorData;

    fn at(elapsed: f64, frame: u64) -> FrameTime {
        FrameTime {
            elapsed,
            clock: 10.0 * 3600.0 + 8.0 * 60.0 + 30.0,
            frame,
        }
    }

    fn pixels(demo: &Demo) -> Vec<f32> {
        match demo.tensor().image(0).unwrap().data() {
            TensorData::F32(p) => p.to_vec(),
            other => panic!("demo must render f32, got {:?}", other.dtype()),
        }
    }

    #[test]
    fn bad_sizes_are_typed_errors() {
        assert_eq!(Demo::new(0, 5).unwrap_err(), DemoError::Empty(0, 5));
        assert_eq!(Demo::new(5, 0).unwrap_err(), DemoError::Empty(5, 0));
        assert_eq!(
            Demo::new(1 << 14, 1 << 14).unwrap_err(),
            DemoError::TooLarge(1 << 14, 1 << 14)
        );
        assert!(matches!(
            Demo::new(usize::MAX, 2),
            Err(DemoError::TooLarge(..))
        ));
    }

    #[test]
    fn renders_every_size_in_range_without_nan() {
        for (w, h) in [(1, 1), (1, 9), (9, 1), (3, 1000), (257, 131), (64, 64)] {
            let mut demo = Demo::new(w, h).unwrap();
            let t = demo.render(at(12.3, 7));
            assert_eq!(t.shape(), [1, h, w, 3]);
            let p = pixels(&demo);
            assert_eq!(p.len(), w * h * 3);
            assert!(p.iter().all(|v| (0.0..=1.0).contains(v)), "{w}x{h}");
        }
    }

    #[test]
    fn frames_move_and_parallel_equals_sequential() {
        let mut par = Demo::new(200, 150).unwrap();
        let mut seq = Demo::new(200, 150).unwrap().sequential();
        par.render(at(1.0, 1));
        seq.render(at(1.0, 1));
        let first = pixels(&par);
        assert_eq!(first, pixels(&seq));
        par.render(at(2.0, 2));
        let second = pixels(&par);
        let changed = first
            .iter()
            .zip(&second)
            .filter(|(a, b)| (**a - **b).abs() > 0.05)
            .count();
        // Shapes moved: many samples changed by more than the grain can explain.
        assert!(changed > 1000, "only {changed} samples moved");
    }

    #[test]
    fn scene_is_photo_like_not_flat() {
        let mut demo = Demo::new(256, 256).unwrap();
        demo.render(at(5.0, 3));
        let p = pixels(&demo);
        // The grain makes neighbouring pixels differ; the gradient spans a wide range.
        let distinct = p
            .chunks_exact(3)
            .map(|c| (c[1] * 255.0) as u8)
            .collect::<std::collections::BTreeSet<_>>();
        assert!(
            distinct.len() > 100,
            "{} distinct green levels",
            distinct.len()
        );
        let top = p[3 * 128 + 2]; // blue of the top row: sky
        let ground = p[3 * (250 * 256 + 10) + 2];
        assert!(
            top > ground,
            "sky {top} should be bluer than ground {ground}"
        );
    }

    #[test]
    fn clock_hands_follow_the_clock_time() {
        // The minute hand at :00 points up from the clock centre, at :30 down.
        let mut demo = Demo::new(400, 400).unwrap();
        let scene = Scene::at(400, 400, at(0.0, 0));
        let (cx, cy, r) = (scene.clock.c[0], scene.clock.c[1], scene.clock.r);
        let mut dark_above = |clock: f64| {
            demo.render(FrameTime {
                elapsed: 0.0,
                clock,
                frame: 0,
            });
            let p = pixels(&demo);
            let sample = |dy: f32| {
                let (x, y) = (cx as usize, (cy + dy * r) as usize);
                p[3 * (y * 400 + x) + 1]
            };
            (sample(-0.4), sample(0.4))
        };
        let (up, down) = dark_above(3600.0 * 6.0); // 06:00:00: minute up, hour down (hour hand is 0.5 r long)
        assert!(up < 0.3 && down < 0.3, "06:00 hands: up {up}, down {down}");
        let (up, down) = dark_above(3600.0 * 3.0 + 1800.0 + 15.0); // 03:30: minute down
        assert!(up > 0.6 && down < 0.3, "03:30 hands: up {up}, down {down}");
    }

    #[test]
    fn frames_reuse_one_buffer() {
        // The crate forbids unsafe code, so no counting allocator here: check instead that every
        // frame is written into the same allocation (the render loop itself has no Vec in it).
        let mut demo = Demo::new(320, 240).unwrap().sequential();
        let first = demo.render(at(0.0, 0)).image(0).unwrap().data();
        let (ptr, len) = match first {
            TensorData::F32(p) => (p.as_ptr(), p.len()),
            _ => unreachable!(),
        };
        for i in 1..5 {
            match demo.render(at(i as f64 * 0.1, i)).image(0).unwrap().data() {
                TensorData::F32(p) => assert_eq!((p.as_ptr(), p.len()), (ptr, len)),
                _ => unreachable!(),
            }
        }
    }
}

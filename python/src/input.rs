//! Reading numpy arrays and torch tensors without copying them.
//!
//! Two zero-copy protocols, tried in this order:
//! - `__array_interface__` (numpy and numpy-like arrays): a data pointer, byte strides, a type
//!   string and a read-only flag in a plain dict. It is the cheapest to read (no capsule) and it
//!   covers read-only arrays, which numpy's DLPack export refuses.
//! - DLPack (`__dlpack__` / `__dlpack_device__`: torch, JAX, CuPy, numpy too): the only protocol
//!   that describes bfloat16, and the one that tells where the memory lives, so a CUDA tensor is
//!   refused with "call .cpu() first" before any device work.
//!
//! The buffer protocol was not chosen: torch tensors do not export it, and it has no bfloat16.
//! Either way the result is a [`Source`]: the borrowed elements plus shape and strides in
//! elements, which [`Source::view`] turns into a `TensorView` (`[B,H,W,C]` + strides) according
//! to the requested [`Layout`].

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyTuple};

use pngcast_core::tensor::{TensorData, TensorView};

use crate::foreign::{self, ArrayRef, Elem, Managed};

/// How the axes of the input are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Rank 4 is `[B,H,W,C]`; rank 3 is `[H,W,C]` when its last axis is 1..=4, else a `[B,H,W]`
    /// mask batch; rank 2 is `[H,W]` (the CLI's rule for `.npy` files).
    Auto,
    Bhwc,
    Hwc,
    Bhw,
    Hw,
    Bchw,
    Chw,
}

impl Layout {
    pub fn parse(s: Option<&str>) -> PyResult<Layout> {
        Ok(match s {
            None | Some("auto") => Layout::Auto,
            Some("bhwc") => Layout::Bhwc,
            Some("hwc") => Layout::Hwc,
            Some("bhw") => Layout::Bhw,
            Some("hw") => Layout::Hw,
            Some("bchw") => Layout::Bchw,
            Some("chw") => Layout::Chw,
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "layout must be one of auto, bhwc, hwc, bhw, hw, bchw, chw; got {other:?}"
                )))
            }
        })
    }
}

enum Holder<'py> {
    /// Keeps the DLPack tensor alive; its deleter runs when this drops.
    Dl(Managed),
    /// Keeps the array alive (a reference to it) while its memory is read.
    Array(ArrayRef<'py>),
}

/// A borrowed tensor: the elements and their shape/strides in elements.
pub struct Source<'py> {
    holder: Holder<'py>,
    shape: Vec<usize>,
    strides: Vec<usize>,
}

impl<'py> Source<'py> {
    /// Reads `obj` through `__array_interface__` or DLPack (see the module doc).
    pub fn from_object(obj: &Bound<'py, PyAny>) -> PyResult<Source<'py>> {
        let py = obj.py();
        if let Ok(iface) = obj.getattr(pyo3::intern!(py, "__array_interface__")) {
            let iface = iface
                .cast_into::<PyDict>()
                .map_err(|_| PyTypeError::new_err("__array_interface__ is not a dict"))?;
            return Source::from_array_interface(obj, &iface);
        }
        if obj.hasattr(pyo3::intern!(py, "__dlpack__"))? {
            return Source::from_dlpack(obj);
        }
        Err(PyTypeError::new_err(format!(
            "expected a numpy array or a torch tensor (an object with __array_interface__ or \
             __dlpack__), got {}",
            obj.get_type().name()?
        )))
    }

    fn from_dlpack(obj: &Bound<'py, PyAny>) -> PyResult<Source<'py>> {
        let py = obj.py();
        if let Ok(dev) = obj.call_method0(pyo3::intern!(py, "__dlpack_device__")) {
            if let Ok((kind, id)) = dev.extract::<(i32, i32)>() {
                if !matches!(
                    kind,
                    foreign::DEVICE_CPU | foreign::DEVICE_CUDA_HOST | foreign::DEVICE_CUDA_MANAGED
                ) {
                    return Err(PyValueError::new_err(foreign::device_message(kind, id)));
                }
            }
        }
        // DLPack 1.x first (it carries a read-only flag); producers that predate it take no
        // `max_version` and raise TypeError.
        let kwargs = PyDict::new(py);
        kwargs.set_item("max_version", PyTuple::new(py, [1u32, 0])?)?;
        let capsule = match obj.call_method(pyo3::intern!(py, "__dlpack__"), (), Some(&kwargs)) {
            Ok(c) => c,
            Err(e) if e.is_instance_of::<PyTypeError>(py) => {
                obj.call_method0(pyo3::intern!(py, "__dlpack__"))?
            }
            Err(e) if e.is_instance_of::<PyBufferError>(py) => {
                return Err(PyValueError::new_err(format!(
                    "the tensor cannot be exported without a copy ({e}): pass a contiguous copy"
                )))
            }
            Err(e) => return Err(e),
        };
        let capsule = capsule
            .cast_into::<PyCapsule>()
            .map_err(|_| PyTypeError::new_err("__dlpack__ did not return a capsule"))?;
        let managed = Managed::consume(&capsule)?;
        let l = managed.layout().clone();
        Ok(Source {
            holder: Holder::Dl(managed),
            shape: l.shape,
            strides: l.strides,
        })
    }

    fn from_array_interface(
        obj: &Bound<'py, PyAny>,
        iface: &Bound<'py, PyDict>,
    ) -> PyResult<Source<'py>> {
        let get = |k: &str| -> PyResult<Bound<'py, PyAny>> {
            iface
                .get_item(k)?
                .ok_or_else(|| PyTypeError::new_err(format!("__array_interface__ has no {k:?}")))
        };
        let typestr: String = get("typestr")?.extract()?;
        let elem = match typestr.as_str() {
            "<f4" | "=f4" => Elem::F32,
            "<f2" | "=f2" => Elem::F16,
            "|u1" | "<u1" | "=u1" => Elem::U8,
            ">f4" | ">f2" => {
                return Err(PyValueError::new_err(format!(
                    "big-endian array (dtype {typestr}): convert with x.astype(x.dtype.newbyteorder('<'))"
                )))
            }
            "<f8" | "=f8" => {
                return Err(PyValueError::new_err(
                    "unsupported dtype float64: pngcast reads float32, float16, bfloat16 and \
                     uint8; convert with x.astype(np.float32)",
                ))
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "unsupported dtype {}: pngcast reads float32, float16, bfloat16 and uint8",
                    numpy_name(other)
                )))
            }
        };
        if cfg!(target_endian = "big") && elem != Elem::U8 {
            return Err(PyValueError::new_err(
                "little-endian arrays on a big-endian host",
            ));
        }
        let shape: Vec<usize> = get("shape")?.extract().map_err(|_| {
            PyValueError::new_err("__array_interface__ shape is not a tuple of sizes")
        })?;
        if shape.len() > 8 {
            return Err(PyValueError::new_err(format!(
                "a {}-dimensional array is not an image",
                shape.len()
            )));
        }
        let (addr, _read_only): (usize, bool) = get("data")?.extract().map_err(|_| {
            PyValueError::new_err(
                "the array does not expose a data pointer (__array_interface__ data is not \
                 (address, read_only)): pass a numpy array",
            )
        })?;
        let size = elem.size();
        let strides_obj = iface.get_item("strides")?;
        let strides: Vec<usize> = match strides_obj {
            Some(s) if !s.is_none() => {
                let bytes: Vec<isize> = s.extract()?;
                let mut out = Vec::with_capacity(bytes.len());
                for (&b, &n) in bytes.iter().zip(&shape) {
                    if b < 0 && n > 1 {
                        return Err(PyValueError::new_err(
                            "the array has negative strides (a flipped view), which pngcast \
                             cannot read without a copy: pass np.ascontiguousarray(x)",
                        ));
                    }
                    let b = b.max(0) as usize;
                    if !b.is_multiple_of(size) {
                        return Err(PyValueError::new_err(
                            "the array's strides are not whole elements (a view into a \
                             structured or byte-offset buffer): pass np.ascontiguousarray(x)",
                        ));
                    }
                    out.push(b / size);
                }
                out
            }
            _ => {
                let mut out = vec![0; shape.len()];
                let mut s = 1usize;
                for i in (0..shape.len()).rev() {
                    out[i] = s;
                    s = s.saturating_mul(shape[i].max(1));
                }
                out
            }
        };
        if strides.len() != shape.len() {
            return Err(PyValueError::new_err(
                "__array_interface__ strides and shape differ in length",
            ));
        }
        let empty = shape.contains(&0);
        let span = if empty {
            0
        } else {
            foreign::span_of(&shape, &strides)?
        };
        Ok(Source {
            holder: Holder::Array(ArrayRef::new(obj.clone(), addr, elem, span)?),
            shape,
            strides,
        })
    }

    /// The dimensions as given.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> TensorData<'_> {
        match &self.holder {
            Holder::Dl(m) => m.data(),
            Holder::Array(a) => a.data(),
        }
    }

    /// The `[B,H,W,C]` view of the tensor under `layout`.
    pub fn view(&self, layout: Layout) -> PyResult<TensorView<'_>> {
        let (shape, strides) = to_bhwc(&self.shape, &self.strides, layout)?;
        if let Some(axis) = shape.iter().position(|&n| n == 0) {
            let names = ["batch", "height", "width", "channels"];
            return Err(PyValueError::new_err(format!(
                "the image has no pixels: its {} axis is 0 (shape {:?})",
                names[axis], self.shape
            )));
        }
        TensorView::strided(self.data(), shape, strides).map_err(crate::errors::core_to_py)
    }
}

/// Maps the input's axes to `[B,H,W,C]` with strides.
fn to_bhwc(
    shape: &[usize],
    strides: &[usize],
    layout: Layout,
) -> PyResult<([usize; 4], [usize; 4])> {
    let bad = |want: &str| {
        PyValueError::new_err(format!(
            "shape {shape:?} does not fit layout {want}: expected {}",
            match want {
                "bhwc" | "bchw" => "4 dimensions",
                "hwc" | "bhw" | "chw" => "3 dimensions",
                _ => "2 dimensions",
            }
        ))
    };
    let layout = match layout {
        Layout::Auto => match shape.len() {
            4 => Layout::Bhwc,
            3 if (1..=4).contains(&shape[2]) => Layout::Hwc,
            3 => Layout::Bhw,
            2 => Layout::Hw,
            n => {
                return Err(PyValueError::new_err(format!(
                    "a {n}-dimensional input (shape {shape:?}) is not an image: expected \
                     [B,H,W,C], [H,W,C], [B,H,W] (masks) or [H,W]"
                )))
            }
        },
        l => l,
    };
    let (sh, st) = match layout {
        Layout::Bhwc => match (shape, strides) {
            ([b, h, w, c], [sb, sh, sw, sc]) => ([*b, *h, *w, *c], [*sb, *sh, *sw, *sc]),
            _ => return Err(bad("bhwc")),
        },
        Layout::Hwc => match (shape, strides) {
            ([h, w, c], [sh, sw, sc]) => ([1, *h, *w, *c], [0, *sh, *sw, *sc]),
            _ => return Err(bad("hwc")),
        },
        Layout::Bhw => match (shape, strides) {
            ([b, h, w], [sb, sh, sw]) => ([*b, *h, *w, 1], [*sb, *sh, *sw, 0]),
            _ => return Err(bad("bhw")),
        },
        Layout::Hw => match (shape, strides) {
            ([h, w], [sh, sw]) => ([1, *h, *w, 1], [0, *sh, *sw, 0]),
            _ => return Err(bad("hw")),
        },
        Layout::Bchw => match (shape, strides) {
            ([b, c, h, w], [sb, sc, sh, sw]) => ([*b, *h, *w, *c], [*sb, *sh, *sw, *sc]),
            _ => return Err(bad("bchw")),
        },
        Layout::Chw => match (shape, strides) {
            ([c, h, w], [sc, sh, sw]) => ([1, *h, *w, *c], [0, *sh, *sw, *sc]),
            _ => return Err(bad("chw")),
        },
        Layout::Auto => unreachable!("resolved above"),
    };
    if !(1..=4).contains(&sh[3]) {
        let hint = if shape.len() >= 3 && (1..=4).contains(&shape[shape.len() - 3]) {
            " (a channels-first tensor? pass layout=\"bchw\"/\"chw\", or permute it to channels-last)"
        } else {
            ""
        };
        return Err(PyValueError::new_err(format!(
            "unsupported channel count {} in shape {shape:?}: expected 1 (gray), 2 (gray+alpha), \
             3 (RGB) or 4 (RGBA){hint}",
            sh[3]
        )));
    }
    Ok((sh, st))
}

fn numpy_name(typestr: &str) -> String {
    let kind = match typestr.as_bytes().get(1) {
        Some(b'f') => "float",
        Some(b'i') => "int",
        Some(b'u') => "uint",
        Some(b'b') => "bool",
        Some(b'c') => "complex",
        Some(b'V') => "void/bfloat16 (ml_dtypes: pass a torch tensor or x.astype(np.float32))",
        _ => return typestr.to_owned(),
    };
    let bytes: usize = typestr[2..].parse().unwrap_or(0);
    if kind.starts_with("void") {
        return kind.to_owned();
    }
    format!("{kind}{}", bytes * 8)
}

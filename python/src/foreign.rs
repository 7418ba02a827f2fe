//! The DLPack consumer: the one module of this crate with `unsafe` code.
//!
//! A producer's `__dlpack__()` returns a capsule named `"dltensor"` (DLPack 0.x) or
//! `"dltensor_versioned"` (DLPack 1.x, asked for with `max_version=(1, 0)`) that points at a
//! `DLManagedTensor[Versioned]`: the data pointer, device, dtype, shape and strides of the tensor,
//! and a deleter. The consumer takes ownership by renaming the capsule to `"used_dltensor"`
//! (`"used_dltensor_versioned"`) and must then call the deleter exactly once when it is done;
//! a capsule left unrenamed is freed by the producer's capsule destructor instead. [`Managed`]
//! is that ownership: it renames on construction and calls the deleter on drop, and it hands out
//! the tensor's description as plain safe values ([`Layout`]) plus a borrowed element slice.
//!
//! Struct layouts follow `dlpack.h` (v1.0); only CPU memory is read (the device is checked by
//! the caller through `__dlpack_device__` before `__dlpack__` is even called, and again here).

use std::ffi::{c_void, CStr};
use std::os::raw::c_char;

use half::{bf16, f16};
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use pngcast_core::tensor::TensorData;

/// `kDLCPU`.
pub const DEVICE_CPU: i32 = 1;
/// `kDLCUDAHost`: pinned host memory, readable by the CPU.
pub const DEVICE_CUDA_HOST: i32 = 3;
/// `kDLCUDAManaged`: unified memory, readable by the CPU.
pub const DEVICE_CUDA_MANAGED: i32 = 13;

const CODE_UINT: u8 = 1;
const CODE_FLOAT: u8 = 2;
const CODE_BFLOAT: u8 = 4;

/// `DLPACK_FLAG_BITMASK_READ_ONLY` (we only read, so this is informational).
const FLAG_READ_ONLY: u64 = 1;

#[repr(C)]
#[derive(Clone, Copy)]
struct DlDevice {
    device_type: i32,
    device_id: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct DlDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

#[repr(C)]
struct DlTensor {
    data: *mut c_void,
    device: DlDevice,
    ndim: i32,
    dtype: DlDataType,
    shape: *const i64,
    strides: *const i64,
    byte_offset: u64,
}

#[repr(C)]
struct DlManagedTensor {
    dl_tensor: DlTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DlManagedTensor)>,
}

#[repr(C)]
struct DlPackVersion {
    major: u32,
    minor: u32,
}

#[repr(C)]
struct DlManagedTensorVersioned {
    version: DlPackVersion,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DlManagedTensorVersioned)>,
    flags: u64,
    dl_tensor: DlTensor,
}

/// Element types pngcast reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    F32,
    F16,
    BF16,
    U8,
}

impl Elem {
    pub fn size(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F16 | Elem::BF16 => 2,
            Elem::U8 => 1,
        }
    }
}

/// A tensor's description in safe values: element type, sizes and strides in elements.
#[derive(Debug, Clone)]
pub struct Layout {
    pub elem: Elem,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
    /// Elements from the data pointer to the farthest element, plus one (0 for an empty tensor).
    pub span: usize,
}

enum Owner {
    Legacy(*mut DlManagedTensor),
    Versioned(*mut DlManagedTensorVersioned),
}

/// A consumed DLPack capsule: the tensor stays alive (and unmoved) until this is dropped.
pub struct Managed {
    owner: Owner,
    data: *const u8,
    layout: Layout,
}

const NAME_LEGACY: &CStr = c"dltensor";
const NAME_VERSIONED: &CStr = c"dltensor_versioned";
const USED_LEGACY: &CStr = c"used_dltensor";
const USED_VERSIONED: &CStr = c"used_dltensor_versioned";

impl Managed {
    /// Takes ownership of the tensor behind `capsule` (which `__dlpack__` returned) and checks
    /// everything a later read relies on: CPU memory, a supported dtype, non-negative strides
    /// that are whole elements, an aligned data pointer, and sizes that do not overflow.
    pub fn consume(capsule: &Bound<'_, PyCapsule>) -> PyResult<Managed> {
        let ptr = capsule.as_ptr();
        // SAFETY: `ptr` is a live capsule object (we hold a reference through `capsule`), and
        // `PyCapsule_GetName` only reads its name field.
        let name_ptr: *const c_char = unsafe { pyo3::ffi::PyCapsule_GetName(ptr) };
        if name_ptr.is_null() {
            return Err(PyValueError::new_err(
                "__dlpack__ returned a capsule without a name (expected \"dltensor\")",
            ));
        }
        // SAFETY: a non-null capsule name is a NUL-terminated C string that lives as long as
        // the capsule (the Python C API's contract for PyCapsule names).
        let name = unsafe { CStr::from_ptr(name_ptr) };
        let versioned = if name == NAME_VERSIONED {
            true
        } else if name == NAME_LEGACY {
            false
        } else if name == USED_LEGACY || name == USED_VERSIONED {
            return Err(PyBufferError::new_err(
                "this DLPack capsule was already consumed",
            ));
        } else {
            return Err(PyValueError::new_err(format!(
                "__dlpack__ returned a capsule named {name:?} (expected \"dltensor\")"
            )));
        };
        // SAFETY: the capsule is live and `name` is its current name, so GetPointer returns the
        // pointer stored in it (non-null for a valid capsule; checked below).
        let raw = unsafe { pyo3::ffi::PyCapsule_GetPointer(ptr, name.as_ptr()) };
        if raw.is_null() {
            // Clears the Python error GetPointer may have set.
            return Err(PyErr::take(capsule.py())
                .unwrap_or_else(|| PyValueError::new_err("DLPack capsule holds a null pointer")));
        }
        let used = if versioned {
            USED_VERSIONED
        } else {
            USED_LEGACY
        };
        // SAFETY: renaming a live capsule; `used` is a 'static C string, as SetName requires
        // (the capsule keeps the pointer, not a copy).
        if unsafe { pyo3::ffi::PyCapsule_SetName(ptr, used.as_ptr()) } != 0 {
            return Err(PyErr::take(capsule.py())
                .unwrap_or_else(|| PyValueError::new_err("cannot rename the DLPack capsule")));
        }
        // From here on we own the tensor: every return path below drops `Managed` (or the
        // guard), which calls the deleter exactly once.
        let owner = if versioned {
            Owner::Versioned(raw.cast())
        } else {
            Owner::Legacy(raw.cast())
        };
        let mut managed = Managed {
            owner,
            data: std::ptr::null(),
            layout: Layout {
                elem: Elem::U8,
                shape: Vec::new(),
                strides: Vec::new(),
                span: 0,
            },
        };
        let (tensor, major) = match managed.owner {
            // SAFETY: the producer gave us a valid `DLManagedTensorVersioned*` under this capsule
            // name; it stays valid until we call its deleter (in `Drop`).
            Owner::Versioned(p) => unsafe { (&(*p).dl_tensor, (*p).version.major) },
            // SAFETY: as above, for a legacy `DLManagedTensor*`.
            Owner::Legacy(p) => unsafe { (&(*p).dl_tensor, 0) },
        };
        if versioned && major != 1 {
            return Err(PyValueError::new_err(format!(
                "unsupported DLPack major version {major} (pngcast reads 1.x)"
            )));
        }
        let (data, layout) = read_tensor(tensor)?;
        managed.data = data;
        managed.layout = layout;
        Ok(managed)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether the producer marked the tensor read-only (DLPack 1.x only).
    #[allow(dead_code)]
    pub fn read_only(&self) -> bool {
        match self.owner {
            // SAFETY: valid until the deleter runs in `Drop` (see `consume`).
            Owner::Versioned(p) => unsafe { (*p).flags & FLAG_READ_ONLY != 0 },
            Owner::Legacy(_) => false,
        }
    }

    /// The elements from the data pointer to the farthest element of the view.
    pub fn data(&self) -> TensorData<'_> {
        // SAFETY: `consume` checked that `data` is non-null (for span > 0), aligned for the
        // element type, points to CPU memory and that `span` elements from it are inside the
        // producer's tensor (the farthest element of the shape/stride box); the producer keeps
        // the memory alive until our deleter call in `Drop`, which `&self` outlives.
        unsafe { slice_of(self.data, self.layout.elem, self.layout.span) }
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        match self.owner {
            Owner::Versioned(p) => {
                // SAFETY: `p` is the producer's tensor, owned by us since the rename; the
                // deleter is called exactly once, here.
                if let Some(deleter) = unsafe { (*p).deleter } {
                    // SAFETY: as above; DLPack lets consumers call the deleter from any thread
                    // with or without the GIL (producers such as torch acquire it as needed).
                    unsafe { deleter(p) };
                }
            }
            Owner::Legacy(p) => {
                // SAFETY: as for the versioned tensor.
                if let Some(deleter) = unsafe { (*p).deleter } {
                    // SAFETY: as for the versioned tensor.
                    unsafe { deleter(p) };
                }
            }
        }
    }
}

/// Reads and checks a `DLTensor`'s description.
fn read_tensor(t: &DlTensor) -> PyResult<(*const u8, Layout)> {
    match t.device.device_type {
        DEVICE_CPU | DEVICE_CUDA_HOST | DEVICE_CUDA_MANAGED => {}
        other => {
            return Err(PyValueError::new_err(device_message(
                other,
                t.device.device_id,
            )))
        }
    }
    let elem = match (t.dtype.code, t.dtype.bits, t.dtype.lanes) {
        (CODE_FLOAT, 32, 1) => Elem::F32,
        (CODE_FLOAT, 16, 1) => Elem::F16,
        (CODE_BFLOAT, 16, 1) => Elem::BF16,
        (CODE_UINT, 8, 1) => Elem::U8,
        (code, bits, lanes) => {
            return Err(PyValueError::new_err(format!(
                "unsupported dtype {}: pngcast reads float32, float16, bfloat16 and uint8",
                dtype_name(code, bits, lanes)
            )))
        }
    };
    let ndim = usize::try_from(t.ndim)
        .map_err(|_| PyValueError::new_err(format!("DLPack tensor has ndim {}", t.ndim)))?;
    if ndim > 8 {
        return Err(PyValueError::new_err(format!(
            "a {ndim}-dimensional tensor is not an image"
        )));
    }
    let mut shape = Vec::with_capacity(ndim);
    let mut strides = Vec::with_capacity(ndim);
    if ndim > 0 {
        if t.shape.is_null() {
            return Err(PyValueError::new_err("DLPack tensor has no shape"));
        }
        // SAFETY: DLPack guarantees `shape` points to `ndim` int64 values for ndim > 0.
        let raw_shape = unsafe { std::slice::from_raw_parts(t.shape, ndim) };
        for &n in raw_shape {
            shape.push(usize::try_from(n).map_err(|_| {
                PyValueError::new_err(format!("DLPack tensor has a negative size {n}"))
            })?);
        }
        if t.strides.is_null() {
            // Compact row-major.
            let mut s = 1usize;
            strides.resize(ndim, 0);
            for i in (0..ndim).rev() {
                strides[i] = s;
                s = s.saturating_mul(shape[i].max(1));
            }
        } else {
            // SAFETY: non-null `strides` points to `ndim` int64 values (DLPack).
            let raw_strides = unsafe { std::slice::from_raw_parts(t.strides, ndim) };
            for (&s, &n) in raw_strides.iter().zip(&shape) {
                if s < 0 && n > 1 {
                    return Err(PyValueError::new_err(
                        "the tensor has negative strides (a flipped view), which pngcast cannot \
                         read without a copy: pass a contiguous copy (x.contiguous() or \
                         np.ascontiguousarray(x))",
                    ));
                }
                strides.push(usize::try_from(s.max(0)).unwrap_or(0));
            }
        }
    }
    let empty = shape.contains(&0);
    let span = if empty { 0 } else { span_of(&shape, &strides)? };
    let offset = usize::try_from(t.byte_offset)
        .map_err(|_| PyValueError::new_err("DLPack byte_offset overflows"))?;
    let data = if empty {
        std::ptr::null()
    } else {
        if t.data.is_null() {
            return Err(PyValueError::new_err(
                "DLPack tensor has a null data pointer",
            ));
        }
        // The byte offset stays inside the producer's allocation (DLPack), so the addition
        // cannot wrap; `wrapping_add` keeps this free of unsafe.
        let p = (t.data as *const u8).wrapping_add(offset);
        if !(p as usize).is_multiple_of(elem.size()) {
            return Err(PyValueError::new_err(
                "the tensor's data is not aligned to its element size: pass a contiguous copy",
            ));
        }
        span.checked_mul(elem.size())
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(|| PyValueError::new_err("tensor too large"))?;
        p
    };
    Ok((
        data,
        Layout {
            elem,
            shape,
            strides,
            span,
        },
    ))
}

/// Elements from the first to the farthest element of a non-empty box, plus one.
pub fn span_of(shape: &[usize], strides: &[usize]) -> PyResult<usize> {
    let overflow = || PyValueError::new_err("tensor size overflows");
    let mut last = 0usize;
    for (&n, &s) in shape.iter().zip(strides) {
        last = (n - 1)
            .checked_mul(s)
            .and_then(|d| last.checked_add(d))
            .ok_or_else(overflow)?;
    }
    last.checked_add(1).ok_or_else(overflow)
}

/// An array exported through `__array_interface__`: a reference that keeps it alive, and its
/// checked memory.
pub struct ArrayRef<'py> {
    _obj: Bound<'py, PyAny>,
    data: *const u8,
    elem: Elem,
    span: usize,
}

impl<'py> ArrayRef<'py> {
    /// `span` elements of type `elem` at address `addr`, owned by `obj`. Checks a non-null,
    /// aligned address and a byte size within `isize::MAX` (for `span > 0`).
    pub fn new(obj: Bound<'py, PyAny>, addr: usize, elem: Elem, span: usize) -> PyResult<Self> {
        if span > 0 {
            if addr == 0 {
                return Err(PyValueError::new_err("the array has a null data pointer"));
            }
            if !addr.is_multiple_of(elem.size()) {
                return Err(PyValueError::new_err(
                    "the array's data is not aligned to its element size: pass \
                     np.ascontiguousarray(x)",
                ));
            }
            span.checked_mul(elem.size())
                .filter(|&b| b <= isize::MAX as usize)
                .ok_or_else(|| PyValueError::new_err("array too large"))?;
        }
        Ok(ArrayRef {
            _obj: obj,
            data: addr as *const u8,
            elem,
            span,
        })
    }

    /// The elements from the data pointer to the farthest element of the view.
    pub fn data(&self) -> TensorData<'_> {
        // SAFETY: `new` checked non-null (for span > 0), alignment and the byte size; the
        // caller computed `span` from the array's own shape and strides (the farthest element of
        // its box), so the memory is the array's; `_obj` keeps the array alive as long as
        // `self`, and numpy never moves or frees an array's memory while a reference exists. A
        // concurrent writer in another Python thread can change values mid-read, which for plain
        // numbers only means reading either value (documented in the package).
        unsafe { slice_of(self.data, self.elem, self.span) }
    }
}

/// A slice of `len` elements of type `elem` at `data`.
///
/// # Safety
/// For `len > 0`: `data` is non-null, aligned to `elem.size()`, and `len * elem.size()` bytes
/// from it are readable memory that nothing writes while the returned slice lives (the caller
/// picks the lifetime `'a` accordingly), with `len * elem.size() <= isize::MAX`.
pub unsafe fn slice_of<'a>(data: *const u8, elem: Elem, len: usize) -> TensorData<'a> {
    if len == 0 {
        return match elem {
            Elem::F32 => TensorData::F32(&[]),
            Elem::F16 => TensorData::F16(&[]),
            Elem::BF16 => TensorData::BF16(&[]),
            Elem::U8 => TensorData::U8(&[]),
        };
    }
    match elem {
        Elem::F32 => {
            // SAFETY: the function's contract: non-null, aligned, `len` readable elements, no
            // concurrent writer for 'a; every bit pattern is a valid f32.
            TensorData::F32(unsafe { std::slice::from_raw_parts(data.cast::<f32>(), len) })
        }
        Elem::F16 => {
            // SAFETY: as for f32; every bit pattern is a valid f16.
            TensorData::F16(unsafe { std::slice::from_raw_parts(data.cast::<f16>(), len) })
        }
        Elem::BF16 => {
            // SAFETY: as for f32; every bit pattern is a valid bf16.
            TensorData::BF16(unsafe { std::slice::from_raw_parts(data.cast::<bf16>(), len) })
        }
        Elem::U8 => {
            // SAFETY: as for f32; every bit pattern is a valid u8.
            TensorData::U8(unsafe { std::slice::from_raw_parts(data, len) })
        }
    }
}

/// "call .cpu() first" for a tensor on an accelerator.
pub fn device_message(device_type: i32, device_id: i32) -> String {
    let name = match device_type {
        2 => "cuda",
        4 => "opencl",
        7 => "vulkan",
        8 => "metal",
        9 => "vpi",
        10 => "rocm",
        14 => "oneapi",
        15 => "webgpu",
        16 => "hexagon",
        17 => "maia",
        _ => "a non-CPU device",
    };
    format!("the tensor is on {name}:{device_id}; pngcast reads CPU memory: call .cpu() first")
}

fn dtype_name(code: u8, bits: u8, lanes: u16) -> String {
    let kind = match code {
        0 => "int",
        CODE_UINT => "uint",
        CODE_FLOAT => "float",
        CODE_BFLOAT => "bfloat",
        5 => "complex",
        6 => "bool",
        _ => "unknown",
    };
    if lanes == 1 {
        format!("{kind}{bits}")
    } else {
        format!("{kind}{bits}x{lanes}")
    }
}

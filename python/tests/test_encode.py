"""pngcast.encode / encode_batch: bit-exactness, inputs, zero copies, errors, the GIL."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import pngcast
from conftest import comfy_u8, decode, ticks_during, torch_or_skip

RNG = np.random.default_rng(1234)


def adversarial(shape) -> np.ndarray:
    """Random values in -0.5..1.5 with NaN, infinities, signed zeros and rounding boundaries."""
    x = RNG.uniform(-0.5, 1.5, size=shape).astype(np.float32)
    flat = x.reshape(-1)
    specials = np.array(
        [np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, 0.5 / 255, 1 / 255, 254.5 / 255, 1 - 1e-7, 2.0],
        dtype=np.float32,
    )
    flat[: min(flat.size, specials.size)] = specials[: min(flat.size, specials.size)]
    return x


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("compression", ["fast", "fastest", "stored", "compact", "compact=6"])
def test_bit_exact_with_comfyui(channels, compression):
    x = adversarial((37, 53, channels))
    png = pngcast.encode(x, compression=compression)
    got = decode(png)
    want = comfy_u8(x)
    if channels == 1:
        want = want[..., 0]
    assert got.shape == want.shape
    assert np.array_equal(got, want)


def test_batch_order_and_masks():
    x = adversarial((3, 16, 24, 3))
    pngs = pngcast.encode_batch(x)
    assert len(pngs) == 3
    for i, png in enumerate(pngs):
        assert np.array_equal(decode(png), comfy_u8(x[i]))
    masks = adversarial((2, 10, 12))  # [B,H,W]: last axis 12 is not a channel count
    pngs = pngcast.encode_batch(masks)
    assert [decode(p).shape for p in pngs] == [(10, 12), (10, 12)]
    assert np.array_equal(decode(pngs[1]), comfy_u8(masks[1]))
    # A list of images works too.
    pngs = pngcast.encode_batch([x[0], x[2]])
    assert np.array_equal(decode(pngs[1]), comfy_u8(x[2]))


def test_hw_and_batch_of_one():
    g = adversarial((20, 30))
    assert np.array_equal(decode(pngcast.encode(g)), comfy_u8(g))
    b1 = adversarial((1, 8, 9, 3))
    assert np.array_equal(decode(pngcast.encode(b1)), comfy_u8(b1[0]))


def test_float16_and_uint8():
    x16 = adversarial((12, 14, 3)).astype(np.float16)
    assert np.array_equal(decode(pngcast.encode(x16)), comfy_u8(x16.astype(np.float32)))
    u8 = RNG.integers(0, 256, size=(12, 14, 4), dtype=np.uint8)
    assert np.array_equal(decode(pngcast.encode(u8)), u8)


def test_strided_views_without_copy():
    base = adversarial((2, 3, 40, 50))  # [B,C,H,W], channels first
    chw_as_hwc = base.transpose(0, 2, 3, 1)  # a strided view, not a copy
    assert not chw_as_hwc.flags["C_CONTIGUOUS"]
    pngs = pngcast.encode_batch(chw_as_hwc)
    for i, png in enumerate(pngs):
        assert np.array_equal(decode(png), comfy_u8(chw_as_hwc[i]))
    # layout="bchw" reads the channels-first buffer directly.
    pngs = pngcast.encode_batch(base, layout="bchw")
    assert np.array_equal(decode(pngs[1]), comfy_u8(chw_as_hwc[1]))
    # A crop and a step.
    crop = adversarial((64, 64, 4))[5:40:2, 3:50:3, :3]
    assert np.array_equal(decode(pngcast.encode(crop)), comfy_u8(crop))
    # Read-only arrays are read in place as well.
    ro = adversarial((8, 8, 3))
    ro.setflags(write=False)
    assert np.array_equal(decode(pngcast.encode(ro)), comfy_u8(ro))


def test_round_and_sixteen_bits():
    x = adversarial((9, 11, 3))
    got = decode(pngcast.encode(x, quantize="round"))
    with np.errstate(all="ignore"):
        want = np.clip(np.rint(np.float32(255.0) * x), 0, 255)
    want = np.where(np.isnan(want), 0, want).astype(np.uint8)
    assert np.array_equal(got, want)
    png16 = pngcast.encode(x, bit_depth=16)
    assert png16[24] == 16  # IHDR bit depth
    import io

    from PIL import Image

    gray = adversarial((9, 11))
    img = Image.open(io.BytesIO(pngcast.encode(gray, bit_depth=16)))
    with np.errstate(all="ignore"):
        want16 = np.clip(np.float32(65535.0) * gray, 0, 65535)
    want16 = np.where(np.isnan(want16), 0, want16).astype(np.uint16)
    assert np.array_equal(np.asarray(img).astype(np.uint16), want16)


def test_text_chunks():
    from PIL import Image
    import io

    x = adversarial((8, 8, 3))
    png = pngcast.encode(x, text={"prompt": '{"1": {}}', "Software": "pngcast"})
    img = Image.open(io.BytesIO(png))
    assert img.text == {"prompt": '{"1": {}}', "Software": "pngcast"}
    png = pngcast.encode(x, text=[("a", "b")])
    assert Image.open(io.BytesIO(png)).text == {"a": "b"}


@pytest.mark.parametrize(
    "make, exc, words",
    [
        (lambda: np.zeros((4, 4, 3), np.float64), ValueError, "float64"),
        (lambda: np.zeros((4, 4, 3), np.int32), ValueError, "int32"),
        (lambda: np.zeros((4, 4, 5), np.float32), ValueError, "channel"),
        (lambda: np.zeros((2, 4, 4, 5), np.float32), ValueError, "channel"),
        (lambda: np.zeros((0, 4, 4, 3), np.float32), ValueError, "no pixels"),
        (lambda: np.zeros((4, 0, 3), np.float32), ValueError, "no pixels"),
        (lambda: np.zeros((4,), np.float32), ValueError, "1-dimensional"),
        (lambda: np.zeros((1, 1, 2, 2, 3), np.float32), ValueError, "5-dimensional"),
        (lambda: np.zeros((4, 4, 3), np.float32)[::-1], ValueError, "negative strides"),
        (lambda: [[0.0, 1.0]], TypeError, "numpy array or a torch tensor"),
        (lambda: "image", TypeError, "numpy array or a torch tensor"),
        (lambda: None, TypeError, "numpy array or a torch tensor"),
        (lambda: np.zeros((4, 4, 3), ">f4"), ValueError, "big-endian"),
        (lambda: np.zeros((2, 4, 4, 3), np.float32), ValueError, "encode_batch"),
    ],
)
def test_bad_input(make, exc, words):
    with pytest.raises(exc) as info:
        pngcast.encode(make())
    assert words in str(info.value)


def test_unaligned_and_odd_strides():
    raw = np.zeros(4 * 4 * 3 * 4 + 1, np.uint8)
    unaligned = raw[1:].view(np.float32).reshape(4, 4, 3)
    with pytest.raises(ValueError, match="aligned"):
        pngcast.encode(unaligned)
    rec = np.zeros((4, 4), dtype=[("a", np.float32), ("b", np.uint8)])["a"]
    with pytest.raises(ValueError, match="whole elements|not aligned"):
        pngcast.encode(rec)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"compression": "zip"}, "compression"),
        ({"compression": "compact=10"}, "compact level"),
        ({"quantize": "floor"}, "quantize"),
        ({"bit_depth": 12}, "bit_depth"),
        ({"threads": 0}, "threads"),
        ({"layout": "cwh"}, "layout"),
        ({"text": {"": "empty key"}}, "tEXt"),
        ({"text": {"k": "nul\x00"}}, "tEXt"),
    ],
)
def test_bad_options(kwargs, words):
    with pytest.raises(ValueError) as info:
        pngcast.encode(np.zeros((4, 4, 3), np.float32), **kwargs)
    assert words in str(info.value)


def test_text_type_errors():
    with pytest.raises(TypeError):
        pngcast.encode(np.zeros((4, 4, 3), np.float32), text="k=v")
    with pytest.raises(TypeError):
        pngcast.encode(np.zeros((4, 4, 3), np.float32), text={"k": 1})


def test_layout_mismatch():
    with pytest.raises(ValueError, match="layout chw"):
        pngcast.encode(np.zeros((4, 4), np.float32), layout="chw")


def test_threads_option_same_bytes():
    x = adversarial((300, 200, 3))
    assert pngcast.encode(x, threads=1) == pngcast.encode(x, threads=2) == pngcast.encode(x)


def test_gil_released_while_encoding():
    """A Python thread keeps running while pngcast encodes big images on the main thread."""
    x = RNG.random((2048, 2048, 3), dtype=np.float32)

    def work():
        for _ in range(3):
            pngcast.encode(x, compression="compact=6", threads=1)

    # Without the GIL released the counter could not move during these calls (each holds the
    # CPU far longer than the 5 ms switch interval).
    during = ticks_during(work)
    assert during > 100, during


def test_concurrent_encodes_from_threads():
    xs = [adversarial((64, 80, 3)) for _ in range(4)]
    want = [pngcast.encode(x) for x in xs]
    results = [None] * 4

    def work(i):
        for _ in range(10):
            results[i] = pngcast.encode(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == want


# ------------------------------------------------------------------------------------ torch


def test_torch_dtypes_and_layouts():
    torch = torch_or_skip()
    x = torch.from_numpy(adversarial((2, 20, 30, 3)))
    for i, png in enumerate(pngcast.encode_batch(x)):
        assert np.array_equal(decode(png), comfy_u8(x[i].numpy()))
    h = x.to(torch.float16)
    assert np.array_equal(decode(pngcast.encode(h[0])), comfy_u8(h[0].float().numpy()))
    b = x.to(torch.bfloat16)
    assert np.array_equal(decode(pngcast.encode(b[1])), comfy_u8(b[1].float().numpy()))
    u = (torch.rand(2, 9, 7, 4) * 255).to(torch.uint8)
    assert np.array_equal(decode(pngcast.encode(u[1])), u[1].numpy())
    # Channels-first, permuted to channels-last: a strided view, no copy.
    cf = torch.from_numpy(adversarial((2, 3, 24, 16)))
    cl = cf.permute(0, 2, 3, 1)
    assert not cl.is_contiguous()
    for i, png in enumerate(pngcast.encode_batch(cl)):
        assert np.array_equal(decode(png), comfy_u8(cl[i].numpy()))
    # Masks [B,H,W], sliced.
    m = torch.from_numpy(adversarial((3, 17, 19)))[1:, 2:, ::2]
    for i, png in enumerate(pngcast.encode_batch(m)):
        assert np.array_equal(decode(png), comfy_u8(m[i].numpy()))


def test_torch_zero_copy():
    """The bytes pngcast reads are the tensor's own: a write to the tensor between two calls
    shows in the second, and no copy of a 64 MB tensor is made (peak RSS grows far less)."""
    torch = torch_or_skip()
    import resource

    x = torch.zeros(1, 64, 64, 1)
    assert decode(pngcast.encode(x))[0, 0] == 0
    x[0, 0, 0, 0] = 1.0
    assert decode(pngcast.encode(x))[0, 0] == 255
    big = torch.rand(1, 4096, 4096, 4)  # 256 MB of float32
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pngcast.encode(big, compression="stored")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # A copy of the tensor would add 256 MB to the peak; the PNG itself is 64 MB (stored).
    assert (after - before) * 1024 < 200 * 2**20, (before, after)


def test_torch_errors():
    torch = torch_or_skip()
    with pytest.raises(ValueError, match="float64"):
        pngcast.encode(torch.zeros(4, 4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="int"):
        pngcast.encode(torch.zeros(4, 4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="no pixels"):
        pngcast.encode_batch(torch.zeros(0, 4, 4, 3))
    with pytest.raises(ValueError, match="channel"):
        pngcast.encode_batch(torch.zeros(1, 4, 4, 5))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"call \.cpu\(\) first"):
            pngcast.encode(torch.zeros(4, 4, 3, device="cuda"))


def test_fake_cuda_tensor_is_refused_before_export():
    class FakeCuda:
        def __dlpack_device__(self):
            return (2, 0)

        def __dlpack__(self, **_):
            raise AssertionError("must not be exported")

    with pytest.raises(ValueError, match=r"cuda:0.*call \.cpu\(\) first"):
        pngcast.encode(FakeCuda())


def test_bad_dlpack_producers():
    class NotCapsule:
        def __dlpack_device__(self):
            return (1, 0)

        def __dlpack__(self, **_):
            return "nope"

    with pytest.raises(TypeError, match="capsule"):
        pngcast.encode(NotCapsule())

    class Raises:
        def __dlpack__(self, **_):
            raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError, match="producer failed"):
        pngcast.encode(Raises())

    class BadIface:
        __array_interface__ = {"shape": (2, 2, 3), "typestr": "<f4", "data": "x", "version": 3}

    with pytest.raises(ValueError, match="data pointer"):
        pngcast.encode(BadIface())


def test_nan_error_option():
    x = adversarial((3, 8, 8, 3))
    x[...] = 0.5
    assert len(pngcast.encode_batch(x, nan="error")) == 3
    x[2, 7, 7, 2] = np.nan
    with pytest.raises(ValueError, match="image 2 of the batch contains NaN"):
        pngcast.encode_batch(x, nan="error")
    # Strided (channels-first memory) and float16 are scanned too; the default writes 0.
    cf = np.full((2, 3, 8, 8), 0.5, np.float32)
    cf[1, 2, 3, 4] = np.nan
    with pytest.raises(ValueError, match="image 1"):
        pngcast.encode_batch(cf.transpose(0, 2, 3, 1), nan="error")
    with pytest.raises(ValueError, match="image 0"):
        pngcast.encode(x[2].astype(np.float16), nan="error")
    assert decode(pngcast.encode(x[2]))[7, 7, 2] == 0
    with pytest.raises(ValueError, match="nan must be"):
        pngcast.encode(x[0], nan="raise")


def test_rust_panic_becomes_pngcast_error():
    from pngcast import _pngcast

    with pytest.raises(pngcast.Error, match="internal error in _test_panic: boom"):
        _pngcast._test_panic("boom")
    # The interpreter and the package carry on.
    assert pngcast.encode(np.zeros((2, 2, 3), np.float32))[:4] == b"\x89PNG"
    assert issubclass(pngcast.Error, Exception) and not issubclass(pngcast.Error, ValueError)

"""Images for chat requests (``--images N``): synthetic ones made here from ``--seed`` with Pillow,
or the files of ``--image-dir``, sent as data URLs in OpenAI ``image_url`` content parts of the
request's user message, after its text part:
``{"type": "text", ...}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``.

Every image is encoded once, before the run (benchmark/prepare.py); the send path only writes
bodies built before they are due. Sizes (``--image-size``) are ``WxH`` (``512x512``) or a comma-separated choice
(``256x256,512x512``): each image draws one, each equally likely (in a scenario file a string or a
list). ``--image-format`` is png (default; lossless, compression level 1) or jpeg (quality 90).

A synthetic image is a seeded 8x8 grid of random colours scaled up smoothly, with a little noise,
so its encoded size is photo-like (512x512: about 500 kB as PNG, 45 kB as JPEG) rather than a
flat colour's few hundred bytes. Every image of a run is different (a server's image cache gets
no free hits) and the same seed gives the same bytes. Files of ``--image-dir`` (.png, .jpg,
.jpeg, .gif, .webp, in name order) are sent byte for byte, request i taking files
i*N .. i*N+N-1 (round the folder), each with the type its first bytes say.

Encoded images cost memory in every body: at most MAX_DISTINCT_IMAGES images and
IMAGE_BYTES_BUDGET bytes of them are made; the requests past that reuse the earlier images in turn
(beside their own synthetic prompts, which never repeat).
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perfbench.core.errors import ConfigError
from perfbench.core.errors import BadValue, shown_text
from perfbench.workload.prompts import Prompt

IMAGE_FORMATS = ("png", "jpeg")
DEFAULT_IMAGE_SIZE = "512x512"
DEFAULT_IMAGE_FORMAT = "png"
MAX_IMAGES_PER_REQUEST = 64
MAX_IMAGE_SIDE = 8192  # pixels; past this a typo (and gigabytes of pixels)
MAX_DISTINCT_IMAGES = 1000  # images made (or files encoded) for a run, at most
IMAGE_BYTES_BUDGET = 512 * 2**20  # data-URL bytes of a run's bodies, at most
PILLOW_MISSING = "--images needs Pillow to make synthetic images, an optional extra: pip install 'perfbench[images]' (or send files with --image-dir DIR)"
CHAT_API = "openai-chat"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
               (b"GIF89a", "image/gif"))  # fmt: skip
_MIME = {"png": "image/png", "jpeg": "image/jpeg"}
_SIZE = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")
_SIZE_FORMS = "give WxH, e.g. 512x512, or a choice like 256x256,512x512"
_GRID = 8  # colour cells per side of a synthetic image
_NOISE = 6  # +- per channel
_STREAM = 0x1A6E  # the images' own random stream beside the prompts' and arrivals' (same --seed)
# The image options beside --images: (dest, flag).
_SHAPES = (("image_size", "--image-size"), ("image_format", "--image-format"))
_IMAGE_OPTIONS = (*_SHAPES, ("image_dir", "--image-dir"))


# --------------------------------------------------------------------------- settings


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """``"256x256,512x384"`` -> ((256, 256), (512, 384)); BadValue naming the bad item."""
    sizes = []
    for item in str(text).split(","):
        match = _SIZE.fullmatch(item)
        if not match:
            raise BadValue(f"{shown_text(item.strip())} is not a size; {_SIZE_FORMS}")
        width, height = int(match[1]), int(match[2])
        if not (1 <= width <= MAX_IMAGE_SIDE and 1 <= height <= MAX_IMAGE_SIDE):
            raise BadValue(f"{width}x{height} is out of range; use sides from 1 to {MAX_IMAGE_SIDE} pixels")
        sizes.append((width, height))
    return tuple(sizes)


def image_size_setting(value: Any) -> str:
    """The option table's reader: "512x512", "256x256,512x512" or a YAML list of sizes -> "256x256,512x512"."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise BadValue(f"expected a size like \"512x512\" or a list of sizes, got {value!r}; {_SIZE_FORMS}")
    return ",".join(f"{w}x{h}" for w, h in parse_sizes(value))


def check_image_settings(settings: Mapping[str, Any], api: str) -> None:
    """Refuse image options that would do nothing or that the API cannot carry, a folder without
    images, and synthetic images without Pillow (one line each, naming the fix)."""
    images = settings.get("images")
    if not images:
        for dest, flag in _IMAGE_OPTIONS:
            if settings.get(dest) is not None:
                raise ConfigError(f"{flag} shapes the images of --images N; add --images N, or drop {flag}")
        return
    if api != CHAT_API:
        raise ConfigError(f"--images sends image_url parts of chat messages, which {api} does not take; "
                          f"use --api {CHAT_API}, or drop --images")
    if settings.get("trace"):
        raise ConfigError("--images does not go with --trace (a trace replays its recorded text requests); drop one of them")
    for dest, flag in (("turns", "--turns"), ("conversations", "--conversations")):
        if settings.get(dest):
            raise ConfigError(f"--images goes with single requests, not with the sessions of {flag}; drop one of them")
    if settings.get("image_dir") is not None:
        for dest, flag in _SHAPES:
            if settings.get(dest) is not None:
                raise ConfigError(f"{flag} shapes synthetic images; the files of --image-dir are sent as they are: drop {flag}")
        image_files(str(settings["image_dir"]))
    else:
        pillow()


def pillow() -> Any:
    """PIL.Image, or ConfigError naming the extra to install."""
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError(PILLOW_MISSING) from None
    return Image


def image_files(folder: str) -> list[tuple[Path, str]]:
    """The image files of ``folder`` in name order, each with its MIME type from its first bytes;
    ConfigError for a missing or empty folder and for a file that cannot be read or is no image."""
    path = Path(folder).expanduser()
    if not str(folder).strip():
        raise ConfigError("--image-dir is empty; give a folder of image files, or drop --image-dir")
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise ConfigError(f"--image-dir {shown_text(str(folder))} {what}; give a folder of image files")
    try:
        names = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    except OSError as exc:
        raise ConfigError(f"--image-dir {shown_text(str(folder))}: cannot list it ({exc.strerror or exc}); check its permissions") from None
    if not names:
        raise ConfigError(f"--image-dir {shown_text(str(folder))} holds no image files ({', '.join(IMAGE_SUFFIXES)}); "
                          "put images there or give another folder")
    files = []
    for name in names:
        try:
            with name.open("rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise ConfigError(f"--image-dir: cannot read {name} ({exc.strerror or exc}); fix its permissions or remove it") from None
        mime = _mime_of(head)
        if mime is None:
            raise ConfigError(f"--image-dir: {name} is not a PNG, JPEG, GIF or WebP image; remove it or replace it")
        files.append((name, mime))
    return files


def image_dir_sha256(folder: str) -> str | None:
    """The SHA-256 of the image files of ``folder`` (names and bytes, in order); None when they cannot be read."""
    digest = hashlib.sha256()
    try:
        for path, _ in image_files(folder):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    except (ConfigError, OSError):
        return None
    return digest.hexdigest()


def _mime_of(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for signature, mime in _SIGNATURES if head.startswith(signature)), None)


# --------------------------------------------------------------------------- images


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def synthetic_image(width: int, height: int, image_format: str, rng: np.random.Generator) -> bytes:
    """One encoded image of ``width`` x ``height`` (see the module docstring), drawn from ``rng``."""
    Image = pillow()
    grid = rng.integers(0, 256, size=(min(_GRID, height), min(_GRID, width), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(grid, "RGB").resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    noisy = (smooth + rng.integers(-_NOISE, _NOISE + 1, size=smooth.shape, dtype=np.int16)).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    if image_format == "jpeg":
        Image.fromarray(noisy, "RGB").save(out, format="JPEG", quality=90)
    else:
        Image.fromarray(noisy, "RGB").save(out, format="PNG", compress_level=1)
    return out.getvalue()


def request_images(config: Any, count: int) -> list[list[str]]:
    """The data URLs of each of the first ``count`` requests' ``config.images`` images: as many
    requests as MAX_DISTINCT_IMAGES and IMAGE_BYTES_BUDGET allow (at least one); later requests
    reuse these in turn."""
    per_request = config.images
    fit = max(1, min(count, MAX_DISTINCT_IMAGES // per_request))
    made = _file_images(config.image_dir, per_request) if config.image_dir is not None else _synthetic_images(config, per_request)
    out: list[list[str]] = []
    used = 0
    for _ in range(fit):
        urls = made()
        used += sum(map(len, urls))
        if out and used > IMAGE_BYTES_BUDGET:
            break
        out.append(urls)
    return out


def _file_images(image_dir: str, per_request: int) -> Callable[[], list[str]]:
    """The next request's data URLs from the folder's files, in turn (each file read and encoded once)."""
    files = image_files(image_dir)
    encoded: dict[int, str] = {}
    taken = 0

    def next_request() -> list[str]:
        nonlocal taken
        urls = []
        for k in range(taken, taken + per_request):
            k %= len(files)
            if k not in encoded:
                path, mime = files[k]
                try:
                    encoded[k] = data_url(path.read_bytes(), mime)
                except OSError as exc:
                    raise ConfigError(f"--image-dir: cannot read {path} ({exc.strerror or exc}); fix its permissions or remove it") from None
            urls.append(encoded[k])
        taken += per_request
        return urls

    return next_request


def _synthetic_images(config: Any, per_request: int) -> Callable[[], list[str]]:
    """The next request's data URLs of synthetic images, drawn from one seeded stream."""
    sizes = parse_sizes(config.image_size or DEFAULT_IMAGE_SIZE)
    image_format = config.image_format or DEFAULT_IMAGE_FORMAT
    rng = np.random.default_rng((config.seed, _STREAM))

    def next_request() -> list[str]:
        urls = []
        for _ in range(per_request):
            width, height = sizes[int(rng.integers(len(sizes)))] if len(sizes) > 1 else sizes[0]
            urls.append(data_url(synthetic_image(width, height, image_format, rng), _MIME[image_format]))
        return urls

    return next_request


def with_images(prompt: Prompt, urls: Sequence[str]) -> Prompt:
    """``prompt`` as chat messages whose last user message carries its text part and then the images."""
    messages = [dict(m) for m in prompt.chat_messages]
    at = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), len(messages) - 1)
    content = messages[at].get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or ())
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    messages[at]["content"] = parts
    # The server counts an image's tokens; a text-only count would be short of the mark.
    return Prompt(None, tuple(messages), None, prompt.max_tokens)

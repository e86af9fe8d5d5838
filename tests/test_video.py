"""ingest/video.py: frame selection, timing, codecs, stats and failure modes on small synthetic videos."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from ingest.errors import EpisodeError
from ingest.video import Decoder, output_size, probe, stats_sample_indices, transcode
from schemas.pipelines import VideoConfig

STEP = 6  # source frame k has brightness STEP * k
CFG = VideoConfig(width=64, height=48, crf=18)


def make_source(path: Path, n: int, width: int = 64, height: int = 48, fmt: str | None = None) -> Path:
    """A 30 fps H.264 video whose frame k is uniformly grey at brightness STEP * k."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=30, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(n):
            img = np.full((height, width, 3), STEP * k, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, 30)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def decode(path: Path) -> tuple[list[Fraction], list[np.ndarray]]:
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    return [f.pts * f.time_base for f in frames], [f.to_ndarray(format="rgb24") for f in frames]


def source_index(rgb: np.ndarray) -> int:
    return int(round(rgb.mean() / STEP))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("src") / "src.mp4", 40, width=96, height=64)


def test_output_frame_k_is_source_frame_indices_k(source: Path, tmp_path: Path) -> None:
    idx = np.array([0, 0, 1, 5, 5, 5, 9, 20, 21, 39])
    result = transcode(source, idx, tmp_path / "out.mp4", CFG)
    times, rgb = decode(tmp_path / "out.mp4")
    assert result.n_frames == len(idx) == len(rgb)
    assert [source_index(x) for x in rgb] == idx.tolist()
    assert times == [Fraction(k, 10) for k in range(len(idx))]
    assert rgb[0].shape == (42, 64, 3)  # 96x64 fitted inside 64x48, aspect kept (42.7 -> even 42)


def test_info_and_probe_agree(source: Path, tmp_path: Path) -> None:
    result = transcode(source, np.arange(0, 36, 3), tmp_path / "out.mp4", CFG)
    p = probe(tmp_path / "out.mp4")
    assert (p.n_frames, p.width, p.height, p.codec, p.pix_fmt, p.fps) == (12, 64, 42, "h264", "yuv420p", 10.0)
    assert p.first_pts_s == 0.0 and p.cfr_ok and p.max_time_error_s < 1e-9
    assert (result.info.codec, result.info.width, result.info.height, result.info.fps) == ("h264", 64, 42, 10)
    assert (result.source_width, result.source_height) == (96, 64)


@pytest.mark.parametrize(
    ("source_size", "box", "want"),
    [
        ((1920, 1080), (640, 360), (640, 360)),  # EgoDex
        ((256, 256), (640, 360), (256, 256)),  # GR00T demo: square stays square, never scaled up
        ((640, 480), (640, 360), (480, 360)),  # LDA / Unitree in a 16:9 box: 4:3 kept
        ((640, 480), (640, 480), (640, 480)),
        ((1408, 1408), (512, 512), (512, 512)),  # HOT3D Aria RGB
        ((96, 64), (64, 48), (64, 42)),  # 42.67 rounded to even
    ],
)
def test_output_size_fits_the_box_and_keeps_the_aspect(source_size, box, want) -> None:
    w, h = output_size(*source_size, VideoConfig(width=box[0], height=box[1]))
    assert (w, h) == want
    assert w % 2 == 0 and h % 2 == 0 and w <= box[0] and h <= box[1]
    assert abs(w / h - source_size[0] / source_size[1]) <= 2 / min(w, h)


def make_circle_video(path: Path, width: int, height: int, radius: float) -> Path:
    """3 frames of a white disc of `radius` px centred in a black `width` x `height` image."""
    y, x = np.mgrid[0:height, 0:width]
    disc = (x - (width - 1) / 2) ** 2 + (y - (height - 1) / 2) ** 2 <= radius**2
    img = np.where(disc[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        for k in range(3):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, 30)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _disc_extent(rgb: np.ndarray) -> tuple[float, float]:
    """Width and height in pixels of the bright disc (sub-pixel: column / row sums of brightness)."""
    lum = rgb.mean(axis=2) / 255.0
    return float(lum.sum(axis=1).max()), float(lum.sum(axis=0).max())


@pytest.mark.parametrize(
    ("size", "box"), [((640, 480), (640, 360)), ((256, 256), (640, 360)), ((320, 180), (64, 64))]
)
def test_a_circle_stays_a_circle(tmp_path: Path, size: tuple[int, int], box: tuple[int, int]) -> None:
    """Probed with PyAV: the published video keeps the source's aspect and the disc is not stretched."""
    radius = min(size) * 0.35
    src = make_circle_video(tmp_path / "src.mp4", *size, radius)
    cfg = VideoConfig(width=box[0], height=box[1], crf=0)
    result = transcode(src, np.array([0, 1, 2]), tmp_path / "out.mp4", cfg)
    p = probe(tmp_path / "out.mp4")
    assert (p.width, p.height) == (result.info.width, result.info.height) == output_size(*size, cfg)
    _, rgb = decode(tmp_path / "out.mp4")
    dx, dy = _disc_extent(rgb[1])
    scale = p.width / size[0]
    assert dx == pytest.approx(2 * radius * scale, rel=0.06)
    assert dx / dy == pytest.approx(1.0, abs=0.04)  # stretched 4:3 -> 16:9 would be 1.33


def test_pad_fits_the_picture_into_the_box_between_black_bars(tmp_path: Path) -> None:
    """`fit: pad` (HOT3D's two headsets in one dataset): a 5:4 source in a square box is published at the
    box's size, the picture scaled to the full width, centred between black bars, the disc still round;
    a camera model of that source lands its principal point on the picture's centre."""
    from schemas.camera import CameraModel

    radius = 20.0
    src = make_circle_video(tmp_path / "src.mp4", 80, 64, radius)
    cfg = VideoConfig(width=128, height=128, crf=0, fit="pad")
    result = transcode(src, np.array([0, 1, 2]), tmp_path / "out.mp4", cfg)
    assert (probe(tmp_path / "out.mp4").width, result.info.height) == (128, 128)
    assert result.picture == (
        0,
        12,
        128,
        102,
    )  # 64 * 1.6 = 102.4 -> 102 rows, (128 - 102) / 2 = 13 -> even 12
    _, rgb = decode(tmp_path / "out.mp4")
    lum = rgb[1].mean(axis=2)
    assert lum[:10].max() < 20 and lum[-14:].max() < 20  # the bars are black
    dx, dy = _disc_extent(rgb[1])
    assert dx == pytest.approx(2 * radius * 1.6, rel=0.06) and dx / dy == pytest.approx(1.0, abs=0.04)
    centre = np.argwhere(lum > 128).mean(axis=0)  # (row, column) of the disc
    cam = CameraModel(camera="observation.images.ego", width=80, height=64, fx=50.0, fy=50.0, cx=39.5,
                      cy=31.5, provenance="test")  # fmt: skip
    x, y, w, h = result.picture
    out = cam.scaled(w, h).shifted(x, y, 128, 128)
    assert (out.width, out.height) == (128, 128)
    np.testing.assert_allclose([out.cy, out.cx], centre, atol=0.6)
    assert out.fx == pytest.approx(50.0 * 1.6) and out.fy == pytest.approx(50.0 * 102 / 64)


def test_av1(source: Path, tmp_path: Path) -> None:
    cfg = VideoConfig(width=64, height=64, codec="av1", crf=20)
    idx = np.array([2, 4, 4, 30])
    result = transcode(source, idx, tmp_path / "out.mp4", cfg)
    times, rgb = decode(tmp_path / "out.mp4")
    assert [source_index(x) for x in rgb] == idx.tolist()
    assert times == [Fraction(k, 10) for k in range(4)]
    assert probe(tmp_path / "out.mp4").codec == result.info.codec == "av1"


def test_stats_match_numpy_on_decoded_output(source: Path, tmp_path: Path) -> None:
    idx = np.arange(0, 40, 2)
    stats = transcode(source, idx, tmp_path / "out.mp4", CFG).stats
    _, rgb = decode(tmp_path / "out.mp4")
    px = np.stack(rgb).reshape(-1, 3).astype(np.float64) / 255
    assert stats.count == [20]
    assert np.asarray(stats.mean).shape == (3, 1, 1)
    np.testing.assert_allclose(np.asarray(stats.mean).ravel(), px.mean(0), atol=0.01)
    np.testing.assert_allclose(np.asarray(stats.std).ravel(), px.std(0), atol=0.01)
    np.testing.assert_allclose(np.asarray(stats.min).ravel(), px.min(0), atol=0.02)
    np.testing.assert_allclose(np.asarray(stats.max).ravel(), px.max(0), atol=0.02)


def test_stats_sample_indices() -> None:
    assert stats_sample_indices(30).tolist() == list(range(30))
    big = stats_sample_indices(1000)
    assert len(big) == int(1000**0.75) and big[0] == 0 and big[-1] == 999
    assert (np.diff(big) > 0).all()


def test_decoder_stops_at_last_needed_frame(source: Path) -> None:
    decoder = Decoder(source)
    got = [i for i, _ in decoder.needed(np.array([1, 1, 3, 7]))]
    assert got == [1, 3, 7]
    assert decoder.n_decoded == 8


def test_short_source_raises_and_leaves_no_file(source: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out.mp4"
    with pytest.raises(EpisodeError) as err:
        transcode(source, np.arange(30, 45), dst, CFG)
    assert err.value.path == str(source) and err.value.stage == "video"
    assert "source has 40 frames, needed 45" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_truncated_stream_raises(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src.ts", 40, fmt="mpegts")
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    dst = tmp_path / "out" / "x.mp4"
    with pytest.raises(EpisodeError) as err:
        transcode(src, np.arange(40), dst, CFG)
    assert str(src) in str(err.value) and "needed 40" in str(err.value)
    assert not dst.exists() and list(dst.parent.iterdir()) == []


def test_unreadable_source_raises(tmp_path: Path) -> None:
    src = tmp_path / "junk.mp4"
    src.write_bytes(b"not a video" * 50)
    with pytest.raises(EpisodeError) as err:
        transcode(src, np.arange(3), tmp_path / "out.mp4", CFG)
    assert err.value.path == str(src) and err.value.field == "video"
    assert not (tmp_path / "out.mp4").exists()


def test_decreasing_indices_rejected(source: Path, tmp_path: Path) -> None:
    with pytest.raises(EpisodeError, match="non-decreasing"):
        transcode(source, np.array([3, 2]), tmp_path / "out.mp4", CFG)


def make_long_source(path: Path, n: int, gop: int) -> Path:
    """A 30 fps H.264 video of `n` frames, keyframe every `gop`; frame k's left half is grey 16 * (k // 16)
    and its right half grey 16 * (k % 16), so k can be read back from any decoded frame."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"crf": "10", "g": str(gop), "bf": "2"})
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        for k in range(n):
            img = np.zeros((32, 64, 3), dtype=np.uint8)
            img[:, :32], img[:, 32:] = 16 * (k // 16), 16 * (k % 16)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, 30)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def long_index(frame: av.VideoFrame) -> int:
    rgb = frame.to_ndarray(format="rgb24").astype(float)
    return 16 * round(rgb[:, 4:28].mean() / 16) + round(rgb[:, 36:60].mean() / 16)


def test_decoder_seeks_to_the_keyframe_before_a_late_window(tmp_path: Path) -> None:
    """A cut episode late in a long video: the same frames as a decode from the start, far less work."""
    src = make_long_source(tmp_path / "long.mp4", 240, gop=30)
    wanted = np.array([200, 200, 203, 206, 209, 230])
    decoder = Decoder(src)
    got = [(i, long_index(f)) for i, f in decoder.needed(wanted)]
    assert got == [(i, i) for i in (200, 203, 206, 209, 230)]
    assert decoder.n_work <= 231 - 180  # from the keyframe at 180, not from frame 0
    assert decoder.n_decoded == 231


def test_decoder_seek_reports_a_short_source(tmp_path: Path) -> None:
    src = make_long_source(tmp_path / "long.mp4", 120, gop=30)
    with pytest.raises(EpisodeError, match="source has 120 frames, needed 131"):
        transcode(src, np.arange(100, 131), tmp_path / "out.mp4", CFG)

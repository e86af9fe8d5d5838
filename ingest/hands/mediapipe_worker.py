"""The MediaPipe Hands worker: runs in the estimator's own interpreter (tools/hands_env.sh), never in ours.

It imports only the standard library, numpy and mediapipe, so it is started as a script
(`<hands venv>/bin/python mediapipe_worker.py --max-hands 2 ...`). The protocol on its stdin / stdout
(ingest/hands/backend.py is the other end) is frames of bytes, each an 8-byte little-endian length and a
payload; nothing is pickled:

- request: 1 byte kind, then for kind `F` (a frame) three uint32 (height, width, 3) and the RGB uint8
  pixels row-major; kind `R` starts a new video (tracking state dropped), optionally followed by four
  float64 (fx, fy, cx, cy: the video's intrinsics, which turn on camera-rotation estimation); kind `Q`
  quits.
- reply to `F`: UTF-8 JSON `{"hands": [{"image": [[x, y, z] * 21], "world": [[x, y, z] * 21],
  "label": "Left"|"Right", "score": s}, ...], "camera": null | {"R": 3x3, "inliers": n, "tracks": m}}`
  with image x, y normalised to the frame (MediaPipe's output, unchanged) and `R` the rotation taking
  points from the previous frame's camera axes to this frame's (`x_now = R x_prev + t`, t unknown);
  reply to `R`: `{"ok": true}`.

Camera rotation: corners of the previous frame outside both frames' hands (boxes grown by a quarter) are
tracked into this frame (pyramidal Lucas-Kanade, checked backwards), the essential matrix is fitted with
the intrinsics (RANSAC, 1 px) and decomposed (`recoverPose`); the rotation is then refitted on the inlier
tracks' bearing vectors (Kabsch), which stays well defined when the head barely translates between
frames (a pure rotation, where the essential matrix is degenerate). Fewer than MIN_TRACKS inliers: null.
"""

import argparse
import json
import struct
import sys

import numpy as np

MIN_TRACKS = 20
HAND_MARGIN = 0.25


def read_exact(stream, n):
    buf = stream.read(n)
    if buf is None or len(buf) != n:
        raise EOFError("the estimator's input closed")
    return buf


def read_message(stream):
    (n,) = struct.unpack("<Q", read_exact(stream, 8))
    return read_exact(stream, n)


def write_message(stream, payload):
    stream.write(struct.pack("<Q", len(payload)))
    stream.write(payload)
    stream.flush()


def hands_json(result):
    out = []
    if result.multi_hand_landmarks:
        found = (result.multi_hand_landmarks, result.multi_hand_world_landmarks, result.multi_handedness)
        for image, world, label in zip(*found, strict=True):
            cls = label.classification[0]
            out.append({
                "image": [[p.x, p.y, p.z] for p in image.landmark],
                "world": [[p.x, p.y, p.z] for p in world.landmark],
                "label": cls.label,
                "score": cls.score,
            })  # fmt: skip
    return out


def background_mask(shape, hands):
    """uint8 mask, 0 over every hand's landmark box (grown by HAND_MARGIN), 255 elsewhere."""
    h, w = shape
    mask = np.full((h, w), 255, np.uint8)
    for hand in hands:
        pts = np.asarray(hand["image"])[:, :2] * (w, h)
        lo, hi = pts.min(0), pts.max(0)
        pad = (hi - lo) * HAND_MARGIN + 8
        x0, y0 = np.maximum(lo - pad, 0).astype(int)
        x1, y1 = np.minimum(hi + pad, (w, h)).astype(int)
        mask[y0:y1, x0:x1] = 0
    return mask


def bearings(K, pts):
    rays = np.column_stack(
        [(pts[:, 0] - K[0, 2]) / K[0, 0], (pts[:, 1] - K[1, 2]) / K[1, 1], np.ones(len(pts))]
    )
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def kabsch(a, b):
    """The rotation R minimising |R a_i - b_i| (rows of unit vectors)."""
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    return vt.T @ np.diag([1.0, 1.0, d]) @ u.T


def camera_rotation(cv2, K, prev, gray, mask):
    """(R, inliers, tracks) from the previous grey frame to this one, or None."""
    p0 = cv2.goodFeaturesToTrack(prev, maxCorners=400, qualityLevel=0.01, minDistance=7, mask=mask)
    if p0 is None or len(p0) < MIN_TRACKS:
        return None
    p1, ok, _ = cv2.calcOpticalFlowPyrLK(prev, gray, p0, None, winSize=(21, 21), maxLevel=3)
    back, ok2, _ = cv2.calcOpticalFlowPyrLK(gray, prev, p1, None, winSize=(21, 21), maxLevel=3)
    good = (ok[:, 0] == 1) & (ok2[:, 0] == 1) & (np.linalg.norm((back - p0)[:, 0], axis=1) < 1.0)
    a, b = p0[good, 0].astype(np.float64), p1[good, 0].astype(np.float64)
    if len(a) < MIN_TRACKS:
        return None
    E, inl = cv2.findEssentialMat(a, b, K, method=cv2.RANSAC, prob=0.999, threshold=1.0)
    if E is None or E.shape != (3, 3) or inl is None or int(inl.sum()) < MIN_TRACKS:
        return None
    inl = inl[:, 0].astype(bool)
    return kabsch(bearings(K, a[inl]), bearings(K, b[inl])), int(inl.sum()), len(a)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-hands", type=int, default=2)
    ap.add_argument("--model-complexity", type=int, default=1)
    ap.add_argument("--min-detection-confidence", type=float, default=0.5)
    ap.add_argument("--min-tracking-confidence", type=float, default=0.5)
    args = ap.parse_args()
    import cv2
    import mediapipe as mp

    def make():
        return mp.solutions.hands.Hands(
            static_image_mode=False,
            max_num_hands=args.max_hands,
            model_complexity=args.model_complexity,
            min_detection_confidence=args.min_detection_confidence,
            min_tracking_confidence=args.min_tracking_confidence,
        )

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    hands, K, prev = make(), None, None
    while True:
        msg = read_message(stdin)
        kind = msg[:1]
        if kind == b"Q":
            break
        if kind == b"R":
            hands.close()
            hands, prev = make(), None
            K = None
            if len(msg) == 33:
                fx, fy, cx, cy = struct.unpack("<4d", msg[1:33])
                K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
            write_message(stdout, b'{"ok": true}')
            continue
        h, w, c = struct.unpack("<III", msg[1:13])
        frame = np.frombuffer(msg, dtype=np.uint8, offset=13).reshape(h, w, c)
        found = hands_json(hands.process(frame))
        reply = {"hands": found, "camera": None}
        if K is not None:
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            mask = background_mask((h, w), found + (prev[1] if prev else []))
            if prev is not None:
                rot = camera_rotation(cv2, K, prev[0], gray, mask)
                if rot is not None:
                    reply["camera"] = {"R": rot[0].tolist(), "inliers": rot[1], "tracks": rot[2]}
            prev = (gray, found)
        write_message(stdout, json.dumps(reply).encode())
    hands.close()


if __name__ == "__main__":
    main()

"""The MediaPipe Hands worker: runs in the estimator's own interpreter (tools/hands_env.sh), never in ours.

It imports only the standard library, numpy and mediapipe, so it is started as a script
(`<hands venv>/bin/python mediapipe_worker.py --max-hands 2 ...`). The protocol on its stdin / stdout
(ingest/hands/backend.py is the other end) is frames of bytes, each an 8-byte little-endian length and a
payload; nothing is pickled:

- request: 1 byte kind, then for kind `F` (a frame) three uint32 (height, width, 3) and the RGB uint8
  pixels row-major; kind `R` starts a new video (tracking state dropped); kind `Q` quits.
- reply to `F`: UTF-8 JSON `{"hands": [{"image": [[x, y, z] * 21], "world": [[x, y, z] * 21],
  "label": "Left"|"Right", "score": s}, ...]}` with image x, y normalised to the frame (MediaPipe's
  output, unchanged); reply to `R`: `{"ok": true}`.
"""

import argparse
import json
import struct
import sys

import numpy as np


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
    return {"hands": out}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-hands", type=int, default=2)
    ap.add_argument("--model-complexity", type=int, default=1)
    ap.add_argument("--min-detection-confidence", type=float, default=0.5)
    ap.add_argument("--min-tracking-confidence", type=float, default=0.5)
    args = ap.parse_args()
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
    hands = make()
    while True:
        msg = read_message(stdin)
        kind = msg[:1]
        if kind == b"Q":
            break
        if kind == b"R":
            hands.close()
            hands = make()
            write_message(stdout, b'{"ok": true}')
            continue
        h, w, c = struct.unpack("<III", msg[1:13])
        frame = np.frombuffer(msg, dtype=np.uint8, offset=13).reshape(h, w, c)
        write_message(stdout, json.dumps(hands_json(hands.process(frame))).encode())
    hands.close()


if __name__ == "__main__":
    main()

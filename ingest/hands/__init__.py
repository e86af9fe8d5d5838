"""Hands estimated from action-free video (docs/HANDS.md): a backend interface (`backend.py`), the
MediaPipe Hands backend run in its own interpreter (`mediapipe_worker.py`), landmarks -> the contract's
state, action and masks (`lift.py`), and `ingest hands PATH` (`job.py`)."""

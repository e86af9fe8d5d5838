"""The toolkit sources call to build a canonical episode: geometry and rotation conventions, resampling
to 10 Hz, hand and robot-arm vectors, MANO, the canonical end-effector frame, camera projection, forward
kinematics, instruction text. Plain functions, no pipeline step (those are in ingest/stages/)."""

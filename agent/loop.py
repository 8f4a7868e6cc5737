"""The frame loop: pull frames from the camera until the recording ends or a stop is asked.

A live camera that fails (opening or reading) is reported and retried with capped backoff while everything else
keeps running; a recording that fails ends the run with its error. Errors of the agent's own work on a frame are
never mistaken for camera faults. What happens to each frame is the FrameStep's job (agent/frame_step.py).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from agent.supervisor import FrameMark
from common.backoff import Backoff
from common.errors import AgentError, HardwareError, SourceError
from drivers.camera.base import Camera, Frame

log = logging.getLogger(__name__)

CAMERA_RETRY_MAX_S = 60.0


class _CameraLost(AgentError):
    """The camera failed while opening or delivering frames (not while the agent processed a frame)."""

    def __init__(self, error: AgentError) -> None:
        super().__init__(str(error))
        self.error = error


class FrameLoop:
    def __init__(self, camera: Camera, stop: threading.Event, lock: threading.RLock, mark: FrameMark, *,
                 opened: Callable[[], None], failed: Callable[[str], None], process: Callable[[Frame], None],
                 finish: Callable[[], None]) -> None:
        """opened: the camera opened (its real rate is known); failed: a live camera failed, with why;
        process: one frame, called under the lock; finish: the run is over (in a finally)."""
        self.camera, self.stop, self.lock, self.mark = camera, stop, lock, mark
        self.opened, self.failed, self.process, self.finish = opened, failed, process, finish
        self.retry = Backoff(1.0, CAMERA_RETRY_MAX_S)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    self._stream()
                    if self.stop.is_set() or not self.camera.live:
                        return  # asked to stop, or the recording ended
                    raise _CameraLost(SourceError("the camera stopped delivering frames"))
                except _CameraLost as lost:
                    if not self.camera.live:
                        raise lost.error from None
                    log.error("camera: %s", lost)
                    self.failed(str(lost))
                    self.stop.wait(self.retry.next())
        finally:
            self.finish()

    def _stream(self) -> None:
        try:
            self.camera.open()
        except (SourceError, HardwareError) as exc:
            raise _CameraLost(exc) from None
        self.opened()
        self.mark.streaming = True
        try:
            frames = iter(self.camera.frames())
            while not self.stop.is_set():
                try:
                    frame = next(frames)
                except StopIteration:
                    return
                except (SourceError, HardwareError) as exc:
                    raise _CameraLost(exc) from None
                with self.lock:
                    self.process(frame)
                # let the frame go before the next is captured, or two full-size images are alive at once (2.6 MiB
                # at 720p, every frame: it adds to the peak RSS, issue 12)
                del frame
                self.retry.reset()
        finally:
            self.mark.streaming = False
            self.camera.close()

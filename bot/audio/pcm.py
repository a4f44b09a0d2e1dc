"""Raw PCM between PulseAudio and Python through long-lived `parec`/`pacat` children.

Format everywhere: s16le, 48 kHz, mono, 20 ms frames. PulseAudio downmixes the stereo meeting sink for us.
Both children run with an explicit `--latency-msec`: without it `parec` buffers and loses data. `parec`
writes into a loopback TCP socket rather than a pipe, so that we are woken once per frame, not once per
write (see `_CaptureStream`); `pacat` reads a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import time
from collections.abc import AsyncIterator

from bot.audio.frames import BYTES_PER_FRAME, SAMPLE_RATE, FrameQueue, PcmFrame
from bot.system.processes import stop_process

log = logging.getLogger(__name__)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: run scripts/setup (Debian package pulseaudio-utils)")
    return path


async def _stop(proc: asyncio.subprocess.Process | None) -> None:
    await stop_process(proc, timeout_s=3)


def _loopback_stream_pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on 127.0.0.1: (our end, the child's end). The listener lives only until the
    one connection we make is accepted, and a connection from anyone else is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        theirs = socket.create_connection(listener.getsockname(), timeout=5)
        ours, peer = listener.accept()
    if peer != theirs.getsockname():
        ours.close()
        theirs.close()
        raise RuntimeError("another process connected to the capture socket first")
    theirs.settimeout(None)  # parec writes blocking
    theirs.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # never hold back a short write
    return ours, theirs


class _CaptureStream(asyncio.Protocol):
    """`parec`'s output cut into 20 ms frames, waking the event loop once per frame.

    parec writes whenever PulseAudio hands it data, and PulseAudio's null sink renders in blocks set by the
    latency its players ask for: measured ~165 writes a second for 50 frames with a player at 20 ms (the
    bench's pacat; the browser's output sets it on a call). Over a pipe each write wakes us. parec's stdout
    is therefore a loopback TCP socket whose receive low-water mark (`SO_RCVLOWAT`, which Linux honours
    for TCP in epoll, not for pipes or Unix sockets) is kept at what the next frame still lacks: the kernel
    wakes us exactly when a frame is complete, with no added delay.
    """

    def __init__(self, capture: PcmCapture, sock: socket.socket) -> None:
        self._capture = capture
        self._sock = sock
        self._buffer = bytearray()
        self._lowat = BYTES_PER_FRAME

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if len(buffer) >= BYTES_PER_FRAME:
            now = time.monotonic()
            capture = self._capture
            whole = len(buffer) - len(buffer) % BYTES_PER_FRAME
            for start in range(0, whole, BYTES_PER_FRAME):
                capture.frames_read += 1
                capture.queue.put(PcmFrame(bytes(buffer[start : start + BYTES_PER_FRAME]), now))
            del buffer[:whole]
        lowat = BYTES_PER_FRAME - len(buffer)
        if lowat != self._lowat:
            self._lowat = lowat
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)

    def eof_received(self) -> bool:
        self._capture._parec_gone()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._capture._parec_gone()


class _CaptureProcess(asyncio.SubprocessProtocol):
    def __init__(self, capture: PcmCapture) -> None:
        self._capture = capture
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        self._capture._parec_gone()
        self.exited.set()


class PcmCapture:
    """Reads a PulseAudio source (e.g. `meeting_out.monitor`) into a `FrameQueue` of 20 ms frames.

    A frame source (`bot.audio.frames.FrameSource`): iterating it takes frames from `queue`, and ends
    when `parec` has exited. A frame's time is when its last byte was read.
    """

    def __init__(self, server: str, source: str, queue_frames: int = 50, latency_ms: int = 10) -> None:
        self.server = server
        self.source = source
        self.queue = FrameQueue(queue_frames)
        self.frames_read = 0
        self._latency_ms = latency_ms
        self._process: asyncio.SubprocessTransport | None = None
        self._exit: _CaptureProcess | None = None
        self._stream: asyncio.Transport | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._process.get_pid() if self._process else None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = _loopback_stream_pair()
        try:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, BYTES_PER_FRAME)
            self._stream, _ = await loop.connect_accepted_socket(lambda: _CaptureStream(self, ours), ours)
            self._process, self._exit = await loop.subprocess_exec(
                lambda: _CaptureProcess(self),
                _tool("parec"),
                f"--server={self.server}",
                f"--device={self.source}",
                "--raw",
                "--format=s16le",
                f"--rate={SAMPLE_RATE}",
                "--channels=1",
                f"--latency-msec={self._latency_ms}",
                "--client-name=bot-capture",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=theirs.fileno(),
                stderr=asyncio.subprocess.DEVNULL,
                # Own process group: a terminal's Ctrl+C goes to us, and we stop this child in order.
                start_new_session=True,
            )
        except BaseException:
            if self._stream is not None:
                self._stream.close()  # (and the socket with it)
            else:
                ours.close()
            raise
        finally:
            theirs.close()  # parec has its own copy

    def __aiter__(self) -> AsyncIterator[PcmFrame]:
        return self.queue.__aiter__()

    def _parec_gone(self) -> None:
        """The source ends once its queue is drained (called by the protocols)."""
        if not self.queue.ended:
            if not self._closed:
                status = self._process.get_returncode() if self._process is not None else None
                log.warning("capture of %s stopped: parec exited (status %s)", self.source, status)
            self.queue.end()

    def discard_backlog(self) -> int:
        """Drop frames read so far, so a consumer that starts late does not get stale audio."""
        return self.queue.clear()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        process, exit_ = self._process, self._exit
        try:
            if process is not None and exit_ is not None and process.get_returncode() is None:
                process.terminate()
                try:
                    await asyncio.wait_for(exit_.exited.wait(), 3)
                except TimeoutError:
                    process.kill()
                    await exit_.exited.wait()
        except ProcessLookupError:
            pass
        finally:
            if process is not None:
                process.close()
            if self._stream is not None:
                self._stream.close()
            self.queue.end()


class PcmPlayback:
    """Writes 20 ms frames into a PulseAudio sink (e.g. `agent_out`) through `pacat`."""

    def __init__(self, server: str, sink: str, latency_ms: int = 20) -> None:
        self.server = server
        self.sink = sink
        self.frames_written = 0
        self._latency_ms = latency_ms
        self._proc: asyncio.subprocess.Process | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            _tool("pacat"),
            "--playback",
            f"--server={self.server}",
            f"--device={self.sink}",
            "--raw",
            "--format=s16le",
            f"--rate={SAMPLE_RATE}",
            "--channels=1",
            f"--latency-msec={self._latency_ms}",
            "--client-name=bot-playback",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            # Own process group: a terminal's Ctrl+C goes to us, and we stop this child in order.
            start_new_session=True,
        )

    async def write(self, pcm: bytes) -> None:
        """Queue PCM for playback; waits when PulseAudio's buffer is full (real-time pacing)."""
        if self._proc is None or self._proc.stdin is None or self._closed:
            raise RuntimeError("playback is not running")
        self._proc.stdin.write(pcm)
        await self._proc.stdin.drain()
        self.frames_written += len(pcm) // BYTES_PER_FRAME

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._proc is not None and self._proc.stdin is not None:
            with contextlib.suppress(Exception):
                self._proc.stdin.close()
        await _stop(self._proc)

"""The run's training batches in sequence, each rendered one step ahead in a background thread.

The random parameters of every batch are drawn in the caller's thread in order; only the rendering overlaps
the net's compute (on CUDA on a side stream), so the batches are the same with prefetching or without.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch

from unetflow.train.augment import TileBatch, TileParams, TileSampler

__all__ = ["BatchStream"]


class BatchStream:
    """The run's training batches in order, each rendered one step ahead in a background thread.

    The random parameters of every batch are drawn here in the caller's thread, in sequence, from the
    sampler's generator (`TileSampler.draw`); only the rendering (`TileSampler.render`: grid sampling and
    gray values, no random numbers) runs in the background while the net trains on the previous batch.
    Torch ops release the GIL, so on the CPU the two overlap where compute leaves cores idle; on CUDA the
    rendering goes to a side stream. `resume_state` is the generator state to checkpoint: the state before
    the draw of the batch rendered ahead, so a resumed run draws that batch again and none is skipped.
    With `prefetch=False` each batch is drawn and rendered on demand (the same batches, in the same order).
    """

    def __init__(self, sampler: TileSampler, generator: torch.Generator, *, prefetch: bool = True) -> None:
        self.sampler = sampler
        self.generator = generator
        self._state = generator.get_state()
        self._ahead: Future[tuple[TileBatch, torch.cuda.Event | None]] | None = None
        self._executor = None
        if prefetch:  # the render thread uses as many torch threads as the caller (same numerics)
            self._executor = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix="unetflow-augment",
                initializer=torch.set_num_threads,
                initargs=(torch.get_num_threads(),),
            )
        self._stream = None
        if prefetch and sampler.device.type == "cuda":
            self._stream = torch.cuda.Stream(sampler.device)
            self._stream.wait_stream(torch.cuda.current_stream(sampler.device))

    def resume_state(self) -> torch.Tensor:
        """The sampler generator's state from which a resumed run draws the next batch not yet returned."""
        return self._state

    def next(self, *, ahead: bool = True) -> TileBatch:
        """The next batch in sequence; with prefetching (and `ahead`), start rendering the one after it."""
        if self._executor is None:
            batch = self.sampler.render(self.sampler.draw(self.generator))
        else:
            batch = self._collect(self._ahead if self._ahead is not None else self._submit())
            self._ahead = None
        self._state = self.generator.get_state()
        if self._executor is not None and ahead:
            self._ahead = self._submit()
        return batch

    def wait(self) -> None:
        """Block until the batch being rendered ahead, if any, is ready (benchmarks time whole steps so)."""
        if self._ahead is not None:
            _, event = self._ahead.result()
            if event is not None:
                event.synchronize()

    def close(self) -> None:
        """Wait for the batch being rendered ahead (it is discarded) and stop the background thread."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor, self._ahead = None, None

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _submit(self) -> Future[tuple[TileBatch, torch.cuda.Event | None]]:
        if self._executor is None:
            raise RuntimeError("the batch stream is closed")
        return self._executor.submit(self._render, self.sampler.draw(self.generator))

    def _render(self, params: TileParams) -> tuple[TileBatch, torch.cuda.Event | None]:
        with torch.no_grad():
            if self._stream is None:
                return self.sampler.render(params), None
            with torch.cuda.stream(self._stream):
                batch = self.sampler.render(params)
                event = torch.cuda.Event()
                event.record(self._stream)
            return batch, event

    def _collect(self, future: Future[tuple[TileBatch, torch.cuda.Event | None]]) -> TileBatch:
        batch, event = future.result()
        if event is not None:
            current = torch.cuda.current_stream(self.sampler.device)
            current.wait_event(event)
            for tensor in (batch.raw, batch.labels, batch.weights):
                tensor.record_stream(current)
        return batch

"""Two places where ``SafeCheckpointHook`` reaches into mmengine's training and validation loops.

For: mmengine 0.10.7, whose loops give a hook no way to act when a validation fails (``ValLoop.run`` has no
exception hook) and whose ``IterBasedTrainLoop`` resumes by drawing the batches already trained from the dataloader
(running their random augmentation) after every ``before_train`` hook has run, so that random state restored in a
hook is consumed again before the first new batch.
Remove when: mmengine calls a hook when a loop raises and restores the random state itself on resume (or skips
batches without drawing them); ``tests/test_engine/test_rng_state.py`` and ``tests/test_tools/test_resume_exact.py``
show both behaviours.
"""

from typing import Callable


def call_on_failure(loop, callback: Callable[[], None], tag: str) -> None:
    """Make ``loop.run`` call ``callback()`` when it raises (any ``BaseException``, Ctrl-C included), then re-raise.

    Idempotent per ``tag``: a loop already wrapped for ``tag`` is left as it is.
    """
    run = loop.run
    if getattr(run, tag, False):
        return

    def guarded_run(*args, **kwargs):
        try:
            return run(*args, **kwargs)
        except BaseException:
            callback()
            raise

    setattr(guarded_run, tag, True)
    loop.run = guarded_run


class RestoreAfterSkip:
    """Wraps ``IterBasedTrainLoop.dataloader_iterator`` of a resumed run: the loop first draws the ``skip``
    batches already trained (running their random augmentation), then this calls ``restore()``, so that the first
    new batch is drawn as in the uninterrupted run."""

    def __init__(self, iterator, skip: int, restore: Callable[[], None]) -> None:
        self.iterator, self.left, self.restore = iterator, skip, restore

    def __iter__(self):
        return self

    def __next__(self):
        data = next(self.iterator)
        if self.left > 0:
            self.left -= 1
            if self.left == 0:
                self.restore()
        return data

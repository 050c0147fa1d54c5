"""Imported by the fork server the ``dshift`` program's local workers are forked from
(:func:`dshift.workers.start_worker_server`): it sets the workers' malloc and loads the
compiled kernels once, so every worker starts with them instead of loading them itself."""

import contextlib

with contextlib.suppress(Exception):  # a head start only: a worker loads whatever it lacks
    from dshift.workers import warm_up, worker_malloc

    worker_malloc()
    warm_up()

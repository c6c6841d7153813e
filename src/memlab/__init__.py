"""memlab: measure when a model memorizes and what that costs it on new or perturbed data."""

__version__ = "0.1.0"


def _quiet_ctrl_c_in_rule_jobs() -> None:
    """In a rule job (a script Snakemake runs: its ``__main__`` holds the ``snakemake`` object),
    Ctrl-C ends the job at once and silently, as it ends a shell command, instead of printing a
    KeyboardInterrupt traceback per running job. Snakemake reports the job as interrupted, keeps
    every finished output and reruns this one next time. Done here, on the first memlab import,
    so that it also covers the seconds a job spends importing torch."""
    import contextlib
    import signal
    import sys

    main = sys.modules.get("__main__")
    if type(getattr(main, "snakemake", None)).__name__ != "Snakemake":
        return
    with contextlib.suppress(ValueError):  # not the main thread: not a job's script
        signal.signal(signal.SIGINT, signal.SIG_DFL)


_quiet_ctrl_c_in_rule_jobs()

"""LocalEnvironment: runs the job inside this Python process, every parallel
instance of every operator on its own thread of the C++ engine."""

from sage import _native
from sage.kernel.api.base_environment import BaseEnvironment


class LocalEnvironment(BaseEnvironment):
    """``LocalEnvironment("my_job")``: build the dataflow from its sources, then
    ``submit(autostop=True)`` or ``execute()``."""

    def __init__(self, name="localenvironment", config=None, platform="local"):
        if platform != "local":
            raise ValueError(f"LocalEnvironment: platform {platform!r} is not supported; 'local'")
        super().__init__(name, config, _native.Environment(name, dict(config or {})))

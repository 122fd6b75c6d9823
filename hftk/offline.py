"""Going offline after the first failed Hub request, instead of half a minute of retries.

With the Hub unreachable and `HF_HUB_OFFLINE` unset, huggingface_hub retries each request five
times with back-off (about 40 s for one missing model id) before transformers or datasets give
up. `hftk` installs, through huggingface_hub's public `set_client_factory`, an HTTP transport
that turns the first connection failure into offline mode for the rest of the process: it says
so in one line, sets `HF_HUB_OFFLINE` (huggingface_hub's, datasets' and the environment's), and
raises huggingface_hub's own `OfflineModeIsEnabled`, which its callers already treat as "use the
local cache". Set `HF_HUB_OFFLINE=1` to skip even the first attempt.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

NOTICE = (
    "note: the Hugging Face Hub is unreachable ({error}); continuing offline with local files and the cache "
    "(set HF_HUB_OFFLINE=1 to skip this attempt)"
)


def go_offline() -> None:
    """Offline mode for the rest of this process, in every library that reads it."""
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        datasets_config.HF_HUB_OFFLINE = True
        datasets_config.HF_DATASETS_OFFLINE = True


def install(echo: Callable[[str], None] | None = None) -> bool:
    """Use the offline-on-first-failure transport for huggingface_hub (unless HF_HUB_OFFLINE is set); True if installed."""
    if os.environ.get("HF_HUB_OFFLINE") is not None:
        return False
    import httpx2  # huggingface_hub 2.x's HTTP client
    from huggingface_hub import set_client_factory
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils import _http

    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))

    class OfflineOnFirstFailure(httpx2.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx2.HTTPTransport()

        def handle_request(self, request):
            try:
                return self.inner.handle_request(request)
            except (httpx2.ConnectError, httpx2.ConnectTimeout) as error:
                say(NOTICE.format(error=str(error) or type(error).__name__))
                go_offline()
                raise OfflineModeIsEnabled(f"Cannot reach {request.url}: the Hub is unreachable, offline mode is now on") from error

        def close(self) -> None:
            self.inner.close()

    # The library's own request hook (it refuses requests once offline, and tags them); private,
    # so looked up defensively: without it the transport still works, minus request ids.
    hook = getattr(_http, "hf_request_event_hook", None)

    def client_factory() -> httpx2.Client:
        return httpx2.Client(
            transport=OfflineOnFirstFailure(), event_hooks={"request": [hook] if hook else []}, follow_redirects=True, timeout=None
        )

    set_client_factory(client_factory)
    return True

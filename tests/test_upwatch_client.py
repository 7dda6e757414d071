"""upwatch_client refuses a base URL it would not post to: urllib would also open file: and ftp: URLs."""

import pytest

from upwatch_client import Client


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/api/v1", "127.0.0.1:8080/api/v1"])
def test_a_base_url_other_than_http_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="must be an http:// or https:// URL"):
        Client(url, "key")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/api/v1", "https://127.0.0.1/api/v1/"])
def test_an_http_base_url_posts_to_its_logs(url: str) -> None:
    assert Client(url, "key").url == url.rstrip("/") + "/logs"

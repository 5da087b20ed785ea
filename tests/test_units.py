import pytest

from revolve import format_bytes, parse_bytes


@pytest.mark.parametrize("text,value", [("512MiB", 512 * 2**20), ("1.5 GB", 1.5e9), ("2e9", 2e9), ("10kB", 1e4),
                                        ("3KiB", 3072), (4096, 4096), ("7", 7)])
def test_parse(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("bad", ["", "abc", "-5MB", "0", "1 parsec", "nan"])
def test_parse_rejects(bad):
    with pytest.raises(ValueError, match="revolve.parse_bytes: memory must be"):
        parse_bytes(bad)


def test_format():
    assert format_bytes(3 * 2**20) == "3.00 MiB" and format_bytes(12) == "12 B"
    assert parse_bytes(format_bytes(5 * 2**30).replace(" ", "")) == 5 * 2**30

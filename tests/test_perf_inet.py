"""libarms/_inet.py (inet_pton checks that replace ipaddress in the device modules) gives the
answers ipaddress gives, for crafted and for random strings."""

import ipaddress

import pytest
from hypothesis import given, settings, strategies as st

from libarms import _inet


def reference(text):
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return None


@pytest.mark.parametrize("text", [
    "127.0.0.1", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5",
    " 1.2.3.4", "1.2.3.4 ", "1.2.3.4\n", "1.2.3.4\x00", "", "localhost", "example.com",
    "::", "::1", "2001:db8::1", "2001:DB8:0:0:0:0:0:1", "::ffff:192.0.2.1", "fe80::1%eth0",
    "fe80::1%", "1::2::3", "12345::", "::1/128", "[::1]", "١.٢.٣.٤", "1.2.3.4%eth0",
])
def test_version_matches_ipaddress_for_crafted_strings(text):
    want = reference(text)
    if want is None:
        with pytest.raises(ValueError):
            _inet.ip_version(text)
        assert not _inet.is_ip(text)
    else:
        assert _inet.ip_version(text) == want and _inet.is_ip(text)
        assert _inet.is_ipv4(text) == (want == 4) and _inet.is_ipv6(text) == (want == 6)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(alphabet="0123456789abcdefABCDEF.:%", max_size=45),
                 st.ip_addresses().map(str)))
def test_version_matches_ipaddress_for_random_strings(text):
    if "%" in text:                       # scopes: ipaddress has its own rules, we ignore them
        return
    assert (_inet.ip_version(text) if _inet.is_ip(text) else None) == reference(text)


def test_same_address_compares_values_not_spellings():
    assert _inet.same_address("::1", "0:0:0:0:0:0:0:1")
    assert _inet.same_address("2001:DB8::1", "2001:db8:0::1")
    assert not _inet.same_address("1.2.3.4", "::ffff:1.2.3.4")
    assert not _inet.same_address("host", "host")


def test_canonical_spelling_is_ipaddress_str():
    for text in ("2001:DB8:0:0:0:0:0:1", "0:0:0:0:0:0:0:2", "10.0.0.1", "fe80:0::1"):
        assert _inet.canonical(text) == str(ipaddress.ip_address(text))


def test_non_strings_are_not_addresses():
    assert not _inet.is_ip(3232235521) and not _inet.is_ip(None) and not _inet.is_ip(b"1.2.3.4")

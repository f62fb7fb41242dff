"""rclone's remote syntax, read as rclone 1.75 reads it (the cases of its own parser tests)."""

from __future__ import annotations

import pytest

from mqtt_backup.redaction.connection_string import Remote, RemoteSyntaxError, loose_params, parse


def config(remote: Remote) -> dict[str, str]:
    return {p.key: p.value for p in remote.params}


@pytest.mark.parametrize(
    ("text", "name", "config_string", "path", "values"),
    [
        ("/path/to/file", "", "", "/path/to/file", {}),
        ("/path:/to/file", "", "", "/path:/to/file", {}),
        ("./:colon.txt", "", "", "./:colon.txt", {}),
        ("with/slash:", "", "", "with/slash:", {}),
        ("with\\backslash:", "", "", "with\\backslash:", {}),
        ("remote:path/to/file", "remote", "remote", "path/to/file", {}),
        ("remote:/path/to/file", "remote", "remote", "/path/to/file", {}),
        ("rem.ote+1@x é:p", "rem.ote+1@x é", "rem.ote+1@x é", "p", {}),
        (":backend:/path/to/file", ":backend", ":backend", "/path/to/file", {}),
        (":backend,param1:/p", ":backend", ":backend,param1", "/p", {"param1": "true"}),
        (
            ":backend,param1=value:/p",
            ":backend",
            ":backend,param1=value",
            "/p",
            {"param1": "value"},
        ),
        (
            ":backend,param1=value1,param2,param3=value3:/p",
            ":backend",
            ":backend,param1=value1,param2,param3=value3",
            "/p",
            {"param1": "value1", "param2": "true", "param3": "value3"},
        ),
        (
            ":backend,param1=value1,param2=\"value2\",param3='value3':/p",
            ":backend",
            ":backend,param1=value1,param2=\"value2\",param3='value3'",
            "/p",
            {"param1": "value1", "param2": "value2", "param3": "value3"},
        ),
        (":backend,param=:path", ":backend", ":backend,param=", "path", {"param": ""}),
        (
            ':backend,param="with""quote":path',
            ":backend",
            ':backend,param="with""quote"',
            "path",
            {"param": 'with"quote'},
        ),
        (":backend,param='''''':", ":backend", ":backend,param=''''''", "", {"param": "''"}),
        # A quote that does not open the value is part of it.
        (":b,pass=a'b\"c:p", ":b", ":b,pass=a'b\"c", "p", {"pass": "a'b\"c"}),
        (":b,global.transfers=4:p", ":b", ":b,global.transfers=4", "p", {"global.transfers": "4"}),
        (
            "nas,pass='a\"b\\c,d:e''f',user=u:dir/x",
            "nas",
            "nas,pass='a\"b\\c,d:e''f',user=u",
            "dir/x",
            {"pass": "a\"b\\c,d:e'f", "user": "u"},
        ),
        (
            ":drive,token='{\"access_token\":\"ya29.a\",\"expiry\":\"2026-01-01T00:00:00Z\"}':/",
            ":drive",
            ":drive,token='{\"access_token\":\"ya29.a\",\"expiry\":\"2026-01-01T00:00:00Z\"}'",
            "/",
            {"token": '{"access_token":"ya29.a","expiry":"2026-01-01T00:00:00Z"}'},
        ),
        # Unquoted, a URL ends at its first ":" and the rest becomes the path.
        (":webdav,url=http://h:8/:x", ":webdav", ":webdav,url=http", "//h:8/:x", {"url": "http"}),
    ],
)
def test_parse_like_rclone(
    text: str, name: str, config_string: str, path: str, values: dict[str, str]
) -> None:
    remote = parse(text)
    assert (remote.name, remote.config_string, remote.path) == (name, config_string, path)
    assert config(remote) == values
    assert remote.config_string + (":" if remote.name else "") + remote.path == text


def test_each_value_is_found_where_it_is_written() -> None:
    text = ":sftp,host=h,pass='it''s',key_pem=\"x\",flag:p"
    params = parse(text).params
    assert [(p.key, p.written) for p in params] == [
        ("host", "h"),
        ("pass", "'it''s'"),
        ("key_pem", '"x"'),
        ("flag", ""),
    ]
    for p in params:
        assert text[p.start : p.start + len(p.written)] == p.written


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "empty"),
        (":", "trailing `:`"),
        ("::", "can't be empty"),
        (":/:", "invalid characters"),
        ("rem*ote:path", "invalid characters"),
        (" lead:path", "invalid characters"),
        ("trail :path", "invalid characters"),
        (":bac*kend:/p", "invalid characters"),
        (":backend,param-1=value:/p", "may only contain"),
        (':backend,param1="value"x:/p', "after a quote"),
        (":backend,", "must end with"),
        (":backend,param=value", "must end with"),
        (":backend,param=\"value'", "unterminated"),
        (':backend,param1="value"', "after a quote"),
        (":backend,=value:", "can't be empty"),
        (":backend,,:", "can't be empty"),
        (":backend,param=''bad'':", "after a quote"),
    ],
)
def test_refused_like_rclone(text: str, error: str) -> None:
    with pytest.raises(RemoteSyntaxError, match=error):
        parse(text)


def test_loose_params_find_what_was_meant_as_parameters() -> None:
    # rclone reads endpoint=http and a path holding the keys; the keys are still found.
    text = ":s3,endpoint=http://h:9,access_key_id=AK,secret_access_key='S''K,x':bucket"
    found = {p.key: p.value for p in loose_params(text)}
    assert found["access_key_id"] == "AK"
    assert found["secret_access_key"] == "S'K,x"
    # Unparseable text (an unterminated quote) still gives its values.
    assert {p.value for p in loose_params(":sftp,pass='open:p")} == {"open:p"}

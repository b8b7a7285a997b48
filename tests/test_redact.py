from travellr_ops.redact import mask, mask_argv


def test_passwords_in_uris_are_masked() -> None:
    assert (
        mask("mongodb://admin:s3cr%40t@db:27017/travellr")
        == "mongodb://admin:***@db:27017/travellr"
    )
    assert mask("redis://:hunter2@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert mask("error at redis://u:p@h:1 and mongodb://a:b@c/d") == (
        "error at redis://u:***@h:1 and mongodb://a:***@c/d"
    )


def test_uris_without_password_are_unchanged() -> None:
    for text in ("mongodb://localhost:27017/travellr", "http://127.0.0.1:5000/api/health"):
        assert mask(text) == text


def test_tokens_and_password_arguments_are_masked() -> None:
    assert "abc.def" not in mask("Authorization: Bearer abc.def")
    assert "topsecret" not in mask("password=topsecret")
    assert mask_argv(["--redis-url", "redis://:pw@h:1/0", "--token", "t0k3n"]) == (
        "--redis-url redis://:***@h:1/0 --token ***"
    )

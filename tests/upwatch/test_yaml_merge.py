"""YAML merge keys in upwatch.yaml, and the hints for Gatus's key names."""

from __future__ import annotations

from datetime import timedelta
from textwrap import dedent

import pytest

from upwatch import config
from upwatch.config import Config, ConfigError


def parse(text: str) -> Config:
    return config.parse(dedent(text), "upwatch.yaml", {})


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return str(caught.value).splitlines()


def test_a_merged_mapping_gives_its_keys_and_the_endpoint_s_own_keys_win() -> None:
    cfg = parse("""\
        x-defaults: &defaults
          interval: 5m
          timeout: 3s
          tags: [core]
          assertions: ["[STATUS] == 200"]
        endpoints:
          - name: one
            <<: *defaults
            url: https://one.example.test/
          - name: two
            <<: *defaults
            tags: [edge]
            url: https://two.example.test/
        """)
    one, two = cfg.endpoints
    assert (one.interval, one.timeout, one.tags) == (timedelta(minutes=5), timedelta(seconds=3), ["core"])
    assert [a.text for a in one.assertions] == ["[STATUS] == 200"]
    assert two.tags == ["edge"] and two.interval == timedelta(minutes=5)


def test_in_a_list_of_merged_mappings_the_first_that_sets_a_key_wins() -> None:
    cfg = parse("""\
        x-fast: &fast {interval: 10s, tags: [fast]}
        x-slow: &slow {interval: 10m, timeout: 4s}
        endpoints:
          - {name: a, url: "https://a.example.test/", <<: [*fast, *slow]}
          - {name: b, url: "https://b.example.test/", <<: [*slow, *fast]}
        """)
    a, b = cfg.endpoints
    assert (a.interval, a.timeout, a.tags) == (timedelta(seconds=10), timedelta(seconds=4), ["fast"])
    assert (b.interval, b.timeout, b.tags) == (timedelta(minutes=10), timedelta(seconds=4), ["fast"])


def test_a_merged_mapping_may_itself_merge_another() -> None:
    cfg = parse("""\
        x-base: &base {timeout: 2s, interval: 1m}
        x-api: &api
          <<: *base
          headers: {Accept: application/json}
        endpoints:
          - {name: api, url: "https://api.example.test/", <<: *api}
        """)
    (api,) = cfg.endpoints
    assert api.timeout == timedelta(seconds=2) and api.options.headers == {"Accept": "application/json"}


def test_a_bad_merged_value_is_reported_where_it_is_written_under_the_endpoint_s_key() -> None:
    assert problems("""\
        x-defaults: &defaults
          interval: 5m
          timeout: potato
        endpoints:
          - name: one
            <<: *defaults
            url: https://one.example.test/
          - name: two
            url: https://two.example.test/
            <<: *defaults
            timeout: 1s
        """) == ["upwatch.yaml:3: endpoints[0].timeout: 'potato' is not a duration (use e.g. 15s, 5m, 1h, 7d)"]


NOT_A_MAPPING = "a merge key (<<) takes a mapping or a list of mappings, such as *defaults or [*a, *b]"


def test_a_merge_key_needs_a_mapping_or_a_list_of_them() -> None:
    assert problems("""\
        x-list: &list [1, 2]
        endpoints:
          - name: one
            url: https://one.example.test/
            <<: *list
          - name: two
            url: https://two.example.test/
            <<: [*list]
        """) == [
        f"upwatch.yaml:5: endpoints[0]: {NOT_A_MAPPING}",
        f"upwatch.yaml:8: endpoints[1]: {NOT_A_MAPPING}",
    ]


def test_a_recursive_alias_is_a_config_error_not_a_crash() -> None:
    assert problems("""\
        endpoints: &loop
          - name: one
            url: https://one.example.test/
            tags: *loop
        """) == ["upwatch.yaml:4: endpoints[0].tags: recursive alias: this value contains itself"]
    assert problems("""\
        x-self: &self
          interval: 1m
          more: {<<: *self}
        """) == ["upwatch.yaml:3: x-self.more: recursive alias: a mapping merges itself"]


def test_a_key_written_twice_next_to_a_merge_is_still_a_duplicate() -> None:
    (problem,) = problems("""\
        x-d: &d {interval: 1m}
        endpoints:
          - name: one
            <<: *d
            url: https://one.example.test/
            url: https://two.example.test/
        """)
    # (the loader names the first line twice: its own way of reporting duplicates, merge or not)
    assert problem.endswith(": endpoints[0].url: duplicate key (first at line 5)")


def test_top_level_x_keys_are_left_out_also_in_a_file_without_merge_keys() -> None:
    cfg = parse("""\
        x-note: the anchors live here
        endpoints: [{name: one, url: "https://one.example.test/"}]
        """)
    assert [e.name for e in cfg.endpoints] == ["one"]


def test_only_top_level_x_keys_are_left_out_and_a_quoted_merge_key_is_a_plain_key() -> None:
    assert problems("""\
        x-anchors: {a: 1}
        prober: {x-extra: 1}
        endpoints:
          - {name: one, url: "https://one.example.test/", "<<": {interval: 1m}}
        """) == [
        "upwatch.yaml:2: prober.x-extra: unknown key 'x-extra'",
        "upwatch.yaml:4: endpoints[0].<<: unknown key '<<'",
    ]


GATUS_NAMES = [
    ("endpoints: [{name: a, url: 'https://a.example.test/', conditions: ['[STATUS] == 200']}]",
     "upwatch.yaml:1: endpoints[0].conditions: unknown key 'conditions': Gatus's name; upwatch calls it "
     "`assertions` (the same condition strings work)"),
    ("endpoints: [{name: a, url: 'https://a.example.test/', group: core}]",
     "upwatch.yaml:1: endpoints[0].group: unknown key 'group': Gatus's name; upwatch uses `tags` (a list)"),
    ("endpoints: [{name: a, url: 'https://a.example.test/', alerts: [{type: slack}]}]",
     "upwatch.yaml:1: endpoints[0].alerts: unknown key 'alerts': Gatus's per-endpoint alerts; upwatch sets "
     "thresholds under `alerting` (`failure_threshold`, `success_threshold`, `send_resolved`) and who is told "
     "under `alerting.routes`"),
    ("endpoints: [{name: a, url: 'https://a.example.test/', client: {insecure: true}}]",
     "upwatch.yaml:1: endpoints[0].client: unknown key 'client': Gatus's client options; upwatch has them on the "
     "endpoint: `timeout`, `verify_tls` (insecure: true is verify_tls: false), `follow_redirects` "
     "(ignore-redirect: true is false)"),
    ("defaults: {conditions: ['[STATUS] == 200']}",
     "upwatch.yaml:1: defaults.conditions: unknown key 'conditions': Gatus's name; upwatch calls it "
     "`assertions` (the same condition strings work)"),
    ("external-endpoints: [{name: a, token: t}]",
     "upwatch.yaml:1: external-endpoints: unknown key 'external-endpoints': Gatus's name; upwatch lists them "
     "under `endpoints` with `kind: push`"),
    ("default-endpoint: {interval: 1m}",
     "upwatch.yaml:1: default-endpoint: unknown key 'default-endpoint': to keep an anchor for `<<:` merge keys, "
     "start the key with `x-` (`x-default-endpoint`)"),
    ("suites: []",
     "upwatch.yaml:1: suites: unknown key 'suites': a Gatus setting upwatch has no equivalent for; "
     "`upwatch import gatus` converts a whole Gatus config and lists what it cannot"),
    ("alerting: {email: {from: a@example.test}}",
     "upwatch.yaml:1: alerting.email: unknown key 'email': Gatus's provider; upwatch's is `smtp` (`from` is "
     "`sender`, `to` is `recipients`); `upwatch import gatus` converts a whole Gatus config"),
    # not Gatus's: the usual suggestion
    ("endpoints: [{name: a, url: 'https://a.example.test/', intervall: 1m}]",
     "upwatch.yaml:1: endpoints[0].intervall: unknown key 'intervall' (did you mean 'interval'?)"),
    # a Gatus endpoint key in another section is not taken for an endpoint's
    ("prober: {conditions: 1}", "upwatch.yaml:1: prober.conditions: unknown key 'conditions'"),
]


@pytest.mark.parametrize(("text", "message"), GATUS_NAMES, ids=[t.split(":")[0] + "-" + m.split("'")[1]
                                                               for t, m in GATUS_NAMES])
def test_gatus_key_names_say_what_to_write_instead(text: str, message: str) -> None:
    assert problems(text) == [message]

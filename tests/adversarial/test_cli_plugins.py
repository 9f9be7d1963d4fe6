"""qa-findings rows P2 and P4: a plugin whose contribution hook raises, or that clashes with a name
already taken, is unregistered: none of its contributions are kept and none of its hooks runs."""
from medbench.registry import ModelSpec, build_registry, hookimpl


class HookExplodes:
    """P4: medbench_metrics raises; its run_start hook would abort every run if it stayed registered."""

    __name__ = "qa-badhook"

    @hookimpl
    def medbench_models(self):
        return [ModelSpec("qa-badhook-model", lambda ctx: None)]

    @hookimpl
    def medbench_metrics(self):
        raise RuntimeError("qa-badhook: metrics hook explodes")

    @hookimpl
    def medbench_run_start(self, config):
        raise RuntimeError("qa-badhook: run_start hook explodes")


class SecondOracle:
    """P2: contributes a model named like a built-in one."""

    __name__ = "qa-second-oracle"

    @hookimpl
    def medbench_models(self):
        return [ModelSpec("oracle", lambda ctx: "not the built-in")]


def test_P4_a_failed_plugin_has_none_of_its_hooks_called():
    reg = build_registry(extra_plugins=(HookExplodes(),))
    assert any("metrics hook explodes" in error for _, _, error in reg.failures)
    assert "qa-badhook-model" not in reg.entries["models"]  # none of its contributions kept
    reg.hook().medbench_run_start(config=None)  # would raise if its hook were still registered


def test_P2_a_clash_rejects_the_plugin_and_the_builtin_wins():
    from medbench.models.oracle import OracleModel

    reg = build_registry(extra_plugins=(SecondOracle(),))
    assert reg.entries["models"]["oracle"].spec.factory is OracleModel
    assert any("'oracle' is contributed by both" in error for _, _, error in reg.failures)


def test_unknown_name_error_is_a_user_error_and_a_key_error():
    import pytest

    from medbench.errors import UnknownPluginError, UserError, is_user_error

    reg = build_registry()
    with pytest.raises(KeyError) as e:
        reg.get("models", "orcale")
    assert isinstance(e.value, UnknownPluginError) and isinstance(e.value, UserError) and is_user_error(e.value)
    assert str(e.value).startswith("unknown model 'orcale'. Did you mean 'oracle'?")  # no repr quotes

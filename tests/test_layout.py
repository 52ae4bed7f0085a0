"""The package's layers (README "Layout"), checked on its import graph, counting imports inside
functions too: no cycles; the storage layer imports no stage; media code imports neither Spark nor
the rest of vidspark; a stage uses the layers below and the shared stage modules, never another
stage's run or the layers above; the demo generator and the benchmarks stay beside the library."""
import ast
import os

from tests.conftest import ROOT

PACKAGES = ("vidspark", "vidspark_demo", "vidspark_bench")


def import_graph(external: bool = False) -> dict:
    """{module: modules of the packages it imports anywhere in its source} (``external``: every
    imported module's name, third-party ones too)."""
    modules = {}
    for folder, _, files in (item for p in PACKAGES for item in os.walk(os.path.join(ROOT, p))):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path[:-3], ROOT).replace(os.sep, ".")
                modules[module.removesuffix(".__init__")] = path
    graph = {}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            found |= {n for n in names if (external or n in modules) and n != module
                      and n not in PACKAGES}
        graph[module] = found
    return graph


def cycles(graph: dict) -> list:
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_graph_is_read():
    graph = import_graph()
    assert "vidspark.storage" in graph["vidspark.stages.score"]
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "vidspark" or len(parts) == 1:
        return parts[0]
    return parts[1] if len(parts) > 2 or parts[1] in ("storage", "media", "stages") else module


SHARED_STAGE_MODULES = {"vidspark.stages.feature_sets", "vidspark.stages.evaluation",
                        "vidspark.stages.segments", "vidspark.stages.pca"}


def test_the_layers_hold():
    graph = import_graph()
    problems = []
    for module, imported in graph.items():
        layer = _layer(module)
        for other in imported:
            target = _layer(other)
            if layer == "storage" and target not in ("storage", "vidspark.config", "vidspark.errors"):
                problems.append(f"{module} (storage layer) imports {other}")
            if layer == "media" and target not in ("media", "vidspark.errors"):
                problems.append(f"{module} (media) imports {other}")
            if layer == "stages" and target not in ("stages", "storage", "media", "vidspark.config",
                                                    "vidspark.errors"):
                problems.append(f"{module} (a stage) imports {other} from a layer above")
            if (layer == "stages" and target == "stages" and other not in SHARED_STAGE_MODULES
                    and other != "vidspark.stages"):
                problems.append(f"{module} reaches into another stage: {other}")
            if (module.startswith("vidspark.") and module != "vidspark.cli"
                    and other.split(".")[0] in ("vidspark_demo", "vidspark_bench")):
                problems.append(f"{module} (the library) imports {other}")
    assert problems == []


def test_media_code_has_no_spark():
    graph = import_graph(external=True)
    for module, imported in graph.items():
        if _layer(module) == "media":
            assert not any(n.split(".")[0] == "pyspark" for n in imported), module

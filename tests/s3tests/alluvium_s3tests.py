"""pytest plugin for running ceph/s3-tests against Alluvium's S3 gateway.

It leaves the suite's code alone and only chooses what runs: every test
matching a rule of the exclusion file (ALLUVIUM_S3TESTS_EXCLUDE) is
deselected, unless ALLUVIUM_S3TESTS_ALL=1 asks to run them all (to find
rules that could go). A rule is "@marker" (a pytest marker of the suite) or
a glob on the test's name, followed by the reason. What each rule matched
is written as JSON to ALLUVIUM_S3TESTS_REPORT.
"""
import fnmatch
import json
import os


def pytest_configure(config):
    # Under pytest-xdist each worker runs as its own three users (the
    # suite's tests list "all my buckets"): S3TEST_CONF.<workerid> when the
    # runner wrote one.
    wid = getattr(config, "workerinput", {}).get("workerid")
    conf = os.environ.get("S3TEST_CONF")
    if wid and conf and os.path.exists(conf + "." + wid):
        os.environ["S3TEST_CONF"] = conf + "." + wid


def read_rules(path):
    rules = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 1)
            if len(parts) < 2 or not parts[1].strip():
                raise ValueError("%s:%d: %r has no reason" % (path, n, parts[0]))
            rules.append(parts[0])
    return rules


def matching(rules, name, markers):
    """The rules that exclude the test name (with markers), in file order."""
    out = []
    for r in rules:
        if r.startswith("@"):
            if r[1:] in markers:
                out.append(r)
        elif fnmatch.fnmatchcase(name, r):
            out.append(r)
    return out


def pytest_collection_modifyitems(config, items):
    path = os.environ.get("ALLUVIUM_S3TESTS_EXCLUDE")
    if not path:
        return
    rules = read_rules(path)
    run_all = os.environ.get("ALLUVIUM_S3TESTS_ALL") == "1"
    matches = {r: 0 for r in rules}
    tests = {}
    keep, drop = [], []
    for it in items:
        base = getattr(it, "originalname", None) or it.name
        markers = {m.name for m in it.iter_markers()}
        found = matching(rules, base, markers)
        if not found:
            keep.append(it)
            continue
        for r in found:
            matches[r] += 1
        tests[it.name] = found[0]
        (keep if run_all else drop).append(it)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
    report = os.environ.get("ALLUVIUM_S3TESTS_REPORT")
    if report:
        # Under pytest-xdist each worker collects the same items and writes
        # the same report: atomically, so a reader never sees half of one.
        tmp = "%s.%d" % (report, os.getpid())
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"rules": rules, "matches": matches, "tests": tests}, f)
        os.replace(tmp, report)
